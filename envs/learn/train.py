"""Train a policy with BPTT, SHAC or PPO from a config (configs/train_*.yaml), the same way for all.

Every method is judged by one evaluation: a deterministic episode of the current policy on
a fixed set of worlds (eval.worlds, reset with eval.seed), recorded against the simulator
env steps summed over training worlds (forward steps; a gradient method's backward pass
shows in the wall-clock) and the training wall-clock, evaluation and checkpoints excluded.

run() writes under its output folder policy.pt (what replay() needs to rebuild the
policy), summary.json and, every few iterations, checkpoint.pt, from which resume=True
continues to the same parameters, bit for bit, as an uninterrupted run.
"""
import json
import os
import time

import numpy as np
import torch
from tqdm import tqdm

from ...render.io import write_gif, write_mp4
from .. import TASKS, config
from ..diff_env import DiffEnv
from . import trajopt
from .bptt import Actor

METHODS = ("bptt", "shac", "ppo")
DEFAULTS = config.read_yaml("train_walker")
# keys that must be positive: whole numbers, and any numbers
INTS = {"eval": ("worlds",),
        "bptt": ("worlds", "iterations", "hidden", "eval_every", "checkpoint_every"),
        "shac": ("worlds", "iterations", "horizon", "hidden", "critic_hidden", "critic_iterations", "minibatches",
                 "eval_every", "checkpoint_every"),
        "ppo": ("worlds", "n_steps", "batch_size", "n_epochs", "eval_every", "checkpoint_every")}
FLOATS = {"bptt": ("lr", "grad_clip"), "shac": ("gamma", "lam", "actor_lr", "critic_lr", "grad_clip"),
          "ppo": ("steps", "lr", "gamma", "gae_lambda", "clip_range", "max_grad_norm")}


def load_config(cfg, **overrides):
    """A train config (path or configs/ name) over train_walker.yaml's keys, then overrides;
    unknown keys or bad values raise ValueError naming them (env_config: the env checks it)."""
    base = {**DEFAULTS, "env_config": {}}
    out = config.merge(config.merge(base, config.read_yaml(cfg)), overrides)
    if out["env"] not in TASKS:
        raise ValueError(f"config key 'env': unknown environment {out['env']!r}; known: {sorted(TASKS)}")
    for checks, kind in ((INTS, int), (FLOATS, float)):
        for section, keys in checks.items():
            for key in keys:
                value = out[section][key]
                if isinstance(value, float) and not np.isfinite(value):  # NaN slips past `<= 0`
                    raise ValueError(f"section {section!r}: config key {key!r} must be finite, got {value!r}")
                try:
                    config.positive(out[section], key, kind=kind)
                except ValueError as e:
                    raise ValueError(f"section {section!r}: {e}") from None
    return out


def _trainer(method, cfg, seed):
    if method == "bptt":
        from .bptt import BPTT as cls
    elif method == "shac":
        from .shac import SHAC as cls
    else:
        from .ppo import PPOTrainer as cls  # stable-baselines3 loads only when asked for
    return cls(cfg["env"], cfg["env_config"], cfg[method], seed)


class Evaluator:
    """Mean return of a deterministic episode on fixed worlds: act(obs) -> action, torch."""

    def __init__(self, env_id, env_config, worlds, seed):
        self.env = DiffEnv(TASKS[env_id](**env_config), num_envs=worlds, autoreset=False)
        self.seed = seed

    def __call__(self, act):
        env = self.env
        total = torch.zeros(env.num_envs, dtype=torch.float64)
        alive = torch.ones(env.num_envs, dtype=torch.bool)
        with torch.no_grad():
            obs, _ = env.reset(seed=self.seed)
            for _ in range(env.task.max_steps):
                obs, r, term, _, _ = env.step(act(obs))
                total += torch.where(alive, r.double(), 0.0)
                alive &= ~term
        ret = float(total.mean())
        if not np.isfinite(ret):
            raise FloatingPointError(f"evaluation return is {ret}")
        return ret


