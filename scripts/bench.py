"""Benchmarks of the mass-spring walker (walker_a): throughput, forward vs backward time,
peak memory (checkpointed vs store-all), gradient error, and DiffTaichi's mass_spring
problem side by side; then MLS-MPM (`--mpm`, on by default): particle-substeps/s in 2D and
3D with compile times, peak memory against horizon, and DiffTaichi's diffmpm side by side;
then the renderers (`--render`, on by default; scripts/bench_render.py): spheres, a mesh, the
environments' frames and the SDF tracer's memory at 256x256 in f32, with Mitsuba 3 on the same
scenes when it is installed (under "render" in the JSON); then the FEM (`--fem`, on by
default; scripts/bench_fem.py): tet-substeps/s forward and backward on an 8k-tet dome and a
30k-tet block with a sphere in contact, and the tactile sensor's image and marker projection
per frame, in f32 (under "fem" in the JSON).

    python scripts/bench.py [--quick] [--no-mass-spring] [--no-mpm] [--no-render] [--no-fem] [--cold-3d]
                            [--out outputs/bench.json] [--arch cpu]

--no-mass-spring leaves out the mass-spring sections (1-4), so that e.g.
`--no-mass-spring --no-mpm --no-fem` runs the render section alone.

Writes JSON to --out and the printed plain-text table next to it (same name, .md).
Taichi starts once per process, so the runs that need float64 or a clean memory figure
run in a child process (`bench.py --child NAME --child-args JSON`) that prints one JSON line.
Throughput runs in this process. Tests check this script's output, never its timings.
"""
import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from importlib.resources import files

import numpy as np
import taichi as ti
import yaml
from tqdm import tqdm

import bench_fem  # scripts/ is on sys.path when this file runs as a script
import bench_render
from diffsuite.sims import adjoint, designs, gradcheck, init, sampling
from diffsuite.sims.mass_spring import MassSpring
from diffsuite.sims.mpm import MPM

MB = 2.0 ** 20
HOLD = 10  # substeps per action, as in MassSpringWalker's env steps (the reference row holds 1)
MARK = "BENCH_JSON "
FULL = dict(throughput_T=1000, throughput_B=[1, 64], repeats=5, memory_T=10000, memory_B=64,
            grad_T=200, ref_T=681, ref_repeats=5)
QUICK = dict(throughput_T=100, throughput_B=[1, 8], repeats=2, memory_T=2000, memory_B=64,
             grad_T=40, ref_T=681, ref_repeats=2)
DIFFTAICHI = dict(s_per_iter=[0.37, 0.41], s_per_iter_issue=[0.43, 0.97], peak_rss_mb=185.0,
                  note="Both run DiffTaichi's NN controller (36-32-11 tanh MLP, sine features, goal "
                       "[0.9, 0.2]) every substep, ours inside the segment kernel (sims/controller.py). "
                       "DiffTaichi uses the time-of-impact ground rule, ours the soft penalty ground "
                       "with friction. Same robot, dt, transitions, gravity, damping. Its figures were "
                       "measured on this 2-core machine: 0.37-0.41 s by the reference's authors, "
                       "0.43-0.97 s when issue 14 was filed; not rerun in this process.")
# DiffTaichi's controller on robot 0 (../shared/reference/difftaichi_mass_spring.yaml)
DIFFTAICHI_CONTROLLER = dict(hidden=32, sines=10, omega=10.0, scale=0.05, goal=[0.9, 0.2], seed=0)
FACES = dict(gym_steps=2000, vec_worlds=1024, vec_steps=60, diff_steps=100, diff_repeats=5)
FACES_QUICK = dict(gym_steps=200, vec_worlds=64, vec_steps=10, diff_steps=20, diff_repeats=2)
FULL["faces"], QUICK["faces"] = FACES, FACES_QUICK

# MPM: boxes of neo-Hookean solid (diffmpm's mu = lambda = 10) at 2 particles per cell width,
# split into two muscles; the diffmpm robot comes from SoftWalkerTask (see mpm_robot_scene)
NEO_HOOKEAN = {"kind": "neo_hookean", "E": 25.0, "nu": 0.25, "density": 1.0}
BOX_2D = dict(name="box2d", box=dict(lower=[0.3, 0.05], upper=[0.7, 0.44], spacing=1 / 256),
              material=NEO_HOOKEAN, mpm=dict(n_grid=128, dt=1e-3))  # 102 x 99 = 10,098 particles
BOX_3D = dict(name="box3d", box=dict(lower=[0.375, 0.05, 0.375], upper=[0.625, 0.30, 0.625], spacing=1 / 128),
              material=NEO_HOOKEAN, mpm=dict(n_grid=64, dt=1e-3))  # 32^3 = 32,768 particles
# 3D plasticine takes the spectral path (eigensolver stages before the fused substep)
BOX_3D_PLASTIC = dict(BOX_3D, name="box3d-plastic", material={"kind": "plasticine", "E": 100.0, "nu": 0.2,
                                                             "density": 1.0, "yield_stress": 8.0})
ROBOT = dict(n_grid=128, particle_spacing=1 / 256, offset=[0.1, 0.05])  # diffmpm's resolution
MPM_FULL = dict(tp_T=32, tp_B=[1, 16], tp_repeats=3, tp3_T=16, tp3_repeats=2, cold_2d=True,
                mem_T=[1000, 4000, 16000], mem_store_all_T=[1000], mem_warm_K=2,
                robot=ROBOT, ref_T=1023, ref_repeats=3, scene_2d="box")
