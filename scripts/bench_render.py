"""The render section of scripts/bench.py (`--render`): the renderers' speed and memory on the CPU,
f32, with Mitsuba 3 on the same scenes side by side.

Rows: the sphere ray tracer (render/ray_tracer.py) on random sphere clouds, forward and
forward+backward, rays/s and peak memory; the mesh tracer (render/mesh_tracer.py) on a
height field; the environments' frames (render/world.py) in 3D and 2D; the SDF sphere
tracer's (render/sphere_tracer.py) peak memory against its march steps; and Mitsuba 3
(llvm_ad_rgb, 1 spp, integrator "direct") on the sphere clouds and the height field, when
it is installed, next to reference figures from an earlier session.

bench.py calls `run(arch, quick, step)`, which runs the Taichi rows in one child process
with DIFFSUITE_FP=f32 (Taichi's float type is fixed per process) and every Mitsuba row in
a child of its own (Mitsuba and Taichi in one process are untested; a row that crashes or
runs too long fails alone). The children are this file: `bench_render.py --child NAME
--child-args JSON`, which prints one JSON line. This module imports neither Taichi nor
Mitsuba at the top, so that a Mitsuba child loads no Taichi.
"""
import argparse
import ctypes
import gc
import glob
import json
import math
import os
import statistics
import subprocess
import sys
import textwrap
import time

import numpy as np

MARK = "BENCH_JSON "
MB = 2.0 ** 20
SPHERE_VIEW = dict(eye=[0.9, 1.2, 2.6], target=[0.0, 0.0, 0.0], fov=40.0)  # 3 units from the cube's centre
MESH_VIEW = dict(eye=[0.0, -1.6, 2.5], target=[0.0, 0.0, 0.0], fov=40.0)  # the sheet from above at a slant
LIGHTS = [{"kind": "ambient", "color": [0.25, 0.25, 0.27]},
          {"kind": "directional", "direction": [-0.4, -1.0, -0.3], "color": [0.8, 0.78, 0.72]}]
# repeats: at most; fewer where they would take over 10 s (60 s for Mitsuba), one at least
FULL = dict(size=256, spheres=[1000, 10 ** 4, 10 ** 5, 10 ** 6], repeats=5, grid=159,
            world_3d=22, world_2d=100, world_repeats=10, sdf_size=128, march_steps=[32, 128, 512], sdf_repeats=3,
            mitsuba_spheres=[1000, 10 ** 4, 10 ** 5], mitsuba_repeats=5, mitsuba_timeout_s=600)
QUICK = dict(size=64, spheres=[1000], repeats=2, grid=20,
             world_3d=8, world_2d=22, world_repeats=2, sdf_size=32, march_steps=[16, 64], sdf_repeats=1)
WORLD_TARGET_S = 0.05  # the issue's budget for one environment frame
MITSUBA_VARIANT = "llvm_ad_rgb"
MITSUBA_BUDGET_S = 60  # a 10^5-sphere render takes about a minute: one repeat
MITSUBA_REFERENCE = dict(
    where="measured on this 2-core CPU in an earlier session, 2026-12", version="3.9.1", variant=MITSUBA_VARIANT,
    size=[256, 256], spp=1, integrator="direct",
    spheres=[dict(M=1000, forward_s=0.279), dict(M=10 ** 4, forward_s=3.9)],
    mesh=dict(triangles="49k", forward_s=0.015, fwd_bwd_s=0.034))
LLVM_19 = ["/usr/lib/x86_64-linux-gnu/libLLVM-19*.so*", "/usr/lib/x86_64-linux-gnu/libLLVM.so.19*",
           "/usr/lib/llvm-19/lib/libLLVM*.so*"]


