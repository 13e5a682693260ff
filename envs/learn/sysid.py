"""System identification: fit material parameters to an observed particle trajectory."""
import json
import os

import numpy as np
import torch
from tqdm import tqdm

from ...sims import torch_ops
from .. import TASKS, config
from .plots import plt


def fit(task, observed, actions, guess, iterations=60, lr=0.05, progress=True):
    """Fit log-parameters so that simulated positions match `observed` (B, steps, P, dim).

    Adam with light momentum and a decaying step: few parameters and a narrow valley, where
    full momentum overshoots and L-BFGS's long trial steps leave the stable range of dt.
    guess: dict name -> initial value (one material). Returns the history of
    (loss, {name: value}) per iteration and the final estimate.
    """
    sim = task.make_sim(1)
    dtype = torch.float64 if sim.np_dtype == np.float64 else torch.float32
    state0 = tuple(torch.as_tensor(s, dtype=dtype) for s in task.initial_state(sim, np.random.default_rng(0)))
    base = {k: torch.as_tensor(v, dtype=dtype) for k, v in sim.get_params().items()}
    logs = {k: torch.tensor(np.log(v), dtype=dtype, requires_grad=True) for k, v in guess.items()}
    opt = torch.optim.Adam(list(logs.values()), lr=lr, betas=(0.5, 0.99))
    decay = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.05 ** (1 / iterations))
    obs = torch.as_tensor(observed, dtype=dtype)
    acts = task.to_sim(torch.as_tensor(actions, dtype=dtype))
    scale = obs.var().clamp_min(1e-12)
    history = []
    for _ in tqdm(range(iterations), desc="sysid", disable=not progress):
        params = {k: (torch.exp(logs[k]) * torch.ones_like(v) if k in logs else v) for k, v in base.items()}
        states, _ = torch_ops.rollout(sim, state0, params, acts, substeps=task.substeps)
        loss = ((states[0] - obs) ** 2).mean() / scale
        history.append((loss.item(), {k: float(torch.exp(v.detach())) for k, v in logs.items()}))
        opt.zero_grad()
        loss.backward()
        opt.step()
        decay.step()
    sim.free()
    return history, {k: float(torch.exp(v)) for k, v in logs.items()}


def observe(task, actions):
    """The true trajectory: particle positions after every env step, (1, steps, P, dim)."""
    sim = task.make_sim(1)
    dtype = torch.float64 if sim.np_dtype == np.float64 else torch.float32
    state0 = tuple(torch.as_tensor(s, dtype=dtype) for s in task.initial_state(sim, np.random.default_rng(0)))
    with torch.no_grad():
        states, _ = torch_ops.rollout(sim, state0, None, task.to_sim(torch.as_tensor(actions, dtype=dtype)),
                                      substeps=task.substeps)
    sim.free()
    return states[0].numpy()


def tactile_reading(task, sim, actions, E, x, z, yaw):
    """What a TactilePose probe (actions (1, steps, 6)) records: marker pixels (1, steps, M, 2)
    and the contact force (normal, shear x, shear z; (1, steps, 3)), for gel modulus E and the
    rod at offsets x, z (m) and yaw (rad), all tensors."""
    dtype = torch.float64 if sim.np_dtype == np.float64 else torch.float32
    params = {k: torch.as_tensor(v, dtype=dtype) for k, v in sim.get_params().items()}
    params["E"] = E * torch.ones_like(params["E"])  # E: one value or one per world
    state0 = task.pose_state(sim, x, z, yaw)
    acts = task.to_sim(torch.as_tensor(actions, dtype=dtype))
    states, _ = torch_ops.rollout(sim, tuple(s.to(dtype) for s in state0), params, acts, substeps=task.substeps)
    px = task.optics.markers(task.sensor.to_body(states[2], states[0]))
    return px, task.forces(states)


