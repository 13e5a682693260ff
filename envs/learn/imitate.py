"""Imitation from one demonstration through the simulator (ILD, Chen et al. 2023).

A policy on observations is rolled out through the differentiable face and trained by
gradient descent through the whole episode (BPTT) so that its states match one recorded
state trajectory; it never sees the demonstration's actions. Two states compare by the
positions of the body (state[0], (P, dim): masses or particles), as
- `points`: each point against its own counterpart, the mean Euclidean distance;
- `chamfer`: point sets, order-free: the symmetric mean nearest-neighbour distance;
plus, where the state holds tools ("pose"), the mean distance of the tools' poses to the
demonstrated ones (the orientation as an arc at the body's size): without it a policy whose
tools miss the body gets no gradient.
Two trajectories compare step by step, or, given `alpha`, as ILD's Chamfer-alpha between
sets of states: alpha * (each rollout state to its nearest demonstrated state) + (each
demonstrated state to its nearest rollout state), which forgives a gait that runs ahead or
behind. Errors and losses are relative to the demonstration's size (the radius of gyration
of its first positions), so the same motion in other units scores the same.
"""
import copy
import json
import os
import time

import numpy as np
import torch
from tqdm import tqdm

from ...render.io import write_gif
from .. import config
from ..diff_env import DiffEnv
from . import plots
from .trajopt import SinePolicy, setup

DISTANCES = ("points", "chamfer")


