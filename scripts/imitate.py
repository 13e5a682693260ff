"""Imitate one demonstration through the simulator (ILD): a policy on observations whose
rollout matches a demonstrated state trajectory, from the states alone.

    python scripts/imitate.py configs/imitate_walker.yaml [--iterations N] [--out DIR]

Records the config's demonstration (open-loop actions played once), trains the policy by
gradient descent through the whole episode, and writes under the output folder: loss.png
(loss and relative state errors per iteration), imitation.gif (demonstration left,
imitation right), policy.pt and summary.json.
"""
import argparse

from diffsuite.envs.learn import imitate


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("--iterations", type=int)
    p.add_argument("--out")
    a = p.parse_args()
    s = imitate.experiment(a.config, a.out, a.iterations)
    print(f"{s['env']}: state error relative to the demo's size {s['scale']:.4g} "
          f"({s['distance']} distance, {s['iterations']} iterations, {s['seconds']} s)")
    for name, key in (("imitation", "errors"), ("untrained", "initial_errors"), ("no action", "noop_errors")):
        e = s[key]
        print(f"{name:>10}: final step {e['final']:.4f}, episode mean {e['mean']:.4f}")
    if s["tool_errors"]:
        print(f"{'tools':>10}: final step {s['tool_errors']['final']:.4f}, episode mean {s['tool_errors']['mean']:.4f}")
    print(f"outputs in {s['out']}/")


if __name__ == "__main__":
    main()
