"""Mass-spring systems (soft robots, cloth, rope) in 2D and 3D, B worlds per launch.

Small systems are launch-bound, so a whole segment of substeps runs in one kernel:
parallel over worlds, serial over substeps inside. State fields carry a frame axis of
length K+1; substep f reads frame f and writes frame f+1 (the adjoint engine's contract).
"""
import math
from types import SimpleNamespace

import numpy as np
import taichi as ti

from . import colliders as col
from . import friction
from . import float_dtype, init
from .adjoint import Stage
from .controller import SineMLP
from .state import FramedState

# ground defaults: height (m), penalty stiffness (1/s^2), contact damping (1/s), friction
# coefficient, softplus width of the penalty (m), velocity below which friction eases (m/s)
GROUND = dict(height=0.1, stiffness=3e4, damping=60.0, friction=1.0, softness=1e-3, slip=1e-2)
COLLIDER_SOFTNESS = 2e-3  # m: default width of a collider's contact band (sims/colliders.py)


@ti.data_oriented
class MassSpring(FramedState):
    """Point masses joined by actuated springs above a soft ground with smooth friction.

    Per substep: spring force k * (|d| - L0 * (1 + c * a)) plus a dashpot along the spring
    (stiffness k and rest length L0 are per-world parameters, "stiffness" and "rest");
    velocity decays by exp(-dt * damping), then gravity and spring accelerations apply;
    the ground pushes with a softplus penalty and removes tangential velocity with the
    smoothed Coulomb rule (sims/friction.py); rigid colliders (any sims/sdf.py shape)
    remove approaching velocity with friction; positions advance by symplectic Euler.

    Colliders are kinematic tools, as in MPM: their poses are state (component "pose",
    present when there are colliders), driven by actions after the springs' ones: each
    collider's linear then angular velocity (dim + 1 or + 3 numbers). Zero velocity
    holds a collider fixed. Gradients reach poses and velocities.

    controller: None, or a dict of sims/controller.py's keys: DiffTaichi's sine-feature MLP
    runs inside the segment kernel every substep, its outputs added to the actuators'
    actions; its weights are parameters, and the time it reads is state (component "clock").
    """

    def __init__(self, design, num_worlds=1, dt=0.004, segment=64, gravity=-4.8,
                 damping=15.0, ground=None, colliders=None, controller=None):
        init()
        self.design, self.B, self.K, self.dt = design, int(num_worlds), int(segment), float(dt)
        self.N, self.S, self.A, self.dim = len(design.positions), len(design.springs), design.n_actuators, design.dim
        if set(ground or {}) - set(GROUND):
            raise ValueError(f"unknown ground key(s) {sorted(set(ground) - set(GROUND))}; allowed {sorted(GROUND)}")
        ground = {**GROUND, **(ground or {})}
        self.ground, self._g = ground, SimpleNamespace(**{k: float(v) for k, v in ground.items()})
        self.gravity, self.damping = float(gravity), float(damping)
        self.colliders, self.pose_init = col.parse(colliders, self.dim, 2 * COLLIDER_SOFTNESS)
        self.NC, self.pose_dim = len(self.colliders), self.pose_init.shape[1]
        self.vel_dim = self.dim + (1 if self.dim == 2 else 3)
        self.A_springs = self.A
        self.A += self.NC * self.vel_dim
        self.ctrl = None if controller is None else SineMLP(controller, self.N, self.dim, self.A_springs)
        # the controller's slots in a substep's serial loop: the centre, hidden units, outputs
        self.C = 0 if self.ctrl is None else 1 + self.ctrl.hidden + self.A_springs
        self._check_dt(design.stiffness)
        self.dtype = float_dtype()
        self.np_dtype = np.float64 if self.dtype == ti.f64 else np.float32
        self._allocate()
        self.reset_params()

    def _check_dt(self, stiffness):
        """Stiffness (per spring, or (B, S)) that symplectic Euler integrates at this dt."""
        d, k = self.design, np.asarray(stiffness, float)
        if not (np.isfinite(k).all() and (k >= 0).all()):
            raise ValueError(f"parameter 'stiffness' must be finite and non-negative, got min {k.min() if k.size else 0}")
        inv_m = np.where(d.masses > 0, 1.0 / np.where(d.masses > 0, d.masses, 1.0), 0.0)
        omega = np.sqrt(k * (inv_m[d.springs[:, 0]] + inv_m[d.springs[:, 1]])) if self.S else np.zeros(1)
        omega_max = max(float(omega.max()), math.sqrt(self.ground["stiffness"]))
        if not (self.dt > 0 and self.dt * omega_max < 2.0):
            raise ValueError(f"unstable dt={self.dt} for parameter 'stiffness' (up to {k.max() if k.size else 0:.4g}): "
                             f"symplectic Euler needs dt < {2.0 / omega_max:.3g} for the stiffest spring or ground "
                             f"(omega={omega_max:.3g})")

    def _check_params(self, values):
        self._check_dt(values["stiffness"])
        rest = values.get("rest")
        if rest is not None and not (rest > 0).all():
            raise ValueError(f"parameter 'rest' (rest lengths) must be positive, got min {rest.min():.4g}")

    def _allocate(self):
        B, K, N, S, dim, dt = self.B, self.K, self.N, self.S, self.dim, self.dtype
        poses = [("pose", self.NC, (self.pose_dim,))] if self.NC else []
        clock = [("clock", 1, ())] if self.ctrl else []
        ctrl_params = self.ctrl.params() if self.ctrl else []
        fb = self._fields([("x", N, (dim,)), ("v", N, (dim,))] + poses + clock, [("stiffness", (S,)), ("rest", (S,))] + ctrl_params)
        self.force = ti.Vector.field(dim, dt, needs_grad=True)
        fb.dense(ti.ijk, (B, K, max(S, 1))).place(self.force, self.force.grad)
        self._scratch = (self.force,)
        if self.ctrl:  # the controller's per-substep centre, hidden layer and outputs
            self.ctrl_c = ti.Vector.field(dim, dt, needs_grad=True)
            self.ctrl_h, self.ctrl_o = ti.field(dt, needs_grad=True), ti.field(dt, needs_grad=True)
            fb.dense(ti.ij, (B, K)).place(self.ctrl_c, self.ctrl_c.grad)
            fb.dense(ti.ijk, (B, K, self.ctrl.hidden)).place(self.ctrl_h, self.ctrl_h.grad)
            fb.dense(ti.ijk, (B, K, max(self.A_springs, 1))).place(self.ctrl_o, self.ctrl_o.grad)
            self._scratch = (self.force, self.ctrl_c, self.ctrl_h, self.ctrl_o)
        self.ends = ti.Vector.field(2, ti.i32)
        self.actuator = ti.field(ti.i32)
        self.coef, self.dashpot = ti.field(dt), ti.field(dt)
        fb.dense(ti.i, max(S, 1)).place(self.ends, self.actuator, self.coef, self.dashpot)
        self.inv_mass = ti.field(dt)
        fb.dense(ti.i, N).place(self.inv_mass)
        self.degree = max(1, int(np.bincount(self.design.springs.ravel(), minlength=N).max()))
        self.inc_spring, self.inc_sign = ti.field(ti.i32), ti.field(dt)
        fb.dense(ti.ij, (N, self.degree)).place(self.inc_spring, self.inc_sign)
        self._finalize(fb)
        d = self.design
        self._incidence()
        if S:
            self.ends.from_numpy(d.springs.astype(np.int32))
            self.actuator.from_numpy(np.maximum(d.actuator, 0).astype(np.int32))
            self.coef.from_numpy(np.where(d.actuator >= 0, d.coef, 0.0).astype(self.np_dtype))
            self.dashpot.from_numpy(d.damping.astype(self.np_dtype))
        self.inv_mass.from_numpy(np.where(d.masses > 0, 1.0 / np.where(d.masses > 0, d.masses, 1.0), 0.0).astype(self.np_dtype))

    def _incidence(self):
        """Padded table of (spring, sign) per object: +1 where it is the spring's first end."""
        spring = np.zeros((self.N, self.degree), dtype=np.int32)
        sign = np.zeros((self.N, self.degree))
        count = np.zeros(self.N, dtype=np.int64)
        for s, (i, j) in enumerate(self.design.springs):
            for obj, sg in ((i, 1.0), (j, -1.0)):
                spring[obj, count[obj]], sign[obj, count[obj]] = s, sg
                count[obj] += 1
        self.inc_spring.from_numpy(spring)
        self.inc_sign.from_numpy(sign.astype(self.np_dtype))

    # ------------------------------------------------------------------ physics
    # Taichi 1.7.4's reverse mode mishandles two serial loops in a row inside the world
    # loop, dynamic inner ranges, and reassigned locals in loops. So a substep is ONE serial
    # loop over springs then objects (its reverse runs objects first), incident forces are
    # summed over a padded, statically unrolled table, and locals are assigned once.
    @ti.func
    def _spring(self, b, f, s):
        i, j = self.ends[s][0], self.ends[s][1]
        d = self.x[b, f, i] - self.x[b, f, j]
        length = ti.sqrt(d.dot(d) + (1e-6 * self.rest[b, s]) ** 2)  # finite at d = 0, in the spring's own scale
        n = d / length
        target = self.rest[b, s] * (1.0 + self.coef[s] * self._action(b, f, self.actuator[s]))
        rel_v = (self.v[b, f, i] - self.v[b, f, j]).dot(n)
        self.force[b, f, s] = -(self.stiffness[b, s] * (length - target) + self.dashpot[s] * rel_v) * n

    @ti.func
    def _action(self, b, f, a):
        out = self.act[b, f, a]
        if ti.static(self.C > 0):
            out += self.ctrl_o[b, f, a]
        return out

    # DiffTaichi's controller, one slot of the substep's serial loop each: the centre of
    # mass (and the clock's tick), then each hidden unit, then each output
    @ti.func
    def _control(self, b, f, s):
        if s == 0:
            centre = ti.Vector.zero(self.dtype, self.dim)
            for i in ti.static(range(self.N)):
                centre += self.x[b, f, i]
            self.ctrl_c[b, f] = centre / self.N
            self.clock[b, f + 1, 0] = self.clock[b, f, 0] + self.dt
        elif s < 1 + self.ctrl.hidden:
            j = s - 1
            z = self.ctrl_b1[b, j]
            for k in ti.static(range(self.ctrl.sines)):
                z += self.ctrl_w1[b, j, k] * ti.sin(self.ctrl.omega * self.clock[b, f, 0] + 2 * math.pi * k / self.ctrl.sines)
            for i in ti.static(range(self.N)):
                for d in ti.static(range(self.dim)):
                    k = self.ctrl.sines + 2 * self.dim * i + d
                    z += self.ctrl_w1[b, j, k] * self.ctrl.scale * (self.x[b, f, i][d] - self.ctrl_c[b, f][d])
                    z += self.ctrl_w1[b, j, k + self.dim] * self.ctrl.scale * self.v[b, f, i][d]
            if ti.static(self.ctrl.has_goal):
                for d in ti.static(range(self.dim)):
                    z += self.ctrl_w1[b, j, self.ctrl.inputs - self.dim + d] * (self.ctrl.goal[d] - self.ctrl_c[b, f][d])
            self.ctrl_h[b, f, j] = ti.tanh(z)
        else:
            a = s - 1 - self.ctrl.hidden
            z = self.ctrl_b2[b, a]
            for j in ti.static(range(self.ctrl.hidden)):
                z += self.ctrl_w2[b, a, j] * self.ctrl_h[b, f, j]
            self.ctrl_o[b, f, a] = ti.tanh(z)

    @ti.func
    def _integrate(self, b, f, i):
        up = ti.Vector.unit(self.dim, 1, self.dtype)
        w = self.inv_mass[i]
        free = ti.cast(w > 0, self.dtype)
        x, v0 = self.x[b, f, i], self.v[b, f, i]
        total = ti.Vector.zero(self.dtype, self.dim)
        for k in ti.static(range(self.degree)):
            total += self.inc_sign[i, k] * self.force[b, f, self.inc_spring[i, k]]
        v1 = free * (ti.exp(-self.dt * self.damping) * v0 + self.dt * (self.gravity * up + w * total))
        # soft ground: softplus penetration, damping while in contact, smoothed Coulomb
        # (clamped so exp never overflows; no kink at z = 0, where robots start)
        z = (self._g.height - x[1]) / self._g.softness
        zc = ti.min(ti.max(z, -30.0), 30.0)
        pen = self._g.softness * (ti.log(1.0 + ti.exp(zc)) + ti.max(z - 30.0, 0.0))
        contact = 1.0 / (1.0 + ti.exp(-zc))
        push = self.dt * self._g.stiffness * pen
        vn = v1[1] + free * (push - self.dt * self._g.damping * contact * v1[1])
        v2 = friction.coulomb(v1 - v1[1] * up, free * push, self._g.friction, self._g.slip) + vn * up
        v3 = self._collide(b, f, x, v2, free)
        self.v[b, f + 1, i] = v3
        self.x[b, f + 1, i] = x + self.dt * v3

    @ti.func
    def _collide(self, b, f, x, v, free):
        """Velocity after contact with the colliders (pinned objects stay put)."""
        out = v
        for c in ti.static(range(self.NC)):
            vel = col.velocity(self.act, b, f, self.A_springs + c * self.vel_dim, self.vel_dim)
            out = free * col.contact(self.colliders[c], self.pose[b, f, c], vel, x, out, self.colliders[c].softness,
                                     self._g.slip)
        return out

    @ti.func
    def _advance(self, b, f, c):
        if ti.static(self.NC > 0):
            vel = col.velocity(self.act, b, f, self.A_springs + c * self.vel_dim, self.vel_dim)
            self.pose[b, f + 1, c] = col.advance(self.pose[b, f, c], vel, self.dt)

    @ti.func
    def _substep(self, b, f):
        for r in range(self.C + self.S + self.N + self.NC):
            if r < self.C:
                if ti.static(self.C > 0):
                    self._control(b, f, r)
            else:
                s = r - self.C
                if s < self.S:
                    self._spring(b, f, s)
                elif s < self.S + self.N:
                    self._integrate(b, f, s - self.S)
                else:
                    self._advance(b, f, s - self.S - self.N)

    @ti.kernel
    def _segment(self, n: ti.i32):
        ti.loop_config(serialize=self._serial_ad)
        for b in range(self.B):
            for f in range(n):
                self._substep(b, f)

    @ti.kernel
    def _lean(self, u: ti.types.ndarray(), t0: ti.i32, n: ti.i32, hold: ti.i32, out: ti.types.ndarray()):
        """A lean segment in one launch: upload its controls, run it, emit its final state."""
        ti.loop_config(serialize=self._serial)
        for b in range(self.B):
            self._upload_world(b, u, t0, n, hold)
            for f in range(n):
                self._substep(b, f)
            self._emit_world(b, n, out)

    def _lean_segment(self, u, t0, n, hold, out):
        self._lean(u, t0, n, hold, out)

    # ------------------------------------------------------- adjoint engine contract
    def units(self, n):
        """The stages of an n-substep segment: one fused kernel."""
        return [[Stage(self._segment, (n,))]]

    def reset_params(self):
        p = {"stiffness": np.broadcast_to(self.design.stiffness, (self.B, self.S)),
             "rest": np.broadcast_to(self.design.rest, (self.B, self.S))}
        if self.ctrl:
            p.update(self.ctrl.initial_weights())
        self.set_params(p)

    def initial_state(self):
        """Rest pose, zero velocity, per world: x, v of shape (B, N, dim), then the colliders'
        configured poses (B, colliders, pose) when there are any, then the clock (B, 1) at
        zero when there is a controller."""
        x = np.broadcast_to(self.design.positions, (self.B, self.N, self.dim)).astype(np.float64)
        poses = (np.broadcast_to(self.pose_init, (self.B,) + self.pose_init.shape).copy(),) if self.NC else ()
        clock = (np.zeros((self.B, 1)),) if self.ctrl else ()
        return (x, np.zeros_like(x)) + poses + clock
