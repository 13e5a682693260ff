"""The differentiable face of an environment: batched torch tensors in and out.

A task object supplies the physics and the rules (Brax style, physics never lives here):
make_sim(num_worlds), initial_state(sim, rng), to_sim(action) (actions to simulator
controls), observe(state, t), reward(prev, state, action), action_dim, obs_dim, substeps,
max_steps. Gradients flow from observations and
rewards to actions, to the state passed to reset(), and to `env.params`.
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

    def __init__(self, task, num_envs=1, autoreset=True, clip=None):
        """clip: None raises on a NaN/Inf gradient; a number clips the adjoint per step
        (sims/torch_ops.step)."""
        torch_ops.check_clip(clip)
        self.task, self.num_envs, self.autoreset, self.clip = task, int(num_envs), autoreset, clip
        if self.num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs!r}")
        self.single_action_space, self.single_observation_space = spaces(task)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.sim = task.make_sim(self.num_envs)
        self.dtype = torch.float64 if self.sim.np_dtype == np.float64 else torch.float32
        self.params = {k: torch.as_tensor(v, dtype=self.dtype) for k, v in self.sim.get_params().items()}
        self.rng = np.random.default_rng()
        self.state, self.t = None, 0

    def reset(self, seed=None, state=None):
        """Start an episode in every world. Pass `state` (tensors) to differentiate w.r.t. it."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        if state is None:
            state = tuple(torch.as_tensor(s, dtype=self.dtype) for s in self.task.initial_state(self.sim, self.rng))
        self.state, self.t = tuple(state), 0
        return self.task.observe(self.state, self.t), {}

    def step(self, action):
        """Advance every world one env step. Returns obs, reward, terminated, truncated, info.

        At the episode's end every world is reset (unless autoreset=False); info["final_obs"] and info["final_state"]
        hold the observation and state before that reset (still attached to the graph).
        """
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        action = torch.as_tensor(action, dtype=self.dtype)
        if tuple(action.shape) != (self.num_envs, self.task.action_dim):
            raise ValueError(f"action must have shape {(self.num_envs, self.task.action_dim)}, got {tuple(action.shape)}")
        prev = self.state
        self.state = torch_ops.step(self.sim, prev, self.task.to_sim(action), self.params, self.task.substeps,
                                    clip=self.clip)
        self.t += 1
        obs = self.task.observe(self.state, self.t)
        reward = self.task.reward(prev, self.state, action)
        terminated = torch.zeros(self.num_envs, dtype=torch.bool)
        truncated = torch.full((self.num_envs,), self.t >= self.task.max_steps)
        info = {}
        if self.autoreset and self.t >= self.task.max_steps:
            info = {"final_obs": obs, "final_state": self.state}
            obs, _ = self.reset()
        return obs, reward, terminated, truncated, info

    def detach(self):
        """Cut the graph: later gradients stop at the current state."""
        self.state = tuple(s.detach() for s in self.state)

    def get_state(self):
        return {"state": self.state, "t": self.t}

    def set_state(self, snapshot):
        self.state, self.t = tuple(snapshot["state"]), int(snapshot["t"])
