"""A FEM gel (sims/fem.py) touching an MPM body (sims/mpm.py): one coupled engine unit.

Two-way coupling through the MPM grid, with no search over surface triangles:
  1. the gel's surface vertices splat onto the grid with MPM's own B-spline weights: a
     weight (coverage), their predicted velocity and their outward normal;
  2. at every grid node the material's velocity loses the part that moves into the gel
     (relative to the gel's velocity there, along the gel's normal), weighted by the gel's
     coverage 1 - exp(-4 w), and its sliding is slowed by the one smoothed Coulomb rule;
  3. the momentum the material lost goes back to the gel's vertices, shared by their weights
     (f_cpl, added in the gel's next velocity update): momentum is conserved.
One substep is three stages: the gel's elastic forces, the coupled MPM substep (clear, P2G,
gel splat, grid update, contact, G2P, gel gather), and the gel's integration. The MPM grid
spans the unit cube (sims/mpm.py), so a coupled scene is built at that scale.

The unit's state is the gel's components then the MPM body's, actions the gel's then the
MPM body's, parameters named gel_<name> and mpm_<name>.
"""
import numpy as np
import taichi as ti

from . import colliders as col
from . import friction, sdf, tetmesh
from .adjoint import Stage

COVER = 4.0  # coverage 1 - exp(-COVER w) of a node the gel's vertices splat a weight w on


