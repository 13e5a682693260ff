"""Co-design: a walker's springs optimized jointly with its controller through the simulator
(as ChainQueen optimized stiffness), against the same controller optimized alone.

The design is the mass-spring simulator's per-world parameters "stiffness" and "rest" (rest
lengths), squashed so that every iterate is a valid, stable robot:
    stiffness = lo + (hi - lo) * sigmoid(z),  lo = low * k0,  hi = min(high * k0, stability * k_max)
    rest = r0 * (1 + rest_range * tanh(w))
where k0, r0 are the design's own values and k_max the stiffness at which symplectic Euler
turns unstable for the spring alone at this dt (sims/mass_spring.py `_check_dt`; a mass
joined by several springs needs the margin `stability` leaves). The controller is
DiffTaichi's sine-feature MLP inside the simulator (the walker's `controller` config); its
weights ctrl_* are parameters too. Both runs start from the same weights and design.
"""
import json
import os
import time

import numpy as np
import torch
from tqdm import tqdm

from .. import config
from ..walker import WalkerTask
from . import plots
from .trajopt import episode_return, start_state, torch_dtype

DEFAULTS = config.read_yaml("codesign_walker")
DESIGN = ("stiffness", "rest")


def stiffness_bounds(task, low, high, stability):
    """Per-spring (lo, hi) stiffness: multiples of the design's, hi also under `stability` times
    the largest stiffness symplectic Euler integrates at the task's dt (dt * omega < 2)."""
    if not (0 < low < 1 < high and 0 < stability < 1):
        raise ValueError(f"config keys 'design.low', 'design.high', 'design.stability' need 0 < low < 1 < high and "
                         f"0 < stability < 1; got {low!r}, {high!r}, {stability!r}")
    d = task.design
    inv_m = np.where(d.masses > 0, 1.0 / np.where(d.masses > 0, d.masses, 1.0), 0.0)
    inv = inv_m[d.springs[:, 0]] + inv_m[d.springs[:, 1]]
    k_max = np.where(inv > 0, (2.0 / task.cfg["dt"]) ** 2 / np.where(inv > 0, inv, 1.0), np.inf)
    k0 = np.asarray(d.stiffness, float)
    hi = np.minimum(high * k0, stability * k_max)
    if not (hi > low * k0).all():
        raise ValueError(f"config key 'design.stability' ({stability}) leaves no room above design.low={low} x "
                         f"the design's stiffness at dt={task.cfg['dt']}")
    return low * k0, hi


class Design(torch.nn.Module):
    """Unconstrained variables (z, w) of a design, starting at the task's design; forward()
    gives the squashed stiffness and rest lengths (1, S) as the simulator takes them."""

    def __init__(self, task, low, high, stability, rest_range):
        super().__init__()
        if not 0 < rest_range < 1:
            raise ValueError(f"config key 'design.rest_range' must be in (0, 1), got {rest_range!r}")
        lo, hi = stiffness_bounds(task, low, high, stability)
        k0, r0 = np.asarray(task.design.stiffness, float), np.asarray(task.design.rest, float)
        frac = np.clip((k0 - lo) / (hi - lo), 1e-6, 1 - 1e-6)
        as_t = lambda a: torch.as_tensor(a, dtype=torch.float64)[None]
        self.lo, self.hi, self.r0, self.rest_range = as_t(lo), as_t(hi), as_t(r0), rest_range
        self.z = torch.nn.Parameter(as_t(np.log(frac / (1 - frac))))
        self.w = torch.nn.Parameter(torch.zeros_like(self.r0))

    def forward(self):
        return {"stiffness": self.lo + (self.hi - self.lo) * torch.sigmoid(self.z),
                "rest": self.r0 * (1 + self.rest_range * torch.tanh(self.w))}