# ------------------------------------------------------------------ scenes (numpy, shared with Mitsuba)
def sphere_cloud(M, seed=0):
    """M random spheres in the unit cube [-0.5, 0.5]^3, radius 0.5 (1 / M)^(1/3) (a particle
    cloud: half the mean spacing), random albedos: centres (M, 3), radius, colours (M, 3)."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(-0.5, 0.5, (M, 3)).astype(np.float32), 0.5 * (1.0 / M) ** (1 / 3),
            rng.uniform(0.2, 0.9, (M, 3)).astype(np.float32))


def height_field(n):
    """An n x n vertex grid over [-1, 1]^2 with z = 0.1 sin(3 pi x) cos(2 pi y), two triangles a
    cell: vertices (n^2, 3) f32, faces (2 (n-1)^2, 3) int64, per-vertex colours by height."""
    u = np.linspace(-1.0, 1.0, n)
    X, Y = np.meshgrid(u, u, indexing="ij")
    Z = 0.1 * np.sin(3 * np.pi * X) * np.cos(2 * np.pi * Y)
    verts = np.stack([X, Y, Z], -1).reshape(-1, 3).astype(np.float32)
    i = np.arange(n * n).reshape(n, n)
    a, b, c, d = i[:-1, :-1].ravel(), i[1:, :-1].ravel(), i[1:, 1:].ravel(), i[:-1, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    h = (Z.ravel()[:, None] + 0.1) / 0.2
    colors = ((1 - h) * [0.25, 0.45, 0.75] + h * [0.9, 0.8, 0.5]).astype(np.float32)
    return verts, faces, colors


def weight(size, seed=1):
    """The loss's fixed random weight on the rgb image, (H, W, 3)."""
    return np.random.default_rng(seed).uniform(0.0, 1.0, (size, size, 3)).astype(np.float32)


def block(n, spacing, lower, dim):
    """An n^dim lattice of particles (an MPM block) from `lower`, coloured by height."""
    axes = [lower[a] + spacing * np.arange(n) for a in range(dim)]
    x = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, dim)
    shade = np.clip((x[:, 1] - x[:, 1].min()) / max(np.ptp(x[:, 1]), 1e-9), 0, 1)[:, None]
    return x, (1 - shade) * [0.75, 0.47, 0.24] + shade * [0.94, 0.75, 0.47]


# ------------------------------------------------------------------ timing and memory
def _status_kb(field):
    """VmRSS or VmHWM of this process in KiB (Linux); elsewhere the peak from getrusage."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(ln.split()[1]) for ln in fh if ln.startswith(field + ":"))
    except (OSError, StopIteration):
        import resource
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB (Linux), bytes (macOS)
        return maxrss / 1024 if sys.platform == "darwin" else maxrss


def reset_peak():
    """The baseline of the next measurement: (RSS now in MB, whether the peak could be reset).
    Frees what the garbage collector and malloc hold (malloc_trim: so that a row does not
    reuse memory an earlier one left cached), then resets the peak RSS (VmHWM) to the
    current RSS; where that fails, the peaks read later are the process's so far."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        ok = True
    except OSError:
        ok = False
    return _status_kb("VmRSS") / 1024, ok


def peak_rss_mb():
    return _status_kb("VmHWM") / 1024


def _once(fn):
    t0 = time.perf_counter()
    part = fn()
    return time.perf_counter() - t0, part


def measure(fn, repeats, budget_s=10.0):
    """Call fn once (warm-up, with its compiles: first_s), then `repeats` times (fewer, one at
    least, where the warm-up says they would take over budget_s): the median s, and the peak RSS above the RSS
    after the warm-up (rss_mb). fn may return the seconds of its first part (the forward of a
    forward+backward): its median is part_s."""
    first, _ = _once(fn)
    if budget_s:
        repeats = max(1, min(repeats, int(budget_s / first)))
    base, _ = reset_peak()
    runs = [_once(fn) for _ in range(repeats)]
    out = dict(first_s=first, s=statistics.median(r[0] for r in runs), rss_mb=max(peak_rss_mb() - base, 0.0),
               repeats=repeats)
    if isinstance(runs[0][1], float):
        out["part_s"] = statistics.median(r[1] for r in runs)
    return out


# ------------------------------------------------------------------ Taichi rows (one child, f32)
def _torch_scene(M, size):
    import torch

    from diffsuite.render.camera import Camera
    from diffsuite.render.shading import lights
    c, r, col = sphere_cloud(M)
    cam = Camera(SPHERE_VIEW["eye"], SPHERE_VIEW["target"], size, size, fov=SPHERE_VIEW["fov"], dtype=torch.float32)
    return cam, torch.as_tensor(c), torch.full((M,), r), torch.as_tensor(col), lights(LIGHTS, torch.float32)


