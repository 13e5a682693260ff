"""Benchmarks of the mass-spring walker (walker_a): throughput, forward vs backward time,
peak memory (checkpointed vs store-all), gradient error, and DiffTaichi's mass_spring
problem side by side.

    python scripts/bench.py [--quick] [--out outputs/bench.json] [--arch cpu]

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
import textwrap
import time
from importlib.resources import files

import numpy as np
import taichi as ti
import yaml
from tqdm import tqdm

from diffsuite.sims import adjoint, designs, gradcheck, init
from diffsuite.sims.mass_spring import MassSpring

MB = 2.0 ** 20
HOLD = 10  # substeps per action, as in MassSpringWalker's env steps (the reference row holds 1)
MARK = "BENCH_JSON "
FULL = dict(throughput_T=1000, throughput_B=[1, 64], repeats=5, memory_T=10000, memory_B=64,
            grad_T=200, ref_T=681, ref_repeats=5)
QUICK = dict(throughput_T=100, throughput_B=[1, 8], repeats=2, memory_T=2000, memory_B=64,
             grad_T=40, ref_T=681, ref_repeats=2)
DIFFTAICHI = dict(s_per_iter=[0.37, 0.41], peak_rss_mb=185.0,
                  note="DiffTaichi's iteration includes its NN controller (36-32-11 tanh MLP) and uses "
                       "the time-of-impact ground rule; ours runs open-loop controls on the soft "
                       "penalty ground with friction. Same robot, dt, transitions, gravity, damping.")


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
    """DiffTaichi mass_spring robot 0: seconds per forward+backward iteration, B = 1."""
    start(arch, "f32")
    base = peak_rss_mb()
    sim = MassSpring(walker(), num_worlds=1, segment=K)
    u = controls(1, T, sim.A)
    first = sum(forward_backward(sim, u)[:2])
    iters = [sum(forward_backward(sim, u)[:2]) for _ in range(repeats)]
    return dict(T=T, K=K, B=1, s_per_iter=statistics.median(iters), first_iter_s=first,
                baseline_rss_mb=base, peak_rss_mb=peak_rss_mb())


CHILDREN = {"memory": child_memory, "gradcheck": child_gradcheck, "reference": child_reference}


def run_child(name, arch, **kw):
    """Run CHILDREN[name](arch, **kw) in a fresh Python process; return its JSON result."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, "--arch", arch, "--child-args", json.dumps(kw)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode or not lines:
        raise RuntimeError(f"bench child {name} {kw} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len(MARK):])


# ------------------------------------------------------------------ report
def table(r):
    d, m, g, ref = r["design"], r["memory"], r["gradient_error"], r["reference"]
    ck, sa = m["checkpointed"], m["store_all"]
    t0 = r["throughput"][0]
    lines = [
        f"diffsuite bench: {d['name']} ({d['masses']} masses, {d['springs']} springs), arch={r['arch']}, "
        f"taichi {r['taichi']}, {r['cpu_count']} cores{' (QUICK sizes)' if r['quick'] else ''}",
        "",
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
        f"4. DiffTaichi mass_spring, robot 0 = walker_a, dt 0.004, {ref['transitions']} transitions, B=1",
        f"  {'run':<36} {'s / iter (fwd+bwd)':>19} {'peak RSS MB':>12}",
    ]
    for name, x in (("diffsuite checkpointed", ref["checkpointed"]), ("diffsuite store-all", ref["store_all"])):
        lines.append(f"  {name + ' (K=' + str(x['K']) + ')':<36} {x['s_per_iter']:>19.4f} {x['peak_rss_mb']:>12.0f}")
    dt = ref["difftaichi"]
    lines += [
        f"  {'DiffTaichi reference (stores all)':<36} {'%.2f-%.2f' % tuple(dt['s_per_iter']):>19} {dt['peak_rss_mb']:>12.0f}",
    ]
    lines += textwrap.wrap("Note: " + dt["note"] + " Peak RSS is the whole process (Python, Taichi, compiled "
                           "kernels), as in the reference.", 100, initial_indent="  ", subsequent_indent="  ")
    return "\n".join(lines)


def run_all(arch, sizes, quick):
    steps = tqdm(total=2 * len(sizes["throughput_B"]) + 5, desc="bench", disable=None)

    def step(label, fn, *a, **kw):
        steps.set_postfix_str(label)
        out = fn(*a, **kw)
        steps.update()
        return out

    design = walker()
    r = dict(arch=arch, quick=quick, taichi=".".join(map(str, ti.__version__)), cpu_count=os.cpu_count(), python=platform.python_version(),
             repeats=sizes["repeats"], design=dict(name="walker_a", masses=len(design.positions),
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
    T, n = sizes["ref_T"], sizes["ref_repeats"]
    r["reference"] = dict(
        transitions=T, dt=0.004, B=1,
        checkpointed=step("reference checkpointed", run_child, "reference", arch, T=T,
                          K=adjoint.default_segment(T), repeats=n),
        store_all=step("reference store-all", run_child, "reference", arch, T=T, K=T, repeats=n),
        difftaichi=DIFFTAICHI)
    steps.close()
    return r


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test, about 30 s)")
    p.add_argument("--out", default="outputs/bench.json", help="JSON path; the table goes next to it as .md")
    p.add_argument("--arch", default=os.environ.get("DIFFSUITE_ARCH", "cpu"), help="cpu or cuda (default cpu)")
    p.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    p.add_argument("--child-args", default="{}", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(MARK + json.dumps(CHILDREN[args.child](args.arch, **json.loads(args.child_args))), flush=True)
        return
    t0 = time.perf_counter()
    result = run_all(args.arch, QUICK if args.quick else FULL, args.quick)
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
