"""envs/learn/sweep.py: seeds x configs x methods on a local Ray, one table; resume and dispatch."""
import csv
import json
import math
import os

import pytest
import ray
import yaml

from diffsuite.envs.learn import sweep, train

TINY_TRAJOPT = {"env_config": {"max_steps": 8, "substeps": 5}, "adam": {"iterations": 2, "lr": 0.05},
                "cem": {"population": 4, "elite_frac": 0.25, "init_std": 0.5}}


def _sweep_config(tmp_path, grid, **keys):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"grid": grid, "seeds": [0, 1], "out": str(tmp_path / "out"), **keys}))
    return str(path)


def test_local_ray_sweep_writes_one_row_per_seed_and_method(tmp_path):
    opt = tmp_path / "tiny_walker.yaml"
    opt.write_text(yaml.safe_dump(TINY_TRAJOPT))
    cfg = _sweep_config(tmp_path, [{"configs": [str(opt)], "methods": ["adam", "cem"]}], num_cpus=2)
    try:
        s = sweep.sweep(cfg, progress=False)
    finally:
        ray.shutdown()
    rows = s["rows"]
    assert s["failed"] == 0 and len(rows) == 4 and not ray.is_initialized()
    assert {(r["method"], r["seed"]) for r in rows} == {(m, k) for m in ("adam", "cem") for k in (0, 1)}
    assert all(math.isfinite(r["final_return"]) and math.isfinite(r["best_return"]) and r["steps"] > 0
               for r in rows)
    for r in rows:  # each task ran with its own seed, in its own folder
        assert yaml.safe_load(open(os.path.join(r["out"], "config.yaml")))["seed"] == r["seed"]
        assert json.load(open(os.path.join(r["out"], "summary.json")))["seed"] == r["seed"]
    out = tmp_path / "out"
    with open(out / "results.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 4
    md = (out / "results.md").read_text()
    assert md == s["markdown"] and md.count("| tiny_walker | adam |") == 3  # two seeds, one aggregate
    assert (out / "curves.png").stat().st_size > 0
    # a resumed sweep reads finished tasks back instead of running them
    again = sweep.sweep(cfg, resume=True, local=True, progress=False)
    assert [r["status"] for r in again["rows"]] == ["skipped"] * 4
    assert [r["final_return"] for r in again["rows"]] == [r["final_return"] for r in rows]


def test_train_methods_go_to_train_run_and_resume_continues_them(tmp_path, monkeypatch):
    calls = []

    def fake_run(config, method, seed=0, out=None, resume=False, progress=True, **overrides):
        calls.append((config, method, seed, resume, overrides))
        if seed == 7:
            raise FloatingPointError("loss is nan")
        s = {"env": "x", "method": method, "seed": seed, "final_return": 1.0 + seed, "best_return": 2.0 + seed,
             "env_steps": 100 * (seed + 1), "seconds": 0.5, "curve": [[0, 0.0, 0.5], [100, 0.1, 1.0 + seed]]}
        with open(os.path.join(out, "summary.json"), "w") as fh:
            json.dump(s, fh)
        return s

    monkeypatch.setattr(train, "run", fake_run)
    over = {"bptt": {"iterations": 3}}
    cfg = _sweep_config(tmp_path, [{"configs": ["train_walker"], "methods": ["bptt", "ppo"], "overrides": over}])
    s = sweep.sweep(cfg, local=True, progress=False)
    assert sorted(c[1:4] for c in calls) == [("bptt", 0, False), ("bptt", 1, False), ("ppo", 0, False),
                                             ("ppo", 1, False)]
    assert all(c[0] == "train_walker" and c[4] == over for c in calls)
    assert [(r["final_return"], r["steps"], r["unit"]) for r in s["rows"] if r["method"] == "ppo"] == \
        [(1.0, 100, "env steps"), (2.0, 200, "env steps")]
    assert s["rows"][0]["curve"] == [[0, 0.5], [100, 1.0]]  # (env steps, return) of train's rows
    os.remove(tmp_path / "out" / "train_walker" / "ppo" / "seed1" / "summary.json")  # as if killed
    calls.clear()
    s = sweep.sweep(cfg, resume=True, local=True, progress=False)
    assert [c[1:4] for c in calls] == [("ppo", 1, True)]
    assert [r["status"] for r in s["rows"]] == ["skipped", "skipped", "skipped", "done"]
    # a failing task is a row marked failed, left out of the aggregate
    cfg = _sweep_config(tmp_path, [{"configs": ["train_walker"], "methods": ["bptt"]}], seeds=[7, 8])
    s = sweep.sweep(cfg, local=True, progress=False)
    assert s["failed"] == 1 and s["rows"][0]["status"] == "failed" and "nan" in s["rows"][0]["error"]
    assert "| train_walker | bptt | 1 |" in s["markdown"]


@pytest.mark.parametrize("keys, name", [
    ({"grid": [{"configs": ["trajopt_walker"], "methods": ["sgd"]}]}, "grid[0].methods"),
    ({"grid": [{"configs": ["trajopt_walker"], "method": ["adam"]}]}, "grid[0]"),
    ({"grid": [{"configs": "trajopt_walker", "methods": ["adam"]}]}, "grid[0].configs"),
    ({"seeds": [1, 1]}, "seeds"),
    ({"threads": 0}, "threads"),
    ({"workers": 2}, "workers"),
])
def test_bad_sweep_configs_name_the_key(tmp_path, keys, name):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(keys))
    with pytest.raises(ValueError, match=name.replace("[", r"\[").replace("]", r"\]")):
        sweep.load(str(path))
