"""Trajectory optimizers over any task: open-loop Adam, a closed-loop policy, and CEM.

Each returns a dict with `curve` (simulated substeps per world so far, episode return),
`best_return` and `best_actions` (B=1, steps, A). A gradient iteration costs 2 T substeps
(the forward pass and the backward pass's recompute), a CEM iteration population * T.
"""
import json
import os
import time

import numpy as np
import torch
from tqdm import tqdm

from ...render.io import write_gif
from ...sims import torch_ops
from .. import TASKS, config
from ..diff_env import DiffEnv
from . import plots


def episode_return(task, sim, state0, actions, params=None):
    """Sum of rewards of open-loop actions (B, steps, A) from state0, checkpointed."""
    states, _ = torch_ops.rollout(sim, state0, params, task.to_sim(actions), substeps=task.substeps)
    prev = tuple(torch.cat([s0[:, None], s[:, :-1]], 1) for s0, s in zip(state0, states))
    return task.reward(prev, states, actions).sum(1)


def _start(task, sim, seed, dtype):
    return tuple(torch.as_tensor(s, dtype=dtype) for s in task.initial_state(sim, np.random.default_rng(seed)))


def _dtype(sim):
    return torch.float64 if sim.np_dtype == np.float64 else torch.float32


def adam_open_loop(task, iterations=100, lr=0.01, seed=0, progress=True):
    """Adam on tanh-squashed per-step actions through the checkpointed rollout."""
    sim = task.make_sim(1)
    dtype, T = _dtype(sim), task.substeps * task.max_steps
    state0 = _start(task, sim, seed, dtype)
    g = torch.Generator().manual_seed(seed)
    theta = (0.1 * torch.randn(1, task.max_steps, task.action_dim, generator=g, dtype=dtype)).requires_grad_()
    opt = torch.optim.Adam([theta], lr=lr)
    curve, best = [], (-np.inf, None)
    for it in tqdm(range(iterations), desc="adam", disable=not progress):
        actions = torch.tanh(theta)
        ret = episode_return(task, sim, state0, actions)[0]
        if ret.item() > best[0]:
            best = (ret.item(), actions.detach().clone())
        opt.zero_grad()
        (-ret).backward()
        opt.step()
        curve.append((2 * T * (it + 1), ret.item()))
    return {"curve": curve, "best_return": best[0], "best_actions": best[1]}


class SinePolicy(torch.nn.Module):
    """DiffTaichi's mass_spring controller: observation (with sine features) -> tanh MLP."""

    def __init__(self, obs_dim, action_dim, hidden=32):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(obs_dim, hidden), torch.nn.Tanh(),
                                       torch.nn.Linear(hidden, action_dim), torch.nn.Tanh())

    def forward(self, obs):
        return self.net(obs)


def adam_policy(task, iterations=60, lr=0.01, hidden=32, seed=0, clip=1.0, progress=True):
    """Train a closed-loop policy through the simulator, one differentiable env step at a time."""
    torch.manual_seed(seed)
    env = DiffEnv(task, num_envs=1, autoreset=False)
    policy = SinePolicy(task.obs_dim, task.action_dim, hidden).to(env.dtype)
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    T = task.substeps * task.max_steps
    curve, best = [], (-np.inf, None)
    for it in tqdm(range(iterations), desc="policy", disable=not progress):
        obs, _ = env.reset(seed=seed)
        ret, acts = 0.0, []
        for _ in range(task.max_steps):
            a = policy(obs)
            obs, r, *_ = env.step(a)
            ret, acts = ret + r[0], acts + [a.detach()]
        if ret.item() > best[0]:
            best = (ret.item(), torch.stack(acts, 1))
        opt.zero_grad()
        (-ret).backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), clip)
        opt.step()
        curve.append((2 * T * (it + 1), ret.item()))
    return {"curve": curve, "best_return": best[0], "best_actions": best[1], "policy": policy}


