"""Tactile tasks: a GelSight-like sensor (sims/tactile.py) presses, slides on, and feels rigid objects.

The task objects hold the set-up and the rules; the physics is sims/fem.py, the observations
sims/tactile.py and render/tactile.py."""
import numpy as np
import torch

from ..render.tactile import TactileCamera
from ..render.world import WorldRenderer
from ..sims import adjoint, sampling, tactile, torch_ops
from ..sims.coupling import GelMPM
from ..sims.mpm import MPM
from . import config as configs
from .diff_env import progress


class TactileTask:
    """What the tactile tasks share: the sensor, its simulator, its actions and its pictures.
    Subclasses set the config name and define observe, reward and obs_dim."""

    name = "tactile_press"

    def __init__(self, config=None, **overrides):
        cfg = configs.load(self.name, config, **overrides)
        configs.positive(cfg, "dt")
        configs.positive(cfg, "substeps", "max_steps", kind=int)
        self.cfg, self.substeps, self.max_steps = cfg, int(cfg["substeps"]), int(cfg["max_steps"])
        self.sensor = tactile.Sensor(cfg["sensor"])
        speed = np.asarray(cfg["max_speed"], float)
        if speed.shape != (3,) or not (speed > 0).all():
            raise ValueError(f"config key 'max_speed' needs 3 positive numbers (m/s along x, y, z), got {cfg['max_speed']}")
        self.speed = torch.as_tensor(speed)
        self.action_dim = 3
        self.object = dict(cfg["object"])
        self.n_objects = 1  # rigid objects in the simulator, each held still
        self._optics = None

    @property
    def optics(self):
        """The sensor's camera (render/tactile.py), made on first use."""
        if self._optics is None:
            self._optics = TactileCamera(self.sensor, self.cfg["optics"])
        return self._optics

    def make_sim(self, num_worlds):
        c = self.cfg
        K = int(c["segment"]) or adjoint.default_segment(self.substeps * self.max_steps)
        return self.sensor.simulator([self.object], num_worlds=num_worlds, dt=c["dt"], segment=K,
                                     body_pose=c["sensor_pose"])

    def initial_state(self, sim, rng):
        return sim.initial_state()

    def to_sim(self, action):
        """Actions in [-1, 1] -> the sensor's linear velocity (no turning), the object held still."""
        return self.controls(action * self.speed.to(action.dtype))

    def controls(self, velocity, turn=None):
        """The simulator's controls: the sensor's linear velocity (..., 3) and its turn rate about
        its axis y (..., 1; none: zero), every rigid object held still."""
        zero = torch.zeros_like(velocity)
        spin = zero if turn is None else torch.cat([zero[..., :1], turn, zero[..., :1]], -1)
        return torch.cat([velocity, spin] + [zero, zero] * self.n_objects, -1)

    def displacement(self, state):
        """The sensor's displacement from its configured start (..., 3), over `travel`."""
        start = torch.as_tensor(self.cfg["sensor_pose"][:3], dtype=state[2].dtype)
        return (state[2][..., 0, :3] - start) / self.cfg["travel"]

    def step_index(self, state):
        """The env step (integer tensor (...)) a state belongs to, from the simulator's clock."""
        return torch.round(state[5][..., 0] / (self.cfg["dt"] * self.substeps)).long()

    # -------------------------------------------------------------- shared observations
    def forces(self, state):
        """(normal, shear_x, shear_z) on the gel in the sensor's frame (..., 3), N."""
        return self.sensor.forces(state[4], state[2])

    def marker_shift(self, state):
        """Marker displacements in the sensor's frame (..., M, 2) along x and z, in marker pitches."""
        x = self.sensor.to_body(state[2], state[0])
        d = self.sensor.markers(x) - self.sensor.rest_markers().to(x.dtype)
        return d[..., [0, 2]] / self.sensor.cfg["markers"]["pitch"]

    def draw(self, state, action=None):
        """A side view of the gel's surface (its vertices as beads) and the object beside the
        tactile image the sensor sees."""
        x, body, pose = (torch.as_tensor(np.asarray(s)) for s in (state[0], state[2], state[3]))
        if not hasattr(self, "_world"):
            spec = {k: v for k, v in self.object.items() if k not in ("position", "quat", "friction")}
            self._world = WorldRenderer(3, [spec], size=(240, 240))
            self._surf = np.unique(self.sensor.mesh.surface)
        span = float(np.ptp(self.sensor.mesh.vertices, 0).max())  # the view in the gel's own size
        centre = x[self._surf].mean(0).numpy() - [0, span / 6, 0]
        cam = self._world.camera_3d(centre + span * np.array([0.0, 0.5, 1.875]), centre)
        h = self.sensor.mesh.vertices[:, 1]  # <= 0: the gel hangs below its base
        shade = np.clip(h[self._surf] / h.min(), 0, 1)[:, None]
        colors = (1 - shade) * [0.55, 0.55, 0.6] + shade * [0.85, 0.75, 0.55]
        side = self._world.frame(cam, x[self._surf].numpy(), span / 60, colors, pose.numpy())
        with torch.no_grad():
            img = self.optics.image(self.sensor.to_body(body[None], x[None])[0]).numpy()
        rep = max(1, side.shape[0] // img.shape[0])
        img = np.repeat(np.repeat(img, rep, 0), rep, 1)
        img = (np.clip(img, 0, 1) * 255).astype(np.uint8)
        pad = np.full((side.shape[0], img.shape[1], 3), 255, np.uint8)
        pad[:img.shape[0]] = img[:side.shape[0]]
        return np.concatenate([side, pad], 1)


class TactilePressTask(TactileTask):
    """## Description
    A GelSight-like sensor (a soft FEM dome on a rigid body) above a fixed rigid object
    (configs/tactile_press.yaml). Press on the object so that the contact's normal force
    follows a target profile in time, without slipping sideways.

    ## Action space
    Box(-1, 1, (3,)): the sensor's x, y, z velocity, scaled by `max_speed`, held for
    `substeps` substeps. The sensor does not turn.

    ## Observation space
    Box(-inf, inf, (9,)): normal force and the two shear components in the sensor's frame
    (over the profile's peak force), the sensor's displacement from its start (over
    `travel`), the target force now and at the next step (over the peak), and the episode's
    progress in [0, 1].

    ## Rewards
    -force * ((F_n - F*(t)) / F_peak)^2 - shear * |F_shear / F_peak|^2 - ctrl * |a|^2 per step.

    ## Starting state
    The gel at rest, its apex touching the object (the config's poses).

    ## Episode end
    Truncated after max_steps env steps; never terminated.

    ## Arguments
    Any key of configs/tactile_press.yaml; config="file.yaml" reads overrides from a file.
    Unknown keys raise ValueError.

    ## Version history
    v0: first release.
    """

    name = "tactile_press"
    obs_dim = 9

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        prof = np.asarray(self.cfg["target_force"], float)
        if prof.ndim != 2 or prof.shape[1] != 2 or not (np.diff(prof[:, 0]) > 0).all() or prof[:, 1].max() <= 0:
            raise ValueError("config key 'target_force' must list [episode fraction, force] pairs with increasing "
                             f"fractions and a positive peak, got {self.cfg['target_force']}")
        frac = np.arange(self.max_steps + 2) / self.max_steps
        self.target = torch.as_tensor(np.interp(frac, prof[:, 0], prof[:, 1]))  # F*(t) at steps 0..max_steps + 1
        self.peak = float(prof[:, 1].max())

    def observe(self, state, t):
        f = self.forces(state) / self.peak
        lead = f.shape[:-1]
        tgt = self.target.to(f.dtype)[torch.stack([torch.as_tensor(t), torch.as_tensor(t) + 1], -1)] / self.peak
        prog = progress(t, self.max_steps, f)
        return torch.cat([f, self.displacement(state), tgt.expand(lead + (2,)), prog], -1)

    def reward(self, prev, state, action):
        w = self.cfg["reward"]
        f = self.forces(state) / self.peak
        err = f[..., 0] - self.target.to(f.dtype)[self.step_index(state)] / self.peak
        return -w["force"] * err ** 2 - w["shear"] * (f[..., 1:] ** 2).sum(-1) - w["ctrl"] * (action ** 2).sum(-1)

    def metrics(self, actions):
        """How open-loop actions (1, steps, 3) do: the normal force's RMS and largest error
        against the profile, and the largest shear, each over the peak force."""
        sim = self.make_sim(1)
        with torch.no_grad():
            state0 = tuple(torch.as_tensor(s) for s in sim.initial_state())
            states, _ = torch_ops.rollout(sim, state0, None, self.to_sim(actions.to(torch.float64)),
                                          substeps=self.substeps)
            f = self.forces(states)[0] / self.peak
            err = f[:, 0] - self.target[1:len(f) + 1] / self.peak
        sim.free()
        return {"force_rms_error": float(err.pow(2).mean().sqrt()), "force_max_error": float(err.abs().max()),
                "max_shear": float(f[:, 1:].norm(dim=-1).max()), "peak_force_N": self.peak}


def _yaw(angle):
    """Unit quaternions (..., 4) of turns by angle (...) about +y."""
    half = 0.5 * torch.as_tensor(angle)
    zero = torch.zeros_like(half)
    return torch.stack([torch.cos(half), zero, torch.sin(half), zero], -1)


class TactileSlideTask(TactileTask):
    """## Description
    A rod (a capsule lying along x, turned by a random yaw about y and offset in z; the
    pose is drawn at each reset) under a GelSight-like sensor that starts pressed on it
    (configs/tactile_slide.yaml). Slide along the rod, keeping it under the gel's centre and
    the normal force near its target, from the markers alone: the rod's pose is not observed.

    ## Action space
    Box(-1, 1, (3,)): the sensor's x, y, z velocity, scaled by `max_speed`.

    ## Observation space
    Box(-inf, inf, (2 M + 4,)): the M markers' x-z displacements in the sensor's frame (in
    marker pitches), normal and shear forces (over `target_force`), and the progress in [0, 1].

    ## Rewards
    progress * dx / travel - offset * (lateral distance from the rod's axis / rod radius)^2
    - force * ((F_n - target) / target)^2 - ctrl * |a|^2 per step.

    ## Starting state
    The sensor at its configured pose, its gel pressed into the rod (the config's poses); the rod's yaw
    uniform in +-max_yaw and its z offset uniform in +-max_offset (from the reset's seed).

    ## Episode end
    Truncated after max_steps env steps; never terminated.

    ## Arguments
    Any key of configs/tactile_slide.yaml. Unknown keys raise ValueError.

    ## Version history
    v0: first release.
    """

    name = "tactile_slide"

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        self.obs_dim = 2 * len(self.sensor.marker_tri) + 4
        self.force_scale = float(self.cfg["target_force"])

    def initial_state(self, sim, rng):
        state = list(sim.initial_state())
        pose = state[3].copy()
        yaw = rng.uniform(-1, 1, sim.B) * np.radians(self.cfg["max_yaw"])
        pose[:, 0, 2] += rng.uniform(-1, 1, sim.B) * self.cfg["max_offset"]
        pose[:, 0, 3:] = _yaw(torch.as_tensor(yaw)).numpy()
        state[3] = pose
        return tuple(state)

    def observe(self, state, t):
        f = self.forces(state) / self.force_scale
        shift = self.marker_shift(state).flatten(-2)
        prog = progress(t, self.max_steps, f)
        return torch.cat([shift, f, prog], -1)

    def offset_squared(self, state):
        """The square of the gel centre's distance from the rod's axis in the x-z plane (...)."""
        body, pose = state[2][..., 0, :], state[3][..., 0, :]
        axis = tactile.quat_matrix(pose[..., 3:])[..., :, 0]
        d = body[..., :3] - pose[..., :3]
        lateral = d - (d * axis).sum(-1, keepdim=True) * axis
        return lateral[..., 0] ** 2 + lateral[..., 2] ** 2

    def reward(self, prev, state, action):
        w, c = self.cfg["reward"], self.cfg
        dx = (state[2][..., 0, 0] - prev[2][..., 0, 0]) / c["travel"]
        off2 = self.offset_squared(state) / self.object["radius"] ** 2
        f = (self.forces(state)[..., 0] - c["target_force"]) / c["target_force"]
        return w["progress"] * dx - w["offset"] * off2 - w["force"] * f ** 2 - w["ctrl"] * (action ** 2).sum(-1)


class TactilePoseTask(TactileTask):
    """## Description
    Estimate an object's pose by touch (configs/tactile_pose.yaml). A short rod (a capsule)
    lies under a GelSight-like sensor, its x-z offset and yaw drawn at each reset. The agent
    moves the sensor (press, then rub and twist: the gel in contact sticks to the rod while the
    rest moves on, which shows where the rod lies) and says where the rod is. The physics
    answer is an inverse problem through the differentiable sensor: envs/learn/sysid.fit_tactile
    fits the pose (and the gel's E) to one recorded probe by gradient descent.

    ## Action space
    Box(-1, 1, (7,)): the sensor's x, y, z velocity (over `max_speed`) and its turn rate about
    its axis (over `max_turn`), then the estimated x offset, z offset (over max_offset) and yaw
    (over max_yaw).

    ## Observation space
    Box(-inf, inf, (2 M + 4,)): the markers' x-z displacements (marker pitches), normal and
    shear forces (over `force_scale`), and the progress in [0, 1].

    ## Rewards
    -(the squared error of the normalised estimate) per step.

    ## Starting state
    The sensor at its configured pose, the rod's offsets uniform in +-max_offset and yaw
    uniform in +-max_yaw (the reset's seed).

    ## Episode end
    Truncated after max_steps env steps; never terminated.

    ## Arguments
    Any key of configs/tactile_pose.yaml. Unknown keys raise ValueError.

    ## Version history
    v0: first release.
    """

    name = "tactile_pose"

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        self.action_dim = 7
        self.obs_dim = 2 * len(self.sensor.marker_tri) + 4
        self.force_scale = float(self.cfg["force_scale"])
        configs.positive(self.cfg, "max_turn")

    initial_state = TactileSlideTask.initial_state
    observe = TactileSlideTask.observe

    def to_sim(self, action):
        """The first four actions move and turn the sensor; the estimate moves nothing."""
        return self.controls(action[..., :3] * self.speed.to(action.dtype), action[..., 3:4] * self.cfg["max_turn"])

    def normalised_pose(self, state):
        """The rod's (x, z, yaw) over (max_offset, max_offset, max_yaw) (..., 3)."""
        pose = state[3][..., 0, :]
        start = torch.as_tensor(self.object["position"], dtype=pose.dtype)
        yaw = 2 * torch.atan2(pose[..., 5], pose[..., 3])
        scale = torch.as_tensor([self.cfg["max_offset"]] * 2 + [np.radians(self.cfg["max_yaw"])], dtype=pose.dtype)
        return torch.stack([pose[..., 0] - start[0], pose[..., 2] - start[2], yaw], -1) / scale

    def reward(self, prev, state, action):
        return -((action[..., 4:] - self.normalised_pose(state)) ** 2).sum(-1)

    def probe(self, segments):
        """Open-loop actions (1, max_steps, 7) of a scripted probe: segments of [until (episode
        fraction), vx, vy, vz (m/s), turn rate about the axis (rad/s)], the estimate zero."""
        seg = np.asarray(segments, float)
        if seg.ndim != 2 or seg.shape[1] != 5 or not (np.diff(seg[:, 0]) > 0).all():
            raise ValueError(f"probe must list [until, vx, vy, vz, wy] rows with increasing 'until', got {segments}")
        t = (np.arange(self.max_steps) + 0.5) / self.max_steps
        scale = np.r_[self.speed.numpy(), self.cfg["max_turn"]]
        v = seg[np.minimum(np.searchsorted(seg[:, 0], t), len(seg) - 1), 1:] / scale
        if np.abs(v).max() > 1:
            raise ValueError(f"probe speeds {segments} exceed max_speed {self.speed.tolist()} or max_turn "
                             f"{self.cfg['max_turn']}")
        return torch.as_tensor(np.concatenate([v, np.zeros((len(v), 3))], -1)[None])

    def pose_state(self, sim, x, z, yaw):
        """The initial state with the rod at offsets x, z (m) and yaw (rad): tensors (B,) that may
        require gradients (torch), for the inverse problem."""
        state = [torch.as_tensor(s) for s in sim.initial_state()]
        base = state[3]
        pos = base[..., :3] + torch.stack([x, torch.zeros_like(x), z], -1)[:, None]
        state[3] = torch.cat([pos, _yaw(yaw)[:, None].to(base.dtype)], -1)
        return tuple(state)


class TactileDoughTask(TactileTask):
    """## Description
    A GelSight-like sensor presses a block of plasticine (MLS-MPM) down to a target height
    while feeling the force (configs/tactile_dough.yaml): the soft gel and the dough push each
    other through the MPM grid (sims/coupling.py), so the gel's markers and force show the
    dough's resistance. The scene lives in the MPM grid's unit cube: a large sensor.

    ## Action space
    Box(-1, 1, (3,)): the sensor's x, y, z velocity, scaled by `max_speed`.

    ## Observation space
    Box(-inf, inf, (9,)): normal and shear force (over `max_force`), the sensor's displacement
    (over `travel`), the dough's mean height and its height spread (over `travel`), and the
    progress in [0, 1].

    ## Rewards
    shape * (decrease of (mean height - target)^2 / travel^2) - force * relu(F_n / max_force - 1)^2
    - ctrl * |a|^2 per step.

    ## Starting state
    The dough at rest on the floor, the gel's apex just above it.

    ## Episode end
    Truncated after max_steps env steps; never terminated.

    ## Arguments
    Any key of configs/tactile_dough.yaml. Unknown keys raise ValueError.

    ## Version history
    v0: first release.
    """

    name = "tactile_dough"
    obs_dim = 9

    def __init__(self, config=None, **overrides):
        super().__init__(config, **overrides)
        self.particles = sampling.sample(self.cfg["dough"], self.cfg["particle_spacing"])
        self.floor = 3.0 / self.cfg["n_grid"]
        self.n_objects = 0  # the gel touches the dough alone

    def make_sim(self, num_worlds):
        c = self.cfg
        K = int(c["segment"]) or adjoint.default_segment(self.substeps * self.max_steps)
        fem = self.sensor.simulator([], num_worlds=num_worlds, dt=c["dt"], segment=K, body_pose=c["sensor_pose"],
                                    gravity=(0.0, c["gravity"], 0.0), coupled=True)
        mpm = MPM({"x": self.particles, "vol": np.full(len(self.particles), c["particle_spacing"] ** 3)},
                  [c["material"]], num_worlds=num_worlds, n_grid=c["n_grid"], dt=c["dt"], segment=K,
                  gravity=c["gravity"], friction=c["friction"])
        return GelMPM(fem, mpm, friction=c["gel_friction"])

    def _height(self, state):
        y = state[6][..., 1]
        return y.mean(-1), y.std(-1)

    def observe(self, state, t):
        f = self.forces(state) / self.cfg["max_force"]
        mean, spread = self._height(state)
        prog = progress(t, self.max_steps, f)
        return torch.cat([f, self.displacement(state), ((mean - self.floor) / self.cfg["travel"])[..., None],
                          (spread / self.cfg["travel"])[..., None], prog], -1)

    def reward(self, prev, state, action):
        w, c = self.cfg["reward"], self.cfg
        gap = lambda s: ((self._height(s)[0] - c["target_height"]) / c["travel"]) ** 2
        over = torch.relu(self.forces(state)[..., 0] / c["max_force"] - 1.0)
        return w["shape"] * (gap(prev) - gap(state)) - w["force"] * over ** 2 - w["ctrl"] * (action ** 2).sum(-1)

    def draw(self, state, action=None):
        """The dough's particles and the gel's surface vertices, from the side."""
        x, gel = np.asarray(state[6]), np.asarray(state[0])
        if not hasattr(self, "_world"):
            self._world = WorldRenderer(3, ground=self.floor, size=(240, 240), cell=0.1)
            self._surf = np.unique(self.sensor.mesh.surface)
        pts = np.concatenate([x, gel[self._surf]])
        colors = np.concatenate([np.tile([0.85, 0.6, 0.35], (len(x), 1)), np.tile([0.55, 0.6, 0.7], (len(self._surf), 1))])
        centre = np.array([0.5, 0.25, 0.5])
        cam = self._world.camera_3d(centre + np.array([0.35, 0.3, 0.9]), centre)
        return self._world.frame(cam, pts, 0.5 * self.cfg["particle_spacing"], colors)
