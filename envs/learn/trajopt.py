"""Trajectory optimizers over any task: open-loop Adam, a closed-loop policy, CEM, and CEM
whose proposals are refined by gradient steps before selection (hybrid).

Each returns a dict with `curve` ((substeps simulated so far, summed over the method's
worlds), best return so far), `best_return` and `best_actions` (B=1, steps, A). Substeps
are counted by the simulators themselves (`sim.substeps_run`: forwards, the backward
pass's replays, lean steps), so a budget is what really ran: a gradient iteration over T
substeps costs `gradient_substeps(T, K)` per world, a CEM iteration population x T. The
reverse passes are not substeps and are not counted.
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


def gradient_substeps(T, K, resident=True):
    """Substeps per world that one gradient iteration over T substeps simulates with
    checkpoint segments of K: the forward's T, then the backward's replay of every segment
    but the last, which the forward left resident in the fields (sims/adjoint.py), or of
    every segment when it was not resident (2 T)."""
    if T < 1 or K < 1:
        raise ValueError(f"T and K must be >= 1, got T={T!r}, K={K!r}")
    last = T - K * ((T - 1) // K)
    return T + (T - last if resident else T)


def episode_return(task, sim, state0, actions, params=None):
    """Sum of rewards of open-loop actions (B, steps, A) from state0, checkpointed."""
    states, _ = torch_ops.rollout(sim, state0, params, task.to_sim(actions), substeps=task.substeps)
    prev = tuple(torch.cat([s0[:, None], s[:, :-1]], 1) for s0, s in zip(state0, states))
    return task.reward(prev, states, actions).sum(1)


def start_state(task, sim, seed, dtype):
    """The task's start state for sim's worlds, drawn from `seed`, as torch tensors."""
    return tuple(torch.as_tensor(s, dtype=dtype) for s in task.initial_state(sim, np.random.default_rng(seed)))


def torch_dtype(sim):
    """The torch float type of a simulator's fields."""
    return torch.float64 if sim.np_dtype == np.float64 else torch.float32


class _Best:
    """The best return seen so far and the actions that earned it; the curve of it against
    the substeps a simulator has run (summed over its worlds) since this was made."""

    def __init__(self, sim):
        self.sim, self.start, self.value, self.actions, self.curve = sim, sim.substeps_run, -np.inf, None, []

    def see(self, returns, actions):
        """returns (B,), actions (B, steps, A): keep the best world's if it beats the best."""
        returns = returns.detach()
        i = int(torch.argmax(returns))
        if returns[i].item() > self.value:
            self.value, self.actions = returns[i].item(), actions[i:i + 1].detach().clone()

    def mark(self):
        self.curve.append((self.spent(), self.value))

    def spent(self):
        return (self.sim.substeps_run - self.start) * self.sim.B

    def result(self, **extra):
        return {"curve": self.curve, "best_return": self.value, "best_actions": self.actions, **extra}


def adam_open_loop(task, iterations=100, lr=0.01, seed=0, progress=True):
    """Adam on tanh-squashed per-step actions through the checkpointed rollout."""
    sim = task.make_sim(1)
    dtype = torch_dtype(sim)
    state0 = start_state(task, sim, seed, dtype)
    g = torch.Generator().manual_seed(seed)
    theta = (0.1 * torch.randn(1, task.max_steps, task.action_dim, generator=g, dtype=dtype)).requires_grad_()
    opt = torch.optim.Adam([theta], lr=lr)
    best = _Best(sim)
    for _ in tqdm(range(iterations), desc="adam", disable=not progress):
        actions = torch.tanh(theta)
        ret = episode_return(task, sim, state0, actions)
        best.see(ret, actions)
        opt.zero_grad()
        (-ret[0]).backward()
        opt.step()
        best.mark()
    return best.result()


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
    best = _Best(env.sim)
    for _ in tqdm(range(iterations), desc="policy", disable=not progress):
        obs, _ = env.reset(seed=seed)
        ret, acts = 0.0, []
        for _ in range(task.max_steps):
            a = policy(obs)
            obs, r, *_ = env.step(a)
            ret, acts = ret + r, acts + [a.detach()]
        best.see(ret, torch.stack(acts, 1))
        opt.zero_grad()
        (-ret[0]).backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), clip)
        opt.step()
        best.mark()
    return best.result(policy=policy)


def _elites(samples, returns, n_elite):
    """CEM's next mean and std from the n_elite best samples (a floor keeps it exploring)."""
    elite = samples[np.argsort(returns)[-n_elite:]]
    return elite.mean(0), elite.std(0) + 1e-3


