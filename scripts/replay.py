"""Replay a saved policy (train_policy.py's policy.pt) or saved open-loop actions to a GIF or MP4.

    python scripts/replay.py outputs/train_walker/shac/seed0/policy.pt [--out walk.gif|walk.mp4] [--seed 0]
"""
import argparse

from diffsuite.envs.learn import train


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path")
    p.add_argument("--out", help=".gif or .mp4 (default: beside the file, .gif)")
    p.add_argument("--seed", type=int, help="reset seed of the replayed world (default: the file's)")
    a = p.parse_args()
    print(train.replay(a.path, a.out, a.seed))


if __name__ == "__main__":
    main()
