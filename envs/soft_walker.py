"""SoftWalker: DiffTaichi's diffmpm soft robot, MLS-MPM muscles rewarded for moving right."""
import numpy as np
import torch

from ..render.world import WorldRenderer
from ..sims import adjoint, sampling
from ..sims.mpm import MPM
from . import config as configs
from .locomotion import forward_reward, phase_features

GROUP_COLORS = np.array([[70, 110, 200], [200, 80, 60], [220, 140, 40], [60, 160, 90], [150, 80, 170]], np.uint8)


class SoftWalkerTask:
    """## Description
    An elastic body on four legs (configs/soft_walker.yaml), simulated with MLS-MPM. Each
    leg is a muscle: its action adds an active stress along `act_axis`.

    ## Action space
    Box(-1, 1, (4,)): muscle activations, held for `substeps` substeps.

    ## Observation space
    Box(-inf, inf, (2 dim + 2 dim G + phases,)): centre of mass and its velocity, each
    actuator group's mean position (relative to the centre) and velocity, and sine
    features of time.

    ## Rewards
    forward * (centre x velocity) - ctrl * mean(action^2), weights in the config.

    ## Starting state
    The blocks at rest, F = I.

    ## Episode end
    Truncated after max_steps env steps; never terminated.

    ## Arguments
    Any key of configs/soft_walker.yaml; config="file.yaml" reads overrides (a 3D robot:
    configs/soft_walker_3d.yaml). Unknown keys raise ValueError.

    ## Version history
    v0: first release.
    """

    def __init__(self, config=None, **overrides):
        cfg = configs.load("soft_walker", config, **overrides)
        configs.positive(cfg, "dt", "particle_spacing")
        configs.positive(cfg, "substeps", "max_steps", "n_grid", kind=int)
        self.cfg, self.dim = cfg, int(cfg["dim"])
        self.substeps, self.max_steps = int(cfg["substeps"]), int(cfg["max_steps"])
        self.particles = self._particles()
        self.action_dim = int(self.particles["actuator"].max()) + 1
        self.groups = self._group_matrix()
        self.obs_dim = 2 * self.dim + 2 * self.dim * self.action_dim + int(cfg["phases"])
        self.env_dt = cfg["dt"] * self.substeps

    def _particles(self):
        c, d = self.cfg, self.dim
        xs, acts = [], []
        for i, blk in enumerate(c["blocks"]):
            if len(blk) != 2 * d + 1:
                raise ValueError(f"config key 'blocks[{i}]' needs {2 * d + 1} numbers for dim={d}, got {blk}")
            lo = np.asarray(blk[:d], float) + np.asarray(c["offset"], float)
            pts = sampling.lattice(lo, lo + np.asarray(blk[d:2 * d], float), c["particle_spacing"])
            xs.append(pts)
            acts.append(np.full(len(pts), int(blk[-1])))
        return {"x": np.concatenate(xs), "actuator": np.concatenate(acts),
                "vol": np.full(sum(map(len, xs)), c["particle_spacing"] ** d)}

    def _group_matrix(self):
        act = self.particles["actuator"]
        m = np.stack([(act == g) / max((act == g).sum(), 1) for g in range(self.action_dim)])
        return torch.as_tensor(m)

    def make_sim(self, num_worlds):
        c = self.cfg
        T = self.substeps * self.max_steps
        K = int(c["segment"]) or adjoint.default_segment(T)
        return MPM(self.particles, [c["material"]], num_worlds=num_worlds, n_grid=c["n_grid"], dt=c["dt"],
                   segment=K, gravity=c["gravity"], friction=c["friction"], act_strength=c["act_strength"],
                   act_axis=c["act_axis"])

    def to_sim(self, action):
        """Actions are the simulator's controls as they are."""
        return action

    def initial_state(self, sim, rng):
        return sim.initial_state()

    def observe(self, state, t):
        x, v = state[0], state[1]
        c, cv = x.mean(-2), v.mean(-2)
        G = self.groups.to(x.dtype)
        gx = torch.einsum("gp,...pd->...gd", G, x) - c[..., None, :]
        gv = torch.einsum("gp,...pd->...gd", G, v)
        phase = phase_features(t, self.env_dt, self.cfg["omega"], self.cfg["phases"], x)
        return torch.cat([c, cv, gx.flatten(-2), gv.flatten(-2), phase], -1)

    def reward(self, prev, state, action):
        return forward_reward(prev[0], state[0], action, self.env_dt, self.cfg["reward"])

    def draw(self, state, action=None):
        """The robot's particles coloured by actuator group on the floor, the view following it
        (render/world.py)."""
        x = np.asarray(state[0])
        floor = 3.0 / self.cfg["n_grid"]
        if not hasattr(self, "_world"):
            self._world = WorldRenderer(self.dim, ground=floor, size=(256, 384) if self.dim == 2 else (256, 256), cell=0.1)
        group = np.where(self.particles["actuator"] >= 0, self.particles["actuator"] + 1, 0) % len(GROUP_COLORS)
        colors, r = GROUP_COLORS[group] / 255.0, 0.6 * self.cfg["particle_spacing"]
        if self.dim == 2:
            return self._world.frame(self._world.camera_2d((float(x[:, 0].mean()) - 0.4, floor - 0.05, 1.0)), x, r, colors)
        c = x.mean(0)
        return self._world.frame(self._world.camera_3d(c + np.array([0.15, 0.3, 0.6]), c), x, r, colors)
