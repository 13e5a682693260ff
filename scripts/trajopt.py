"""Optimize a task's actions: open-loop Adam, a closed-loop policy, or CEM (no gradients).

    python scripts/trajopt.py configs/trajopt_walker.yaml [--method adam|policy|cem] [--out DIR]

Writes under the output folder: curves.png (return vs simulated substeps), best.gif (the
best rollout), summary.json.
"""
import argparse

from diffsuite.envs.learn import trajopt


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("--method", action="append", help="run only this method (repeatable)")
    p.add_argument("--iterations", type=int, help="gradient iterations (adam and policy)")
    p.add_argument("--out")
    a = p.parse_args()
    s = trajopt.experiment(a.config, a.method, a.out, a.iterations)
    for m, r in s["methods"].items():
        print(f"{m:>7}: best return {r['best_return']:8.3f} after {r['simulated_substeps']:>9,} substeps ({r['seconds']} s)"
              + "".join(f", {k} {v:.4g}" for k, v in r.get("metrics", {}).items()))
    print(f"{'no-op':>7}: return {s['noop_return']:8.3f}")
    print(f"outputs in {s['out']}/")


if __name__ == "__main__":
    main()
