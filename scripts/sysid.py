"""Recover material parameters (E, yield stress) from an observed particle trajectory.

    python scripts/sysid.py configs/sysid_soft_walker.yaml [--out DIR]

Simulates the config's true material under the config's `actions` (random in [-1, 1] per
step, or one action held for the whole episode, like a press in a materials lab), then fits
the guessed parameters by gradient descent through the checkpointed rollout. Writes fit.png (loss and
relative error per iteration) and summary.json under the output folder.
"""
import argparse
import json
import os

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from diffsuite.envs import TASKS, config  # noqa: E402
from diffsuite.envs.learn import sysid  # noqa: E402

DEFAULTS = config.read_yaml("sysid_soft_walker")


def run(cfg_path, out=None, iterations=None, progress=True):
    if config.read_yaml(cfg_path).get("env") == "diffsuite/TactilePose-v0":
        return run_tactile(cfg_path, out, iterations, progress)
    # the env checks its own keys, the simulator the parameter names
    cfg = config.merge({**DEFAULTS, "env_config": {}, "guess": {}}, config.read_yaml(cfg_path))
    if not cfg["guess"]:
        raise ValueError("config key 'guess' must name at least one material parameter")
    if cfg["env"] not in TASKS:
        raise ValueError(f"config key 'env': unknown environment {cfg['env']!r}; known: {sorted(TASKS)}")
    task = TASKS[cfg["env"]](**cfg["env_config"])
    unknown = set(cfg["guess"]) - (set(task.cfg["material"]) - {"density", "kind"})
    if unknown:
        raise ValueError(f"config key 'guess': {sorted(unknown)} not among the material's parameters")
    truth = {k: float(task.cfg["material"][k]) for k in cfg["guess"]}
    actions = _actions(cfg, task)
    observed = sysid.observe(task, actions)
    history, estimate = sysid.fit(task, observed, actions, cfg["guess"], iterations or cfg["iterations"],
                                  cfg["lr"], progress)
    out = out or cfg["out"]
    os.makedirs(out, exist_ok=True)
    rel = {k: abs(estimate[k] - truth[k]) / truth[k] for k in truth}
    _plot(history, truth, os.path.join(out, "fit.png"))
    summary = {"env": cfg["env"], "out": out, "truth": truth, "guess": cfg["guess"], "estimate": estimate,
               "relative_error": rel, "final_loss": history[-1][0], "iterations": len(history),
               "history": [{"loss": l, **p} for l, p in history]}
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    return summary


def run_tactile(cfg_path, out=None, iterations=None, progress=True):
    """The tactile sensor's fit: E and the pose from marker pixels and the normal force, once
    per marker noise level."""
    cfg = config.merge(config.read_yaml("sysid_tactile"), config.read_yaml(cfg_path))
    task = TASKS[cfg["env"]](**cfg["env_config"])
    deg = lambda p: {**p, "yaw": np.radians(p["yaw"])}
    truth, guess = deg(cfg["truth"]), deg(cfg["guess"])
    out = out or cfg["out"]
    os.makedirs(out, exist_ok=True)
    runs = []
    actions = task.probe(cfg["probe"])
    for noise in cfg["noise_px"]:
        px, force = sysid.record_tactile(task, actions, truth, noise, cfg["seed"])
        history, est = sysid.fit_tactile(task, actions, px, force, guess, iterations or cfg["iterations"], cfg["lr"],
                                         progress=progress)
        err = {"E_rel": abs(est["E"] - truth["E"]) / truth["E"],
               "position_mm": 1e3 * float(np.hypot(est["x"] - truth["x"], est["z"] - truth["z"])),
               "yaw_deg": float(np.degrees(abs(est["yaw"] - truth["yaw"])))}
        runs.append({"noise_px": noise, "estimate": {**est, "yaw_deg": float(np.degrees(est["yaw"]))}, "error": err,
                     "final_loss": history[-1][0], "history": [{"loss": l, **p} for l, p in history]})
    _plot_tactile(runs, truth, os.path.join(out, "fit.png"))
    summary = {"env": cfg["env"], "out": out, "truth": cfg["truth"], "guess": cfg["guess"], "runs": runs}
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    return summary


def _plot_tactile(runs, truth, path):
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for r in runs:
        h = r["history"]
        lab = f"noise {r['noise_px']} px"
        axes[0].semilogy([x["loss"] for x in h], label=lab)
        axes[1].semilogy([abs(x["E"] - truth["E"]) / truth["E"] for x in h], label=lab)
        axes[2].semilogy([1e3 * np.hypot(x["x"] - truth["x"], x["z"] - truth["z"]) for x in h], label=lab + ", mm")
        axes[2].semilogy([np.degrees(abs(x["yaw"] - truth["yaw"])) for x in h], "--", label=lab + ", deg")
    for a, t in zip(axes, ("loss", "E relative error", "pose error")):
        a.set_xlabel("iteration")
        a.set_title(t)
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _actions(cfg, task):
    """The experiment's actions (1, steps, A): 'random' or one action held throughout."""
    spec = cfg["actions"]
    if spec == "random":
        return np.random.default_rng(cfg["seed"]).uniform(-1, 1, (1, task.max_steps, task.action_dim))
    held = np.asarray(spec, float) if isinstance(spec, (list, tuple)) else np.zeros(0)
    if held.shape != (task.action_dim,) or not np.isfinite(held).all() or np.abs(held).max() > 1:
        raise ValueError(f"config key 'actions' must be 'random' or {task.action_dim} numbers in [-1, 1], got {spec!r}")
    return np.tile(held, (1, task.max_steps, 1))


def _plot(history, truth, path):
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.semilogy([h[0] for h in history])
    a.set_xlabel("iteration")
    a.set_ylabel("trajectory mismatch")
    for k, v in truth.items():
        b.semilogy([abs(h[1][k] - v) / v for h in history], label=k)
    b.set_xlabel("iteration")
    b.set_ylabel("relative error")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("--iterations", type=int)
    p.add_argument("--out")
    a = p.parse_args()
    s = run(a.config, a.out, a.iterations)
    if "runs" in s:
        for r in s["runs"]:
            e = r["error"]
            print(f"noise {r['noise_px']} px: E off {100 * e['E_rel']:.2f}%, position off {e['position_mm']:.3f} mm, "
                  f"yaw off {e['yaw_deg']:.2f} deg")
        print(f"outputs in {s['out']}/")
        return
    for k in s["truth"]:
        print(f"{k}: true {s['truth'][k]:.4g}, guess {s['guess'][k]:.4g}, "
              f"estimate {s['estimate'][k]:.4g} ({100 * s['relative_error'][k]:.2f}% off)")
    print(f"outputs in {s['out']}/")


if __name__ == "__main__":
    main()
