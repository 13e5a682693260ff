"""The differentiable face of an environment: batched torch tensors in and out.

A task object supplies the physics and the rules (Brax style, physics never lives here):
make_sim(num_worlds), initial_state(sim, rng), to_sim(action) (actions to simulator
controls), observe(state, t), reward(prev, state, action), action_dim, obs_dim, substeps,
max_steps, and optionally terminated(state) (a bool per world) and episode_keys (names of
per-world (B, ...) tensors the task draws in initial_state, e.g. a goal). t is each world's env-step
count, an int or a (B,) tensor. Gradients flow from observations and rewards to actions, to
the state passed to reset(), and to `env.params`.
"""
import gymnasium as gym
from gymnasium.vector.utils import batch_space
import numpy as np
import torch

from ..sims import torch_ops


def spaces(task):
    """One world's action space (Box(-1, 1)) and observation space, from the task's sizes."""
    act = gym.spaces.Box(-1.0, 1.0, (task.action_dim,), np.float32)
    obs = gym.spaces.Box(-np.inf, np.inf, (task.obs_dim,), np.float32)
    return act, obs


class DiffEnv:
    """Spaces as a Gymnasium vector env has them: single_action_space and
    single_observation_space for one world, action_space and observation_space batched
    over num_envs (the tensors themselves are torch)."""

    def __init__(self, task, num_envs=1, autoreset=True, clip=None, device=None):
        """clip: None raises on a NaN/Inf gradient; a number clips the adjoint per step
        (sims/torch_ops.step). device: where observations, rewards and the state live
        (default the CPU); the simulator copies in and out of Taichi's own memory."""
        torch_ops.check_clip(clip)
        self.task, self.num_envs, self.autoreset, self.clip = task, int(num_envs), autoreset, clip
        if self.num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs!r}")
        self.single_action_space, self.single_observation_space = spaces(task)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.sim = task.make_sim(self.num_envs)
        self.dtype = torch.float64 if self.sim.np_dtype == np.float64 else torch.float32
        self.device = torch.device(device or "cpu")
        self.params = {k: torch.as_tensor(v, dtype=self.dtype, device=self.device)
                       for k, v in self.sim.get_params().items()}
        self.rng = np.random.default_rng()
        self._never = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        self.state, self.t = None, None

    def reset(self, seed=None, state=None, mask=None):
        """Start an episode in every world, or only where `mask` (bool (num_envs,)) is true.
        Pass `state` (tensors) to differentiate w.r.t. it."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        kept = {k: getattr(self.task, k) for k in getattr(self.task, "episode_keys", ())} if mask is not None else {}
        if state is None:
            state = tuple(torch.as_tensor(s, dtype=self.dtype, device=self.device)
                          for s in self.task.initial_state(self.sim, self.rng))
        state = tuple(state)
        if mask is None:
            self.state, self.t = state, torch.zeros(self.num_envs, dtype=torch.long, device=self.device)
        else:
            mask = torch.as_tensor(mask, dtype=torch.bool, device=self.device)
            if tuple(mask.shape) != (self.num_envs,):
                raise ValueError(f"mask must have shape ({self.num_envs},), got {tuple(mask.shape)}")
            if self.state is None:
                raise RuntimeError("call reset() without a mask before resetting some worlds")
            where = lambda n, o: torch.where(mask.to(n.device).view((-1,) + (1,) * (n.dim() - 1)), n, o)
            self.state = tuple(where(n, o) for n, o in zip(state, self.state))
            self.t = torch.where(mask, 0, self.t)
            for k, old in kept.items():  # per-world episode data on the task: new only where reset
                if old is not None:
                    setattr(self.task, k, where(getattr(self.task, k), old))
        return self.task.observe(self.state, self.t), {}

    def step(self, action):
        """Advance every world one env step. Returns obs, reward, terminated, truncated, info
        (per world). Worlds whose episode ends are reset at once (unless autoreset=False):
        info["final_obs"] and info["final_state"] hold every world's observation and state
        before that reset (still attached to the graph), info["_final_obs"] marks the worlds
        that ended (Gymnasium's same-step autoreset)."""
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        action = torch.as_tensor(action, dtype=self.dtype, device=self.device)
        if tuple(action.shape) != (self.num_envs, self.task.action_dim):
            raise ValueError(f"action must have shape {(self.num_envs, self.task.action_dim)}, got {tuple(action.shape)}")
        prev = self.state
        self.state = torch_ops.step(self.sim, prev, self.task.to_sim(action), self.params, self.task.substeps,
                                    clip=self.clip)
        self.t = self.t + 1
        obs = self.task.observe(self.state, self.t)
        reward = self.task.reward(prev, self.state, action)
        terminated = self.task.terminated(self.state) if hasattr(self.task, "terminated") else self._never
        truncated = self.t >= self.task.max_steps
        info = {}
        done = terminated | truncated
        if self.autoreset and bool(done.any()):
            info = {"final_obs": obs, "final_state": self.state, "_final_obs": done}
            obs, _ = self.reset(mask=None if bool(done.all()) else done)
        return obs, reward, terminated, truncated, info

    def detach(self):
        """Cut the graph: later gradients stop at the current state."""
        self.state = tuple(s.detach() for s in self.state)

    def get_state(self):
        return {"state": self.state, "t": self.t.clone()}

    def set_state(self, snapshot):
        self.state = tuple(snapshot["state"])
        self.t = torch.as_tensor(snapshot["t"], dtype=torch.long, device=self.device).expand(self.num_envs).clone()


def progress(t, max_steps, like):
    """Each world's fraction of the episode, (..., 1) shaped like `like`'s batch (like: (..., k));
    t: an int or a (B,) tensor of env steps."""
    frac = torch.as_tensor(t, dtype=like.dtype, device=like.device) / max_steps
    return frac[..., None].expand(like.shape[:-1] + (1,))