# quick: 2D only, and the small default robot is the 2D scene throughout, so that few kernel
# configurations need compiling when the offline cache is cold: with T=64 (K=8), the first simulator
# of the B=1 throughput child, of each memory child (its warm-up) and of the checkpointed reference
# child are the same kernels (the cache key includes the fields' SNode ids, i.e. the build order)
MPM_QUICK = dict(tp_T=64, tp_B=[1, 2], tp_repeats=2, tp3_T=None, tp3_repeats=0, cold_2d=False,
                 mem_T=[64, 1024], mem_store_all_T=[64], mem_warm_K=8,
                 robot=dict(offset=[0.1, 0.05]), ref_T=64, ref_repeats=2, scene_2d="robot")
DIFFMPM = dict(particles=2976, n_grid=128, dt=1e-3, substeps=1023, s_per_iter=[1.7, 2.0], peak_rss_mb=762.0,
               first_iter_s=10.8,
               note="DiffTaichi's diffmpm stores x, v, C, F (and their gradients) at every substep, allocated "
                    "for 2,048 steps, twice the 1,024 it uses: about 585 MB of its 762 MB; it runs "
                    "actuation from sine waves through a tanh layer, its walls and floor are sticky, and "
                    "its robot has 2,976 particles (24 rows per 0.1, where lattice sampling at spacing 1/256 "
                    "gives 25). Ours: open-loop actions, one per substep (hold=1), the floor with friction, "
                    "fixed-corotated material with mu = lambda = 10, gravity 3.8, dt 1e-3.")


# ------------------------------------------------------------------ shared helpers
def walker():
    return designs.build(yaml.safe_load(files("diffsuite.configs.robots").joinpath("walker_a.yaml").read_text()))


def controls(B, T, A, seed=0):
    """Open-loop actions in [-1, 1], like the range of DiffTaichi's tanh controller."""
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (B, T, A))


def final_x_grad(final):
    """d(loss)/d(final state) for DiffTaichi's loss: -(x of object 0), summed over worlds."""
    gx = np.zeros_like(final[0], dtype=np.float64)
    gx[:, 0, 0] = -1.0
    return [gx, None]


def forward_backward(sim, u, hold=1):
    """One gradient of the final-position loss. Returns (forward s, backward s, tape)."""
    t0 = time.perf_counter()
    _, final, tape = adjoint.forward(sim, sim.initial_state(), u, every=u.shape[1] * hold, hold=hold)
    t1 = time.perf_counter()
    adjoint.backward(sim, tape, None, final_x_grad(final))
    return t1 - t0, time.perf_counter() - t1, tape


def start(arch, fp):
    init(arch, fp)