def cem(task, budget, population=32, elite_frac=0.125, init_std=0.5, seed=0, progress=True):
    """Cross-entropy method on open-loop actions: all candidates in one batched launch."""
    sim = task.make_sim(population)
    dtype, T = _dtype(sim), task.substeps * task.max_steps
    state0 = _start(task, sim, seed, dtype)
    rng = np.random.default_rng(seed)
    mean = np.zeros((task.max_steps, task.action_dim))
    std = np.full_like(mean, init_std)
    n_elite = max(1, int(round(elite_frac * population)))
    iterations = max(1, int(budget // (population * T)))
    curve, best = [], (-np.inf, None)
    for it in tqdm(range(iterations), desc="cem", disable=not progress):
        samples = np.clip(mean + std * rng.standard_normal((population,) + mean.shape), -1, 1)
        with torch.no_grad():
            returns = episode_return(task, sim, state0, torch.as_tensor(samples, dtype=dtype)).numpy()
        elite = samples[np.argsort(returns)[-n_elite:]]
        mean, std = elite.mean(0), elite.std(0) + 1e-3
        i = int(np.argmax(returns))
        if returns[i] > best[0]:
            best = (float(returns[i]), torch.as_tensor(samples[i:i + 1], dtype=dtype))
        curve.append((population * T * (it + 1), float(best[0])))
    sim.free()
    return {"curve": curve, "best_return": best[0], "best_actions": best[1]}


def noop_return(task, seed=0):
    """The return of holding every action at zero: what the task gives for no effort."""
    sim = task.make_sim(1)
    dtype = _dtype(sim)
    with torch.no_grad():
        ret = episode_return(task, sim, _start(task, sim, seed, dtype),
                             torch.zeros(1, task.max_steps, task.action_dim, dtype=dtype))
    sim.free()
    return float(ret[0])


def replay_frames(task, actions, seed=0):
    """Frames of one world following open-loop actions (1, steps, A), one per env step."""
    env = DiffEnv(task, num_envs=1, autoreset=False)
    with torch.no_grad():
        env.reset(seed=seed)
        frames = [task.draw(tuple(s[0].numpy() for s in env.state))]
        for t in range(actions.shape[1]):
            env.step(actions[:, t].to(env.dtype))
            frames.append(task.draw(tuple(s[0].numpy() for s in env.state), actions[0, t].numpy()))
    return frames


DEFAULTS = config.read_yaml("trajopt_walker")


def experiment(cfg_path, methods=None, out=None, iterations=None, progress=True):
    """Run a trajopt config (configs/trajopt_*.yaml): each method, then curves.png, best.gif
    (the best rollout) and summary.json under the output folder. Returns the summary."""
    cfg = config.merge({**DEFAULTS, "env_config": {}}, config.read_yaml(cfg_path))  # the env checks its own keys
    if cfg["env"] not in TASKS:
        raise ValueError(f"config key 'env': unknown environment {cfg['env']!r}; known: {sorted(TASKS)}")
    task = TASKS[cfg["env"]](**cfg["env_config"])
    out = out or cfg["out"]
    os.makedirs(out, exist_ok=True)
    methods = methods or cfg["methods"]
    if iterations:
        cfg["adam"]["iterations"] = cfg["policy"]["iterations"] = iterations
    budget = 2 * task.substeps * task.max_steps * cfg["adam"]["iterations"]
    runners = {
        "adam": lambda: adam_open_loop(task, seed=cfg["seed"], progress=progress, **cfg["adam"]),
        "policy": lambda: adam_policy(task, seed=cfg["seed"], progress=progress, **cfg["policy"]),
        "cem": lambda: cem(task, budget, seed=cfg["seed"], progress=progress, **cfg["cem"]),
    }
    results = {}
    for m in methods:
        if m not in runners:
            raise ValueError(f"unknown method {m!r}; choose from {sorted(runners)}")
        t0 = time.perf_counter()
        results[m] = runners[m]()
        results[m]["seconds"] = time.perf_counter() - t0
    best = max(results, key=lambda m: results[m]["best_return"])
    noop = noop_return(task, cfg["seed"])
    plots.curves(os.path.join(out, "curves.png"),
                 [("simulated substeps (per world)", "episode return", {m: r["curve"] for m, r in results.items()})],
                 cfg["env"], hline=(noop, "no action"))
    write_gif(os.path.join(out, "best.gif"), replay_frames(task, results[best]["best_actions"], cfg["seed"]))
    summary = {"env": cfg["env"], "out": out, "env_config": cfg["env_config"], "seed": cfg["seed"], "best_method": best,
               "noop_return": noop,
               "substeps_per_episode": task.substeps * task.max_steps,
               "methods": {m: {"best_return": r["best_return"], "final_return": r["curve"][-1][1],
                               "simulated_substeps": r["curve"][-1][0], "seconds": round(r["seconds"], 2),
                               "curve": r["curve"]} for m, r in results.items()}}
    if hasattr(task, "metrics"):  # a task's own measure of how its best actions did (e.g. a force error)
        for m, r in results.items():
            summary["methods"][m]["metrics"] = task.metrics(r["best_actions"])
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    return summary