@ti.data_oriented
class GelMPM:
    def __init__(self, fem, mpm, friction=0.5):
        if not fem.coupled:
            raise ValueError("GelMPM needs a FEM made with coupled=True")
        if (fem.B, fem.K, fem.dtype, fem.dt) != (mpm.B, mpm.K, mpm.dtype, mpm.dt) or mpm.dim != 3:
            raise ValueError(f"GelMPM: the FEM and the 3D MPM must share num_worlds, segment, float type and dt; "
                             f"got {(fem.B, fem.K, fem.dt)} and {(mpm.B, mpm.K, mpm.dt)} in {mpm.dim}D")
        self.fem, self.mpm, self.friction = fem, mpm, float(friction)
        self.B, self.K, self.dtype, self.np_dtype = fem.B, fem.K, fem.dtype, fem.np_dtype
        self.A = fem.A + mpm.A
        self.state_names = tuple(f"gel_{n}" for n in fem.state_names) + tuple(f"mpm_{n}" for n in mpm.state_names)
        self._names = {f"gel_{k}": (fem, k) for k in fem.param_names}
        self._names.update({f"mpm_{k}": (mpm, k) for k in mpm.param_names})
        self.param_names = tuple(self._names)
        surf = np.unique(fem.mesh.surface)
        faces = fem.mesh.surface
        normal = np.zeros_like(fem.mesh.vertices)
        np.add.at(normal, faces.ravel(), np.repeat(tetmesh.face_normals(fem.mesh.vertices, faces), 3, axis=0))
        normal = normal[surf] / np.linalg.norm(normal[surf], axis=1, keepdims=True)
        self.S = len(surf)
        fb = ti.FieldsBuilder()
        self.g_w, self.dp = ti.field(fem.dtype, needs_grad=True), ti.Vector.field(3, fem.dtype, needs_grad=True)
        self.g_v, self.g_n = (ti.Vector.field(3, fem.dtype, needs_grad=True) for _ in range(2))
        self.grid_c = ti.Vector.field(3, fem.dtype, needs_grad=True)
        fb.dense(ti.axes(0, 1, 2, 3), (self.B,) + (mpm.n,) * 3).place(
            self.g_w, self.g_v, self.g_n, self.dp, self.grid_c,
            self.g_w.grad, self.g_v.grad, self.g_n.grad, self.dp.grad, self.grid_c.grad)
        self.surf, self.rest_n = ti.field(ti.i32), ti.Vector.field(3, fem.dtype)
        fb.dense(ti.i, self.S).place(self.surf, self.rest_n)
        self._tree = fb.finalize()
        self.surf.from_numpy(surf.astype(np.int32))
        self.rest_n.from_numpy(normal.astype(self.np_dtype))
        self._scratch = (self.g_w, self.g_v, self.g_n, self.dp, self.grid_c)

    def free(self):
        self._tree.destroy()

    # ------------------------------------------------------------------ physics
    @ti.kernel
    def _substep(self, f: ti.i32):
        for b, c in ti.ndrange(self.B, max(self.mpm.NC, 1)):
            self.mpm.pose[b, f + 1, c] = col.advance(self.mpm.pose[b, f, c], self.mpm._velocity(b, f, c), self.mpm.dt)
        for I in ti.grouped(self.mpm.grid_m):
            self.mpm.grid_m[I] = 0
            self.mpm.grid_mv[I] = ti.Vector.zero(self.dtype, 3)
            self.g_w[I] = 0
            self.g_v[I] = ti.Vector.zero(self.dtype, 3)
            self.g_n[I] = ti.Vector.zero(self.dtype, 3)
        for b, p in ti.ndrange(self.B, self.mpm.P):
            self.mpm._p2g(b, f, p)
        for b, s in ti.ndrange(self.B, self.S):
            self._splat(b, f, s)
        for I in ti.grouped(self.mpm.grid_m):
            self.mpm._grid_update(I, f)
        for I in ti.grouped(self.mpm.grid_m):
            self._contact(I)
        for b, p in ti.ndrange(self.B, self.mpm.P):
            self.mpm._g2p(b, f, p, self.grid_c)
        for b, i in ti.ndrange(self.B, self.fem.N):
            self.fem.f_cpl[b, i] = ti.Vector.zero(self.dtype, 3)
        for b, s in ti.ndrange(self.B, self.S):
            self._gather(b, f, s)

    @ti.func
    def _splat(self, b, f, s):
        i = self.surf[s]
        m = self.fem.density[b] * self.fem.vol_v_f[i]
        v = self.fem.v[b, f, i] + self.fem.dt * (self.fem.f_int[b, i] / m + ti.Vector(self.fem.gravity, self.dtype))  # predicted
        n = sdf.rotate(self.fem.body[b, f, 0], self.rest_n[s])
        base, fx, w = self.mpm._stencil(self.fem.x[b, f, i])
        for off in ti.static(ti.grouped(ti.ndrange(3, 3, 3))):
            weight = self.mpm._weight(w, off)
            I = self.mpm._node(b, base, off)
            self.g_w[I] += weight
            self.g_v[I] += weight * v
            self.g_n[I] += weight * n

    @ti.func
    def _contact(self, I):
        wg = self.g_w[I]
        touched = wg > 0
        vg = self.g_v[I] / ti.select(touched, wg, 1.0)
        n = self.g_n[I] / sdf.length(self.g_n[I])
        v = self.mpm.grid_v[I]
        rel = v - vg
        vn = rel.dot(n)
        push = -(1.0 - ti.exp(-COVER * wg)) * ti.min(vn, 0.0)  # >= 0: the approach the gel removes
        vt = friction.coulomb(rel - vn * n, push, self.friction, self.mpm.slip)
        vc = ti.select(touched, vg + vt + (vn + push) * n, v)
        self.grid_c[I] = vc
        self.dp[I] = self.mpm.m_ref * self.mpm.grid_m[I] * (vc - v)  # the material's momentum change (kg m/s)

    @ti.func
    def _gather(self, b, f, s):
        i = self.surf[s]
        base, fx, w = self.mpm._stencil(self.fem.x[b, f, i])
        total = ti.Vector.zero(self.dtype, 3)
        for off in ti.static(ti.grouped(ti.ndrange(3, 3, 3))):
            I = self.mpm._node(b, base, off)
            wg = self.g_w[I]
            total -= self.mpm._weight(w, off) / ti.select(wg > 0, wg, 1.0) * self.dp[I]
        self.fem.f_cpl[b, i] += total / self.fem.dt

    @ti.kernel
    def _zero_scratch(self):
        for fld in ti.static(self._scratch):
            for I in ti.grouped(fld):
                fld.grad[I] = fld.grad[I] * 0

    # ------------------------------------------------------- adjoint engine contract
    def units(self, n):
        """Substep f: the gel's forces, the MPM body's constitutive stages (3D spectral path),
        the coupled MPM substep, the gel's integration; all but the last recomputed in reverse."""
        mpm_units = self.mpm.units(n)
        return [[Stage(self.fem._forces, (f,), recompute=True)] + mpm_units[f][:-1]
                + [Stage(self._substep, (f,), recompute=True), Stage(self.fem._move, (f,))] for f in range(n)]

    @property
    def writes(self):
        return self.fem.writes + self.mpm.writes

    def _split(self, state):
        k = len(self.fem.state_names)
        return list(state)[:k], list(state)[k:]

    def initial_state(self):
        return tuple(self.fem.initial_state()) + tuple(self.mpm.initial_state())

    def shift(self, n):
        self.fem.shift(n)
        self.mpm.shift(n)

    def save(self, f):
        return self.fem.save(f) + self.mpm.save(f)

    def load(self, f, state):
        a, b = self._split(state)
        self.fem.load(f, a)
        self.mpm.load(f, b)

    def frames(self, local):
        return self.fem.frames(local) + self.mpm.frames(local)

    def seed_grads(self, local, grads):
        a, b = self._split(grads)
        self.fem.seed_grads(local, a)
        self.mpm.seed_grads(local, b)
        self._zero_scratch()

    def frame_grad(self, f):
        return self.fem.frame_grad(f) + self.mpm.frame_grad(f)

    def set_controls(self, u):
        self.fem.set_controls(u[..., :self.fem.A])
        self.mpm.set_controls(u[..., self.fem.A:])

    def control_grad(self, n):
        return np.concatenate([self.fem.control_grad(n), self.mpm.control_grad(n)], -1)

    def set_params(self, params):
        """gel_* and mpm_* parameters; all are checked before any is written."""
        unknown = sorted(set(params) - set(self._names))
        if unknown:
            raise ValueError(f"GelMPM: unknown parameter(s) {unknown}; allowed {list(self.param_names)}")
        parts = {id(sim): (sim, {}) for sim in (self.fem, self.mpm)}
        for k, v in params.items():
            sim, name = self._names[k]
            parts[id(sim)][1][name] = v
        before = self.fem.get_params()
        self.fem.set_params(parts[id(self.fem)][1])
        try:
            self.mpm.set_params(parts[id(self.mpm)][1])
        except ValueError:
            self.fem.set_params(before)  # a refused call changes nothing
            raise

    def get_params(self):
        return {k: getattr(sim, "get_params")()[name] for k, (sim, name) in self._names.items()}

    def zero_param_grads(self):
        self.fem.zero_param_grads()
        self.mpm.zero_param_grads()

    def param_grads(self):
        g = {id(sim): sim.param_grads() for sim in (self.fem, self.mpm)}
        return {k: g[id(sim)][name] for k, (sim, name) in self._names.items()}