def demo_actions(task, spec):
    """The demonstration's open-loop actions (steps, A) from a config's `demo` entry:
    kind sine: a_j = amplitude * sin(omega * time + 2 pi j / A) (a travelling wave along the
    actuators); kind keyframes: `actions` (K lists of A numbers in [-1, 1]), each held for an
    equal share of the episode."""
    T, A = task.max_steps, task.action_dim
    if spec["kind"] == "sine":
        amp = float(spec["amplitude"])
        if not 0 < amp <= 1:
            raise ValueError(f"config key 'demo.amplitude' must be in (0, 1], got {spec['amplitude']!r}")
        time_ = (np.arange(T) * task.substeps * task.cfg["dt"])[:, None]
        return amp * np.sin(spec["omega"] * time_ + 2 * np.pi * np.arange(A) / A)
    if spec["kind"] == "keyframes":
        keys = np.asarray(spec["actions"], float)
        if keys.ndim != 2 or keys.shape[1] != A or len(keys) == 0 or not np.isfinite(keys).all() \
                or np.abs(keys).max() > 1:
            raise ValueError(f"config key 'demo.actions' must be K >= 1 lists of {A} numbers in [-1, 1], "
                             f"got {spec['actions']!r}")
        return keys[np.arange(T) * len(keys) // T]
    raise ValueError(f"config key 'demo.kind' must be 'sine' or 'keyframes', got {spec['kind']!r}")


def record_demo(task, actions, seed=0):
    """Play open-loop actions (steps, A) in one world from the reset of `seed`; returns the
    state trajectory: one tensor per state component, (steps + 1, ...), the start first."""
    actions = torch.as_tensor(np.asarray(actions, float))
    if actions.shape != (task.max_steps, task.action_dim):
        raise ValueError(f"actions must have shape {(task.max_steps, task.action_dim)}, got {tuple(actions.shape)}")
    env = DiffEnv(task, num_envs=1, autoreset=False)
    with torch.no_grad():
        env.reset(seed=seed)
        states = _play(env, lambda obs, t: actions[t:t + 1].to(env.dtype))[0]
    env.sim.free()
    return states


def _play(env, act):
    """Step env (already reset) for an episode with act(obs, t) -> (1, A); returns the state
    trajectory (as record_demo's) and the actions (steps, A), attached to the graph."""
    obs = env.task.observe(env.state, env.t)
    traj, actions = [env.state], []
    for t in range(env.task.max_steps):
        a = act(obs, t)
        obs, *_ = env.step(a)
        traj.append(env.state)
        actions.append(a[0])
    states = tuple(torch.stack([s[c][0] for s in traj]) for c in range(len(traj[0])))
    return states, torch.stack(actions)


def gyration_radius(x):
    """The size of a configuration x (P, dim): RMS distance of its points to their centre."""
    return float(((x - x.mean(-2, keepdim=True)) ** 2).sum(-1).mean().sqrt())


def state_distance(x, y, distance="points"):
    """Distance between configurations x (..., P, dim) and y (..., Q, dim), broadcast over
    the leading axes: `points` (P == Q) or `chamfer` (any P, Q)."""
    if distance == "points":
        return torch.linalg.vector_norm(x - y, dim=-1).mean(-1)
    if distance == "chamfer":
        d = torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")  # the faster mm form cancels digits
        return 0.5 * (d.min(-1).values.mean(-1) + d.min(-2).values.mean(-1))
    raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")


def trajectory_loss(a, b, distance="points", alpha=None):
    """Mismatch of a trajectory a = (body (T, P, dim), tools (T, n, dim) or None) against b:
    step by step when alpha is None, else ILD's Chamfer-alpha between the two sets of states
    (T^2 state distances: with `chamfer` on many particles, keep episodes short)."""
    if alpha is None:
        return _distance(a, b, distance).mean()
    d = _distance(tuple(None if x is None else x[:, None] for x in a),
                  tuple(None if y is None else y[None] for y in b), distance)  # (T, T): rollout x demo step
    return alpha * d.min(1).values.mean() + d.min(0).values.mean()


def _distance(a, b, distance):
    d = state_distance(a[0], b[0], distance)
    return d if a[1] is None else d + state_distance(a[1], b[1])


def positions(sim, states, scale):
    """(body, tools) of a state trajectory (record_demo's layout) after its start: state[0]
    (T, P, dim), and where the state holds "pose", the tools' poses (T, n, pose) with their
    orientation (angle or quaternion) times `scale`, an arc length at the body's size."""
    body = states[0][1:]
    if "pose" not in sim.state_names:
        return body, None
    pose, dim = states[sim.state_names.index("pose")][1:], body.shape[-1]
    return body, torch.cat([pose[..., :dim], scale * pose[..., dim:]], -1)


def errors(xs, demo, distance, scale):
    """Relative state errors of positions xs against demo (T, P, dim): at the final step and
    the mean over the episode."""
    d = state_distance(xs, demo, distance) / scale
    return {"final": float(d[-1]), "mean": float(d.mean())}


def imitate(task, demo_states, iterations=100, lr=0.01, seed=0, progress=True, hidden=32, distance="points",
            alpha=None, clip=1.0):
    """Train a policy (trajopt.SinePolicy: observation -> tanh MLP) whose rollout from the
    demonstration's first state matches its positions demo_states[0][1:] (record_demo's
    layout), by Adam on the loss of trajectory_loss over the whole episode, divided by the
    demonstration's size. clip: the policy gradient's largest norm.

    Returns a dict: curve [(iteration, loss, final error, mean error)], the best iteration's
    `errors` of the body and `tool_errors` (None without tools; relative, see errors()),
    `states` (as demo_states) and `actions` (steps, A), `policy` (its weights),
    `initial_errors` (the untrained policy), `noop_errors` (zero actions), `scale` and
    `simulated_substeps` (2 episodes per iteration: forward, backward)."""
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    if alpha is not None and not alpha > 0:
        raise ValueError(f"alpha must be None or a positive number, got {alpha!r}")
    env = DiffEnv(task, num_envs=1, autoreset=False)
    demo = tuple(torch.as_tensor(s, dtype=env.dtype) for s in demo_states)
    if demo[0].shape[0] != task.max_steps + 1:
        raise ValueError(f"demo_states must hold {task.max_steps + 1} states (start included), "
                         f"got {demo[0].shape[0]}")
    scale = gyration_radius(demo[0][0])
    target = positions(env.sim, demo, scale)
    start = tuple(s[:1] for s in demo)
    torch.manual_seed(seed)
    policy = SinePolicy(task.obs_dim, task.action_dim, hidden).to(env.dtype)
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    curve, best = [], None
    for it in tqdm(range(iterations), desc="imitate", disable=not progress):
        env.reset(state=start)
        states, actions = _play(env, lambda obs, t: policy(obs))
        now = positions(env.sim, states, scale)
        loss = trajectory_loss(now, target, distance, alpha) / scale
        if not torch.isfinite(loss):
            raise FloatingPointError(f"imitation loss is {loss.item()} at iteration {it}")
        err = errors(now[0].detach(), target[0], distance, scale)
        curve.append((it, loss.item(), err["final"], err["mean"]))
        if best is None or loss.item() < best["loss"]:
            tools = None if now[1] is None else errors(now[1].detach(), target[1], "points", scale)
            best = {"loss": loss.item(), "errors": err, "tool_errors": tools, "actions": actions.detach(),
                    "states": tuple(s.detach() for s in states), "weights": copy.deepcopy(policy.state_dict())}
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), clip)
        opt.step()
    with torch.no_grad():
        env.reset(state=start)
        noop = _play(env, lambda obs, t: torch.zeros(1, task.action_dim, dtype=env.dtype))[0]
    env.sim.free()
    policy.load_state_dict(best["weights"])
    return {"curve": curve, "best_loss": best["loss"], "errors": best["errors"], "tool_errors": best["tool_errors"],
            "states": best["states"], "actions": best["actions"], "policy": policy, "scale": scale,
            "initial_errors": {"final": curve[0][2], "mean": curve[0][3]},
            "noop_errors": errors(noop[0][1:], target[0], distance, scale),
            "simulated_substeps": 2 * task.substeps * task.max_steps * iterations}


