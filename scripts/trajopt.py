"""Optimize a task's actions: open-loop Adam, a closed-loop policy, CEM (no gradients), or
hybrid (CEM proposals refined by Adam steps through the simulator), at equal simulator steps.

    python scripts/trajopt.py configs/trajopt_walker.yaml [--method adam|policy|cem|hybrid] [--out DIR]

Writes under the output folder: curves.png (best return vs simulated substeps, summed over
each method's worlds), best.gif (the best rollout), best_actions.pt (for scripts/replay.py),
summary.json.
"""
import argparse

from diffsuite.envs.learn import trajopt


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("--method", action="append", choices=trajopt.GRADIENT + trajopt.BUDGETED,
                   help="run only this method (repeatable)")
    p.add_argument("--iterations", type=int, help="gradient iterations (adam and policy)")
    p.add_argument("--out")
    a = p.parse_args()
    s = trajopt.experiment(a.config, a.method, a.out, a.iterations)
    print(f"substeps: simulated, summed over each method's worlds, backward replays included "
          f"({s['substeps_per_episode']:,} per episode)")
    for m, r in s["methods"].items():
        print(f"{m:>7}: best return {r['best_return']:8.3f} after {r['simulated_substeps']:>9,} substeps "
              f"({r['worlds']} world(s), {r['seconds']} s)"
              + "".join(f", {k} {v:.4g}" for k, v in r.get("metrics", {}).items()))
    print(f"{'no-op':>7}: return {s['noop_return']:8.3f}")
    print(f"outputs in {s['out']}/")


if __name__ == "__main__":
    main()
