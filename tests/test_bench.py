"""scripts/bench.py --quick runs end to end and writes sane JSON (numbers only, no timing asserts),
mass-spring, MPM, render and FEM sections all. Needs no Mitsuba: quick mode skips its rows."""
import json
import math
import os
import pathlib
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "bench.py"


def _positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_bench_quick_writes_json_and_table(tmp_path):
    out = tmp_path / "b.json"
    env = {**os.environ, "DIFFSUITE_ARCH": "cpu"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    r = json.loads(out.read_text())
    assert (tmp_path / "b.md").read_text().count("DiffTaichi") >= 1

    assert len(r["throughput"]) == 4
    for t in r["throughput"]:
        for key in ("forward_s", "backward_s", "backward_over_forward", "substeps_per_s", "world_substeps_per_s"):
            assert _positive(t[key]), (key, t)

    m = r["memory"]
    for mode in ("checkpointed", "store_all"):
        for key in ("baseline_rss_mb", "peak_rss_mb", "rss_above_baseline_mb", "field_mb", "fields_plus_checkpoints_mb"):
            assert _positive(m[mode][key]), (mode, key)
    assert m["checkpointed"]["K"] < m["store_all"]["K"] == m["store_all"]["T"]
    assert m["checkpointed"]["fields_plus_checkpoints_mb"] < m["store_all"]["fields_plus_checkpoints_mb"]
    assert m["checkpointed"]["rss_above_baseline_mb"] < m["store_all"]["rss_above_baseline_mb"]
    assert _positive(m["ratio_rss"]) and _positive(m["ratio_fields"])

    g = r["gradient_error"]
    for key in ("actions_rel_error", "stiffness_rel_error"):
        assert math.isfinite(g[key]) and 0 <= g[key] < 1e-4, (key, g[key])

    f = r["faces"]
    for key in ("gym_steps_per_s", "vec_steps_per_s", "diff_step_ms", "diff_forward_ms", "diff_backward_ms"):
        assert _positive(f[key]), (key, f)

    ref = r["reference"]
    assert ref["transitions"] == 681
    for run in ("checkpointed", "store_all"):
        assert _positive(ref[run]["s_per_iter"]) and _positive(ref[run]["peak_rss_mb"])

    # MPM (--mpm is on by default; --quick runs 2D only, on the small default diffmpm robot)
    assert "diffmpm" in (tmp_path / "b.md").read_text()
    mp = r["mpm"]
    tp = mp["throughput"]
    assert {t["dim"] for t in tp} == {2} and len(tp) == 2
    for t in tp:
        for key in ("forward_s", "backward_s", "backward_over_forward", "particle_substeps_per_s",
                    "backward_particle_substeps_per_s", "first_forward_s", "first_backward_s"):
            assert _positive(t[key]), (key, t)
        for key in ("compile_forward_s", "compile_backward_s"):
            assert math.isfinite(t[key]) and t[key] >= 0, (key, t)

    ck, sa = mp["memory"]["checkpointed"], mp["memory"]["store_all"]
    assert len(ck) >= 2 and len(sa) >= 1
    for row in ck + sa:
        for key in ("baseline_rss_mb", "peak_rss_mb", "field_mb", "checkpoint_mb", "fields_plus_checkpoints_mb",
                    "store_all_field_mb", "forward_s", "backward_s"):
            assert _positive(row[key]), (key, row)
        assert math.isfinite(row["rss_above_baseline_mb"]) and row["rss_above_baseline_mb"] >= 0, row
    assert all(c["K"] < c["T"] for c in ck) and all(s["K"] == s["T"] for s in sa)
    big = max(ck, key=lambda c: c["T"])  # checkpointed at the largest T stays below what store-all would need
    assert big["fields_plus_checkpoints_mb"] < big["store_all_field_mb"], big
    assert big["rss_above_baseline_mb"] < big["store_all_field_mb"], big
    for g in mp["memory"]["growth"]:  # sublinear in T
        assert _positive(g["fields_ratio"]) and g["fields_ratio"] < g["T_ratio"], g

    ref = mp["reference"]
    assert ref["hold"] == 1 and ref["particles"] > 0 and ref["difftaichi"]["s_per_iter"] == [1.7, 2.0]
    assert ref["checkpointed"]["K"] < ref["store_all"]["K"] == ref["substeps"]
    for run in ("checkpointed", "store_all"):
        for key in ("s_per_iter", "peak_rss_mb", "fields_plus_checkpoints_mb"):
            assert _positive(ref[run][key]), (run, key)

    # render (--render is on by default; --quick: tiny sizes, Mitsuba skipped)
    assert "Mitsuba" in (tmp_path / "b.md").read_text()
    rd = r["render"]
    assert rd["fp"] == "f32" and rd["quick"] is True and len(rd["size"]) == 2
    assert len(rd["spheres"]) >= 1
    for s in rd["spheres"]:
        for key in ("first_s", "forward_s", "rays_per_s", "fwd_bwd_first_s", "fwd_bwd_s", "grad_forward_s",
                    "backward_over_forward", "radius"):
            assert _positive(s[key]), (key, s)
        for key in ("forward_rss_mb", "fwd_bwd_rss_mb", "backward_s"):
            assert math.isfinite(s[key]) and s[key] >= 0, (key, s)
        assert s["M"] > 0 and s["pixels"] == rd["size"][0] * rd["size"][1]
    me = rd["mesh"]
    assert me["triangles"] == 2 * (me["grid"] - 1) ** 2 and me["vertices"] == me["grid"] ** 2
    for key in ("first_s", "forward_s", "rays_per_s", "fwd_bwd_first_s", "fwd_bwd_s", "grad_forward_s"):
        assert _positive(me[key]), (key, me)
    for key in ("forward_rss_mb", "fwd_bwd_rss_mb", "backward_s"):
        assert math.isfinite(me[key]) and me[key] >= 0, (key, me)
    assert sorted(w["dim"] for w in rd["world"]) == [2, 3]
    for w in rd["world"]:
        for key in ("first_s", "frame_s", "frames_per_s", "target_s"):
            assert _positive(w[key]), (key, w)
        assert w["particles"] > 0 and isinstance(w["within_target"], bool) and w["rss_mb"] >= 0
    sd = rd["sdf_memory"]
    assert len(sd) >= 2 and len({s["march_steps"] for s in sd}) == len(sd)
    for s in sd:
        assert _positive(s["first_s"]) and _positive(s["fwd_bwd_s"]), s
        assert math.isfinite(s["rss_mb"]) and s["rss_mb"] >= 0, s

    mi = rd["mitsuba"]
    assert isinstance(mi["status"], str) and mi["reference"]["spheres"][0]["forward_s"] > 0
    for row in (mi["spheres"] if isinstance(mi["spheres"], list) else [mi["spheres"]]) + [mi["mesh"]]:
        if isinstance(row, dict) and "result" not in row:  # measured: numbers
            for key in ("first_s", "forward_s", "rays_per_s"):
                assert _positive(row[key]), (key, row)
        else:  # "skipped (quick)", "not installed", a failure
            assert isinstance(row if isinstance(row, str) else row["result"], str), row

    # FEM (--fem is on by default; --quick: one tiny block at B = 1 and 2, one small image size)
    assert "FOTS" in (tmp_path / "b.md").read_text()
    fe = r["fem"]
    assert fe["fp"] == "f32" and fe["quick"] is True
    assert sorted(t["B"] for t in fe["throughput"]) == [1, 2]
    for t in fe["throughput"]:
        for key in ("forward_s", "backward_s", "backward_over_forward", "tet_substeps_per_s",
                    "backward_tet_substeps_per_s", "first_forward_s", "first_backward_s", "dt", "dt_limit",
                    "contact_force_N"):
            assert _positive(t[key]), (key, t)
        for key in ("compile_forward_s", "compile_backward_s"):
            assert math.isfinite(t[key]) and t[key] >= 0, (key, t)
        assert t["tets"] > 0 and t["T"] > 0 and 0 < t["K"] <= t["T"] and t["dt"] < t["dt_limit"], t
    tac = fe["tactile"]
    assert len(tac["images"]) == 1 and tac["faces"] > 0
    for im in tac["images"]:
        for key in ("first_s", "forward_ms", "images_per_s", "fwd_bwd_first_s", "fwd_bwd_ms", "fwd_bwd_images_per_s"):
            assert _positive(im[key]), (key, im)
        assert im["pixels"] == im["width"] * im["height"]
    mk = tac["markers"]
    assert mk["markers"] > 0 and _positive(mk["ms"]) and _positive(mk["frames_per_s"])
    assert fe["fots"]["images_per_s"] == 28.6