def optimize(task, iterations=60, lr=0.01, design_lr=0.05, design=None, worlds=1, seed=0, progress=True):
    """Adam on the in-kernel controller's weights, and on the design when `design` (a dict of
    Design's keywords: low, high, stability, rest_range) is given, maximizing the mean return
    of `worlds` episodes from the seed's starts (they differ by the task's init_noise), one
    controller and one design shared by all. Returns curve [(iteration, mean return)],
    best_return, and the parameters (numpy, one world's) that earned it."""
    if task.cfg["controller"] is None:
        raise ValueError("config key 'env_config.controller' must set the in-kernel controller (e.g. {hidden: 32})")
    sim = task.make_sim(worlds)
    dtype = torch_dtype(sim)
    state0 = start_state(task, sim, seed, dtype)
    start = {k: v[:1] for k, v in sim.get_params().items()}
    ctrl = {k: torch.tensor(start[k], dtype=dtype, requires_grad=True)
            for k in sim.param_names if k.startswith("ctrl_")}
    groups = [{"params": list(ctrl.values()), "lr": lr}]
    shape = Design(task, **design) if design is not None else None
    if shape is not None:
        groups.append({"params": list(shape.parameters()), "lr": design_lr})
    opt = torch.optim.Adam(groups)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iterations)  # settle: the landscape is chaotic
    actions = torch.zeros(worlds, task.max_steps, task.action_dim, dtype=dtype)  # all control is the controller's
    curve, best = [], (-np.inf, None)
    for it in tqdm(range(iterations), desc="co-design" if shape is not None else "control", disable=not progress):
        params = dict(ctrl, **({k: v.to(dtype) for k, v in shape().items()} if shape is not None else {}))
        ret = episode_return(task, sim, state0, actions, {k: v.expand((worlds,) + v.shape[1:])
                                                          for k, v in params.items()}).mean()
        if not torch.isfinite(ret):
            raise FloatingPointError(f"return is {ret.item()} at iteration {it}")
        if ret.item() > best[0]:
            best = (ret.item(), {k: v.detach().numpy().copy() for k, v in params.items()})
        opt.zero_grad()
        (-ret).backward()
        opt.step()
        sched.step()
        curve.append((it + 1, ret.item()))
    sim.free()
    return {"curve": curve, "best_return": best[0], "params": best[1],
            "design": {k: start[k] for k in DESIGN} if shape is None else {k: best[1][k] for k in DESIGN}}


def experiment(cfg_path=None, out=None, progress=True):
    """Run a co-design config (configs/codesign_walker.yaml): the controller alone, then the
    controller with the design, same seed and iterations; write curves.png, params.pt (both
    runs' best parameters) and summary.json under the output folder. Returns the summary."""
    cfg = config.merge({**DEFAULTS, "env_config": {}}, config.read_yaml(cfg_path) if cfg_path else {})
    cfg["env_config"] = {**DEFAULTS["env_config"], **cfg["env_config"]}  # the walker checks its own keys
    task = WalkerTask(**cfg["env_config"])
    out = out or cfg["out"]
    os.makedirs(out, exist_ok=True)
    common = dict(iterations=cfg["iterations"], lr=cfg["lr"], worlds=cfg["worlds"], seed=cfg["seed"], progress=progress)
    runs = {}
    design = {"design_lr": cfg["design_lr"], "design": cfg["design"]}
    for name, extra in (("control only", {}), ("design + control", design)):
        t0 = time.perf_counter()
        runs[name] = optimize(task, **common, **extra)
        runs[name]["seconds"] = round(time.perf_counter() - t0, 2)
    plots.curves(os.path.join(out, "curves.png"),
                 [("iteration", "mean episode return over the worlds", {name: r["curve"] for name, r in runs.items()})],
                 "MassSpringWalker-v0: co-design vs control alone")
    torch.save({name: {k: torch.as_tensor(v) for k, v in r["params"].items()} for name, r in runs.items()},
               os.path.join(out, "params.pt"))
    k0, r0 = np.asarray(task.design.stiffness, float), np.asarray(task.design.rest, float)
    co = runs["design + control"]["design"]
    summary = {"out": out, "seed": cfg["seed"], "iterations": cfg["iterations"], "env_config": cfg["env_config"],
               "runs": {name: {"best_return": r["best_return"], "final_return": r["curve"][-1][1],
                               "seconds": r["seconds"], "curve": r["curve"]}
                        for name, r in runs.items()},
               "design_change": {"stiffness_ratio": (co["stiffness"][0] / k0).round(3).tolist(),
                                 "rest_ratio": (co["rest"][0] / r0).round(3).tolist()}}
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    return summary