def side_by_side(task, demo_states, states, demo_acts=None, actions=None):
    """Frames of the demonstration (left) and the imitation (right), one per env step, each
    drawn with the action that led to it (steps, A) where given. A view that follows its
    robot shows the other's lead or lag against the floor's tiles."""
    frames = []
    for t in range(demo_states[0].shape[0]):
        act = lambda a: None if a is None or t == 0 else np.asarray(a[t - 1])
        left = task.draw(tuple(np.asarray(s[t]) for s in demo_states), act(demo_acts))
        right = task.draw(tuple(np.asarray(s[t]) for s in states), act(actions))
        gap = np.full((left.shape[0], 4) + left.shape[2:], 255 if left.dtype == np.uint8 else 1.0, left.dtype)
        frames.append(np.concatenate([left, gap, right], 1))
    return frames


DEFAULTS = config.read_yaml("imitate_walker")


def experiment(cfg_path, out=None, iterations=None, progress=True):
    """Run an imitation config (configs/imitate_*.yaml): record the demonstration, imitate
    it, write loss.png (loss and relative errors per iteration), imitation.gif (demo left,
    imitation right), policy.pt (kind "sine_mlp": trajopt.SinePolicy's sizes and weights, and
    the env) and summary.json under the output folder. Returns the summary."""
    cfg, task, out = setup(DEFAULTS, cfg_path, out)
    t0 = time.perf_counter()
    acts = demo_actions(task, cfg["demo"])
    demo = record_demo(task, acts, cfg["seed"])
    r = imitate(task, demo, iterations or cfg["iterations"], cfg["lr"], cfg["seed"], progress, cfg["hidden"],
                cfg["distance"], cfg["alpha"], cfg["clip"])
    seconds = time.perf_counter() - t0
    col = lambda k: [(c[0], c[k]) for c in r["curve"]]
    plots.curves(os.path.join(out, "loss.png"),
                 [("iteration", "loss (relative to the demo's size)", {"loss": col(1)}),
                  ("iteration", "state error / demo size", {"final step": col(2), "episode mean": col(3)})],
                 f"imitating one demonstration: {cfg['env']}",
                 hline=(r["noop_errors"]["mean"], "no action, episode mean"))
    write_gif(os.path.join(out, "imitation.gif"), side_by_side(task, demo, r["states"], acts, r["actions"]))
    p = r["policy"]  # trajopt.SinePolicy's sizes and weights, with the env to replay it in
    torch.save({"kind": "sine_mlp", "hidden": cfg["hidden"], "obs_dim": task.obs_dim, "action_dim": task.action_dim,
                "state_dict": p.state_dict(), "env": cfg["env"], "env_config": cfg["env_config"],
                "method": "imitate", "seed": cfg["seed"]}, os.path.join(out, "policy.pt"))
    summary = {"env": cfg["env"], "out": out, "env_config": cfg["env_config"], "seed": cfg["seed"],
               "distance": cfg["distance"], "alpha": cfg["alpha"], "iterations": len(r["curve"]),
               "scale": r["scale"], "errors": r["errors"], "tool_errors": r["tool_errors"],
               "initial_errors": r["initial_errors"], "noop_errors": r["noop_errors"], "best_loss": r["best_loss"],
               "simulated_substeps": r["simulated_substeps"], "seconds": round(seconds, 2),
               "curve": [dict(zip(("iteration", "loss", "final_error", "mean_error"), c)) for c in r["curve"]]}
    with open(os.path.join(out, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    return summary
