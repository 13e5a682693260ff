"""Gradient diagnostics: how the gradient of an episode's return behaves as the horizon grows.

Many worlds run in one launch, each from a slightly different start (the task's init_noise),
all with the same controller (or the same open-loop actions). Each world's gradient g_b of
its own return is one sample of the policy gradient; for each horizon and each variant of
the physics (contact smoothing: the ground's `softness` and friction `slip`) and of the
adjoint (clipping, torch_ops.rollout's `clip`), this reports
- norm: the mean over worlds of |g_b|, and mean_norm: |mean_b g_b|;
- variance: the mean over worlds of |g_b - mean_b g_b|^2 (the trace of their covariance);
- state_norm (mean) and state_norm_max: the norm of each world's adjoint of its start state
  through the dynamics, d return / d s_0 (the Jacobian product that explodes in chaotic
  contact); with clip = c the engine keeps it at most c per world.
Where the reverse pass meets NaN/Inf (no clipping) a point is marked `exploded`, where the
forward simulation itself diverges `diverged`; its statistics are NaN.
"""
import json
import math
import os

import numpy as np
import torch
from tqdm import tqdm

from ...sims import torch_ops
from .. import TASKS, config
from . import plots
from .trajopt import start_state, torch_dtype

DEFAULTS = config.read_yaml("gradstats_walker")
STATS = ("norm", "mean_norm", "variance", "state_norm", "state_norm_max", "return")


class Exploded(FloatingPointError):
    """The reverse pass met a non-finite adjoint (the forward was finite)."""