def _sampler(task, population, elite_frac, init_std, seed):
    if population < 1 or not 0 < elite_frac <= 1 or init_std <= 0:
        raise ValueError(f"need population >= 1, 0 < elite_frac <= 1, init_std > 0; got {population!r}, "
                         f"{elite_frac!r}, {init_std!r}")
    mean = np.zeros((task.max_steps, task.action_dim))
    return np.random.default_rng(seed), mean, np.full_like(mean, init_std), max(1, int(round(elite_frac * population)))


def cem(task, budget, population=32, elite_frac=0.125, init_std=0.5, seed=0, progress=True):
    """Cross-entropy method on open-loop actions: all candidates in one batched launch, as
    many iterations as `budget` (substeps summed over worlds) pays for (at least one)."""
    rng, mean, std, n_elite = _sampler(task, population, elite_frac, init_std, seed)
    sim = task.make_sim(population)
    dtype, T = torch_dtype(sim), task.substeps * task.max_steps
    state0 = start_state(task, sim, seed, dtype)
    best = _Best(sim)
    for _ in tqdm(range(max(1, int(budget // (population * T)))), desc="cem", disable=not progress):
        samples = np.clip(mean + std * rng.standard_normal((population,) + mean.shape), -1, 1)
        actions = torch.as_tensor(samples, dtype=dtype)
        with torch.no_grad():
            returns = episode_return(task, sim, state0, actions)
        best.see(returns, actions)
        mean, std = _elites(samples, returns.numpy(), n_elite)
        best.mark()
    sim.free()
    return best.result()


def hybrid(task, budget, population=8, elite_frac=0.25, init_std=0.5, refine_steps=3, lr=0.05, keep_elites=True,
           seed=0, progress=True):
    """CEM whose proposals are each refined by `refine_steps` Adam steps through the
    simulator before selection (CEM-GD; ThinShellLab's scheme). The whole population refines
    together in one batched simulator; actions stay in [-1, 1] (projected steps); elites are
    chosen on the refined actions' returns. keep_elites: the refined elites join the next
    population as they are (their refinement goes on) beside fresh samples; otherwise only
    their mean and spread survive. An iteration costs population x (refine_steps x
    gradient_substeps(T, K) + T) substeps; as many run as `budget` pays for (at least one)."""
    if refine_steps < 0:
        raise ValueError(f"refine_steps must be >= 0, got {refine_steps!r}")
    rng, mean, std, n_elite = _sampler(task, population, elite_frac, init_std, seed)
    sim = task.make_sim(population)
    dtype, T = torch_dtype(sim), task.substeps * task.max_steps
    state0 = start_state(task, sim, seed, dtype)
    cost = population * (refine_steps * gradient_substeps(T, sim.K) + T)
    best, elites = _Best(sim), np.zeros((0,) + mean.shape)
    for _ in tqdm(range(max(1, int(budget // cost))), desc="hybrid", disable=not progress):
        fresh = np.clip(mean + std * rng.standard_normal((population - len(elites),) + mean.shape), -1, 1)
        samples = np.concatenate([elites, fresh])
        actions = torch.as_tensor(samples, dtype=dtype).requires_grad_()
        opt = torch.optim.Adam([actions], lr=lr)
        for _ in range(refine_steps):
            returns = episode_return(task, sim, state0, actions)
            best.see(returns, actions)
            opt.zero_grad()
            (-returns.sum()).backward()  # each world's return depends on its own actions only
            opt.step()
            with torch.no_grad():
                actions.clamp_(-1.0, 1.0)
        with torch.no_grad():
            returns = episode_return(task, sim, state0, actions)
        best.see(returns, actions)
        refined = actions.detach().numpy()
        mean, std = _elites(refined, returns.numpy(), n_elite)
        if keep_elites and n_elite < population:
            elites = refined[np.argsort(returns.numpy())[-n_elite:]]
        best.mark()
    sim.free()
    return best.result()


def noop_return(task, seed=0):
    """The return of holding every action at zero: what the task gives for no effort."""
    sim = task.make_sim(1)
    dtype = torch_dtype(sim)
    with torch.no_grad():
        ret = episode_return(task, sim, start_state(task, sim, seed, dtype),
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
GRADIENT, BUDGETED = ("adam", "policy"), ("cem", "hybrid")


def adam_budget(task, iterations):
    """Substeps (one world) that `iterations` of adam_open_loop simulate on this task."""
    sim = task.make_sim(1)
    K = sim.K
    sim.free()
    return iterations * gradient_substeps(task.substeps * task.max_steps, K)


def setup(defaults, cfg_path, out=None):
    """An experiment's config (defaults, then the file; the env checks its own keys), its
    task, and its output folder (made). Returns (cfg, task, out)."""
    cfg = config.merge({**defaults, "env_config": {}}, config.read_yaml(cfg_path))
    if cfg["env"] not in TASKS:
        raise ValueError(f"config key 'env': unknown environment {cfg['env']!r}; known: {sorted(TASKS)}")
    task = TASKS[cfg["env"]](**cfg["env_config"])
    out = out or cfg["out"]
    os.makedirs(out, exist_ok=True)
    return cfg, task, out


def experiment(cfg_path, methods=None, out=None, iterations=None, progress=True):
    """Run a trajopt config (configs/trajopt_*.yaml): each method, then curves.png, best.gif
    (the best rollout), best_actions.pt (for scripts/replay.py) and summary.json under the
    output folder. CEM and hybrid get the substeps the adam run simulated (measured when adam
    runs here, else from gradient_substeps). Returns the summary."""
    cfg, task, out = setup(DEFAULTS, cfg_path, out)
    methods = list(methods or cfg["methods"])
    unknown = sorted(set(methods) - set(GRADIENT + BUDGETED))
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {sorted(GRADIENT + BUDGETED)}")
    if iterations:
        cfg["adam"]["iterations"] = cfg["policy"]["iterations"] = iterations
    runners = {
        "adam": lambda: adam_open_loop(task, seed=cfg["seed"], progress=progress, **cfg["adam"]),
        "policy": lambda: adam_policy(task, seed=cfg["seed"], progress=progress, **cfg["policy"]),
        "cem": lambda: cem(task, budget, seed=cfg["seed"], progress=progress, **cfg["cem"]),
        "hybrid": lambda: hybrid(task, budget, seed=cfg["seed"], progress=progress, **cfg["hybrid"]),
    }
    results, budget = {}, None
    for m in sorted(methods, key=lambda m: m in BUDGETED):  # gradient methods first: adam's run sets the budget
        if m in BUDGETED and budget is None:
            budget = (results["adam"]["curve"][-1][0] if "adam" in results
                      else adam_budget(task, cfg["adam"]["iterations"]))
        t0 = time.perf_counter()
        results[m] = runners[m]()
        results[m]["seconds"] = time.perf_counter() - t0
    results = {m: results[m] for m in methods}
    best = max(results, key=lambda m: results[m]["best_return"])
    noop = noop_return(task, cfg["seed"])
    plots.curves(os.path.join(out, "curves.png"),
                 [("simulated substeps (summed over worlds)", "best episode return so far",
                   {m: r["curve"] for m, r in results.items()})], cfg["env"], hline=(noop, "no action"))
    write_gif(os.path.join(out, "best.gif"), replay_frames(task, results[best]["best_actions"], cfg["seed"]))
    torch.save({"env": cfg["env"], "env_config": cfg["env_config"], "seed": cfg["seed"], "method": best,
                "return": results[best]["best_return"], "actions": results[best]["best_actions"]},
               os.path.join(out, "best_actions.pt"))
    summary = _summary(cfg, task, out, results, best, noop, budget)
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    return summary


def _summary(cfg, task, out, results, best, noop, budget):
    T = task.substeps * task.max_steps
    summary = {"env": cfg["env"], "out": out, "env_config": cfg["env_config"], "seed": cfg["seed"], "best_method": best,
               "noop_return": noop, "substeps_per_episode": T,
               "budget": budget,  # what cem and hybrid were given (each runs at least one iteration)
               "substeps_counted": "simulated substeps summed over each method's worlds (population x per-world "
                                   "substeps), the backward passes' replays included",
               "methods": {}}
    for m, r in results.items():
        worlds = cfg[m]["population"] if m in BUDGETED else 1
        total = r["curve"][-1][0]
        summary["methods"][m] = {"best_return": r["best_return"], "final_return": r["curve"][-1][1],
                                 "simulated_substeps": total, "worlds": worlds,
                                 "simulated_substeps_per_world": total // worlds,
                                 "seconds": round(r["seconds"], 2), "curve": r["curve"]}
        if hasattr(task, "metrics"):  # a task's own measure of how its best actions did (e.g. a force error)
            summary["methods"][m]["metrics"] = task.metrics(r["best_actions"])
    return summary