def spheres_row(M, size, repeats, tracer):
    """Forward (no grad, the fused kernel) and forward+backward (centres, radii, colours) of M spheres."""
    import torch

    from diffsuite.render.ray_tracer import render
    cam, c, r, col, light = _torch_scene(M, size)
    w = torch.as_tensor(weight(size))[None]

    def forward():
        with torch.no_grad():
            render(cam, c, r, col, light, shadows=True, tracer=tracer)

    def gradient():
        leaves = [a.detach().requires_grad_() for a in (c, r, col)]
        t0 = time.perf_counter()
        out = render(cam, *leaves, light, shadows=True, tracer=tracer)
        t1 = time.perf_counter()
        (out["rgb"] * w).sum().backward()
        return t1 - t0

    f, g = measure(forward, repeats), measure(gradient, repeats)
    return dict(M=M, radius=float(r[0]), pixels=size * size, first_s=f["first_s"], forward_s=f["s"],
                rays_per_s=size * size / f["s"], forward_rss_mb=f["rss_mb"], fwd_bwd_first_s=g["first_s"],
                fwd_bwd_s=g["s"], grad_forward_s=g["part_s"], backward_s=g["s"] - g["part_s"],
                backward_over_forward=(g["s"] - g["part_s"]) / f["s"], fwd_bwd_rss_mb=g["rss_mb"])


def mesh_row(n, size, repeats):
    """render_mesh of the n x n height field with a reused MeshScene: forward, forward+backward to vertices."""
    import torch

    from diffsuite.render.camera import Camera
    from diffsuite.render.mesh_tracer import MeshScene, render_mesh
    from diffsuite.render.shading import lights
    v, f, col = (torch.as_tensor(a) for a in height_field(n))
    cam = Camera(MESH_VIEW["eye"], MESH_VIEW["target"], size, size, fov=MESH_VIEW["fov"], dtype=torch.float32)
    light, w = lights(LIGHTS, torch.float32), torch.as_tensor(weight(size))[None]
    scene = MeshScene(n_faces_max=len(f), n_pixels_max=size * size)

    def forward():
        with torch.no_grad():
            render_mesh(cam, v, f, col, light, antialias=True, scene=scene)

    def gradient():
        vv = v.detach().requires_grad_()
        t0 = time.perf_counter()
        out = render_mesh(cam, vv, f, col, light, antialias=True, scene=scene)
        t1 = time.perf_counter()
        (out["rgb"] * w).sum().backward()
        return t1 - t0

    a, b = measure(forward, repeats), measure(gradient, repeats)
    scene.free()
    return dict(grid=n, vertices=len(v), triangles=len(f), pixels=size * size, first_s=a["first_s"],
                forward_s=a["s"], rays_per_s=size * size / a["s"], forward_rss_mb=a["rss_mb"],
                fwd_bwd_first_s=b["first_s"], fwd_bwd_s=b["s"], grad_forward_s=b["part_s"],
                backward_s=b["s"] - b["part_s"], backward_over_forward=(b["s"] - b["part_s"]) / a["s"],
                fwd_bwd_rss_mb=b["rss_mb"])


def world_rows(n3, n2, size, repeats):
    """WorldRenderer frames as the environments draw them: an MPM-like block in 3D (n3^3
    particles, spacing 1/128, radius 0.6 spacing, the shaping env's framing) and in 2D (n2^2
    particles, spacing 1/256, one box tool)."""
    from diffsuite.render.world import WorldRenderer
    s3 = 1 / 128
    x3, c3 = block(n3, s3, [0.375, 0.05, 0.375], 3)
    w3 = WorldRenderer(3, ground=0.0, size=(size, size))
    centre = x3.mean(0)
    cam3 = w3.camera_3d(centre + (float(np.ptp(x3, 0).max()) + 0.2) * np.array([0.25, 0.9, 1.3]), centre)
    s2 = 1 / 256
    x2, c2 = block(n2, s2, [0.3, 0.05], 2)
    w2 = WorldRenderer(2, tools=[{"shape": "box", "half": [0.1, 0.02], "position": [0.5, 0.3]}], ground=0.05,
                       size=(size, size))
    cam2 = w2.camera_2d((0.0, 0.0, 1.0))
    rows = []
    for dim, w, cam, x, col, s, poses in ((3, w3, cam3, x3, c3, s3, ()), (2, w2, cam2, x2, c2, s2, [[0.5, 0.3, 0.0]])):
        m = measure(lambda: w.frame(cam, x, 0.6 * s, col, poses) is None, repeats)  # (no image kept)
        rows.append(dict(dim=dim, particles=len(x), pixels=size * size, first_s=m["first_s"], frame_s=m["s"],
                         frames_per_s=1 / m["s"], target_s=WORLD_TARGET_S, within_target=m["s"] <= WORLD_TARGET_S,
                         rss_mb=m["rss_mb"]))
    return rows