def fit_tactile(task, actions, observed_px, observed_force, guess, iterations=80, lr=0.05, pixel_sigma=0.5,
                force_sigma=0.01, progress=True):
    """Fit the gel's E and the rod's pose (x, z in m, yaw in rad) to a recorded probe: marker
    pixels (1, steps, M, 2) and contact force (1, steps, 3), weighted by pixel_sigma and by
    force_sigma times the largest recorded force, by Adam. Contact makes the pose's landscape narrow and bumpy: from
    a guess within about 0.3 mm and 5 degrees it converges; farther, it can settle elsewhere.

    Under a displacement-controlled probe the markers alone cannot tell E (linear elasticity's
    displacements do not depend on it), so the force carries E; the pose shows in the markers
    and in the force's history (normal and shear) over the press and the rub.
    Returns the history of (loss, estimate) and the final estimate {E, x, z, yaw}."""
    sim = task.make_sim(1)
    dtype = torch.float64
    obs_px, obs_f = torch.as_tensor(observed_px, dtype=dtype), torch.as_tensor(observed_force, dtype=dtype)
    f_scale = force_sigma * obs_f.abs().max()
    # unknowns of order one: log E, offsets in mm, yaw in tenths of a radian
    theta = torch.tensor([np.log(guess["E"]), guess["x"] * 1e3, guess["z"] * 1e3, guess["yaw"] * 10],
                         dtype=dtype, requires_grad=True)
    unpack = lambda t: dict(E=torch.exp(t[0]), x=t[1] * 1e-3, z=t[2] * 1e-3, yaw=t[3] / 10)
    opt = torch.optim.Adam([theta], lr=lr)
    decay = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.1 ** (1 / iterations))
    history = []
    for _ in tqdm(range(iterations), desc="tactile sysid", disable=not progress):
        p = unpack(theta)
        px, f = tactile_reading(task, sim, actions, p["E"], p["x"][None], p["z"][None], p["yaw"][None])
        loss = ((px - obs_px) ** 2).mean() / pixel_sigma ** 2 + ((f - obs_f) ** 2).mean() / f_scale ** 2
        history.append((loss.item(), {k: float(v.detach()) for k, v in p.items()}))
        opt.zero_grad()
        loss.backward()
        opt.step()
        decay.step()
    sim.free()
    return history, {k: float(v) for k, v in unpack(theta.detach()).items()}


def record_tactile(task, actions, truth, noise_px=0.0, seed=0):
    """A probe's recording at the true E and pose, markers with Gaussian pixel noise."""
    sim = task.make_sim(1)
    with torch.no_grad():
        t = {k: torch.tensor([v], dtype=torch.float64) for k, v in truth.items()}
        px, f = tactile_reading(task, sim, actions, t["E"], t["x"], t["z"], t["yaw"])
    sim.free()
    rng = np.random.default_rng(seed)
    return px.numpy() + noise_px * rng.standard_normal(px.shape), f.numpy()


DEFAULTS = config.read_yaml("sysid_soft_walker")


def experiment(cfg_path, out=None, iterations=None, progress=True):
    """Run a sysid config (configs/sysid_*.yaml): simulate the truth, fit the guess, write fit.png
    and summary.json under the output folder. Returns the summary."""
    if config.read_yaml(cfg_path).get("env") == "diffsuite/TactilePose-v0":
        return _tactile(cfg_path, out, iterations, progress)
    # the env checks its own keys, the simulator the parameter names
    cfg = config.merge({**DEFAULTS, "env_config": {}, "guess": {}}, config.read_yaml(cfg_path))
    if not cfg["guess"]:
        raise ValueError("config key 'guess' must name at least one material parameter")
    if cfg["env"] not in TASKS:
        raise ValueError(f"config key 'env': unknown environment {cfg['env']!r}; known: {sorted(TASKS)}")
    task = TASKS[cfg["env"]](**cfg["env_config"])
    unknown = set(cfg["guess"]) - (set(task.cfg["material"]) - {"density", "kind"})
    if unknown:
        raise ValueError(f"config key 'guess': {sorted(unknown)} not among the material's parameters")
    truth = {k: float(task.cfg["material"][k]) for k in cfg["guess"]}
    actions = _actions(cfg, task)
    observed = observe(task, actions)
    history, estimate = fit(task, observed, actions, cfg["guess"], iterations or cfg["iterations"],
                                  cfg["lr"], progress)
    out = out or cfg["out"]
    os.makedirs(out, exist_ok=True)
    rel = {k: abs(estimate[k] - truth[k]) / truth[k] for k in truth}
    _plot(history, truth, os.path.join(out, "fit.png"))
    summary = {"env": cfg["env"], "out": out, "truth": truth, "guess": cfg["guess"], "estimate": estimate,
               "relative_error": rel, "final_loss": history[-1][0], "iterations": len(history),
               "history": [{"loss": l, **p} for l, p in history]}
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    return summary


