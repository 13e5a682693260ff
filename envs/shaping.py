"""Shaping tasks: deform plasticine or sand into a target shape with kinematic tools (PlasticineLab-style).

PlasticinePress-v0, PlasticinePinch-v0 and SandPush-v0 are this task with different configs."""
import numpy as np
import torch

from ..render.world import WorldRenderer
from ..sims import adjoint, sampling
from ..sims.mpm import MPM
from . import config as configs
from .diff_env import progress


class ShapingTask:
    """## Description
    A block of plasticine or sand on the floor and one or more rigid tools
    (configs/plasticine_press.yaml, plasticine_pinch.yaml, sand_push.yaml). Deform the
    block into the target shape.

    ## Action space
    Box(-1, 1, (3 * tools,)) in 2D: each tool's x, y and angular velocity; Box(-1, 1,
    (6 * tools,)) in 3D: linear and angular velocity. Scaled by `max_speed` (3 or 6
    numbers per tool), held for `substeps` substeps.

    ## Observation space
    Box(-inf, inf, (2 dim + tools * pose + 1,)): the block's centre and spread (standard
    deviation per axis), each tool's pose (x, y, angle in 2D; position and unit quaternion
    in 3D: pose = 3 or 7), and the episode's progress in [0, 1].

    ## Rewards
    The decrease of the shape distance at each step, so an episode's return is the
    distance removed: mass * (grid-mass L1 to the target, as PlasticineLab) + chamfer *
    (soft Chamfer distance between particles and target points).

    ## Starting state
    The block at rest, tools at their configured poses.

    ## Episode end
    Truncated after max_steps env steps; never terminated.

    ## Arguments
    Any key of configs/plasticine_press.yaml (the defaults); config="plasticine_pinch",
    "sand_push" or "plasticine_press_3d" (a 3D press) or a path reads overrides. Unknown
    keys raise ValueError.

    ## Version history
    v0: first release.
    """

    def __init__(self, config=None, **overrides):
        cfg = configs.load("plasticine_press", config, **overrides)
        configs.positive(cfg, "dt", "particle_spacing")
        configs.positive(cfg, "substeps", "max_steps", "n_grid", kind=int)
        self.cfg, self.dim = cfg, int(cfg["dim"])
        if self.dim not in (2, 3):
            raise ValueError(f"config key 'dim' must be 2 or 3, got {cfg['dim']!r}")
        self.substeps, self.max_steps = int(cfg["substeps"]), int(cfg["max_steps"])
        h = cfg["particle_spacing"]
        self.x0 = sampling.sample(cfg["body"], h)
        self.target = torch.as_tensor(sampling.sample(cfg["target"], h))
        self.n_tools = len(cfg["tools"])
        vel, pose = (3, 3) if self.dim == 2 else (6, 7)  # per tool: velocity (linear, angular), pose
        speed = np.asarray(cfg["max_speed"], float)
        if speed.shape != (vel,):
            raise ValueError(f"config key 'max_speed' needs {vel} numbers, got {cfg['max_speed']}")
        self.speed = torch.as_tensor(np.tile(speed, self.n_tools))
        self.action_dim = self.n_tools * vel
        self.obs_dim = 2 * self.dim + self.n_tools * pose + 1
        self.target_mass = self._grid_mass(self.target[None])
        # frame the block, the target and the tools' start, with a margin for what moves
        xs = np.concatenate([self.x0[:, 0], self.target[:, 0].numpy(), [t["position"][0] for t in cfg["tools"]]])
        self.floor = 3.0 / cfg["n_grid"]  # the MPM grid's wall
        self.view = (xs.min() - 0.08, self.floor - 0.03, xs.max() - xs.min() + 0.16)

    def make_sim(self, num_worlds):
        c = self.cfg
        K = int(c["segment"]) or adjoint.default_segment(self.substeps * self.max_steps)
        vol = np.full(len(self.x0), c["particle_spacing"] ** self.dim)
        return MPM({"x": self.x0, "vol": vol}, [c["material"]], num_worlds=num_worlds, n_grid=c["n_grid"],
                   dt=c["dt"], segment=K, gravity=c["gravity"], friction=c["friction"], colliders=c["tools"])

    def initial_state(self, sim, rng):
        return sim.initial_state()

    def to_sim(self, action):
        """Actions in [-1, 1] -> tool velocities."""
        return action * self.speed.to(action.dtype)

    def _grid_mass(self, x):
        """Particle counts splatted bilinearly on the simulation grid, normalised to sum 1."""
        n = self.cfg["n_grid"]
        g = x * n - 0.5
        base = torch.floor(g).clamp(0, n - 2)
        frac = (g - base).clamp(0, 1)
        out = x.new_zeros(x.shape[:-2] + (n,) * self.dim).flatten(-self.dim)
        idx0 = base.long()
        for corner in np.ndindex(*(2,) * self.dim):
            w = torch.ones_like(frac[..., 0])
            flat = torch.zeros_like(idx0[..., 0])
            for d, c in enumerate(corner):
                w = w * (frac[..., d] if c else 1 - frac[..., d])
                flat = flat * n + idx0[..., d] + c
            out = out.scatter_add(-1, flat, w)
        return out / x.shape[-2]

    def distance(self, x):
        """Shape distance of particles x (..., P, dim) to the target, per world."""
        w = self.cfg["reward"]
        mass = (self._grid_mass(x) - self.target_mass.to(x.dtype)).abs().sum(-1)
        d = torch.cdist(x, self.target.to(x.dtype).expand(*x.shape[:-2], -1, -1))
        tau = self.cfg["particle_spacing"]
        soft_min = lambda d, dim: -tau * torch.logsumexp(-d / tau, dim)
        chamfer = soft_min(d, -1).mean(-1) + soft_min(d, -2).mean(-1)
        return w["mass"] * mass + w["chamfer"] * chamfer

    def observe(self, state, t):
        x, pose = state[0], state[4]
        prog = progress(t, self.max_steps, x[..., 0, :])
        return torch.cat([x.mean(-2), x.std(-2), pose.flatten(-2), prog], -1)

    def reward(self, prev, state, action):
        return self.distance(prev[0]) - self.distance(state[0])

    def draw(self, state, action=None):
        """The block coloured by height, the tools, the floor; in 2D the target's particles
        in light grey behind the block (render/world.py)."""
        x, pose = np.asarray(state[0]), np.asarray(state[4])
        if not hasattr(self, "_world"):
            self._world = WorldRenderer(self.dim, self.cfg["tools"], ground=self.floor,
                                        size=(256, 384) if self.dim == 2 else (256, 256))
        shade = np.clip((x[:, 1] - 0.06) / 0.25, 0, 1)[:, None]
        colors = (1 - shade) * [0.75, 0.47, 0.24] + shade * [0.94, 0.75, 0.47]
        r = 0.6 * self.cfg["particle_spacing"]
        if self.dim == 2:
            t = self.target.numpy()
            c = np.concatenate([np.c_[x, np.zeros(len(x))], np.c_[t, np.full(len(t), -3 * r)]])
            colors = np.concatenate([colors, np.full((len(t), 3), 0.84)])
            return self._world.frame(self._world.camera_2d(self.view), c, r, colors, pose)
        centre = x.mean(0)
        span = float(np.ptp(x, 0).max()) + 0.2
        return self._world.frame(self._world.camera_3d(centre + span * np.array([0.25, 0.9, 1.3]), centre), x, r,
                                 colors, pose)