def sdf_rows(size, steps_list, repeats):
    """Peak memory and time of one SDF render's forward+backward (pose requires grad) against
    its march steps: the march runs without a tape, so the memory should not grow with them."""
    import torch

    from diffsuite.render.camera import Camera
    from diffsuite.render.shading import lights
    from diffsuite.render.sphere_tracer import SDFScene, render
    obj = {"shape": "union", "k": 0.1, "a": {"shape": "sphere", "radius": 0.35},
           "b": {"shape": "box", "half": [0.3, 0.2, 0.25], "offset": [0.3, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]},
           "position": [-0.1, 0.0, 0.0], "quat": [0.96, 0.0, 0.28, 0.0], "color": [0.3, 0.6, 0.9]}
    cam = Camera([0.4, 0.8, 2.8], [0.0, 0.0, 0.0], size, size, fov=40.0, dtype=torch.float32)
    light, w = lights(LIGHTS, torch.float32), torch.as_tensor(weight(size))[None]
    rows = []
    scene = SDFScene([obj])
    base = scene.params(torch.float32)
    for steps in steps_list:
        scene.steps = steps  # a kernel argument: one compile for every row

        def gradient():
            params = dict(base, pose=base["pose"].detach().requires_grad_())
            (render(scene, cam, light, params)["rgb"] * w).sum().backward()

        m = measure(gradient, repeats)
        rows.append(dict(march_steps=steps, pixels=size * size, first_s=m["first_s"], fwd_bwd_s=m["s"],
                         rss_mb=m["rss_mb"]))
    scene.free()
    return rows


def child_taichi(arch, quick):
    """Every Taichi row, in this (f32) process."""
    from diffsuite.render.ray_tracer import SphereTracer
    from diffsuite.sims import init
    init(arch, "f32")
    sz = QUICK if quick else FULL
    n = sz["size"]
    _, hwm_reset = reset_peak()
    tracer = SphereTracer()  # no fields: one compile serves every sphere count
    return dict(size=[n, n], repeats=sz["repeats"], hwm_reset=hwm_reset,
                spheres=[spheres_row(M, n, sz["repeats"], tracer) for M in sz["spheres"]],
                mesh=mesh_row(sz["grid"], n, sz["repeats"]),
                world=world_rows(sz["world_3d"], sz["world_2d"], n, sz["world_repeats"]),
                sdf_memory=sdf_rows(sz["sdf_size"], sz["march_steps"], sz["sdf_repeats"]))


# ------------------------------------------------------------------ Mitsuba 3 (a child per row)
def mitsuba():
    """Mitsuba with the llvm_ad_rgb variant. Its LLVM backend needs LLVM >= 16 or so (the
    system's LLVM 15 crashes it): point DRJIT_LIBLLVM_PATH at a libLLVM-19 if none is set."""
    if not os.environ.get("DRJIT_LIBLLVM_PATH"):
        found = sorted(p for g in LLVM_19 for p in glob.glob(g))
        if found:
            os.environ["DRJIT_LIBLLVM_PATH"] = found[0]
    import mitsuba as mi
    mi.set_variant(MITSUBA_VARIANT)
    return mi


