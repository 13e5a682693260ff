"""GoalWalker: the mass-spring walker told, per world, the velocity to walk at (Fang et al.'s
Complex Locomotion Skill Learning): one policy for all goals."""
import math

import numpy as np
import torch

from . import config as configs
from .walker import WalkerTask


class GoalWalkerTask(WalkerTask):
    """## Description
    MassSpringWalker (configs/robots/) asked to move its centre of mass at a target
    velocity drawn per world at every reset; the target is part of the observation, so
    one policy learns every gait speed and direction.

    ## Action space
    Box(-1, 1, (A,)): as MassSpringWalker, one value per actuated spring.

    ## Observation space
    Box(-inf, inf, (walker obs + dim - 1,)): MassSpringWalker's observation, then the
    target velocity: its x component (2D) or its (x, z) components (3D).

    ## Rewards
    -tracking * |horizontal centre velocity - target|^2 - reward.ctrl * mean(action^2).

    ## Starting state
    The design's rest pose (plus init_noise), zero velocity; the target uniform in
    [-max_speed, max_speed] along x (2D), or a speed uniform in [0, max_speed] in a
    uniformly random ground direction (3D).

    ## Episode end
    Truncated after max_steps env steps; never terminated.

    ## Arguments
    Any key of configs/goal_walker.yaml or configs/mass_spring_walker.yaml, e.g.
    max_speed=0.05, robot="walker_3d"; config="file.yaml" reads overrides of either kind.
    Unknown keys raise ValueError. The targets live on the task (`goal`, (B, dim - 1)),
    drawn whenever the env draws initial states; a reset of some worlds (mask) keeps the
    others' targets (episode_keys).

    ## Version history
    v0: first release.
    """
    episode_keys = ("goal",)  # per-world episode data kept on the task (checkpoints save it)

    def __init__(self, config=None, **overrides):
        own, walker = configs.read_yaml("goal_walker"), configs.read_yaml("mass_spring_walker")
        goal_cfg, walker_cfg = own, walker
        for source in (configs.read_yaml(config) if config is not None else {}, overrides):
            unknown = sorted(set(source) - set(own) - set(walker))
            if unknown:
                raise ValueError(f"unknown config key {unknown[0]!r}; allowed: {sorted(set(own) | set(walker))}")
            goal_cfg = configs.merge(goal_cfg, {k: v for k, v in source.items() if k in own})
            walker_cfg = configs.merge(walker_cfg, {k: v for k, v in source.items() if k not in own})
        configs.positive(goal_cfg, "max_speed", "tracking")
        super().__init__(**walker_cfg)
        self.goal_cfg, self.goal = goal_cfg, None
        self.obs_dim += self.dim - 1
        self._horizontal = [0] if self.dim == 2 else [0, 2]

    def initial_state(self, sim, rng):
        state = super().initial_state(sim, rng)
        self.goal = torch.as_tensor(self.sample_goals(rng, sim.B))
        return state

    def sample_goals(self, rng, n):
        """n target velocities, (n, dim - 1) in m/s."""
        vmax = self.goal_cfg["max_speed"]
        if self.dim == 2:
            return rng.uniform(-vmax, vmax, (n, 1))
        speed, angle = rng.uniform(0.0, vmax, n), rng.uniform(0.0, 2 * math.pi, n)
        return np.stack([speed * np.cos(angle), speed * np.sin(angle)], -1)

    def _goal_like(self, x):
        """The goals broadcast against x (B, ..., N, dim): (B, 1.., dim - 1)."""
        if self.goal is None:
            raise RuntimeError("GoalWalker: no goals yet; reset the env first")
        g = self.goal.to(device=x.device, dtype=x.dtype)
        return g.view((g.shape[0],) + (1,) * (x.dim() - 3) + (g.shape[1],))

    def observe(self, state, t):
        obs = super().observe(state, t)
        return torch.cat([obs, self._goal_like(state[0]).expand(obs.shape[:-1] + (self.dim - 1,))], -1)

    def reward(self, prev, state, action):
        h = self._horizontal
        v = (state[0][..., h].mean(-2) - prev[0][..., h].mean(-2)) / self.env_dt
        err = ((v - self._goal_like(state[0])) ** 2).sum(-1)
        return -self.goal_cfg["tracking"] * err - self.cfg["reward"]["ctrl"] * (action ** 2).mean(-1)
