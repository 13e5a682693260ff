"""Gymnasium faces of a task: one world (gymnasium.Env) and N worlds in one launch (VectorEnv)."""
import gymnasium as gym
import numpy as np
import torch

from .diff_env import DiffEnv


def _checked(action, shape):
    a = np.asarray(action, dtype=np.float64)
    if a.shape != shape:
        raise ValueError(f"action must have shape {shape}, got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"action contains NaN/Inf at index {np.argwhere(~np.isfinite(a))[0].tolist()}")
    return np.clip(a, -1.0, 1.0)


class GymEnv(gym.Env):
    """numpy in, numpy out; actions are clipped to [-1, 1]."""
    metadata = {"render_modes": ["rgb_array"], "render_fps": 25}

    def __init__(self, task, render_mode=None):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.task, self.render_mode = task, render_mode
        self.diff = DiffEnv(task, num_envs=1, autoreset=False)
        self.action_space, self.observation_space = self.diff.single_action_space, self.diff.single_observation_space

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        with torch.no_grad():
            obs, _ = self.diff.reset(seed=int(self.np_random.integers(2 ** 31)))
        return obs[0].cpu().numpy().astype(np.float32), {}

    def step(self, action):
        a = _checked(action, self.action_space.shape)
        with torch.no_grad():
            obs, rew, term, trunc, _ = self.diff.step(torch.as_tensor(a[None]))
        return obs[0].cpu().numpy().astype(np.float32), float(rew[0]), bool(term[0]), bool(trunc[0]), {}

    def render(self):
        if self.render_mode == "rgb_array":
            return self.task.draw(tuple(s[0].detach().cpu().numpy() for s in self.diff.state))
        return None


class VecEnv(gym.vector.VectorEnv):
    """N worlds stepped in one kernel launch; same-step autoreset (final obs in info)."""
    metadata = {"render_modes": ["rgb_array"], "render_fps": 25,
                "autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}

    def __init__(self, task, num_envs=1, render_mode=None):
        self.task, self.num_envs, self.render_mode = task, int(num_envs), render_mode
        self.diff = DiffEnv(task, num_envs=num_envs)
        self.single_action_space, self.single_observation_space = self.diff.single_action_space, \
            self.diff.single_observation_space
        self.action_space, self.observation_space = self.diff.action_space, self.diff.observation_space

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        with torch.no_grad():
            obs, _ = self.diff.reset(seed=seed)
        return obs.cpu().numpy().astype(np.float32), {}

    def step(self, actions):
        a = _checked(actions, self.action_space.shape)
        with torch.no_grad():
            obs, rew, term, trunc, info = self.diff.step(torch.as_tensor(a))
        out = {}
        if "final_obs" in info:
            out = {"final_obs": info["final_obs"].cpu().numpy().astype(np.float32),
                   "_final_obs": info["_final_obs"].cpu().numpy()}
        return (obs.cpu().numpy().astype(np.float32), rew.cpu().numpy().astype(np.float64), term.cpu().numpy(),
                trunc.cpu().numpy(), out)

    def render(self):
        return [self.task.draw(tuple(s[b].detach().cpu().numpy() for s in self.diff.state)) for b in range(self.num_envs)]