def _mi_scene(mi, view, size, shapes):
    """A Mitsuba scene dict: the pinhole view, 1 spp, direct lighting, LIGHTS as a constant and a directional emitter."""
    amb, sun = LIGHTS
    rgb = lambda v: {"type": "rgb", "value": list(v)}
    return {"type": "scene", "integrator": {"type": "direct"},
            "sensor": {"type": "perspective", "fov": view["fov"], "fov_axis": "y",
                       "to_world": mi.ScalarTransform4f().look_at(origin=view["eye"], target=view["target"],
                                                                  up=[0, 1, 0]),
                       "film": {"type": "hdrfilm", "width": size, "height": size, "rfilter": {"type": "box"}},
                       "sampler": {"type": "independent", "sample_count": 1}},
            "ambient": {"type": "constant", "radiance": rgb(amb["color"])},
            "sun": {"type": "directional", "direction": sun["direction"], "irradiance": rgb(sun["color"])},
            **shapes}


def _mi_forward(mi, scene, seed):
    import drjit as dr
    img = mi.render(scene, spp=1, seed=seed)
    dr.eval(img)
    dr.sync_thread()


def child_mitsuba_probe(arch):
    mi = mitsuba()
    return dict(version=mi.__version__, variant=mi.variant(), libllvm=os.environ.get("DRJIT_LIBLLVM_PATH"))


def child_mitsuba_spheres(arch, M, size, repeats):
    """Forward time of the sphere cloud of spheres_row as M Mitsuba sphere shapes."""
    mi = mitsuba()
    c, r, col = sphere_cloud(M)
    shapes = {f"s{i}": {"type": "sphere", "center": c[i].tolist(), "radius": r,
                        "bsdf": {"type": "diffuse", "reflectance": {"type": "rgb", "value": col[i].tolist()}}}
              for i in range(M)}
    t0 = time.perf_counter()
    scene = mi.load_dict(_mi_scene(mi, SPHERE_VIEW, size, shapes))
    load = time.perf_counter() - t0
    seed = iter(range(10 ** 6))
    m = measure(lambda: _mi_forward(mi, scene, next(seed)), repeats, MITSUBA_BUDGET_S)
    return dict(M=M, radius=r, pixels=size * size, load_s=load, first_s=m["first_s"], forward_s=m["s"],
                rays_per_s=size * size / m["s"], forward_rss_mb=m["rss_mb"], repeats=m["repeats"])


def child_mitsuba_mesh(arch, n, size, repeats):
    """The height field of mesh_row as a Mitsuba mesh with vertex colours: forward, and
    forward+backward to its vertex positions (loss = sum of image times the fixed weight)."""
    import drjit as dr
    mi = mitsuba()
    v, f, col = height_field(n)
    props = mi.Properties()
    props["bsdf"] = mi.load_dict({"type": "diffuse", "reflectance": {"type": "mesh_attribute", "name": "vertex_color"}})
    mesh = mi.Mesh("height_field", len(v), len(f), props=props)
    mesh.add_attribute("vertex_color", 3, mi.Float(col.ravel()))
    mp = mi.traverse(mesh)
    mp["vertex_positions"], mp["faces"] = mi.Float(v.ravel()), mi.UInt32(f.astype(np.uint32).ravel())
    mp.update()
    t0 = time.perf_counter()
    scene = mi.load_dict(_mi_scene(mi, MESH_VIEW, size, {"height_field": mesh}))
    load = time.perf_counter() - t0
    seed = iter(range(10 ** 6))
    a = measure(lambda: _mi_forward(mi, scene, next(seed)), repeats)
    params = mi.traverse(scene)
    key = next(k for k in params.keys() if k.endswith("vertex_positions"))
    dr.enable_grad(params[key])
    params.update()
    w = mi.TensorXf(weight(size))

    def gradient():
        dr.set_grad(params[key], 0)
        img = mi.render(scene, params, spp=1, seed=next(seed))
        dr.backward(dr.sum(img * w, axis=None))
        dr.eval(dr.grad(params[key]))
        dr.sync_thread()

    b = measure(gradient, repeats)
    return dict(grid=n, vertices=len(v), triangles=len(f), pixels=size * size, load_s=load, first_s=a["first_s"],
                forward_s=a["s"], rays_per_s=size * size / a["s"], fwd_bwd_first_s=b["first_s"], fwd_bwd_s=b["s"],
                fwd_bwd_over_forward=b["s"] / a["s"])