def run(config, method, seed=0, out=None, resume=False, progress=True, **overrides):
    """Train `method` (bptt, shac, ppo) on config's env with seed; returns the summary
    (env, method, seed, final_return, best_return, env_steps, seconds, curve: rows of
    (env steps, seconds, return), and substeps_run: simulated substeps summed over worlds,
    the backward passes' replays included) that it writes to out/summary.json. out defaults
    to <config out>/<method>/seed<seed>. overrides: config keys, e.g. bptt={"iterations": 5}."""
    cfg = load_config(config, **overrides)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {list(METHODS)}")
    out = out or os.path.join(cfg["out"], method, f"seed{seed}")
    os.makedirs(out, exist_ok=True)
    trainer = _trainer(method, cfg, seed)
    ev = cfg["eval"]
    evaluate = Evaluator(cfg["env"], cfg["env_config"], ev["worlds"], ev["seed"])
    ckpt = os.path.join(out, "checkpoint.pt")
    rec = _restore(ckpt, trainer) if resume and os.path.exists(ckpt) else None
    loop = _train_ppo if method == "ppo" else _train_gradient
    rec = loop(trainer, evaluate, cfg[method], ckpt, rec, progress, f"{method} seed {seed}")
    torch.save({**_policy_payload(method, trainer, cfg[method]), "env": cfg["env"], "env_config": cfg["env_config"],
                "method": method, "seed": seed}, os.path.join(out, "policy.pt"))
    returns = [c[2] for c in rec["curve"]]
    summary = {"env": cfg["env"], "method": method, "seed": seed, "final_return": returns[-1],
               "best_return": max(returns), "env_steps": rec["env_steps"], "seconds": round(rec["seconds"], 3),
               "substeps_run": rec["substeps_run"], "curve": rec["curve"], "out": out}
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    return summary


def _point(rec, evaluate, act):
    rec["curve"].append([rec["env_steps"], round(rec["seconds"], 4), evaluate(act)])


def _train_gradient(trainer, evaluate, c, ckpt, rec, progress, desc):
    """BPTT and SHAC: `iterations` calls of trainer.iteration(), evaluated every eval_every."""
    if rec is None:
        rec = {"iteration": 0, "env_steps": 0, "seconds": 0.0, "substeps_run": 0, "curve": []}
        _point(rec, evaluate, trainer.act)
    n = c["iterations"]
    for it in tqdm(range(rec["iteration"], n), desc=desc, initial=rec["iteration"], total=n, disable=not progress):
        t0, ran = time.perf_counter(), _substeps_run(trainer.env)
        trainer.iteration()
        rec["seconds"] += time.perf_counter() - t0
        rec["env_steps"] += trainer.env_steps_per_iteration
        rec["substeps_run"] += _substeps_run(trainer.env) - ran
        rec["iteration"] = it + 1
        if rec["iteration"] % c["eval_every"] == 0 or rec["iteration"] == n:
            _point(rec, evaluate, trainer.act)
        if rec["iteration"] % c["checkpoint_every"] == 0 or rec["iteration"] == n:
            _checkpoint(ckpt, trainer, rec)
    return rec


def _train_ppo(trainer, evaluate, c, ckpt, rec, progress, desc):
    """PPO: SB3 drives the loop; between rollouts a callback records, evaluates and checkpoints."""
    if rec is None:
        rec = {"iteration": 0, "env_steps": 0, "seconds": 0.0, "curve": []}
        _point(rec, evaluate, trainer.act)
    total = int(c["steps"])
    bar = tqdm(desc=desc, total=total, initial=rec["env_steps"], disable=not progress)
    mark = [time.perf_counter()]

    def on_rollout(model, final):
        if model.num_timesteps > rec["env_steps"]:  # a rollout and its update happened since the mark
            rec["seconds"] += time.perf_counter() - mark[0]
            bar.update(model.num_timesteps - rec["env_steps"])
            rec["env_steps"], rec["iteration"] = model.num_timesteps, rec["iteration"] + 1
            if rec["iteration"] % c["eval_every"] == 0 or final:
                _point(rec, evaluate, trainer.act)
            if rec["iteration"] % c["checkpoint_every"] == 0 or final:
                _checkpoint(ckpt, trainer, rec)
        mark[0] = time.perf_counter()

    trainer.learn(total, on_rollout)
    bar.close()
    rec["substeps_run"] = rec["env_steps"] * evaluate.env.task.substeps  # no gradients: no replays
    return rec


