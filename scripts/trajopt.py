"""Optimize a task's actions: open-loop Adam, a closed-loop policy, or CEM (no gradients).

    python scripts/trajopt.py configs/trajopt_walker.yaml [--method adam|policy|cem] [--out DIR]

Writes under the output folder: curves.png (return vs simulated substeps), best.gif (the
best rollout), summary.json.
"""
import argparse
import json
import os
import time

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from diffsuite.envs import TASKS, config, trajopt  # noqa: E402
from diffsuite.render.io import write_gif  # noqa: E402

DEFAULTS = config.read_yaml("trajopt_walker")


def run(cfg_path, methods=None, out=None, iterations=None, progress=True):
    cfg = config.merge({**DEFAULTS, "env_config": {}}, config.read_yaml(cfg_path))  # the env checks its own keys
    if cfg["env"] not in TASKS:
        raise ValueError(f"config key 'env': unknown environment {cfg['env']!r}; known: {sorted(TASKS)}")
    task = TASKS[cfg["env"]](**cfg["env_config"])
    out = out or cfg["out"]
    os.makedirs(out, exist_ok=True)
    methods = methods or cfg["methods"]
    if iterations:
        cfg["adam"]["iterations"] = cfg["policy"]["iterations"] = iterations
    budget = 2 * task.substeps * task.max_steps * cfg["adam"]["iterations"]
    runners = {
        "adam": lambda: trajopt.adam_open_loop(task, seed=cfg["seed"], progress=progress, **cfg["adam"]),
        "policy": lambda: trajopt.adam_policy(task, seed=cfg["seed"], progress=progress, **cfg["policy"]),
        "cem": lambda: trajopt.cem(task, budget, seed=cfg["seed"], progress=progress, **cfg["cem"]),
    }
    results = {}
    for m in methods:
        if m not in runners:
            raise ValueError(f"unknown method {m!r}; choose from {sorted(runners)}")
        t0 = time.perf_counter()
        results[m] = runners[m]()
        results[m]["seconds"] = time.perf_counter() - t0
    best = max(results, key=lambda m: results[m]["best_return"])
    noop = trajopt.noop_return(task, cfg["seed"])
    _plot(results, noop, os.path.join(out, "curves.png"), cfg["env"])
    write_gif(os.path.join(out, "best.gif"), trajopt.replay_frames(task, results[best]["best_actions"], cfg["seed"]))
    summary = {"env": cfg["env"], "out": out, "env_config": cfg["env_config"], "seed": cfg["seed"], "best_method": best,
               "noop_return": noop,
               "substeps_per_episode": task.substeps * task.max_steps,
               "methods": {m: {"best_return": r["best_return"], "final_return": r["curve"][-1][1],
                               "simulated_substeps": r["curve"][-1][0], "seconds": round(r["seconds"], 2),
                               "curve": r["curve"]} for m, r in results.items()}}
    if hasattr(task, "metrics"):  # a task's own measure of how its best actions did (e.g. a force error)
        for m, r in results.items():
            summary["methods"][m]["metrics"] = task.metrics(r["best_actions"])
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    return summary


def _plot(results, noop, path, title):
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.axhline(noop, color="grey", linestyle="--", label="no action")
    for m, r in results.items():
        steps, rets = zip(*r["curve"])
        ax.plot(steps, rets, label=m, marker="." if len(steps) < 30 else None)
    ax.set_xlabel("simulated substeps (per world)")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("--method", action="append", help="run only this method (repeatable)")
    p.add_argument("--iterations", type=int, help="gradient iterations (adam and policy)")
    p.add_argument("--out")
    a = p.parse_args()
    s = run(a.config, a.method, a.out, a.iterations)
    for m, r in s["methods"].items():
        print(f"{m:>7}: best return {r['best_return']:8.3f} after {r['simulated_substeps']:>9,} substeps ({r['seconds']} s)"
              + "".join(f", {k} {v:.4g}" for k, v in r.get("metrics", {}).items()))
    print(f"{'no-op':>7}: return {s['noop_return']:8.3f}")
    print(f"outputs in {s['out']}/")


if __name__ == "__main__":
    main()
