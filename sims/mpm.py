"""MLS-MPM (quadratic B-splines, APIC) in 2D and 3D, B worlds per launch.

A substep is four phases, in the order they run, fused in one kernel:
  clear grid -> P2G (deformation update, plastic return, stress, scatter) ->
  grid update (momentum to velocity, gravity, colliders, then walls with friction) -> G2P.
Particle state (x, v, C, F) has a frame axis of K+1; the grid is scratch: the reverse of a
substep recomputes the substep (restoring its grid) before running its reverse.

In 3D with fixed-corotated, plasticine or sand (or with spectral=True), the constitutive
update runs first, in three stages of its own (sims/spectral.py): eigen-decompose b = F F^T,
evaluate the material in principal form (autodiff), assemble the new F and the stress
(hand-written reverse, exact at repeated eigenvalues). Otherwise closed forms run inside
the fused kernel.
"""
from types import SimpleNamespace

import numpy as np
import taichi as ti

from . import float_dtype, init
from . import colliders as col
from . import friction
from . import materials as mat
from . import spectral as spec
from .adjoint import Stage
from .state import FramedState

EMPTY = 1e-15  # a grid node with less mass than this many mean particles is empty (a unit-free cut)


@ti.data_oriented
class MPM(FramedState):
    def __init__(self, particles, materials, num_worlds=1, n_grid=64, dt=1e-3, segment=32,
                 gravity=-9.8, bound=3, friction=0.5, act_strength=4.0, act_axis=1, colliders=None,
                 spectral=None):
        init()
        x = np.asarray(particles["x"], dtype=np.float64)
        self.P, self.dim = x.shape
        self.B, self.K, self.n, self.dt = int(num_worlds), int(segment), int(n_grid), float(dt)
        self.dx, self.M = 1.0 / self.n, len(materials)
        self.slip = 1e-4 * self.dx / self.dt  # the friction rule's smoothing speed: a scale of the grid's own
        self.cfg = SimpleNamespace(gravity=float(gravity), bound=int(bound), friction=float(friction),
                                   act_strength=float(act_strength), act_axis=int(act_axis))
        self.materials = [self._material(i, m) for i, m in enumerate(materials)]
        self.kinds = tuple(sorted({mat.KINDS[m["kind"]] for m in self.materials}))
        # closed forms: 2D, and 3D neo-Hookean and fluid (no rotation or strain log needed)
        needs = self.dim == 3 and bool({0, 2, 3} & set(self.kinds))
        self.spectral = needs if spectral is None else bool(spectral)
        if needs and not self.spectral:
            raise ValueError("3D fixed-corotated, plasticine and sand need spectral=True")
        self.x_init = x
        self.material_id = np.asarray(particles.get("material", np.zeros(self.P)), dtype=np.int32)
        self.actuator_id = np.asarray(particles.get("actuator", -np.ones(self.P)), dtype=np.int32)
        # actions: one per muscle group, then each collider's linear and angular velocity
        self.A_muscles = int(self.actuator_id.max()) + 1 if self.P else 0
        self.colliders, self.pose_init = col.parse(colliders, self.dim, self.dx)
        self.NC, self.pose_dim = len(self.colliders), self.pose_init.shape[1]
        self.vel_dim = self.dim + (1 if self.dim == 2 else 3)
        self.A = self.A_muscles + self.NC * self.vel_dim
        self.vol = np.asarray(particles.get("vol", np.full(self.P, (0.5 * self.dx) ** self.dim)), dtype=np.float64)
        self._check(x)
        # the mean particle mass: the grid's unit of mass, so that its masses are near 1 whatever the user's units
        dens = np.array([m["density"] for m in self.materials])[self.material_id] if self.P else np.ones(1)
        self.m_ref = float(np.mean(self.vol * dens)) if self.P else 1.0
        self.dtype = float_dtype()
        self.np_dtype = np.float64 if self.dtype == ti.f64 else np.float32
        self._allocate()
        self.reset_params()

    @staticmethod
    def _material(i, m):
        m = dict(m)
        kind = m.pop("kind", None)
        if kind not in mat.KINDS:
            raise ValueError(f"materials[{i}].kind must be one of {sorted(mat.KINDS)}, got {kind!r}")
        density = float(m.pop("density", 1.0))
        unknown = set(m) - set(mat.PARAMS)
        if unknown:
            raise ValueError(f"materials[{i}]: unknown key(s) {sorted(unknown)}; allowed {sorted(mat.PARAMS)} + kind, density")
        out = {**mat.PARAMS, **{k: float(v) for k, v in m.items()}}
        if not (out["E"] > 0 and -1 < out["nu"] < 0.5 and density > 0):
            raise ValueError(f"materials[{i}]: need E > 0, -1 < nu < 0.5, density > 0; got E={out['E']}, "
                             f"nu={out['nu']}, density={density}")
        return dict(kind=kind, density=density, **out)

    def _check(self, x):
        lo, hi = self.cfg.bound * self.dx, 1 - self.cfg.bound * self.dx
        if x.size and (x.min() < lo or x.max() > hi):
            raise ValueError(f"particles must lie inside [{lo:.3g}, {hi:.3g}]^{self.dim} (the grid less its "
                             f"{self.cfg.bound}-cell walls); got range [{x.min():.3g}, {x.max():.3g}]")
        if self.material_id.size and (self.material_id.min() < 0 or self.material_id.max() >= self.M):
            raise ValueError(f"particle material ids must be in [0, {self.M}), got max {self.material_id.max()}")
        self._check_stable(*(np.array([m[k] for m in self.materials], float) for k in ("E", "nu")))

    def _check_stable(self, E, nu):
        """Young's moduli and Poisson ratios (per material, or (B, M)) that dt can integrate."""
        if not (np.isfinite(E).all() and (E > 0).all()):
            raise ValueError(f"material parameter 'E' must be positive and finite, got {np.ravel(E)}")
        if not ((nu > -1).all() and (nu < 0.5).all()):
            raise ValueError(f"material parameter 'nu' must lie in (-1, 0.5), got {np.ravel(nu)}")
        # the pressure wave may cross at most one cell per substep (CFL)
        rho = np.array([m["density"] for m in self.materials], float)
        c = np.sqrt(E * (1 - nu) / ((1 + nu) * (1 - 2 * nu)) / rho).max()
        if not (0 < self.dt and self.dt * c < self.dx):
            raise ValueError(f"unstable dt={self.dt}: the CFL limit for wave speed {c:.3g} (parameter 'E' up to "
                             f"{np.max(E):.4g}, 'nu' up to {np.max(nu):.3g}) "
                             f"on dx={self.dx:.3g} is dt < {self.dx / c:.3g}")

    def _allocate(self):
        B, K, P, D, dt = self.B, self.K, self.P, self.dim, self.dtype
        # pose: a dummy row when there is no collider
        fb = self._fields([("x", P, (D,)), ("v", P, (D,)), ("C", P, (D, D)), ("F", P, (D, D)),
                           ("pose", max(self.NC, 1), (self.pose_dim,))], [(k, (self.M,)) for k in mat.PARAMS])
        self.grid_mv, self.grid_v = (ti.Vector.field(D, dt, needs_grad=True) for _ in range(2))
        self.grid_m = ti.field(dt, needs_grad=True)
        grid = fb.dense(ti.axes(*range(D + 1)), (B,) + (self.n,) * D)
        grid.place(self.grid_mv, self.grid_v, self.grid_m, self.grid_mv.grad, self.grid_v.grad, self.grid_m.grad)
        self._scratch = (self.grid_m, self.grid_mv, self.grid_v)
        self.kind, self.density = ti.field(ti.i32), ti.field(dt)
        fb.dense(ti.i, self.M).place(self.kind, self.density)
        self.mat_of, self.act_of, self.p_vol = ti.field(ti.i32), ti.field(ti.i32), ti.field(dt)
        fb.dense(ti.i, max(P, 1)).place(self.mat_of, self.act_of, self.p_vol)
        if self.spectral:  # per-particle scratch of the constitutive stages
            self.Q, self.b_bar, self.Ft_bar = (ti.Matrix.field(D, D, dt) for _ in range(3))
            self.tau_e = ti.Matrix.field(D, D, dt, needs_grad=True)
            self.lam = ti.Vector.field(D, dt, needs_grad=True)
            self.g = ti.Vector.field(3 * D, dt, needs_grad=True)
            fb.dense(ti.ij, (B, max(P, 1))).place(self.Q, self.tau_e, self.b_bar, self.Ft_bar, self.lam, self.g,
                                                  self.tau_e.grad, self.lam.grad, self.g.grad)
            self._scratch += (self.tau_e, self.lam, self.g)
        self._finalize(fb)
        self.kind.from_numpy(np.array([mat.KINDS[m["kind"]] for m in self.materials], dtype=np.int32))
        self.density.from_numpy(np.array([m["density"] for m in self.materials], dtype=self.np_dtype))
        self.mat_of.from_numpy(self.material_id)
        self.act_of.from_numpy(self.actuator_id)
        self.p_vol.from_numpy(self.vol.astype(self.np_dtype))

    # ------------------------------------------------------------------ physics
    # One kernel per substep: its four phases are top-level loops, which Taichi runs in order
    # (and reverses in order), so a substep costs one launch forward and two in reverse.
    # (the loops sit in the kernel itself: Taichi's reverse mode refuses any statement
    # outside a loop, and calling a ti.func with arguments makes one)
    @ti.kernel
    def _substep(self, f: ti.i32):
        for b, c in ti.ndrange(self.B, max(self.NC, 1)):
            self.pose[b, f + 1, c] = col.advance(self.pose[b, f, c], self._velocity(b, f, c), self.dt)
        for I in ti.grouped(self.grid_m):
            self.grid_m[I] = 0
            self.grid_mv[I] = ti.Vector.zero(self.dtype, self.dim)
        for b, p in ti.ndrange(self.B, self.P):
            self._p2g(b, f, p)
        for I in ti.grouped(self.grid_m):
            self._grid_update(I, f)
        for b, p in ti.ndrange(self.B, self.P):
            self._g2p(b, f, p, self.grid_v)

    @ti.func
    def _velocity(self, b, f, c):
        """Collider c's (linear, angular) velocity from the actions; zero for the dummy row."""
        on = ti.cast(c < self.NC, self.dtype)
        return ti.Vector([on * self.act[b, f, ti.min(self.A_muscles + c * self.vel_dim + i, max(self.A, 1) - 1)]
                          for i in ti.static(range(self.vel_dim))])

    @ti.func
    def _stencil(self, xp):
        """Base node, fractional offset and quadratic B-spline weights (3 x dim) of a particle."""
        Xp = xp / self.dx
        base = ti.max(ti.min(ti.cast(Xp - 0.5, ti.i32), self.n - 3), 0)
        fx = Xp - base
        w = ti.Matrix.rows([0.5 * (1.5 - fx) ** 2, 0.75 - (fx - 1) ** 2, 0.5 * (fx - 0.5) ** 2])
        return base, fx, w

    @ti.func
    def _weight(self, w, off: ti.template()):
        out = w[off[0], 0]
        for d in ti.static(range(1, self.dim)):
            out = out * w[off[d], d]
        return out

    @ti.func
    def _times_offset(self, M, off: ti.template()):
        """M @ off for a constant stencil offset (entries 0, 1, 2), as additions."""
        out = ti.Vector.zero(self.dtype, self.dim)
        for d in ti.static(range(self.dim)):
            if ti.static(off[d] > 0):
                out += ti.static(off[d]) * ti.Vector([M[i, d] for i in ti.static(range(self.dim))])
        return out

    @ti.func
    def _node(self, b, base, off):
        return ti.Vector([b] + [base[d] + off[d] for d in ti.static(range(self.dim))])

    @ti.func
    def _p2g(self, b, f, p):
        m_id, a_id = self.mat_of[p], self.act_of[p]
        kind = self.kind[m_id]
        Fp, tau = self.F[b, f, p], self.C[b, f, p]
        if ti.static(self.spectral):  # the stages before this kernel wrote F[f + 1] and the stress
            Fp, tau = self.F[b, f + 1, p], self.tau_e[b, p]
            if ti.static(4 in self.kinds):
                visc = self.viscosity[b, m_id] * Fp.determinant() * (self.C[b, f, p] + self.C[b, f, p].transpose())
                tau += ti.select(kind == 4, 1.0, 0.0) * visc
        else:
            mu, lam = mat.lame(self.E[b, m_id], self.nu[b, m_id])
            Fp = mat.project(self.kinds, kind, self._trial(b, f, p), mu, lam, self.yield_stress[b, m_id],
                             self.friction_angle[b, m_id])
            self.F[b, f + 1, p] = Fp
            tau = mat.kirchhoff(self.kinds, kind, Fp, self.C[b, f, p], mu, lam, self.viscosity[b, m_id])
        # a muscle stretches along its axis: s * a * F e e^T F^T. Branch-free: Taichi's reverse
        # mode mishandles a local updated in place inside a branch some particles skip
        Fe = Fp @ ti.Vector.unit(self.dim, self.cfg.act_axis, self.dtype)
        a = ti.cast(a_id >= 0, self.dtype) * self.act[b, f, ti.max(a_id, 0)]
        tau += self.cfg.act_strength * a * Fe.outer_product(Fe)
        vol = self.p_vol[p] / self.m_ref  # the grid holds mass in units of the mean particle's
        mass = vol * self.density[m_id]
        affine = -self.dt * vol * 4 / self.dx ** 2 * tau + mass * self.C[b, f, p]
        base, fx, w = self._stencil(self.x[b, f, p])
        # APIC momentum at node base + off is mv + dx * affine @ off: with off a constant, the
        # product folds to a few additions (fewer statements: a faster compile of the reverse)
        mv = mass * self.v[b, f, p] - self.dx * affine @ fx
        for off in ti.static(ti.grouped(ti.ndrange(*((3,) * self.dim)))):
            weight = self._weight(w, off)
            I = self._node(b, base, off)
            self.grid_mv[I] += weight * (mv + self.dx * self._times_offset(affine, off))
            self.grid_m[I] += weight * mass

    @ti.func
    def _trial(self, b, f, p):
        """F after this step's deformation, before the plastic return."""
        return (ti.Matrix.identity(self.dtype, self.dim) + self.dt * self.C[b, f, p]) @ self.F[b, f, p]

    @ti.func
    def _principal_at(self, b, p, lam):
        m_id = self.mat_of[p]
        mu, la = mat.lame(self.E[b, m_id], self.nu[b, m_id])
        return mat.principal(self.kinds, self.kind[m_id], lam, mu, la, self.yield_stress[b, m_id],
                             self.friction_angle[b, m_id])

    # --- spectral path: eig (custom reverse) -> principal (autodiff) -> assemble (custom reverse)
    @ti.kernel
    def _eig(self, f: ti.i32):
        for b, p in ti.ndrange(self.B, self.P):
            Ft = self._trial(b, f, p)
            self.lam[b, p], self.Q[b, p] = spec.sym_eig(Ft @ Ft.transpose())

    @ti.kernel
    def _principal(self, f: ti.i32):
        for b, p in ti.ndrange(self.B, self.P):
            pv, rv, tv = self._principal_at(b, p, self.lam[b, p])
            self.g[b, p] = self._pack(pv, rv, tv)

    @ti.func
    def _pack(self, pv, rv, tv):
        """(p, r, t) as one 3 dim vector, the layout of the g field; _split undoes it."""
        D = ti.static(self.dim)
        return ti.Vector([pv[i] for i in ti.static(range(D))] + [rv[i] for i in ti.static(range(D))]
                         + [tv[i] for i in ti.static(range(D))])

    @ti.func
    def _split(self, g):
        D = ti.static(self.dim)
        return (ti.Vector([g[i] for i in ti.static(range(D))]), ti.Vector([g[D + i] for i in ti.static(range(D))]),
                ti.Vector([g[2 * D + i] for i in ti.static(range(D))]))

    @ti.kernel
    def _assemble(self, f: ti.i32):
        for b, p in ti.ndrange(self.B, self.P):
            Q = self.Q[b, p]
            pv, rv, tv = self._split(self.g[b, p])
            self.F[b, f + 1, p] = spec.assemble(Q, pv) @ self._trial(b, f, p) + spec.assemble(Q, rv)
            self.tau_e[b, p] = spec.assemble(Q, tv)

    @ti.kernel
    def _assemble_grad(self, f: ti.i32):
        rel = ti.static(1e-5 if self.dtype == ti.f64 else 1e-3)
        for b, p in ti.ndrange(self.B, self.P):
            Q, lam, Ft = self.Q[b, p], self.lam[b, p], self._trial(b, f, p)
            pv, rv, tv = self._split(self.g[b, p])
            F_bar = self.F.grad[b, f + 1, p]
            Gp, Gr, Gt = Q * 0, Q * 0, Q * 0  # divided differences of p, r and t
            for i, j in ti.static([(i, j) for i in range(self.dim) for j in range(i + 1, self.dim)]):
                lam_s, close = spec.spread(lam, i, j, rel)
                ps, rs, ts = self._principal_at(b, p, lam_s)
                Gp[i, j] = Gp[j, i] = spec.divided(lam, pv, lam_s, ps, close, i, j)
                Gr[i, j] = Gr[j, i] = spec.divided(lam, rv, lam_s, rs, close, i, j)
                Gt[i, j] = Gt[j, i] = spec.divided(lam, tv, lam_s, ts, close, i, j)
            p_bar, bp = spec.reverse(Q, F_bar @ Ft.transpose(), Gp)  # F[f+1] = P Ft + R
            r_bar, br = spec.reverse(Q, F_bar, Gr)
            t_bar, bt = spec.reverse(Q, self.tau_e.grad[b, p], Gt)
            self.g.grad[b, p] = self._pack(p_bar, r_bar, t_bar)
            self.b_bar[b, p] = bp + br + bt
            self.Ft_bar[b, p] = spec.assemble(Q, pv) @ F_bar  # P is symmetric
            self.tau_e.grad[b, p] = Q * 0

    @ti.kernel
    def _eig_grad(self, f: ti.i32):
        for b, p in ti.ndrange(self.B, self.P):
            Q, Ft = self.Q[b, p], self._trial(b, f, p)
            b_bar = spec.assemble(Q, self.lam.grad[b, p]) + self.b_bar[b, p]
            Ft_bar = self.Ft_bar[b, p] + 2 * b_bar @ Ft
            A = ti.Matrix.identity(self.dtype, self.dim) + self.dt * self.C[b, f, p]
            self.F.grad[b, f, p] += A.transpose() @ Ft_bar
            self.C.grad[b, f, p] += self.dt * Ft_bar @ self.F[b, f, p].transpose()
            self.lam.grad[b, p] = self.lam[b, p] * 0

    @ti.func
    def _grid_update(self, I, f):
        node = ti.Vector([I[d + 1] for d in ti.static(range(self.dim))])
        # masses are in units of the mean particle's (m_ref): a node below EMPTY of one is masked
        # (no particle reaches it but by a far tail of its weights), where v = mv / m would have
        # a reverse -mv / m^2 beyond float32's range; no epsilon is added to any mass
        m = self.grid_m[I]
        v_free = ti.select(m > EMPTY, self.grid_mv[I] / ti.select(m > EMPTY, m, 1.0), 0.0) \
            + self.dt * self.cfg.gravity * ti.Vector.unit(self.dim, 1, self.dtype)
        b = I[0]
        for c in ti.static(range(self.NC)):
            v_free = col.contact(self.colliders[c], self.pose[b, f, c], self._velocity(b, f, c),
                                 node * self.dx, v_free, 0.5 * self.dx, self.slip)
        # then the walls (last, so a tool cannot push material out of the grid) stop outward
        # motion and apply the friction rule to what remains
        # (branch-free selects: Taichi's reverse mode mishandles locals assigned in branches)
        v, dvn = v_free, m * 0
        for d in ti.static(range(self.dim)):
            out = (node[d] < self.cfg.bound and v_free[d] < 0) or (node[d] >= self.n - self.cfg.bound and v_free[d] > 0)
            v[d] = ti.select(out, 0.0, v_free[d])
            dvn += ti.select(out, ti.abs(v_free[d]), 0.0)
        vg = friction.coulomb(v, dvn, self.cfg.friction, self.slip)
        self.grid_v[I] = vg

    @ti.func
    def _g2p(self, b, f, p, grid: ti.template()):
        """Particle p's new velocity, affine field and position from the grid velocity field `grid`
        (grid_v; a coupled unit passes its own, sims/coupling.py)."""
        base, fx, w = self._stencil(self.x[b, f, p])
        new_v = ti.Vector.zero(self.dtype, self.dim)
        moment = ti.Matrix.zero(self.dtype, self.dim, self.dim)  # sum of w v (x) off; off constant
        for off in ti.static(ti.grouped(ti.ndrange(*((3,) * self.dim)))):
            wv = self._weight(w, off) * grid[self._node(b, base, off)]
            new_v += wv
            moment += wv.outer_product(off)
        self.v[b, f + 1, p] = new_v
        self.C[b, f + 1, p] = 4 / self.dx * (moment - new_v.outer_product(fx))
        self.x[b, f + 1, p] = self.x[b, f, p] + self.dt * new_v

    # ------------------------------------------------------- adjoint engine contract
    def units(self, n):
        """Substep f as one stage (after the three constitutive stages on the spectral path);
        its reverse first recomputes them all, restoring the scratch grid and stresses."""
        if not self.spectral:
            return [[Stage(self._substep, (f,), recompute=True)] for f in range(n)]
        return [[Stage(self._eig, (f,), grad=self._eig_grad, recompute=True),
                 Stage(self._principal, (f,), recompute=True),
                 Stage(self._assemble, (f,), grad=self._assemble_grad, recompute=True),
                 Stage(self._substep, (f,), recompute=True)] for f in range(n)]

    def reset_params(self):
        self.set_params({k: np.array([m[k] for m in self.materials]) for k in self.param_names})

    def _check_params(self, values):
        self._check_stable(values["E"], values["nu"])

    def initial_state(self):
        """Rest: sampled positions, zero velocity and affine field, F = I, colliders at their
        configured poses (one all-zero row when there is none); shapes (B, P or colliders, ...)."""
        x = np.broadcast_to(self.x_init, (self.B, self.P, self.dim)).astype(np.float64)
        eye = np.broadcast_to(np.eye(self.dim), (self.B, self.P, self.dim, self.dim)).copy()
        pose = self.pose_init if self.NC else np.zeros((1, self.pose_dim))
        return x, np.zeros_like(x), np.zeros_like(eye), eye, np.broadcast_to(pose, (self.B,) + pose.shape).copy()