def _substeps_run(env):
    """Substeps the simulator has run, summed over worlds, backward replays included."""
    return env.sim.substeps_run * env.num_envs


def _checkpoint(path, trainer, rec):
    """Everything an exact resume needs, written atomically (a kill mid-write keeps the old one)."""
    blob = {"rec": rec, "trainer": trainer.state_dict(), "torch_rng": torch.get_rng_state(),
            "numpy_rng": np.random.get_state()}
    torch.save(blob, path + ".tmp")
    os.replace(path + ".tmp", path)


def _restore(path, trainer):
    blob = torch.load(path, weights_only=False)  # our own file: numpy generator states inside
    trainer.load_state_dict(blob["trainer"])
    torch.set_rng_state(blob["torch_rng"])
    np.random.set_state(blob["numpy_rng"])
    return blob["rec"]


def _policy_payload(method, trainer, c):
    if method == "ppo":
        return {"kind": "sb3_ppo", "net": list(c["net"]), "state_dict": trainer.model.policy.state_dict(),
                "obs_stats": trainer.obs_stats()}
    p = trainer.policy
    return {"kind": "actor", "hidden": c["hidden"], "obs_norm": c["obs_norm"], "obs_dim": p.mlp.net[0].in_features,
            "action_dim": p.mlp.net[-2].out_features, "state_dict": p.state_dict()}


def load_policy(blob, env):
    """act(obs) -> action (torch) from a policy.pt payload, for env's spaces and float type."""
    if blob["kind"] in ("actor", "sine_mlp"):  # sine_mlp: a bare trajopt.SinePolicy (imitate.py saves those)
        if blob["kind"] == "actor":
            policy = Actor(blob["obs_dim"], blob["action_dim"], blob["hidden"], blob["obs_norm"])
        else:
            policy = trajopt.SinePolicy(blob["obs_dim"], blob["action_dim"], blob["hidden"])
        policy.load_state_dict(blob["state_dict"])
        return policy.to(env.dtype)
    if blob["kind"] == "sb3_ppo":
        from stable_baselines3.common.policies import ActorCriticPolicy

        from . import ppo
        net = blob["net"]
        policy = ActorCriticPolicy(env.single_observation_space, env.single_action_space, lambda _: 0.0,
                                   net_arch={"pi": net, "vf": net}, activation_fn=torch.nn.Tanh)
        policy.load_state_dict(blob["state_dict"])
        st = blob["obs_stats"]
        normalize = st and (lambda o: np.clip((o - st["mean"].numpy()) / np.sqrt(st["var"].numpy() + st["epsilon"]),
                                              -st["clip"], st["clip"]).astype(np.float32))
        return ppo.deterministic_actor(policy, normalize)
    raise ValueError(f"policy file kind {blob['kind']!r} is not one of ['actor', 'sine_mlp', 'sb3_ppo']")


def replay(path, out=None, seed=None):
    """Render one world following a saved policy (train.run's policy.pt) or saved open-loop
    actions (a dict with env, optional env_config and seed, and actions (1, steps, A), as
    trajopt's best_actions.pt) to a GIF or MP4 (by out's suffix; default: beside path, .gif),
    the world reset with seed (default: the file's, else 0). Returns the written path."""
    blob = torch.load(path, weights_only=True)
    seed = blob.get("seed", 0) if seed is None else seed
    if blob.get("env") not in TASKS:
        raise ValueError(f"{path}: key 'env' must name a registered environment, got {blob.get('env')!r}")
    out = out or os.path.splitext(path)[0] + ".gif"
    if not out.endswith((".gif", ".mp4")):
        raise ValueError(f"out must end in .gif or .mp4, got {out!r}")
    task = TASKS[blob["env"]](**blob.get("env_config", {}))
    actions = blob.get("actions")
    if actions is not None:
        frames = trajopt.replay_frames(task, torch.as_tensor(actions), seed)
    else:
        frames = _policy_frames(task, blob, seed)
    return (write_mp4 if out.endswith(".mp4") else write_gif)(out, frames)