def _overlay(base, over):
    """base with over's keys written in, nested dicts merged (the task checks the keys)."""
    out = dict(base)
    for k, v in (over or {}).items():
        out[k] = _overlay(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _knobs(task_cfg, clip):
    ground = task_cfg.get("ground", {})
    return {"softness": ground.get("softness"), "slip": ground.get("slip"), "damping": task_cfg.get("damping"),
            "clip": clip}


def _variables(task, sim, wrt, steps, rng, dtype):
    """The leaves whose per-world gradients are measured, and the params/actions to roll out."""
    if wrt == "controller":
        names = [k for k in sim.param_names if k.startswith("ctrl_")]
        if not names:
            raise ValueError("config key 'wrt': 'controller' needs the in-kernel controller (env_config.controller)")
        current = sim.get_params()
        leaves = {k: torch.tensor(current[k], dtype=dtype, requires_grad=True) for k in names}
        return leaves, leaves, torch.zeros(sim.B, steps, task.action_dim, dtype=dtype)
    one = np.clip(0.3 * rng.standard_normal((1, steps, task.action_dim)), -1, 1)  # the same for every world
    actions = torch.tensor(np.repeat(one, sim.B, 0), dtype=dtype, requires_grad=True)
    return {"actions": actions}, None, actions


def sample(task, sim, steps, wrt="controller", clip=None, seed=0):
    """One horizon's per-world gradients: (g (B, n) of the return w.r.t. the measured
    variables, the start state's adjoint norms (B,), the returns (B,)), in float64. Raises
    Exploded where the reverse pass meets a non-finite adjoint (clip None), FloatingPointError
    where the forward diverges."""
    dtype = torch_dtype(sim)
    rng = np.random.default_rng(seed)
    state0 = tuple(s.requires_grad_() for s in start_state(task, sim, seed, dtype))
    leaves, params, actions = _variables(task, sim, wrt, steps, rng, dtype)
    states, _ = torch_ops.rollout(sim, state0, params, task.to_sim(actions), substeps=task.substeps, clip=clip)
    # the start enters the first reward directly too: detach it there, so its adjoint is the dynamics' alone
    prev = tuple(torch.cat([s0.detach()[:, None], s[:, :-1]], 1) for s0, s in zip(state0, states))
    returns = task.reward(prev, states, actions).sum(1)
    try:
        returns.sum().backward()  # each world's return depends on its own copy of the variables only
    except FloatingPointError as err:
        raise Exploded(str(err)) from err
    g = torch.cat([v.grad.reshape(sim.B, -1) for v in leaves.values()], 1).double()
    if not torch.isfinite(g).all():  # finite in the engine, overflowed on the way out (float32)
        raise Exploded(f"non-finite gradient of the return over {steps} steps")
    s = torch.sqrt(sum((s0.grad.double().reshape(sim.B, -1) ** 2).sum(1) for s0 in state0))
    return g, s, returns.detach().double()


def _stats(g, s, r):
    mean = g.mean(0)
    return {"norm": g.norm(dim=1).mean().item(), "mean_norm": mean.norm().item(),
            "variance": ((g - mean) ** 2).sum(1).mean().item(), "state_norm": s.mean().item(),
            "state_norm_max": s.max().item(), "return": r.mean().item()}


def gradient_stats(env="diffsuite/MassSpringWalker-v0", env_config=None, variants=None, horizons=(5, 10, 20),
                   worlds=8, wrt="controller", seed=0, progress=True):
    """Per-world gradient statistics of the return against horizon (env steps) for each variant.

    variants: {name: {"env_config": overrides on env_config, "clip": None or a number}}
    (default: one variant, as configured). wrt: "controller" (the in-kernel controller's
    weights) or "actions" (open-loop actions). Returns a dict: horizons, variants (names),
    knobs ({name: softness, slip, damping, clip}), exploded and diverged (bool arrays (V, H))
    and each of STATS as a float array (V, H) (NaN where exploded or diverged)."""
    if env not in TASKS:
        raise ValueError(f"config key 'env': unknown environment {env!r}; known: {sorted(TASKS)}")
    if wrt not in ("controller", "actions"):
        raise ValueError(f"config key 'wrt' must be 'controller' or 'actions', got {wrt!r}")
    horizons = [int(h) for h in horizons]
    if not horizons or min(horizons) < 1 or int(worlds) < 2:
        raise ValueError(f"need horizons >= 1 and worlds >= 2 (a variance), got {horizons!r}, {worlds!r}")
    variants = variants or {"as configured": {}}
    out = {k: np.full((len(variants), len(horizons)), np.nan) for k in STATS}
    out.update(horizons=horizons, variants=list(variants), knobs={},
               exploded=np.zeros((len(variants), len(horizons)), bool),
               diverged=np.zeros((len(variants), len(horizons)), bool))
    sims = {}
    for v, (name, spec) in enumerate(variants.items()):
        unknown = sorted(set(spec) - {"env_config", "clip"})
        if unknown:
            raise ValueError(f"config key 'variants.{name}': unknown key(s) {unknown}; allowed ['clip', 'env_config']")
        torch_ops.check_clip(spec.get("clip"))
        cfg = _overlay(env_config or {}, spec.get("env_config"))
        key = json.dumps(cfg, sort_keys=True)
        if key not in sims:  # variants that differ only in clipping share a simulator
            task = TASKS[env](**{**cfg, "max_steps": max(horizons)})
            sims[key] = (task, task.make_sim(int(worlds)))
        task, sim = sims[key]
        out["knobs"][name] = _knobs(task.cfg, spec.get("clip"))
        for h, steps in enumerate(tqdm(horizons, desc=name, disable=not progress)):
            try:
                stats = _stats(*sample(task, sim, steps, wrt, spec.get("clip"), seed))
            except Exploded:
                out["exploded"][v, h] = True
                continue
            except FloatingPointError:
                out["diverged"][v, h] = True
                continue
            for k in STATS:
                out[k][v, h] = stats[k]
    for _, sim in sims.values():
        sim.free()
    return out


def growth(horizons, values):
    """The exponent p of values ~ horizon^p, a least-squares fit over the finite positive points."""
    h, y = np.asarray(horizons, float), np.asarray(values, float)
    ok = np.isfinite(y) & (y > 0)
    if ok.sum() < 2:
        return math.nan
    return float(np.polyfit(np.log(h[ok]), np.log(y[ok]), 1)[0])


def table(stats, factor=1e3):
    """Rows (dicts) for the summary table: each variant's knobs, its gradient norm at the
    shortest and longest horizon, the norm's growth exponent, the variance at the longest,
    where it explodes (the first horizon whose gradient is non-finite or `factor` times above
    linear growth from the shortest horizon: a sum of h bounded terms grows linearly) and
    where the simulation diverges."""
    h = np.asarray(stats["horizons"], float)
    rows = []
    for v, name in enumerate(stats["variants"]):
        n = stats["norm"][v]
        wild = stats["exploded"][v] | (n > factor * n[0] * h / h[0])
        first = lambda mask: next((int(x) for x, m in zip(h, mask) if m), None)
        rows.append({"variant": name, **stats["knobs"][name], "norm_first": float(n[0]), "norm_last": float(n[-1]),
                     "growth": growth(h, n), "variance_last": float(stats["variance"][v, -1]),
                     "explodes_at": first(wild), "diverges_at": first(stats["diverged"][v])})
    return rows


def figure(path, stats, title):
    """Log-log panels against horizon: gradient norm, variance across worlds, start-state adjoint."""
    logh = np.log10(stats["horizons"])

    def series(key):
        return {name: [(float(x), float(np.log10(y))) for x, y in zip(logh, stats[key][v]) if np.isfinite(y) and y > 0]
                for v, name in enumerate(stats["variants"])}
    plots.curves(path, [("log10 horizon (env steps)", "log10 mean |gradient| per world", series("norm")),
                        ("log10 horizon (env steps)", "log10 variance across worlds", series("variance")),
                        ("log10 horizon (env steps)", "log10 |d return / d start state|", series("state_norm"))],
                 title)
    return path


def experiment(cfg_path=None, out=None, progress=True):
    """Run a gradstats config (configs/gradstats_walker.yaml): gradient_stats, then
    gradstats.png (log-log) and summary.json (the statistics and the table) under the output
    folder. Returns {"stats", "table", "figure", "out"}."""
    user = config.read_yaml(cfg_path) if cfg_path else {}
    cfg = config.merge({**DEFAULTS, "env_config": {}, "variants": {}}, user)  # the task checks env_config's keys
    cfg["env_config"] = _overlay(DEFAULTS["env_config"], cfg["env_config"])
    if "variants" not in user:
        cfg["variants"] = DEFAULTS["variants"]
    out = out or cfg["out"]
    os.makedirs(out, exist_ok=True)
    stats = gradient_stats(cfg["env"], cfg["env_config"], cfg["variants"], cfg["horizons"], cfg["worlds"], cfg["wrt"],
                           cfg["seed"], progress)
    rows = table(stats)
    path = figure(os.path.join(out, "gradstats.png"), stats,
                  f"{cfg['env']}: gradient of the return w.r.t. the {cfg['wrt']}, {cfg['worlds']} worlds")
    plain = {k: (np.where(np.isfinite(v), v, None).tolist() if v.dtype.kind == "f" else v.tolist())
             if isinstance(v, np.ndarray) else v for k, v in stats.items()}  # NaN -> null: plain JSON
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump({"config": cfg, "stats": plain, "table": rows}, fh, indent=1)
    return {"stats": stats, "table": rows, "figure": path, "out": out}
