"""MassSpringWalker: a mass-spring robot rewarded for moving its centre of mass right."""
import numpy as np
import torch

from ..render.canvas import draw_mass_spring
from ..sims import adjoint, designs
from ..sims.mass_spring import MassSpring
from . import config as configs
from .locomotion import forward_reward, phase_features


class WalkerTask:
    """## Description
    A DiffTaichi-style soft robot of point masses and actuated springs on a soft ground
    with friction (configs/robots/). Actions set each muscle's target length.

    ## Action space
    Box(-1, 1, (A,)): one value per actuated spring; its rest length becomes
    L0 * (1 + c * a) for the spring's coefficient c. Held for `substeps` substeps.

    ## Observation space
    Box(-inf, inf, (2 N dim + 1 + dim + phases,)): positions relative to the centre of
    mass, velocities, centre height, centre velocity, and sine features of time
    sin(omega t + 2 pi j / phases) that let a policy keep a gait's rhythm.

    ## Rewards
    forward * (centre x velocity) - ctrl * mean(action^2), weights in the config.

    ## Starting state
    The design's rest pose (plus init_noise), zero velocity.

    ## Episode end
    Truncated after max_steps env steps; never terminated.

    ## Arguments
    Any key of configs/mass_spring_walker.yaml, e.g. robot="walker_b", dt=0.002;
    config="file.yaml" reads overrides from a file. Unknown keys raise ValueError.

    ## Version history
    v0: first release.
    """

    def __init__(self, config=None, **overrides):
        cfg = configs.load("mass_spring_walker", config, **overrides)
        configs.positive(cfg, "dt")
        configs.positive(cfg, "substeps", "max_steps", kind=int)
        if cfg["init_noise"] < 0:
            raise ValueError(f"config key 'init_noise' must be >= 0, got {cfg['init_noise']!r}")
        robot = cfg["robot"]
        self.design = designs.build(robot if isinstance(robot, dict) else configs.read_yaml(robot, "diffsuite.configs.robots"))
        if self.design.n_actuators == 0:
            raise ValueError(f"config key 'robot': design {robot!r} has no actuated springs to walk with")
        self.cfg, self.substeps, self.max_steps = cfg, int(cfg["substeps"]), int(cfg["max_steps"])
        self.dim, self.N, self.action_dim = self.design.dim, len(self.design.positions), self.design.n_actuators
        self.obs_dim = 2 * self.N * self.dim + 1 + self.dim + int(cfg["phases"])
        self.env_dt = cfg["dt"] * self.substeps

    def make_sim(self, num_worlds):
        c = self.cfg
        # state + adjoint + spring forces per frame, in bytes
        frame_bytes = num_worlds * (4 * self.N * self.dim + 2 * len(self.design.springs) * self.dim) * 8
        K = int(c["segment"]) or adjoint.default_segment(self.substeps * self.max_steps, frame_bytes)
        return MassSpring(self.design, num_worlds=num_worlds, dt=c["dt"], segment=max(K, 1),
                          gravity=c["gravity"], damping=c["damping"], ground=c["ground"])

    def to_sim(self, action):
        """Actions are the simulator's controls as they are."""
        return action

    def initial_state(self, sim, rng):
        x, v = sim.initial_state()
        return x + self.cfg["init_noise"] * rng.standard_normal((sim.B, 1, self.dim)), v

    def observe(self, state, t):
        """Works on any leading shape: x, v of shape (..., N, dim), t an int or tensor."""
        x, v = state
        c, cv = x.mean(-2), v.mean(-2)
        phase = phase_features(t, self.env_dt, self.cfg["omega"], self.cfg["phases"], x)
        return torch.cat([(x - c[..., None, :]).flatten(-2), v.flatten(-2), c[..., 1:2], cv, phase], -1)

    def reward(self, prev, state, action):
        return forward_reward(prev[0], state[0], action, self.env_dt, self.cfg["reward"])

    def draw(self, state, action=None):
        x = state[0]
        cx = float(x[:, 0].mean())
        act = None if action is None else np.where(self.design.actuator >= 0, np.asarray(action)[self.design.actuator], 0)
        return draw_mass_spring(x, self.design.springs, act, ground=self.cfg["ground"]["height"],
                                view=(cx - 0.35, 0.02, 0.8))