def _policy_frames(task, blob, seed):
    env = DiffEnv(task, num_envs=1, autoreset=False)
    act = load_policy(blob, env)
    frames = []
    with torch.no_grad():
        obs, _ = env.reset(seed=seed)
        frames.append(task.draw(tuple(s[0].numpy() for s in env.get_state()["state"])))
        for _ in range(task.max_steps):
            a = act(obs)
            obs, *_ = env.step(a)
            frames.append(task.draw(tuple(s[0].numpy() for s in env.get_state()["state"]), a[0].numpy()))
    return frames


def experiment(config, methods=None, seeds=None, out=None, resume=False, progress=True, figure_path=None):
    """Run methods x seeds of a train config (defaults: its `methods` and `seeds`), one run()
    each under out/<method>/seed<seed>, then their figure (default out/curves.png).
    Returns {"runs": [summaries], "figure": path, "reach": reach(runs)}."""
    cfg = load_config(config)
    methods, seeds, out = methods or cfg["methods"], seeds if seeds is not None else cfg["seeds"], out or cfg["out"]
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; choose from {list(METHODS)}")
    runs = [run(config, m, seed=s, out=os.path.join(out, m, f"seed{s}"), resume=resume, progress=progress)
            for m in methods for s in seeds]
    path = figure(figure_path or os.path.join(out, "curves.png"), runs, cfg["env"])
    return {"runs": runs, "figure": path, "reach": reach(runs)}


def reach(runs, target_method="ppo"):
    """Per method, the env steps and seconds at which each seed's evaluation first reaches
    target_method's final return (mean over its seeds); None where it never does. Empty
    when no run of target_method is given."""
    finals = [r["final_return"] for r in runs if r["method"] == target_method]
    if not finals:
        return {}
    target = float(np.mean(finals))
    out = {"target_method": target_method, "target_return": target, "methods": {}}
    for r in runs:
        hit = next((c for c in r["curve"] if c[2] >= target), None)
        out["methods"].setdefault(r["method"], []).append(
            {"seed": r["seed"], "env_steps": hit and hit[0], "seconds": hit and hit[1]})
    return out


def _band(curves, col, log):
    """Mean, min and max over seeds of return against column col, on a shared grid where every
    seed has data (each seed's curve interpolated linearly)."""
    lo, hi = max(c[:, col][c[:, col] > 0].min() if log else c[0, col] for c in curves), min(c[-1, col] for c in curves)
    if not hi > lo:
        return None
    grid = np.geomspace(lo, hi, 100) if log else np.linspace(lo, hi, 100)
    ys = np.stack([np.interp(grid, c[:, col], c[:, 2]) for c in curves])
    return grid, ys.mean(0), ys.min(0), ys.max(0)


def figure(path, runs, title=None):
    """Return vs simulator env steps (log x) and vs wall-clock seconds: per method the mean over
    seeds with a min/max band; PPO's final mean return dashed. Returns path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    by_method = {}
    for r in runs:
        by_method.setdefault(r["method"], []).append(np.asarray(r["curve"], dtype=float))
    target = reach(runs).get("target_return")
    for ax, col, label, log in ((axes[0], 0, "simulator env steps (summed over worlds)", True),
                                (axes[1], 1, "wall-clock seconds (training)", False)):
        for i, (m, curves) in enumerate(by_method.items()):
            band = _band(curves, col, log)
            if band is None:
                continue
            x, mean, lo, hi = band
            ax.plot(x, mean, color=f"C{i}", label=f"{m} ({len(curves)} seeds)")
            ax.fill_between(x, lo, hi, color=f"C{i}", alpha=0.25)
        if target is not None:
            ax.axhline(target, color="grey", linestyle="--", label="PPO final return")
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("evaluation return")
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
