"""The FEM section of scripts/bench.py (`--fem`): the tetrahedral FEM's throughput and the
tactile sensor's optics on the CPU, f32.

Rows: FEM forward and forward+backward (adjoint.backward of the forward's tape) in
tet-substeps/s on the tactile sensor's ~8k-tet dome and a 30k-tet block, B = 1 and 16 worlds,
a rigid sphere pressing into each; the tactile image (render/tactile.py) per frame without and
with a backward at two sizes, beside FOTS's figure as its authors report it; the marker
projection per frame.

bench.py calls `run(arch, quick, step)`, which runs each FEM row in a child process of its own
and the optics rows in one more, all with DIFFSUITE_FP=f32 (Taichi's float type is fixed per
process). One FEM row per child: a simulator's kernels are compiled for its B, so each row's
first call compiles (or loads from Taichi's offline cache) in a fresh process alike. The
children are this file: `bench_fem.py --child NAME --child-args JSON`, which prints one JSON
line. This module imports no Taichi at the top.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import textwrap
import time

import numpy as np

MARK = "BENCH_JSON "
DOME = dict(name="dome", kind="dome", radius=0.012, height=0.004)  # the default Sensor's gel: 8,410 tets
BLOCK = dict(name="block", kind="box", size=[0.04, 0.02, 0.04], cells=[25, 10, 20])  # 30,000 tets
# repeats: at most, after one warm-up; fewer once the timed calls pass budget_s (one at least)
FULL = dict(meshes=[DOME, BLOCK], B=[1, 16], T=100, repeats=5, budget_s=30.0,
            image_sizes=[[160, 120], [320, 240]], image_repeats=20, marker_calls=100)
QUICK = dict(meshes=[dict(name="block", kind="box", size=[0.02, 0.01, 0.02], cells=[3, 2, 3])], B=[1, 2], T=10,
             repeats=2, budget_s=5.0, image_sizes=[[40, 30]], image_repeats=3, marker_calls=10)
BALL = dict(shape="sphere", radius=0.01, friction=1.0)
PRESS = 1e-4  # m: the ball starts this deep under the gel's lowest vertex, so contact is on from the first substep
PRESS_SPEED = 0.2  # m/s: the ball rises into the gel
DT_SHARE = 0.9  # of the FEM's own dt limit
FOTS = dict(images_per_s=28.6, where="one CPU, as reported by its authors, not measured here",
            what="FOTS, an optical simulator for GelSight (not differentiable)")


# ------------------------------------------------------------------ timing
def clock(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def repeat(fn, repeats, budget_s):
    """fn() -> seconds (a number, or a tuple of parts): once as a warm-up (with its compiles), then
    up to `repeats` times, stopping once the timed calls pass budget_s (one at least).
    Returns (the warm-up's seconds, the median of each part, the number of timed calls)."""
    first = fn()
    runs = []
    while len(runs) < repeats and sum(np.sum(r) for r in runs) < budget_s:
        runs.append(fn())
    return first, np.median(runs, axis=0), len(runs)


# ------------------------------------------------------------------ FEM throughput (a child per row)
def dt_limit(FEM, mesh, kw):
    """The FEM's stable dt limit on this mesh, read from the ValueError its constructor raises for
    a dt far too large (the check runs before any field is allocated)."""
    try:
        FEM(mesh, dt=1.0, **kw)
    except ValueError as e:
        found = re.search(r"need dt < ([0-9.eE+-]+)", str(e))
        if found:
            return float(found.group(1))
        raise
    raise RuntimeError("FEM accepted dt = 1 s: no dt limit to read")


def lowest(v):
    """The bottom vertex nearest the axis x = z = 0: contact is tested at vertices, so the ball
    goes under one (a box with an odd cell count has none on the axis)."""
    bottom = v[v[:, 1] <= v[:, 1].min() + 1e-9 * np.ptp(v)]
    return bottom[np.argmin(bottom[:, 0] ** 2 + bottom[:, 2] ** 2)]


def child_fem(arch, mesh, B, T, repeats, budget_s):
    """Forward and forward+backward of T substeps of B worlds of the gel `mesh` (a tetmesh.build
    spec) with the tactile sensor's material, a sphere pressing up under its bottom vertex nearest the axis."""
    from diffsuite.sims import adjoint, init, tetmesh
    from diffsuite.sims.fem import FEM, VEL
    from diffsuite.sims.tactile import SENSOR
    init(arch, "f32")
    m = tetmesh.build({k: v for k, v in mesh.items() if k != "name"})
    ball = dict(BALL, position=(lowest(m.vertices) - [0.0, BALL["radius"] - PRESS, 0.0]).tolist())
    kw = dict(material=SENSOR["material"], contact=SENSOR["contact"], objects=[ball], gravity=(0.0, 0.0, 0.0))
    limit = dt_limit(FEM, m, kw)
    K = adjoint.default_segment(T)
    sim = FEM(m, num_worlds=B, dt=DT_SHARE * limit, segment=K, **kw)
    u = np.zeros((B, T, sim.A))
    u[..., VEL + 1] = PRESS_SPEED  # object 0's linear velocity along y
    gx = np.zeros((B, sim.N, 3))
    gx[..., 1] = 1.0 / sim.N  # loss: the vertices' mean height at the end, summed over worlds
    init_state, force = sim.initial_state(), []

    def gradient():
        t0 = time.perf_counter()
        _, final, tape = adjoint.forward(sim, init_state, u, every=T)
        t1 = time.perf_counter()
        adjoint.backward(sim, tape, None, [gx])
        force.append(float(final[4][:, 0, 1].mean()))
        return t1 - t0, time.perf_counter() - t1

    first, (fwd, bwd), n = repeat(gradient, repeats, budget_s)
    sim.free()
    work = B * sim.T * T
    return dict(mesh=mesh["name"], tets=sim.T, vertices=sim.N, B=B, T=T, K=K, dt=sim.dt, dt_limit=limit,
                forward_s=float(fwd), backward_s=float(bwd), backward_over_forward=float(bwd / fwd),
                tet_substeps_per_s=float(work / fwd), backward_tet_substeps_per_s=float(work / bwd),
                first_forward_s=first[0], first_backward_s=first[1],
                compile_forward_s=max(first[0] - float(fwd), 0.0), compile_backward_s=max(first[1] - float(bwd), 0.0),
                contact_force_N=force[-1], repeats=n)


# ------------------------------------------------------------------ tactile optics (one child)
def image_row(sensor, x, width, height, repeats):
    """TactileCamera.image of the rest gel: no grad, and with a backward of image.sum() to the vertices."""
    import torch

    from diffsuite.render.tactile import TactileCamera
    cam = TactileCamera(sensor, dict(width=width, height=height))

    def forward():
        with torch.no_grad():
            cam.image(x)

    first, fwd, n = repeat(lambda: clock(forward), repeats, budget_s=10.0)
    g_first, g, g_n = repeat(lambda: clock(lambda: cam.image(x.detach().requires_grad_()).sum().backward()),
                             repeats, budget_s=10.0)
    return dict(width=width, height=height, pixels=width * height, first_s=first, forward_ms=1e3 * float(fwd),
                images_per_s=1 / float(fwd), fwd_bwd_first_s=g_first, fwd_bwd_ms=1e3 * float(g),
                fwd_bwd_images_per_s=1 / float(g), repeats=n, fwd_bwd_repeats=g_n)


def child_tactile(arch, image_sizes, repeats, marker_calls):
    """The image rows at each size and the marker projection, on the default Sensor (its 8k-tet dome)."""
    import torch

    from diffsuite.render.tactile import TactileCamera
    from diffsuite.sims import init
    from diffsuite.sims.tactile import Sensor
    init(arch, "f32")
    sensor = Sensor()
    x = torch.as_tensor(sensor.mesh.vertices)  # float64, as the optics (and the envs) use by default
    images = [image_row(sensor, x, w, h, repeats) for w, h in image_sizes]
    cam = TactileCamera(sensor)

    def markers():  # a batch of calls per timing: one takes well under a millisecond
        with torch.no_grad():
            for _ in range(marker_calls):
                cam.markers(x)

    first, s, n = repeat(lambda: clock(markers) / marker_calls, repeats, budget_s=10.0)
    return dict(faces=len(sensor.faces), sensor_tets=len(sensor.mesh.tets), dtype=str(x.dtype).replace("torch.", ""),
                images=images, markers=dict(markers=len(sensor.marker_tri), first_s=first, ms=1e3 * float(s),
                                            frames_per_s=1 / float(s), calls=marker_calls, repeats=n))


CHILDREN = {"fem": child_fem, "tactile": child_tactile}


def run_child(name, arch, env, **kw):
    """Run CHILDREN[name](arch, **kw) in a fresh Python process (extra environment `env`); return its JSON result."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, "--arch", arch, "--child-args", json.dumps(kw)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode or not lines:
        raise RuntimeError(f"bench_fem child {name} {kw} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len(MARK):])


def steps(quick):
    sz = QUICK if quick else FULL
    return len(sz["meshes"]) * len(sz["B"]) + 1


def run(arch, quick, step):
    """The FEM section. Its children run with OMP_WAIT_POLICY=PASSIVE unless it is set, as the
    render section's (torch's spinning OpenMP threads take the cores Taichi's threads need)."""
    sz = QUICK if quick else FULL
    omp = os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
    env = {"DIFFSUITE_FP": "f32", "OMP_WAIT_POLICY": omp}
    fem = [step(f"fem {m['name']} B={B}", run_child, "fem", arch, env, mesh=m, B=B, T=sz["T"], repeats=sz["repeats"],
                budget_s=sz["budget_s"]) for m in sz["meshes"] for B in sz["B"]]
    tactile = step("tactile optics", run_child, "tactile", arch, env, image_sizes=sz["image_sizes"],
                   repeats=sz["image_repeats"], marker_calls=sz["marker_calls"])
    return dict(quick=quick, fp="f32", arch=arch, omp_wait_policy=omp, repeats=sz["repeats"], budget_s=sz["budget_s"],
                throughput=fem, tactile=tactile, fots=FOTS)


# ------------------------------------------------------------------ table
def table(r, first=13):
    """Plain-text lines of the FEM section (bench.py's table numbers them from `first`)."""
    tac = r["tactile"]
    lines = [
        f"{first}. FEM throughput (sims/fem.py, stable neo-Hookean, {r['fp']}, {r['arch']}): the tactile gel's "
        "material and contact; a rigid sphere",
        f"  (r {BALL['radius'] * 1e3:g} mm) starts {PRESS * 1e3:g} mm into the bottom vertex nearest the axis and "
        f"rises at {PRESS_SPEED:g} m/s; dt = {DT_SHARE:g} x the FEM's own dt limit;",
        "  fwd = adjoint.forward of T substeps, bwd = adjoint.backward of its tape (checkpoints every K, recomputed);",
        f"  warm median of up to {r['repeats']} (fewer past {r['budget_s']:g} s) after one warm-up; first = that "
        "warm-up's fwd / bwd, with the",
        "  kernels' compile (or their load from Taichi's offline cache); force = the sphere's normal force on the gel "
        "at the end",
        "  (mean over worlds); one child each",
        f"  {'mesh':<6} {'tets':>7} {'B':>3} {'T':>4} {'K':>3} {'dt s':>8} {'fwd s':>8} {'tet-substeps/s':>15} "
        f"{'bwd s':>8} {'bwd tet-substeps/s':>19} {'bwd/fwd':>7} {'first fwd/bwd s':>16} {'force N':>8}",
    ]
    for t in r["throughput"]:
        lines.append(f"  {t['mesh']:<6} {t['tets']:>7,} {t['B']:>3} {t['T']:>4} {t['K']:>3} {t['dt']:>8.2e} "
                     f"{t['forward_s']:>8.3f} {t['tet_substeps_per_s']:>15,.0f} {t['backward_s']:>8.3f} "
                     f"{t['backward_tet_substeps_per_s']:>19,.0f} {t['backward_over_forward']:>7.2f} "
                     f"{'%.1f / %.1f' % (t['first_forward_s'], t['first_backward_s']):>16} "
                     f"{t['contact_force_N']:>8.3g}")
    fots = r["fots"]
    lines += [
        "",
        f"{first + 1}. Tactile image (render/tactile.py TactileCamera.image of the default Sensor's rest gel: "
        f"{tac['sensor_tets']:,} tets,",
        f"  {tac['faces']:,} contact faces, {tac['dtype']} torch, 3 coloured lights, smooth shading); fwd = no grad; "
        "fwd+bwd = image.sum()",
        "  backward to the vertices; median after one warm-up; first = that warm-up's fwd (with the compile)",
        f"  {'size':<9} {'first s':>8} {'fwd ms':>8} {'images/s':>9} {'fwd+bwd ms':>11} {'images/s':>9}",
    ]
    for i in tac["images"]:
        lines.append(f"  {'%dx%d' % (i['width'], i['height']):<9} {i['first_s']:>8.2f} {i['forward_ms']:>8.2f} "
                     f"{i['images_per_s']:>9.1f} {i['fwd_bwd_ms']:>11.2f} {i['fwd_bwd_images_per_s']:>9.1f}")
    lines.append(f"  {'FOTS':<9} {'':>8} {1e3 / fots['images_per_s']:>8.1f} {fots['images_per_s']:>9.1f} {'-':>11} "
                 f"{'-':>9}   (not measured here)")
    lines += textwrap.wrap(f"{fots['what']}: {fots['images_per_s']:g} images/s on {fots['where']}.", 100,
                           initial_indent="  ", subsequent_indent="  ")
    mk = tac["markers"]
    lines += [
        "",
        f"{first + 2}. Marker projection (TactileCamera.markers, {mk['markers']} markers, no grad; median of "
        f"{mk['repeats']} means of {mk['calls']} calls): {mk['ms']:.3f} ms per frame, "
        f"{mk['frames_per_s']:,.0f} frames/s",
    ]
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description="bench.py's FEM-section children (run by bench.py --fem)")
    p.add_argument("--child", choices=sorted(CHILDREN), required=True)
    p.add_argument("--arch", default="cpu")
    p.add_argument("--child-args", default="{}")
    args = p.parse_args(argv)
    print(MARK + json.dumps(CHILDREN[args.child](args.arch, **json.loads(args.child_args))), flush=True)


if __name__ == "__main__":
    main()