def _tactile(cfg_path, out=None, iterations=None, progress=True):
    """The tactile sensor's fit: E and the pose from marker pixels and the normal force, once
    per marker noise level."""
    cfg = config.merge(config.read_yaml("sysid_tactile"), config.read_yaml(cfg_path))
    task = TASKS[cfg["env"]](**cfg["env_config"])
    deg = lambda p: {**p, "yaw": np.radians(p["yaw"])}
    truth, guess = deg(cfg["truth"]), deg(cfg["guess"])
    out = out or cfg["out"]
    os.makedirs(out, exist_ok=True)
    runs = []
    actions = task.probe(cfg["probe"])
    for noise in cfg["noise_px"]:
        px, force = record_tactile(task, actions, truth, noise, cfg["seed"])
        history, est = fit_tactile(task, actions, px, force, guess, iterations or cfg["iterations"], cfg["lr"],
                                         progress=progress)
        err = {"E_rel": abs(est["E"] - truth["E"]) / truth["E"],
               "position_mm": 1e3 * float(np.hypot(est["x"] - truth["x"], est["z"] - truth["z"])),
               "yaw_deg": float(np.degrees(abs(est["yaw"] - truth["yaw"])))}
        runs.append({"noise_px": noise, "estimate": {**est, "yaw_deg": float(np.degrees(est["yaw"]))}, "error": err,
                     "final_loss": history[-1][0], "history": [{"loss": l, **p} for l, p in history]})
    _plot_tactile(runs, truth, os.path.join(out, "fit.png"))
    summary = {"env": cfg["env"], "out": out, "truth": cfg["truth"], "guess": cfg["guess"], "runs": runs}
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    return summary


def _plot_tactile(runs, truth, path):
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for r in runs:
        h = r["history"]
        lab = f"noise {r['noise_px']} px"
        axes[0].semilogy([x["loss"] for x in h], label=lab)
        axes[1].semilogy([abs(x["E"] - truth["E"]) / truth["E"] for x in h], label=lab)
        axes[2].semilogy([1e3 * np.hypot(x["x"] - truth["x"], x["z"] - truth["z"]) for x in h], label=lab + ", mm")
        axes[2].semilogy([np.degrees(abs(x["yaw"] - truth["yaw"])) for x in h], "--", label=lab + ", deg")
    for a, t in zip(axes, ("loss", "E relative error", "pose error")):
        a.set_xlabel("iteration")
        a.set_title(t)
        a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _actions(cfg, task):
    """The experiment's actions (1, steps, A): 'random' or one action held throughout."""
    spec = cfg["actions"]
    if spec == "random":
        return np.random.default_rng(cfg["seed"]).uniform(-1, 1, (1, task.max_steps, task.action_dim))
    held = np.asarray(spec, float) if isinstance(spec, (list, tuple)) else np.zeros(0)
    if held.shape != (task.action_dim,) or not np.isfinite(held).all() or np.abs(held).max() > 1:
        raise ValueError(f"config key 'actions' must be 'random' or {task.action_dim} numbers in [-1, 1], got {spec!r}")
    return np.tile(held, (1, task.max_steps, 1))


def _plot(history, truth, path):
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.semilogy([h[0] for h in history])
    a.set_xlabel("iteration")
    a.set_ylabel("trajectory mismatch")
    for k, v in truth.items():
        b.semilogy([abs(h[1][k] - v) / v for h in history], label=k)
    b.set_xlabel("iteration")
    b.set_ylabel("relative error")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
