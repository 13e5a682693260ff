"""MassSpringWalker: a mass-spring robot rewarded for moving its centre of mass right."""
import numpy as np
import torch

from ..render.world import WorldRenderer, spring_beads
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
    L0 * (1 + c * a) for the spring's coefficient c. Held for `substeps` substeps. With
    `controller` set, DiffTaichi's sine-feature MLP runs inside the simulator every
    substep and the action is added to its output; its weights are `env.params["ctrl_*"]`.

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
                          gravity=c["gravity"], damping=c["damping"], ground=c["ground"], controller=c["controller"])

    def to_sim(self, action):
        """Actions are the simulator's controls as they are."""
        return action

    def initial_state(self, sim, rng):
        x, v, *clock = sim.initial_state()
        return (x + self.cfg["init_noise"] * rng.standard_normal((sim.B, 1, self.dim)), v, *clock)

    def observe(self, state, t):
        """Works on any leading shape: x, v of shape (..., N, dim), t an int or tensor."""
        x, v = state[0], state[1]
        c, cv = x.mean(-2), v.mean(-2)
        phase = phase_features(t, self.env_dt, self.cfg["omega"], self.cfg["phases"], x)
        return torch.cat([(x - c[..., None, :]).flatten(-2), v.flatten(-2), c[..., 1:2], cv, phase], -1)

    def reward(self, prev, state, action):
        return forward_reward(prev[0], state[0], action, self.env_dt, self.cfg["reward"])

    def draw(self, state, action=None):
        """Masses as dark spheres, springs as bead chains (grey passive, red contracting, blue
        extending), the ground; the view follows the robot (render/world.py)."""
        x = np.asarray(state[0])
        ground = self.cfg["ground"]["height"]
        if not hasattr(self, "_world"):
            self._world = WorldRenderer(self.dim, ground=ground, size=(256, 384), cell=0.1)
        a = np.zeros(len(self.design.springs))
        if action is not None:
            a = np.clip(np.where(self.design.actuator >= 0, np.asarray(action)[self.design.actuator], 0), -1, 1)
        tint = np.stack([0.47 + 0.47 * np.maximum(a, 0), np.full_like(a, 0.47), 0.47 + 0.47 * np.maximum(-a, 0)], -1)
        r = 0.25 * float(np.median(self.design.rest))
        beads, colors = spring_beads(x, self.design.springs, 0.4 * r, tint)
        c = np.concatenate([x, beads])
        radii = np.concatenate([np.full(len(x), r), np.full(len(beads), 0.4 * r)])
        colors = np.concatenate([np.full((len(x), 3), 0.15), colors])
        cx = float(x[:, 0].mean())
        view = (cx - 0.35, ground - 0.08, 0.8)
        if self.dim == 2:
            return self._world.frame(self._world.camera_2d(view), c, radii, colors)
        m = x.mean(0)
        return self._world.frame(self._world.camera_3d(m + np.array([0.1, 0.25, 0.7]), m), c, radii, colors)
