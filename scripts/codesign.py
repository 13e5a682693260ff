"""Co-design a mass-spring walker: its springs' stiffness and rest lengths optimized jointly
with its in-simulator controller, beside the controller optimized alone (same seed and
iterations), through the differentiable simulator.

    python scripts/codesign.py configs/codesign_walker.yaml [--out DIR]

Writes under the output folder: curves.png (both runs' return per iteration), params.pt
(both runs' best parameters: ctrl_* weights, and the design's stiffness and rest), summary.json.
"""
import argparse

from diffsuite.envs.learn import codesign


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", default="codesign_walker")
    p.add_argument("--out")
    a = p.parse_args()
    s = codesign.experiment(a.config, a.out)
    for name, r in s["runs"].items():
        print(f"{name:>16}: final return {r['final_return']:8.3f}, best {r['best_return']:8.3f}")
    ch = s["design_change"]
    print(f"design: stiffness x{min(ch['stiffness_ratio'])}..{max(ch['stiffness_ratio'])}, "
          f"rest lengths x{min(ch['rest_ratio'])}..{max(ch['rest_ratio'])} of the original")
    print(f"outputs in {s['out']}/")


if __name__ == "__main__":
    main()
