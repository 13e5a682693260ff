"""Contact mechanics check: a rigid sphere pressed into a thick FEM gel block, against Hertz.

    python scripts/hertz.py [configs/hertz.yaml] [--out DIR]

Writes hertz.png (force against depth in log-log beside Hertz's F = 4/3 E* sqrt(R) d^1.5, and
the penetration) and summary.json (the fitted exponent and prefactor ratio, the largest
penetration against the configured tolerance).
"""
import argparse
import json
import os

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from diffsuite.envs import config  # noqa: E402
from diffsuite.sims import indentation  # noqa: E402


def run(cfg_path="hertz", out=None, **overrides):
    cfg = config.merge(config.read_yaml("hertz"), {**config.read_yaml(cfg_path), **overrides})
    default_out = cfg.pop("out")
    out = out or default_out
    lo, hi = cfg.pop("fit_range")
    tol = cfg.pop("tolerance")
    res = indentation.run(**cfg)
    n, A = indentation.fit(res["depth"], res["force"], lo, hi)
    d, F = res["depth"], res["force"]
    keep = (d >= lo * d.max()) & (d <= hi * d.max())
    E, nu, R = cfg["material"]["E"], cfg["material"]["nu"], cfg["radius"]
    ratio = float(np.median(F[keep] / res["hertz"][keep]))
    pen = float(res["penetration"].max())
    summary = dict(exponent=n, hertz_exponent=1.5, force_over_hertz=ratio, tets=res["tets"],
                   max_penetration=pen, tolerance=tol * float(d.max()), penetration_ok=pen < tol * float(d.max()),
                   monotone=bool(np.all(np.diff(F[d > 0]) > 0)), E=E, nu=nu, radius=R, out=out)
    os.makedirs(out, exist_ok=True)
    _plot(res, keep, n, A, os.path.join(out, "hertz.png"))
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump({**summary, "depth": d.tolist(), "force": F.tolist(), "penetration": res["penetration"].tolist()},
                  fh, indent=1)
    return summary


def _plot(res, keep, n, A, path):
    d, F = res["depth"], res["force"]
    pos = d > 0
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    a.loglog(d[pos] * 1e3, F[pos], "o", ms=3, label="FEM")
    a.loglog(d[pos] * 1e3, res["hertz"][pos], "-", label="Hertz, 4/3 E* R^0.5 d^1.5")
    a.loglog(d[keep] * 1e3, A * d[keep] ** n, "--", label=f"fit: d^{n:.3f}")
    a.set_xlabel("depth (mm)")
    a.set_ylabel("force (N)")
    a.legend(fontsize=8)
    b.plot(d * 1e3, res["penetration"] * 1e6)
    b.set_xlabel("depth (mm)")
    b.set_ylabel("largest penetration (um)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", default="hertz")
    p.add_argument("--out")
    a = p.parse_args()
    s = run(a.config, a.out)
    print(f"exponent {s['exponent']:.3f} (Hertz 1.5), force / Hertz {s['force_over_hertz']:.3f}, "
          f"penetration {s['max_penetration'] * 1e6:.2f} um (tolerance {s['tolerance'] * 1e6:.1f} um), "
          f"{s['tets']} tets; outputs in {s['out']}/")


if __name__ == "__main__":
    main()
