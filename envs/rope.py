"""Rope shaping: push a rope lying on the ground into a target arc with a kinematic pusher."""
import numpy as np
import torch

from ..render.world import WorldRenderer
from ..sims import adjoint, designs
from ..sims.mass_spring import MassSpring
from . import config as configs
from .diff_env import progress


class RopeShapeTask:
    """## Description
    A rope of point masses (stretch and bend springs) lies straight on the ground, seen from
    above (configs/rope_shape.yaml). A rigid pusher, a kinematic SDF collider of the
    mass-spring simulator, slides over the ground and pushes it into a target arc (more
    pushers: more entries in `tools`). Friction holds the rope where a pusher leaves it.

    ## Action space
    Box(-1, 1, (2 * tools,)): each pusher's x and z velocity, scaled by `max_speed`, held
    for `substeps` substeps. They neither lift nor turn.

    ## Observation space
    Box(-inf, inf, (2 n + 2 tools + 1,)): each mass's x-z offset from its target point, each
    pusher's x-z position and the episode's progress in [0, 1].

    ## Rewards
    shape * (D(before) - D(after)) / D(start) - ctrl * mean(action^2), where D is the mean
    squared distance of the masses to their target points: an episode's return is the
    fraction of the distance removed (1: the rope lies on the target).

    ## Starting state
    The rope straight along x at rest, the pushers at their configured poses.

    ## Episode end
    Truncated after max_steps env steps; never terminated.

    ## Arguments
    Any key of configs/rope_shape.yaml, e.g. max_steps=20; config="file.yaml" reads
    overrides from a file. Unknown keys raise ValueError.

    ## Version history
    v0: first release.
    """

    def __init__(self, config=None, **overrides):
        cfg = configs.load("rope_shape", config, **overrides)
        configs.positive(cfg, "dt", "target_arc")
        configs.positive(cfg, "substeps", "max_steps", kind=int)
        self.cfg, self.substeps, self.max_steps = cfg, int(cfg["substeps"]), int(cfg["max_steps"])
        self.design = designs.build(cfg["rope"])
        if self.design.dim != 3:
            raise ValueError(f"config key 'rope.origin' must have 3 numbers (the rope lies on the x-z plane), "
                             f"got {cfg['rope']['origin']}")
        speed = np.asarray(cfg["max_speed"], float)
        if speed.shape != (2,):
            raise ValueError(f"config key 'max_speed' needs 2 numbers (|vx|, |vz|), got {cfg['max_speed']}")
        self.n_tools = len(cfg["tools"])
        self.speed = torch.as_tensor([speed[0], 0, speed[1], 0, 0, 0] * self.n_tools)
        self.N = len(self.design.positions)
        self.action_dim, self.obs_dim = 2 * self.n_tools, 2 * self.N + 2 * self.n_tools + 1
        self.target = torch.as_tensor(self._arc())
        self.d0 = self._distance(torch.as_tensor(self.design.positions[None]))[0].item()

    def _arc(self):
        """Target points: the rope bent into an arc of the same length, its middle shifted along +z."""
        x0 = self.design.positions
        s = np.linalg.norm(np.diff(x0, axis=0), axis=1).cumsum()
        s = np.r_[0, s] - s[-1] / 2  # arc length from the middle
        theta, mid = float(self.cfg["target_arc"]), x0.mean(0)
        R = s[-1] * 2 / theta
        out = np.repeat(mid[None], self.N, 0)
        out[:, 0] += R * np.sin(s / R)
        out[:, 2] += self.cfg["target_shift"] - R * (1 - np.cos(s / R))
        return out

    def make_sim(self, num_worlds):
        c = self.cfg
        K = int(c["segment"]) or adjoint.default_segment(self.substeps * self.max_steps)
        return MassSpring(self.design, num_worlds=num_worlds, dt=c["dt"], segment=K, gravity=c["gravity"],
                          damping=c["damping"], ground=c["ground"], colliders=c["tools"])

    def initial_state(self, sim, rng):
        return sim.initial_state()

    def to_sim(self, action):
        """(vx, vz) per pusher in [-1, 1] -> its linear and angular velocity."""
        idx = [2 * t + i for t in range(self.n_tools) for i in (0, 0, 1, 0, 0, 0)]
        return action[..., idx] * self.speed.to(action.dtype)

    def _distance(self, x):
        d = (x - self.target.to(x.dtype))[..., [0, 2]]
        return (d ** 2).sum(-1).mean(-1)

    def observe(self, state, t):
        x, pose = state[0], state[2]
        prog = progress(t, self.max_steps, x[..., 0, :])
        off = (x - self.target.to(x.dtype))[..., [0, 2]]
        return torch.cat([off.flatten(-2), pose[..., [0, 2]].flatten(-2), prog], -1)

    def reward(self, prev, state, action):
        w = self.cfg["reward"]
        gain = (self._distance(prev[0]) - self._distance(state[0])) / self.d0
        return w["shape"] * gain - w["ctrl"] * (action ** 2).mean(-1)

    def draw(self, state, action=None):
        """The rope's masses in brown on the ground, the target arc's points in light grey, the
        pushers, seen from above and in front (render/world.py)."""
        x, pose = np.asarray(state[0]), np.asarray(state[2])
        ground = self.cfg["ground"]["height"]
        if not hasattr(self, "_world"):
            self._world = WorldRenderer(3, self.cfg["tools"], ground=ground, size=(256, 256), cell=0.05)
        r = 0.5 * float(np.median(self.design.rest))
        t = self.target.numpy().copy()
        t[:, 1] = ground + 0.2 * r  # the target lies flat on the ground, under the rope
        c = np.concatenate([x, t])
        radii = np.concatenate([np.full(len(x), r), np.full(len(t), 0.5 * r)])
        colors = np.concatenate([np.tile([0.59, 0.35, 0.16], (len(x), 1)), np.full((len(t), 3), 0.92)])
        m = np.concatenate([x, t]).mean(0)
        return self._world.frame(self._world.camera_3d(m + np.array([0.0, 0.45, 0.35]), m), c, radii, colors, pose)
