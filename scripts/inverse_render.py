"""Inverse rendering: fit scene or physical parameters to target images by gradient descent
through the renderers (and, for the mpm problem, the simulator too).

    python scripts/inverse_render.py configs/inverse_render_spheres.yaml [--out DIR] [--iterations N]

The config's `problem` (spheres, sdf, mpm: render/inverse.py) picks the defaults, which are
configs/inverse_render_<problem>.yaml. Writes under the output folder: strip.png (rows:
before, after, target; columns: views, or frames of the video), loss.png (the loss curve),
summary.json (PSNR before and after, parameter errors, the loss history); for mpm also the
fitted and target videos as MP4.
"""
import argparse
import json
import os

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from diffsuite.envs import config  # noqa: E402  (diffsuite before torch: see sims/__init__.py)
from diffsuite.render import inverse  # noqa: E402
from diffsuite.render.io import write_mp4, write_png  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402


def run(cfg_path, out=None, iterations=None, progress=True):
    raw = config.read_yaml(cfg_path)
    problem = raw.get("problem")
    if problem not in inverse.PROBLEMS:
        raise ValueError(f"config key 'problem' must be one of {sorted(inverse.PROBLEMS)}, got {problem!r}")
    cfg = config.merge(config.read_yaml(f"inverse_render_{problem}"), raw)
    if iterations is not None:
        cfg["iterations"] = int(iterations)
    if cfg.get("fp"):  # the process's float type, unless DIFFSUITE_FP or an earlier start chose one
        os.environ.setdefault("DIFFSUITE_FP", cfg["fp"])
    out = out or cfg["out"]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    res = inverse.PROBLEMS[problem](cfg, progress)
    rows = [res[k].detach().to(torch.float64).clamp(0, 1) for k in ("before", "after", "target")]
    pick = np.linspace(0, len(rows[0]) - 1, min(len(rows[0]), 6)).round().astype(int)  # at most 6 columns
    strip = torch.cat([torch.cat(list(r[pick]), 1) for r in rows], 0)
    write_png(os.path.join(out, "strip.png"), strip.numpy())
    if problem == "mpm":
        write_mp4(os.path.join(out, "fit.mp4"), rows[1].numpy(), fps=10)
        write_mp4(os.path.join(out, "target.mp4"), rows[2].numpy(), fps=10)
    _plot(res["history"], os.path.join(out, "loss.png"), problem)
    summary = {"problem": problem, "out": out, "psnr_before": inverse.psnr(rows[0], rows[2]),
               "psnr_after": inverse.psnr(rows[1], rows[2]), "errors": res["errors"],
               "iterations": len(res["history"]), "final_loss": res["history"][-1], "history": res["history"]}
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    return summary


def _plot(history, path, title):
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.semilogy(history)
    ax.set_xlabel("iteration")
    ax.set_ylabel("image loss (MSE; summed over scales)")
    ax.set_title(f"inverse rendering: {title}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="a YAML config (configs/inverse_render_*.yaml) or its name")
    p.add_argument("--out", help="output folder (default: the config's out)")
    p.add_argument("--iterations", type=int, help="override the config's iterations")
    a = p.parse_args(argv)
    s = run(a.config, a.out, a.iterations)
    print(json.dumps({k: v for k, v in s.items() if k != "history"}, indent=1))


if __name__ == "__main__":
    main()