CHILDREN = {"taichi": child_taichi, "mitsuba_probe": child_mitsuba_probe, "mitsuba_spheres": child_mitsuba_spheres,
            "mitsuba_mesh": child_mitsuba_mesh}


class ChildFailed(RuntimeError):
    pass


def run_child(name, arch, env=None, timeout=None, **kw):
    """Run CHILDREN[name](arch, **kw) in a fresh Python process (extra environment `env`), as
    bench.py runs its children; return its JSON result."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, "--arch", arch, "--child-args", json.dumps(kw)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **env} if env else None)
    except subprocess.TimeoutExpired:
        raise ChildFailed(f"timed out (> {timeout:.0f} s)") from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode or not lines:
        raise ChildFailed(f"bench_render child {name} {kw} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len(MARK):])


def run_mitsuba(arch, sz, step):
    """The Mitsuba rows: numbers, or a string saying why not (not installed, a crash, a timeout)."""
    try:
        probe = run_child("mitsuba_probe", arch, timeout=300)
    except ChildFailed as e:
        err = str(e).strip().splitlines()[-1] if str(e).strip() else "failed"
        return dict(status="not installed", error=err, spheres=[dict(M=M, result="not installed")
                                                                for M in sz["mitsuba_spheres"]],
                    mesh="not installed", reference=MITSUBA_REFERENCE)

    def row(label, name, **kw):
        try:
            return step(label, run_child, name, arch, timeout=sz["mitsuba_timeout_s"], **kw)
        except ChildFailed as e:
            msg = str(e).splitlines()[0]
            return "timed out" + msg[9:] if msg.startswith("timed out") else "failed: " + msg

    spheres = []
    for M in sz["mitsuba_spheres"]:
        r = row(f"mitsuba spheres M={M}", "mitsuba_spheres", M=M, size=sz["size"], repeats=sz["mitsuba_repeats"])
        spheres.append(r if isinstance(r, dict) else dict(M=M, result=r))
        if not isinstance(r, dict):  # a larger cloud would fail or time out too
            spheres += [dict(M=m, result="skipped (a smaller cloud failed)") for m in sz["mitsuba_spheres"] if m > M]
            break
    mesh = row("mitsuba mesh", "mitsuba_mesh", n=sz["grid"], size=sz["size"], repeats=sz["mitsuba_repeats"])
    return dict(status="ok", **probe, spp=1, integrator="direct", spheres=spheres, mesh=mesh,
                reference=MITSUBA_REFERENCE)


def steps(quick):
    return 1 if quick else 2 + len(FULL["mitsuba_spheres"])


def run(arch, quick, step):
    """The render section: Taichi rows in an f32 child, then (full sizes only) Mitsuba's.
    The Taichi child runs with OMP_WAIT_POLICY=PASSIVE unless it is set: otherwise torch's
    OpenMP threads spin after each op and take the cores from Taichi's thread pool; on this
    2-core machine that made frames and forwards up to 10x slower, at random."""
    omp = os.environ.get("OMP_WAIT_POLICY", "PASSIVE")
    r = dict(step("render (taichi)", run_child, "taichi", arch, env={"DIFFSUITE_FP": "f32", "OMP_WAIT_POLICY": omp},
                  quick=quick), quick=quick, fp="f32", arch=arch, omp_wait_policy=omp)
    if quick:
        r["mitsuba"] = dict(status="skipped (quick)", spheres="skipped (quick)", mesh="skipped (quick)",
                            reference=MITSUBA_REFERENCE)
    else:
        r["mitsuba"] = run_mitsuba(arch, FULL, step)
    return r


# ------------------------------------------------------------------ table
def _mb(x):
    return f"{x:.1f}"


def table(r, first=8):
    """Plain-text lines of the render section (bench.py's table numbers them from `first`)."""
    n, reps = r["size"][0], r["repeats"]
    k = iter(range(first, first + 10))
    lines = [
        f"{next(k)}. Sphere ray tracer (render/ray_tracer.py), {n}x{n} px, {r['fp']}, {r['arch']}, shadows on, "
        f"1 ambient + 1 directional light; random spheres in a unit cube 3 units away, fov 40,",
        f"  r = 0.5 (1/M)^(1/3); median of up to {reps} after one warm-up (first = that warm-up, with compiles);",
        "  fwd = no grad (fused kernel); fwd+bwd = grad of sum(rgb * w) to centres, radii and colours, split",
        "  into its forward (with autograd) and backward; bwd/fwd = that backward over the no-grad forward;",
        "  MB = peak RSS above the RSS after the warm-up; sections 8-11 ran in one child with "
        f"OMP_WAIT_POLICY={r.get('omp_wait_policy')}",
        "  (so that torch's OpenMP threads sleep between ops instead of spinning on the cores Taichi's threads need)",
        f"  {'spheres':>9} {'radius':>7} {'first s':>8} {'fwd s':>8} {'rays/s':>11} {'fwd MB':>7} "
        f"{'fwd+bwd s':>10} {'(fwd':>7} {'+ bwd)':>7} {'bwd/fwd':>7} {'fwd+bwd MB':>11}",
    ]
    for s in r["spheres"]:
        lines.append(f"  {s['M']:>9,} {s['radius']:>7.4f} {s['first_s']:>8.2f} {s['forward_s']:>8.4f} "
                     f"{s['rays_per_s']:>11,.0f} {_mb(s['forward_rss_mb']):>7} {s['fwd_bwd_s']:>10.4f} "
                     f"{s['grad_forward_s']:>7.4f} {s['backward_s']:>7.4f} {s['backward_over_forward']:>7.1f} "
                     f"{_mb(s['fwd_bwd_rss_mb']):>11}")
    m = r["mesh"]
    lines += [
        "",
        f"{next(k)}. Mesh tracer (render/mesh_tracer.py): {m['grid']}x{m['grid']} height field, "
        f"{m['triangles']:,} triangles, {n}x{n} px, reused MeshScene, antialias on",
        f"  {'first s':>8} {'fwd s':>8} {'rays/s':>11} {'fwd MB':>7} {'fwd+bwd s':>10} {'(fwd':>7} {'+ bwd)':>7} "
        f"{'bwd/fwd':>7} {'fwd+bwd MB':>11}   (bwd: to vertex positions)",
        f"  {m['first_s']:>8.2f} {m['forward_s']:>8.4f} {m['rays_per_s']:>11,.0f} {_mb(m['forward_rss_mb']):>7} "
        f"{m['fwd_bwd_s']:>10.4f} {m['grad_forward_s']:>7.4f} {m['backward_s']:>7.4f} "
        f"{m['backward_over_forward']:>7.1f} {_mb(m['fwd_bwd_rss_mb']):>11}",
        "",
        f"{next(k)}. Environment frames (render/world.py WorldRenderer.frame, {n}x{n} px, no grad, float64 camera "
        f"as the envs use; target <= {WORLD_TARGET_S * 1000:.0f} ms)",
        "  3D: a lattice block, spacing 1/128, radius 0.6 spacing, ground, shadows, camera_3d as the shaping env;",
        "  2D: a lattice block, spacing 1/256, one box tool, ground, camera_2d((0, 0, 1))",
        f"  {'world':<6} {'particles':>9} {'first s':>8} {'frame ms':>9} {'frames/s':>9} {'MB':>7}  target",
    ]
    for w in r["world"]:
        lines.append(f"  {str(w['dim']) + 'D':<6} {w['particles']:>9,} {w['first_s']:>8.2f} {w['frame_s'] * 1e3:>9.1f} "
                     f"{w['frames_per_s']:>9.1f} {_mb(w['rss_mb']):>7}  {'met' if w['within_target'] else 'MISSED'}")
    sd = r["sdf_memory"]
    lines += [
        "",
        f"{next(k)}. SDF sphere tracer (render/sphere_tracer.py) memory vs march steps: a smooth union of a sphere "
        f"and a box, {int(math.sqrt(sd[0]['pixels']))}^2 px,",
        "  forward+backward (pose requires grad); the march keeps no tape, so MB should stay flat",
        f"  {'steps':>6} {'first s':>8} {'fwd+bwd s':>10} {'MB':>7}",
    ]
    for s in sd:
        lines.append(f"  {s['march_steps']:>6} {s['first_s']:>8.2f} {s['fwd_bwd_s']:>10.4f} {_mb(s['rss_mb']):>7}")
    if not r.get("hwm_reset", True):
        lines.append("  (peak RSS could not be reset per row here: MB figures are the process's peak so far)")
    lines += [""] + mitsuba_table(r, next(k))
    return lines


def mitsuba_table(r, k):
    mi, ref = r["mitsuba"], r["mitsuba"]["reference"]
    ours = {s["M"]: s for s in r["spheres"]}
    version = " " + mi["version"] if "version" in mi else ""
    why = f" ({mi['error']})" if "error" in mi else ""
    lines = [f"{k}. Mitsuba 3{version} on the same scenes ({MITSUBA_VARIANT}, 1 spp, integrator \"direct\", "
             f"{r['size'][0]}x{r['size'][1]} px, median of up to {FULL['mitsuba_repeats']}): {mi['status']}{why}"]
    if mi["status"] == "ok":
        lines.append(f"  (DRJIT_LIBLLVM_PATH={mi.get('libllvm')}; load = building the scene; first = the first "
                     "render, with its JIT compile)")
    lines.append(f"  {'scene':<22} {'load s':>7} {'first s':>8} {'fwd s':>8} {'rays/s':>11} {'fwd+bwd s':>10} "
                 f"{'ours fwd s':>11} {'ours fwd+bwd s':>15}")
    ref_by_m = {s["M"]: s for s in ref["spheres"]}
    rows = mi["spheres"] if isinstance(mi["spheres"], list) else []
    for s in rows:
        o = ours.get(s["M"])
        us = (f"{o['forward_s']:>11.4f} {o['fwd_bwd_s']:>15.4f}" if o else f"{'-':>11} {'-':>15}")
        label = f"{s['M']:,} spheres"
        if "result" in s:
            lines.append(f"  {label:<22} {s['result']}")
        else:
            lines.append(f"  {label:<22} {s['load_s']:>7.2f} {s['first_s']:>8.2f} {s['forward_s']:>8.4f} "
                         f"{s['rays_per_s']:>11,.0f} {'-':>10} {us}")
    if isinstance(mi["spheres"], str):
        lines.append(f"  {'spheres':<22} {mi['spheres']}")
    me, om = mi["mesh"], r["mesh"]
    us = f"{om['forward_s']:>11.4f} {om['fwd_bwd_s']:>15.4f}"
    if isinstance(me, dict):
        lines.append(f"  {'mesh ' + format(me['triangles'], ',') + ' tris':<22} {me['load_s']:>7.2f} "
                     f"{me['first_s']:>8.2f} {me['forward_s']:>8.4f} {me['rays_per_s']:>11,.0f} "
                     f"{me['fwd_bwd_s']:>10.4f} {us}")
    else:
        lines.append(f"  {'mesh':<22} {me}")
    lines.append(f"  reference ({ref['where']}; Mitsuba {ref['version']}, {ref['variant']}, "
                 f"{ref['size'][0]}x{ref['size'][1]}, {ref['spp']} spp):")
    for M, s in ref_by_m.items():
        lines.append(f"  {format(M, ',') + ' spheres':<22} {'':>7} {'':>8} {s['forward_s']:>8.3f}")
    rm = ref["mesh"]
    lines.append(f"  {'mesh ' + rm['triangles'] + ' tris':<22} {'':>7} {'':>8} {rm['forward_s']:>8.3f} {'':>11} "
                 f"{rm['fwd_bwd_s']:>10.3f}")
    lines += textwrap.wrap("Mitsuba's fwd+bwd differentiates the \"direct\" integrator's recorded computation "
                           "(interior shading only, no silhouette term); ours includes the antialiasing "
                           "(silhouette) term.", 100, initial_indent="  ", subsequent_indent="  ")
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description="bench.py's render-section children (run by bench.py --render)")
    p.add_argument("--child", choices=sorted(CHILDREN), required=True)
    p.add_argument("--arch", default="cpu")
    p.add_argument("--child-args", default="{}")
    args = p.parse_args(argv)
    print(MARK + json.dumps(CHILDREN[args.child](args.arch, **json.loads(args.child_args))), flush=True)


if __name__ == "__main__":
    main()
