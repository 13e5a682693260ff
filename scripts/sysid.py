"""Recover material parameters (E, yield stress) from an observed particle trajectory.

    python scripts/sysid.py configs/sysid_soft_walker.yaml [--out DIR]

Simulates the config's true material under the config's `actions` (random in [-1, 1] per
step, or one action held for the whole episode, like a press in a materials lab), then fits
the guessed parameters by gradient descent through the checkpointed rollout. Writes fit.png (loss and
relative error per iteration) and summary.json under the output folder.
"""
import argparse

from diffsuite.envs.learn import sysid


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("--iterations", type=int)
    p.add_argument("--out")
    a = p.parse_args()
    s = sysid.experiment(a.config, a.out, a.iterations)
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
