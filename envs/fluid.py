"""Fluid transport: carry water in a kinematic cup to a target region without spilling (FluidLab-style)."""
import numpy as np
import torch

from ..render.world import WorldRenderer
from ..sims import adjoint, sampling
from ..sims.mpm import MPM
from . import config as configs
from .diff_env import progress


class FluidTransportTask:
    """## Description
    Water (MPM fluid) rests in a cup made of three rigid boxes, a bottom plate and two walls,
    that move together (configs/fluid_transport.yaml). Carry the water into the target region
    on the right. The cup is kinematic: it follows the action exactly, the water follows
    the cup through contact, and sloshes over the rim when the cup accelerates too hard.

    ## Action space
    Box(-1, 1, (2,)): the cup's x and y velocity, scaled by `max_speed`, held for `substeps`
    substeps. The cup does not turn.

    ## Observation space
    Box(-inf, inf, (10,)): the cup's inner floor centre (x, y), the water's centre and spread
    (standard deviation per axis), its mean velocity, the fraction spilled (as in Rewards) and
    the episode's progress in [0, 1].

    ## Rewards
    transport * (D(before) - D(after)) / D(start) - spill * spilled / max_steps at each step,
    where D is the particles' mean distance to the target box (smoothed over one particle
    spacing) and `spilled` the smoothed fraction of water outside the cup: a particle counts
    from the middle of a wall (or of the bottom plate) on, fully once past its outer face. An
    episode's return is the fraction of the distance removed less the episode-averaged spilled
    fraction (weights 1): 1 for all the water in the target and none ever spilled.

    ## Starting state
    The water at rest in the cup, filling its floor to `water_depth`; the cup at `cup.position`.

    ## Episode end
    Truncated after max_steps env steps; never terminated. Nothing keeps the cup inside the
    grid: crushed against the grid's walls the water diverges (FloatingPointError), so keep
    the default 10 cm margins when moving `cup.position` or `target`.

    ## Arguments
    Any key of configs/fluid_transport.yaml (the defaults), or config= a path of overrides.
    Unknown keys raise ValueError.

    ## Version history
    v0: first release.
    """

    action_dim, obs_dim = 2, 10

    def __init__(self, config=None, **overrides):
        cfg = configs.load("fluid_transport", config, **overrides)
        configs.positive(cfg, "dt", "particle_spacing", "water_depth")
        configs.positive(cfg, "substeps", "max_steps", "n_grid", kind=int)
        configs.positive(cfg["cup"], "inner_width", "depth", "thickness", "softness")
        if int(cfg["dim"]) != 2:
            raise ValueError(f"config key 'dim': FluidTransport is 2D, got {cfg['dim']!r}")
        self.cfg, self.dim = cfg, 2
        self.substeps, self.max_steps = int(cfg["substeps"]), int(cfg["max_steps"])
        cup, h = cfg["cup"], cfg["particle_spacing"]
        self.half_inner, self.thick = 0.5 * cup["inner_width"], cup["thickness"]
        if cfg["water_depth"] > cup["depth"]:
            raise ValueError(f"config key 'water_depth' ({cfg['water_depth']}) exceeds cup.depth ({cup['depth']})")
        c = np.asarray(cup["position"], float)
        lo, hi = np.asarray(cfg["target"]["lower"], float), np.asarray(cfg["target"]["upper"], float)
        speed = np.asarray(cfg["max_speed"], float)
        for key, v in (("cup.position", c), ("target.lower", lo), ("target.upper", hi), ("max_speed", speed)):
            if v.shape != (2,):
                raise ValueError(f"config key {key!r} needs 2 numbers, got {v.tolist()}")
        if not (lo < hi).all():
            raise ValueError(f"config key 'target': need lower < upper, got {lo.tolist()} and {hi.tolist()}")
        w, t, d = self.half_inner, self.thick, cup["depth"]
        wall = 3.0 / cfg["n_grid"]  # the MPM grid's walls
        if c[0] - w - t < wall or c[0] + w + t > 1 - wall or c[1] - t < wall or c[1] + d > 1 - wall:
            raise ValueError(f"config key 'cup': the cup spans [{c[0] - w - t:.3g}, {c[0] + w + t:.3g}] x "
                             f"[{c[1] - t:.3g}, {c[1] + d:.3g}]; it must lie inside [{wall:.3g}, {1 - wall:.3g}]^2, "
                             f"the grid less its walls")
        contact = {"friction": cup["friction"], "softness": cup["softness"] / cfg["n_grid"]}
        self.tools = [  # bottom plate, then the walls; the walls stand on the plate's ends
            {"shape": "box", "half": [w + t, t / 2], "position": [c[0], c[1] - t / 2], **contact},
            {"shape": "box", "half": [t / 2, (d + t) / 2], "position": [c[0] - w - t / 2, c[1] + (d - t) / 2], **contact},
            {"shape": "box", "half": [t / 2, (d + t) / 2], "position": [c[0] + w + t / 2, c[1] + (d - t) / 2], **contact}]
        self.x0 = sampling.lattice([c[0] - w, c[1]], [c[0] + w, c[1] + cfg["water_depth"]], h)
        self.speed = torch.as_tensor(speed)
        self.lower, self.upper = torch.as_tensor(lo), torch.as_tensor(hi)
        self.d0 = float(self.distance(torch.as_tensor(self.x0)))
        if not self.d0 > 0:
            raise ValueError("config key 'target': the water starts inside the target; there is nothing to carry")
        self.floor = wall
        pad = 0.5 * (w + t)  # frame the cup at its start and over the target
        left, right = min(c[0], lo[0]) - w - t - pad, max(c[0], hi[0]) + w + t + pad
        self.view = (left, wall - t / 2, right - left)

    def make_sim(self, num_worlds):
        c = self.cfg
        K = int(c["segment"]) or adjoint.default_segment(self.substeps * self.max_steps)
        vol = np.full(len(self.x0), c["particle_spacing"] ** self.dim)
        return MPM({"x": self.x0, "vol": vol}, [c["material"]], num_worlds=num_worlds, n_grid=c["n_grid"],
                   dt=c["dt"], segment=K, gravity=c["gravity"], friction=c["friction"], colliders=self.tools)

    def initial_state(self, sim, rng):
        return sim.initial_state()

    def to_sim(self, action):
        """Actions (..., 2) in [-1, 1] -> each box's (vx, vy, angular velocity 0)."""
        v = action * self.speed.to(action.dtype)
        return torch.cat([v, torch.zeros_like(v[..., :1])] * len(self.tools), -1)

    def cup_position(self, pose):
        """The cup's inner floor centre from the colliders' poses (..., 3, 3)."""
        return pose[..., 0, :2] + torch.tensor([0.0, self.thick / 2], dtype=pose.dtype)

    def distance(self, x):
        """Mean distance of particles x (..., P, 2) to the target box, zero inside and smoothed
        over one particle spacing h: sqrt(d^2 + h^2) - h, linear far out, so that the last
        centimetres still count."""
        out = x - torch.maximum(torch.minimum(x, self.upper.to(x.dtype)), self.lower.to(x.dtype))
        h = self.cfg["particle_spacing"]
        return ((out ** 2).sum(-1) + h * h).sqrt().mean(-1) - h

    def spilled(self, x, pose):
        """Smoothed fraction of water outside the cup: 0 for a particle inside the middle of
        the walls and bottom plate, 1 past their outer faces (smoothstep between)."""
        local = x - self.cup_position(pose)[..., None, :]
        half = self.thick / 2
        ramp = lambda z: (lambda s: s * s * (3 - 2 * s))(z.clamp(0, 1))
        side = ramp((local[..., 0].abs() - self.half_inner - half) / half)
        below = ramp((-local[..., 1] - half) / half)
        return (1 - (1 - side) * (1 - below)).mean(-1)

    def observe(self, state, t):
        x, v, pose = state[0], state[1], state[4]
        prog = progress(t, self.max_steps, x[..., 0, :])
        return torch.cat([self.cup_position(pose), x.mean(-2), x.std(-2), v.mean(-2),
                          self.spilled(x, pose)[..., None], prog], -1)

    def reward(self, prev, state, action):
        w = self.cfg["reward"]
        moved = (self.distance(prev[0]) - self.distance(state[0])) / self.d0
        return w["transport"] * moved - w["spill"] * self.spilled(state[0], state[4]) / self.max_steps

    def draw(self, state, action=None):
        """The water shaded by depth, the cup, the target area in green (render/world.py)."""
        x, pose = np.asarray(state[0]), np.asarray(state[4])
        if not hasattr(self, "_world"):
            self._world = WorldRenderer(2, self.tools, ground=self.floor, size=(256, 384),
                                        regions=[(self.lower.tolist(), self.upper.tolist(), (0.78, 0.92, 0.78))])
        depth = np.clip((x[:, 1] - self.x0[:, 1].min()) / (2 * self.cfg["water_depth"]), 0, 1)[:, None]
        colors = (1 - depth) * [0.12, 0.35, 0.78] + depth * [0.43, 0.67, 0.94]
        return self._world.frame(self._world.camera_2d(self.view), x, 0.6 * self.cfg["particle_spacing"], colors, pose)
