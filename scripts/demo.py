"""The README's demo: teach the default mass-spring walker to walk, in seconds on a CPU.

Runs the trajopt experiment (diffsuite.envs.learn.trajopt, as scripts/trajopt.py does) on
configs/trajopt_walker.yaml: open-loop Adam, a closed-loop policy trained through the
simulator, CEM, and CEM refined by gradient steps (hybrid), the last two at the substeps
Adam really simulated.
"""
import os

from diffsuite.envs.learn import trajopt


def main(out="outputs/demo"):
    summary = trajopt.experiment("trajopt_walker", out=out)
    print(f"\nMassSpringWalker-v0, {summary['substeps_per_episode']} substeps per episode:")
    for m, r in summary["methods"].items():
        print(f"  {m:>7}: best return {r['best_return']:7.3f} after {r['simulated_substeps']:>9,} "
              f"simulated substeps ({r['seconds']} s)")
    print(f"best method: {summary['best_method']}")
    print(f"outputs: {os.path.abspath(out)}/curves.png, best.gif, summary.json")


if __name__ == "__main__":
    main()
