"""Train policies through the simulator (BPTT, SHAC) and with PPO, several seeds each.

    python scripts/train_policy.py configs/train_walker.yaml [--method bptt shac ppo] [--seeds 0 1 2]
                                   [--out DIR] [--resume] [--figure PNG]

Each run writes policy.pt, summary.json and checkpoint.pt under OUT/<method>/seed<seed>/;
one PNG (OUT/curves.png unless --figure) shows return against simulator steps and wall-clock.
Replay a policy with scripts/replay.py OUT/<method>/seed<seed>/policy.pt.
"""
import argparse

from diffsuite.envs.learn import train


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("--method", nargs="+", choices=train.METHODS, help="methods to run (default: the config's)")
    p.add_argument("--seeds", nargs="+", type=int, help="seeds (default: the config's)")
    p.add_argument("--out", help="output folder (default: the config's)")
    p.add_argument("--resume", action="store_true", help="continue each run from its checkpoint")
    p.add_argument("--figure", help="where the PNG goes (default OUT/curves.png)")
    a = p.parse_args()
    res = train.experiment(a.config, a.method, a.seeds, a.out, a.resume, figure_path=a.figure)
    for r in res["runs"]:
        print(f"{r['method']:>5} seed {r['seed']}: final return {r['final_return']:8.3f} (best {r['best_return']:8.3f})"
              f" after {r['env_steps']:>10,} env steps, {r['seconds']:7.1f} s")
    if res["reach"]:
        print(f"steps / seconds to reach PPO's final return {res['reach']['target_return']:.3f}:")
        for m, hits in res["reach"]["methods"].items():
            print(f"{m:>5}: " + ", ".join("never" if h["env_steps"] is None
                                          else f"{h['env_steps']:,} / {h['seconds']:.1f} s" for h in hits))
    print(f"figure: {res['figure']}")


if __name__ == "__main__":
    main()