def peak_rss_mb():
    """Peak RSS of this process. On Linux, VmHWM: getrusage's ru_maxrss survives exec, so in a
    child it starts at the parent's RSS at fork and would hide a smaller peak."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(ln.split()[1]) for ln in fh if ln.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB (Linux), bytes (macOS)
        return maxrss / MB if sys.platform == "darwin" else maxrss / 1024


def field_bytes(sim):
    """Bytes of the per-frame fields x, v, force, act and their .grad, from their shapes."""
    size = np.dtype(sim.np_dtype).itemsize
    return sum(2 * math.prod(f.shape) * getattr(f, "n", 1) * size for f in (sim.x, sim.v, sim.force, sim.act))


def checkpoint_bytes(tape):
    return sum(a.nbytes for ckpt in tape.checkpoints for a in ckpt)


# ------------------------------------------------------------------ measurements
def throughput(arch, T, B, K, repeats):
    """Warm forward substeps/s and backward/forward time with segment K."""
    start(arch, "f32")
    sim = MassSpring(walker(), num_worlds=B, segment=K)
    u = controls(B, T // HOLD, sim.A)
    forward_backward(sim, u, HOLD)  # warm-up: compiles every kernel
    runs = [forward_backward(sim, u, HOLD)[:2] for _ in range(repeats)]
    fwd, bwd = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
    out = dict(B=B, T=T, K=K, forward_s=fwd, backward_s=bwd, backward_over_forward=bwd / fwd,
               substeps_per_s=T / fwd, world_substeps_per_s=B * T / fwd,
               mass_substeps_per_s=B * T * sim.N / fwd)
    sim.free()
    return out


def child_memory(arch, B, T, K):
    """Peak memory of one forward+backward over T substeps with segment K."""
    start(arch, "f32")
    warm = MassSpring(walker(), num_worlds=B, segment=HOLD)  # Taichi's JIT memory belongs to the baseline
    forward_backward(warm, controls(B, 2, warm.A), HOLD)
    warm.free()
    base = peak_rss_mb()
    sim = MassSpring(walker(), num_worlds=B, segment=K)
    t0 = time.perf_counter()
    _, _, tape = forward_backward(sim, controls(B, T // HOLD, sim.A), HOLD)
    seconds = time.perf_counter() - t0
    peak = peak_rss_mb()
    fields, ckpts = field_bytes(sim), checkpoint_bytes(tape)
    return dict(B=B, T=T, K=K, baseline_rss_mb=base, peak_rss_mb=peak, rss_above_baseline_mb=peak - base,
                field_mb=fields / MB, checkpoint_mb=ckpts / MB, fields_plus_checkpoints_mb=(fields + ckpts) / MB,
                host_controls_mb=2 * B * T // HOLD * sim.A * 8 / MB, seconds=seconds)


def child_gradcheck(arch, T):
    """Relative error of float64 adjoint gradients vs central differences (checkpointed)."""
    start(arch, "f64")
    K = adjoint.default_segment(T)
    sim = MassSpring(walker(), num_worlds=1, segment=K)
    u, k = controls(1, T, sim.A), sim.get_params()["stiffness"]

    def loss(uu, kk):  # -(x of object 0) at the last substep
        _, final, _ = adjoint.forward(sim, sim.initial_state(), uu, {"stiffness": kk}, every=T)
        return -float(final[0][:, 0, 0].sum())

    _, final, tape = adjoint.forward(sim, sim.initial_state(), u, {"stiffness": k}, every=T)
    _, gu, gp = adjoint.backward(sim, tape, None, final_x_grad(final))
    err_u = gradcheck.directional_check(lambda q: loss(q["u"], k), {"u": u}, {"u": gu})
    err_k = gradcheck.directional_check(lambda q: loss(u, q["k"]), {"k": k}, {"k": gp["stiffness"]})
    return dict(T=T, K=K, fp="f64", actions_rel_error=err_u, stiffness_rel_error=err_k)


def child_reference(arch, T, K, repeats):
    """DiffTaichi mass_spring robot 0 with its controller every substep: seconds per
    forward+backward iteration (gradients to the controller's weights), B = 1."""
    start(arch, "f32")
    base = peak_rss_mb()
    sim = MassSpring(walker(), num_worlds=1, segment=K, controller=DIFFTAICHI_CONTROLLER)
    u = np.zeros((1, T, sim.A))  # the controller alone drives the springs
    first = sum(forward_backward(sim, u)[:2])
    iters = [sum(forward_backward(sim, u)[:2]) for _ in range(repeats)]
    return dict(T=T, K=K, B=1, s_per_iter=statistics.median(iters), first_iter_s=first,
                baseline_rss_mb=base, peak_rss_mb=peak_rss_mb())


# ------------------------------------------------------------------ MPM
def mpm_sim(scene, B, K):
    """An MPM simulator for a scene dict: a sampled box (two muscles: its left and right
    halves) or particles from an .npz file (the robot), with MPM keyword arguments."""
    if "box" in scene:
        b = scene["box"]
        x = sampling.sample({"kind": "box", "lower": b["lower"], "upper": b["upper"]}, b["spacing"])
        particles = {"x": x, "actuator": (x[:, 0] > x[:, 0].mean()).astype(np.int32)}
    else:
        with np.load(scene["npz"]) as z:
            particles = {k: z[k] for k in z.files}
    return MPM(particles, [scene["material"]], num_worlds=B, segment=K, **scene["mpm"])


def mpm_controls(B, T, A, dt, amp=0.5):
    """Open-loop sine actions, one per substep: amp sin(20 t + 2 pi a / A), as diffmpm's waves."""
    t = np.arange(T)[:, None] * dt
    u = amp * np.sin(20.0 * t + 2 * np.pi * np.arange(A)[None, :] / max(A, 1))
    return np.broadcast_to(u, (B, T, A)).copy()


def mpm_gradient(sim, T):
    """Gradient of diffmpm's loss, -(mean x of the particles at the last substep), w.r.t.
    everything. Returns (forward s, backward s, tape)."""
    u = mpm_controls(sim.B, T, sim.A, sim.dt)
    t0 = time.perf_counter()
    _, final, tape = adjoint.forward(sim, sim.initial_state(), u, every=T)
    t1 = time.perf_counter()
    gx = np.zeros(final[0].shape)
    gx[..., 0] = -1.0 / sim.P
    adjoint.backward(sim, tape, None, [gx, None, None, None])
    return t1 - t0, time.perf_counter() - t1, tape


def _bytes(*fields):
    """Bytes of Taichi fields and their .grad, from their shapes."""
    return sum(2 * math.prod(f.shape) * getattr(f, "n", 1) * getattr(f, "m", 1) for f in fields)


def mpm_bytes(sim):
    """(per-frame state fields x, v, C, F, pose over K+1 frames, grid + actions), with .grad, in bytes."""
    size = np.dtype(sim.np_dtype).itemsize
    frames = _bytes(sim.x, sim.v, sim.C, sim.F, sim.pose) * size
    return frames, _bytes(sim.grid_mv, sim.grid_v, sim.grid_m, sim.act) * size


def mpm_store_all_bytes(sim, T):
    """What store-all (K = T) would allocate: T + 1 frames instead of K + 1, same grid."""
    frames, grid = mpm_bytes(sim)
    return frames // (sim.K + 1) * (T + 1) + grid


def child_mpm_throughput(arch, scene, T, B, repeats):
    """Warm particle-substeps/s of forward and backward (checkpointed, default K); the first
    call's extra time is the compile (or its load from Taichi's offline cache). One B per
    process: the cache key of a kernel includes its fields' SNode ids, so a simulator hits
    the cache only where it is built in the same order as when it was compiled."""
    start(arch, "f32")
    K = adjoint.default_segment(T)
    sim = mpm_sim(scene, B, K)
    first = mpm_gradient(sim, T)[:2]
    runs = [mpm_gradient(sim, T)[:2] for _ in range(repeats)]
    fwd, bwd = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
    work = B * sim.P * T
    return dict(scene=scene["name"], dim=sim.dim, particles=sim.P, n_grid=sim.n, B=B, T=T, K=K,
                material=scene["material"]["kind"], forward_s=fwd, backward_s=bwd,
                backward_over_forward=bwd / fwd, particle_substeps_per_s=work / fwd,
                backward_particle_substeps_per_s=work / bwd, first_forward_s=first[0], first_backward_s=first[1],
                compile_forward_s=max(first[0] - fwd, 0.0), compile_backward_s=max(first[1] - bwd, 0.0))


def child_mpm_memory(arch, scene, T, K, warm_K, B=1):
    """Peak memory of one MPM gradient over T substeps with segment K."""
    start(arch, "f32")
    warm = mpm_sim(scene, B, warm_K)  # Taichi's JIT memory belongs to the baseline
    mpm_gradient(warm, warm_K)
    warm.free()
    base = peak_rss_mb()
    sim = mpm_sim(scene, B, K)
    fwd, bwd, tape = mpm_gradient(sim, T)
    peak = peak_rss_mb()
    frames, grid = mpm_bytes(sim)
    ckpts = checkpoint_bytes(tape)
    return dict(scene=scene["name"], particles=sim.P, n_grid=sim.n, B=B, T=T, K=K, baseline_rss_mb=base,
                peak_rss_mb=peak, rss_above_baseline_mb=peak - base, frame_field_mb=frames / MB,
                grid_mb=grid / MB, field_mb=(frames + grid) / MB, checkpoint_mb=ckpts / MB,
                fields_plus_checkpoints_mb=(frames + grid + ckpts) / MB,
                store_all_field_mb=mpm_store_all_bytes(sim, T) / MB, forward_s=fwd, backward_s=bwd)


def child_mpm_reference(arch, scene, T, K, repeats):
    """DiffTaichi diffmpm's robot: seconds per forward+backward iteration, B = 1, whole-process peak RSS."""
    start(arch, "f32")
    base = peak_rss_mb()
    sim = mpm_sim(scene, 1, K)
    first = sum(mpm_gradient(sim, T)[:2])
    runs = [mpm_gradient(sim, T) for _ in range(repeats)]
    iters = [f + b for f, b, _ in runs]
    frames, grid = mpm_bytes(sim)
    ckpts = checkpoint_bytes(runs[-1][2])
    return dict(T=T, K=K, B=1, hold=1, particles=sim.P, s_per_iter=statistics.median(iters),
                s_per_iter_range=[min(iters), max(iters)], forward_s=statistics.median(r[0] for r in runs),
                backward_s=statistics.median(r[1] for r in runs), first_iter_s=first, baseline_rss_mb=base,
                peak_rss_mb=peak_rss_mb(), fields_plus_checkpoints_mb=(frames + grid + ckpts) / MB)


def mpm_robot_scene(tmpdir, overrides):
    """The diffmpm robot of SoftWalkerTask(**overrides) as a scene: its particles go to an .npz
    so that the children build the same simulator as task.make_sim without importing torch."""
    from diffsuite.envs.soft_walker import SoftWalkerTask

    task = SoftWalkerTask(**overrides)
    c = task.cfg
    path = os.path.join(tmpdir, "robot_%d.npz" % len(os.listdir(tmpdir)))
    np.savez(path, **task.particles)
    return dict(name="soft_walker", npz=path, particles=len(task.particles["x"]), material=dict(c["material"]),
                mpm=dict(n_grid=c["n_grid"], dt=c["dt"], gravity=c["gravity"], friction=c["friction"],
                         act_strength=c["act_strength"], act_axis=c["act_axis"]))


def mpm_throughput(arch, scene, T, B, repeats, cold):
    """Throughput child; cold: with an empty offline cache, so that the compile is a real one;
    otherwise with Taichi's shared offline cache, where the first call may only load the kernels."""
    if cold:
        with tempfile.TemporaryDirectory(prefix="diffsuite-ticache-") as d:
            row = run_child("mpm_throughput", arch, env={"TI_OFFLINE_CACHE_FILE_PATH": d},
                            scene=scene, T=T, B=B, repeats=repeats)
        return dict(row, cache="cold")
    # Taichi writes its cache at exit, and other processes may write to it too, so whether this
    # child compiled or loaded is not told here: compare with a cold row or run --cold-3d
    row = run_child("mpm_throughput", arch, scene=scene, T=T, B=B, repeats=repeats)
    return dict(row, cache="shared")


def ratio(a, b, floor=0.05):
    """a / b, or None when b (MB) is too small to divide by: RSS above a baseline can be ~0."""
    return a / b if b > floor else None


def run_mpm(arch, sz, step, cold_3d=False):
    start(arch, "f32")
    r = {}
    with tempfile.TemporaryDirectory(prefix="diffsuite-bench-") as tmp:
        robot = mpm_robot_scene(tmp, sz["robot"])
        scene2 = BOX_2D if sz["scene_2d"] == "box" else robot
        tp = [step(f"mpm throughput 2D B={B}", mpm_throughput, arch, scene2, sz["tp_T"], B, sz["tp_repeats"],
                   sz["cold_2d"]) for B in sz["tp_B"]]
        if sz["tp3_T"]:
            tp += [step(f"mpm throughput {scene['name']} B={B}", mpm_throughput, arch, scene, sz["tp3_T"], B,
                        sz["tp3_repeats"], cold_3d) for scene in (BOX_3D, BOX_3D_PLASTIC) for B in sz["tp_B"]]
        r["throughput"] = tp
        mem = lambda T, K: step(f"mpm memory T={T} K={K}", run_child, "mpm_memory", arch, scene=scene2, T=T, K=K,
                                warm_K=sz["mem_warm_K"])
        ck = [mem(T, adjoint.default_segment(T)) for T in sz["mem_T"]]
        sa = [mem(T, T) for T in sz["mem_store_all_T"]]
        growth = [dict(T=c["T"], T_ratio=c["T"] / ck[0]["T"], sqrt_T_ratio=math.sqrt(c["T"] / ck[0]["T"]),
                       rss_ratio=ratio(c["rss_above_baseline_mb"], ck[0]["rss_above_baseline_mb"]),
                       fields_ratio=ratio(c["fields_plus_checkpoints_mb"], ck[0]["fields_plus_checkpoints_mb"]))
                  for c in ck[1:]]
        vs = []
        for s in sa:
            c = next(c for c in ck if c["T"] == s["T"])
            vs.append(dict(T=s["T"], ratio_rss=ratio(s["rss_above_baseline_mb"], c["rss_above_baseline_mb"]),
                           ratio_fields=ratio(s["fields_plus_checkpoints_mb"], c["fields_plus_checkpoints_mb"])))
        r["memory"] = dict(scene=scene2["name"], checkpointed=ck, store_all=sa, growth=growth,
                           store_all_vs_checkpointed=vs)
        T, n = sz["ref_T"], sz["ref_repeats"]
        ref = lambda K: step(f"mpm reference K={K}", run_child, "mpm_reference", arch, scene=robot, T=T, K=K,
                             repeats=n)
        r["reference"] = dict(robot=sz["robot"], particles=robot["particles"], n_grid=robot["mpm"]["n_grid"],
                              dt=robot["mpm"]["dt"], substeps=T, hold=1, B=1,
                              checkpointed=ref(adjoint.default_segment(T)), store_all=ref(T), difftaichi=DIFFMPM)
    return r


def mpm_steps(sz):
    return len(sz["tp_B"]) * (1 + 2 * bool(sz["tp3_T"])) + len(sz["mem_T"]) + len(sz["mem_store_all_T"]) + 2


def faces(sz):
    """The environment faces of MassSpringWalker-v0 (f32, warm): Gymnasium env steps/s with random
    actions, make_vec steps/s at many worlds, and make_diff's cost per step of an episode's
    forward and backward (B = 1, gradients to every action)."""
    import gymnasium as gym
    import torch
    from diffsuite.envs import make_diff
    env = gym.make("diffsuite/MassSpringWalker-v0")
    env.reset(seed=0)
    acts = np.random.default_rng(0).uniform(-1, 1, (sz["gym_steps"],) + env.action_space.shape).astype(np.float32)
    for a in acts[:50]:
        env.step(a)
    t0 = time.perf_counter()
    for a in acts:
        env.step(a)
    gym_s = (time.perf_counter() - t0) / len(acts)
    vec = gym.make_vec("diffsuite/MassSpringWalker-v0", num_envs=sz["vec_worlds"], vectorization_mode="vector_entry_point")
    vec.reset(seed=0)
    va = np.random.default_rng(1).uniform(-1, 1, vec.action_space.shape).astype(np.float32)
    vec.step(va)
    t0 = time.perf_counter()
    for _ in range(sz["vec_steps"]):
        vec.step(va)
    vec_s = (time.perf_counter() - t0) / sz["vec_steps"]
    diff = make_diff("diffsuite/MassSpringWalker-v0", num_envs=1, max_steps=sz["diff_steps"])
    theta = torch.zeros(1, sz["diff_steps"], diff.task.action_dim, requires_grad=True)

    def episode():
        diff.reset(seed=0)
        t0 = time.perf_counter()
        total = sum(diff.step(theta[:, t])[1].sum() for t in range(sz["diff_steps"]))
        t1 = time.perf_counter()
        total.backward()
        return t1 - t0, time.perf_counter() - t1

    episode()
    runs = [episode() for _ in range(sz["diff_repeats"])]
    fwd, bwd = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
    n = sz["diff_steps"]
    return dict(gym_step_ms=1e3 * gym_s, gym_steps_per_s=1 / gym_s, vec_worlds=sz["vec_worlds"],
                vec_step_ms=1e3 * vec_s, vec_steps_per_s=sz["vec_worlds"] / vec_s, diff_steps=n,
                diff_forward_ms=1e3 * fwd / n, diff_backward_ms=1e3 * bwd / n, diff_step_ms=1e3 * (fwd + bwd) / n,
                before=dict(gym_steps_per_s=270, vec_steps_per_s=71e3, diff_step_ms=8.0,
                            where="issue 14, measured on this 2-core machine before the lean steps"),
                targets=dict(gym_steps_per_s=3000, vec_steps_per_s=300e3, diff_step_ms=1.0))


CHILDREN = {"memory": child_memory, "gradcheck": child_gradcheck, "reference": child_reference,
            "mpm_throughput": child_mpm_throughput, "mpm_memory": child_mpm_memory,
            "mpm_reference": child_mpm_reference}


def run_child(name, arch, env=None, **kw):
    """Run CHILDREN[name](arch, **kw) in a fresh Python process (extra environment `env`);
    return its JSON result."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, "--arch", arch, "--child-args", json.dumps(kw)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env} if env else None)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode or not lines:
        raise RuntimeError(f"bench child {name} {kw} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len(MARK):])


# ------------------------------------------------------------------ report
def table(r):
    d = r.get("design")
    robot = f"{d['name']} ({d['masses']} masses, {d['springs']} springs), " if d else ""
    lines = [f"diffsuite bench: {robot}arch={r['arch']}, taichi {r['taichi']}, {r['cpu_count']} cores"
             f"{' (QUICK sizes)' if r['quick'] else ''}"]
    if "throughput" in r:
        lines += [""] + mass_spring_table(r)
    if "mpm" in r:
        lines += [""] + mpm_table(r["mpm"])
    if "render" in r:
        lines += [""] + bench_render.table(r["render"])
    if "fem" in r:
        lines += [""] + bench_fem.table(r["fem"])
    return "\n".join(lines)


def mass_spring_table(r):
    m, g, ref = r["memory"], r["gradient_error"], r["reference"]
    ck, sa = m["checkpointed"], m["store_all"]
    t0 = r["throughput"][0]
    lines = [
        f"1. Forward throughput (f32, T={t0['T']} substeps, warm, median of {r['repeats']}; "
        f"K={t0['K']} = checkpointed default, K={t0['T']} = store-all)",
        f"  {'B':>4} {'K':>5} {'fwd s':>9} {'substeps/s':>12} {'world-substeps/s':>17} {'bwd s':>9} {'bwd/fwd':>8}",
    ]
    for t in r["throughput"]:
        lines.append(f"  {t['B']:>4} {t['K']:>5} {t['forward_s']:>9.4f} {t['substeps_per_s']:>12,.0f} "
                     f"{t['world_substeps_per_s']:>17,.0f} {t['backward_s']:>9.4f} {t['backward_over_forward']:>8.2f}")
    lines += [
        "",
        f"2. Peak memory of a {ck['T']}-substep gradient (f32, forward+backward, B={ck['B']} worlds, one child each)",
        f"  {'mode':<13} {'K':>6} {'RSS above baseline MB':>22} {'fields+ckpts MB':>16} {'baseline MB':>12}",
    ]
    for name, x in (("checkpointed", ck), ("store-all", sa)):
        lines.append(f"  {name:<13} {x['K']:>6} {x['rss_above_baseline_mb']:>22.1f} "
                     f"{x['fields_plus_checkpoints_mb']:>16.2f} {x['baseline_rss_mb']:>12.1f}")
    lines += [
        f"  store-all / checkpointed: {m['ratio_rss']:.1f}x RSS above baseline, {m['ratio_fields']:.0f}x fields+checkpoints",
        "  (baseline = peak RSS after import, Taichi init and a warm-up gradient on a small simulator in the same",
        "  child; fields = x, v, force, act and .grad;",
        f"  RSS also holds kernel compilation and the engine's float64 controls and their gradient, "
        f"{ck['host_controls_mb']:.0f} MB, in both runs)",
        "",
        f"3. Gradient error vs float64 central differences (T={g['T']}, checkpointed K={g['K']}, "
        "loss = -x of mass 0, worst of 3 random directions)",
        f"  d loss / d actions    {g['actions_rel_error']:.2e}",
        f"  d loss / d stiffness  {g['stiffness_rel_error']:.2e}",
        "",
        *faces_table(r["faces"]),
        "",
        f"4. DiffTaichi mass_spring, robot 0 = walker_a, dt 0.004, {ref['transitions']} transitions, B=1, its "
        "controller every substep",
        f"  {'run':<36} {'s / iter (fwd+bwd)':>19} {'peak RSS MB':>12}",
    ]
    for name, x in (("diffsuite checkpointed", ref["checkpointed"]), ("diffsuite store-all", ref["store_all"])):
        lines.append(f"  {name + ' (K=' + str(x['K']) + ')':<36} {x['s_per_iter']:>19.4f} {x['peak_rss_mb']:>12.0f}")
    dt = ref["difftaichi"]
    lines += [
        f"  {'DiffTaichi reference (stores all)':<36} {'%.2f-%.2f' % tuple(dt['s_per_iter']):>19} {dt['peak_rss_mb']:>12.0f}",
        f"  {'DiffTaichi as measured in issue 14':<36} {'%.2f-%.2f' % tuple(dt['s_per_iter_issue']):>19}",
        f"  ours (checkpointed) / DiffTaichi: {ref['checkpointed']['s_per_iter'] / dt['s_per_iter'][0]:.3f}x of its "
        f"fastest figure (target <= 0.7x)",
    ]
    lines += textwrap.wrap("Note: " + dt["note"] + " Peak RSS is the whole process (Python, Taichi, compiled "
                           "kernels), as in the reference.", 100, initial_indent="  ", subsequent_indent="  ")
    return lines


def faces_table(f):
    b, t = f["before"], f["targets"]
    return [
        "",
        "3b. Environment faces of MassSpringWalker-v0 (f32, warm; lean steps: no tape, the state resident)",
        f"  {'face':<44} {'now':>12} {'before':>10} {'target':>10}",
        f"  {'gymnasium.make, env steps/s':<44} {f['gym_steps_per_s']:>12,.0f} {b['gym_steps_per_s']:>10,.0f} "
        f"{t['gym_steps_per_s']:>10,.0f}",
        f"  {'make_vec, ' + str(f['vec_worlds']) + ' worlds, env steps/s':<44} {f['vec_steps_per_s']:>12,.0f} "
        f"{b['vec_steps_per_s']:>10,.0f} {t['vec_steps_per_s']:>10,.0f}",
        f"  {'make_diff, ms per step, fwd+bwd (B=1)':<44} {f['diff_step_ms']:>12.3f} {b['diff_step_ms']:>10.1f} "
        f"{t['diff_step_ms']:>10.1f}",
        f"    (of which forward {f['diff_forward_ms']:.3f} ms, backward {f['diff_backward_ms']:.3f} ms, over a "
        f"{f['diff_steps']}-step episode; 'before': {b['where']})",
    ]


def mpm_table(m):
    tp, mem, ref = m["throughput"], m["memory"], m["reference"]
    lines = [
        "5. MPM throughput (f32, MLS-MPM, warm, median; backward = adjoint.backward of the forward's tape, which",
        "  recomputes each substep; K = default segment; compile = first call less a warm one, with an empty",
        "  offline cache (cold) or Taichi's shared one (a load, unless the kernels are new: --cold-3d times 3D cold))",
        f"  {'scene':<13} {'particles':>9} {'grid':>5} {'B':>3} {'T':>4} {'K':>3} {'fwd s':>8} {'fwd p-substeps/s':>17} "
        f"{'bwd s':>8} {'bwd p-substeps/s':>17} {'bwd/fwd':>7} {'compile fwd/bwd s':>18}  cache",
    ]
    for t in tp:
        grid = f"{t['n_grid']}^{t['dim']}"
        lines.append(f"  {t['scene']:<13} {t['particles']:>9,} {grid:>5} {t['B']:>3} {t['T']:>4} {t['K']:>3} "
                     f"{t['forward_s']:>8.3f} {t['particle_substeps_per_s']:>17,.0f} {t['backward_s']:>8.3f} "
                     f"{t['backward_particle_substeps_per_s']:>17,.0f} {t['backward_over_forward']:>7.2f} "
                     f"{'%.1f / %.1f' % (t['compile_forward_s'], t['compile_backward_s']):>18}  {t['cache']}")
    ck, sa = mem["checkpointed"], mem["store_all"]
    c0 = ck[0]
    lines += [
        "",
        f"6. MPM peak memory vs horizon: {mem['scene']} ({c0['particles']:,} particles, {c0['n_grid']} grid, "
        f"B={c0['B']}, f32, one gradient, one child each)",
        f"  {'mode':<13} {'T':>6} {'K':>5} {'RSS above base MB':>18} {'fields MB':>10} {'ckpts MB':>9} "
        f"{'store-all needs MB':>19} {'fwd s':>7} {'bwd s':>7}",
    ]
    for name, rows in (("checkpointed", ck), ("store-all", sa)):
        for x in rows:
            lines.append(f"  {name:<13} {x['T']:>6} {x['K']:>5} {x['rss_above_baseline_mb']:>18.1f} "
                         f"{x['field_mb']:>10.1f} {x['checkpoint_mb']:>9.1f} {x['store_all_field_mb']:>19,.0f} "
                         f"{x['forward_s']:>7.1f} {x['backward_s']:>7.1f}")
    na = lambda v, fmt: "n/a" if v is None else format(v, fmt)
    for g in mem["growth"]:
        lines.append(f"  checkpointed T x{g['T_ratio']:.0f} ({c0['T']} -> {g['T']}): RSS above baseline "
                     f"x{na(g['rss_ratio'], '.2f')}, fields+ckpts x{na(g['fields_ratio'], '.2f')} (sqrt of T ratio: "
                     f"x{g['sqrt_T_ratio']:.2f}; linear: x{g['T_ratio']:.0f})")
    for v in mem["store_all_vs_checkpointed"]:
        lines.append(f"  store-all / checkpointed at T={v['T']}: x{na(v['ratio_rss'], '.1f')} RSS above baseline, "
                     f"x{na(v['ratio_fields'], '.1f')} fields+ckpts")
    lines += [
        "  (baseline = peak RSS after a warm-up gradient on the same scene with a short segment, in the same",
        "  child; RSS above it also holds the measured simulator's kernels, about 10 MB loaded from Taichi's",
        "  offline cache, some 40 MB when compiled; fields = x, v, C, F over K+1 frames plus the grid and actions,",
        "  each with .grad; ckpts = states kept at segment starts; store-all needs = fields with T+1 frames: run",
        "  only in the store-all rows; fwd s and bwd s include that kernel load)",
        "",
        f"7. DiffTaichi diffmpm robot: SoftWalkerTask({', '.join(f'{k}={v}' for k, v in ref['robot'].items())}), "
        f"{ref['particles']:,} particles",
        f"  (reference {ref['difftaichi']['particles']:,}), {ref['n_grid']}^2 grid, dt {ref['dt']:g}, "
        f"{ref['substeps']:,} substeps, one action per substep (hold={ref['hold']}), B=1, f32",
        f"  {'run':<36} {'s / iter (fwd+bwd)':>19} {'range':>12} {'peak RSS MB':>12} {'fields+ckpts MB':>16}",
    ]
    for name, x in (("diffsuite checkpointed", ref["checkpointed"]), ("diffsuite store-all", ref["store_all"])):
        lines.append(f"  {name + ' (K=' + str(x['K']) + ')':<36} {x['s_per_iter']:>19.3f} "
                     f"{'%.2f-%.2f' % tuple(x['s_per_iter_range']):>12} {x['peak_rss_mb']:>12.0f} "
                     f"{x['fields_plus_checkpoints_mb']:>16.1f}")
    dt = ref["difftaichi"]
    lines.append(f"  {'DiffTaichi reference (stores all)':<36} {'%.2f-%.2f' % tuple(dt['s_per_iter']):>19} "
                 f"{'':>12} {dt['peak_rss_mb']:>12.0f} {'~585':>16}")
    lines += textwrap.wrap("Note: " + dt["note"] + " Peak RSS is the whole process, as in the reference; first "
                           f"iteration (compile or cache load): ours {ref['checkpointed']['first_iter_s']:.1f} s, "
                           f"DiffTaichi {dt['first_iter_s']:.1f} s.", 100, initial_indent="  ", subsequent_indent="  ")
    return lines


def run_all(arch, sizes, quick, mpm_sizes=None, cold_3d=False, mass_spring=True, render=False, fem=False):
    """sizes: the mass-spring sizes (FULL or QUICK), run unless mass_spring is False;
    mpm_sizes: MPM_FULL or MPM_QUICK, or None for no MPM; render, fem: those sections."""
    total = ((2 * len(sizes["throughput_B"]) + 6 if mass_spring else 0) + (mpm_steps(mpm_sizes) if mpm_sizes else 0)
             + (bench_render.steps(quick) if render else 0) + (bench_fem.steps(quick) if fem else 0))
    steps = tqdm(total=total, desc="bench", disable=None)

    def step(label, fn, *a, **kw):
        steps.set_postfix_str(label)
        out = fn(*a, **kw)
        steps.update()
        return out

    r = dict(arch=arch, quick=quick, taichi=".".join(map(str, ti.__version__)), cpu_count=os.cpu_count(),
             python=platform.python_version())
    if mass_spring:
        r.update(run_mass_spring(arch, sizes, step))
    if mpm_sizes:
        r["mpm"] = run_mpm(arch, mpm_sizes, step, cold_3d)
    if render:
        r["render"] = bench_render.run(arch, quick, step)
    if fem:
        r["fem"] = bench_fem.run(arch, quick, step)
    steps.close()
    return r


def run_mass_spring(arch, sizes, step):
    design = walker()
    r = dict(repeats=sizes["repeats"], design=dict(name="walker_a", masses=len(design.positions),
                                                   springs=len(design.springs), actuators=design.n_actuators))
    T = sizes["throughput_T"]
    r["throughput"] = [step(f"throughput B={B} K={K}", throughput, arch, T, B, K, sizes["repeats"])
                       for B in sizes["throughput_B"] for K in (adjoint.default_segment(T), T)]
    T, B = sizes["memory_T"], sizes["memory_B"]
    ck = step("memory checkpointed", run_child, "memory", arch, B=B, T=T, K=adjoint.default_segment(T))
    sa = step("memory store-all", run_child, "memory", arch, B=B, T=T, K=T)
    r["memory"] = dict(checkpointed=ck, store_all=sa,
                       ratio_rss=sa["rss_above_baseline_mb"] / ck["rss_above_baseline_mb"],
                       ratio_fields=sa["fields_plus_checkpoints_mb"] / ck["fields_plus_checkpoints_mb"])
    r["gradient_error"] = step("gradient error", run_child, "gradcheck", arch, T=sizes["grad_T"])
    r["faces"] = step("environment faces", faces, sizes["faces"])
    T, n = sizes["ref_T"], sizes["ref_repeats"]
    r["reference"] = dict(
        transitions=T, dt=0.004, B=1,
        checkpointed=step("reference checkpointed", run_child, "reference", arch, T=T,
                          K=adjoint.default_segment(T), repeats=n),
        store_all=step("reference store-all", run_child, "reference", arch, T=T, K=T, repeats=n),
        difftaichi=DIFFTAICHI)
    return r


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test, under a minute)")
    p.add_argument("--out", default="outputs/bench.json", help="JSON path; the table goes next to it as .md")
    p.add_argument("--arch", default=os.environ.get("DIFFSUITE_ARCH", "cpu"), help="cpu or cuda (default cpu)")
    p.add_argument("--mpm", action=argparse.BooleanOptionalAction, default=True,
                   help="also benchmark MLS-MPM (default on; --quick: 2D only)")
    p.add_argument("--render", action=argparse.BooleanOptionalAction, default=True,
                   help="also benchmark the renderers, and Mitsuba 3 if installed (default on; --quick: tiny "
                        "sizes, no Mitsuba)")
    p.add_argument("--fem", action=argparse.BooleanOptionalAction, default=True,
                   help="also benchmark the tetrahedral FEM and the tactile optics (default on; --quick: tiny sizes)")
    p.add_argument("--mass-spring", action=argparse.BooleanOptionalAction, default=True,
                   help="benchmark the mass-spring walker (default on; --no-mass-spring --no-mpm --no-fem: "
                        "render only)")
    p.add_argument("--cold-3d", action="store_true",
                   help="time the 3D MPM compile with an empty Taichi offline cache (adds several minutes)")
    p.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    p.add_argument("--child-args", default="{}", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(MARK + json.dumps(CHILDREN[args.child](args.arch, **json.loads(args.child_args))), flush=True)
        return
    t0 = time.perf_counter()
    mpm_sizes = (MPM_QUICK if args.quick else MPM_FULL) if args.mpm else None
    result = run_all(args.arch, QUICK if args.quick else FULL, args.quick, mpm_sizes, args.cold_3d,
                     mass_spring=args.mass_spring, render=args.render, fem=args.fem)
    result["wall_s"] = time.perf_counter() - t0
    text = table(result)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
    with open(os.path.splitext(args.out)[0] + ".md", "w") as fh:
        fh.write("```\n" + text + "\n```\n")
    print(text)
    print(f"\nwrote {args.out} and {os.path.splitext(args.out)[0] + '.md'} in {result['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
