"""Tetrahedral FEM (stable neo-Hookean, explicit symplectic Euler, lumped mass), B worlds per
launch, with mounted vertices that follow a rigid body and penalty contact with rigid SDF objects.

A substep is two kernels, their phases in the order they run:
  _forces: poses (the mount body and the objects advance by their velocity actions) ->
    clear the force scratch -> elastic + damping forces per tet (scattered to its vertices);
  _move: per vertex: velocity update, contact with each object (penalty + the smoothed
    Coulomb rule), mounted vertices set to the body's pose, position update, force readout.
The force scratch is recomputed by the reverse (the engine's `recompute`), never stored.

Stable neo-Hookean (Smith, de Goes and Kim 2018) without the log term:
  psi = mu/2 (I_C - 3) + la/2 (J - alpha)^2,  la = lambda + mu,  alpha = 1 + mu / la,
  P = mu F + la (J - alpha) cof F,
which is rest-stable, matches linear elasticity (E, nu) at small strain and stays finite for
inverted tets. Damping is Kelvin-Voigt on the Green strain rate (rotation-free):
  P_d = F S_d,  S_d = beta (2 mu E' + lambda tr(E') I),  E' = sym(F^T F').
"""
import math
from types import SimpleNamespace

import numpy as np
import taichi as ti
import torch

from . import colliders as col
from . import float_dtype, friction, init, sdf, tetmesh
from . import materials as mat
from .adjoint import Stage
from .state import FramedState

MATERIAL = dict(E=2e5, nu=0.45, density=1000.0, damping=0.0)  # Pa, -, kg/m^3, s (beta)
# stiffness: penalty pressure per penetration, in units of E / h (h: the mean surface edge);
# damping: the contact dashpot's damping ratio; softness: the penalty's softplus width, in h;
# slip: the friction rule's smoothing speed, in h per substep
# filter: the force readout's low-pass time constant (s; 0: the last substep's force), as a force
# sensor's bandwidth: a coarse gel's contact rings from node to node
CONTACT = dict(stiffness=20.0, damping=0.5, softness=2e-3, slip=1e-4, filter=0.0)
VEL = 6  # a body's velocity: linear then angular


@ti.data_oriented
class FEM(FramedState):
    """A tetrahedral elastic body (sims/tetmesh.py mesh) mounted on a kinematic body.

    State: x, v (B, N, 3) vertices; body (B, 1, 7) the mount's pose (position, unit quaternion);
    pose (B, objects or 1, 7) the rigid objects' poses; contact (B, 1, 3) the total force the
    objects exert on the body during the last substep (world frame; low-pass filtered if the contact
    config's `filter` > 0); clock (B, 1) the time (s).
    Actions (B, A): the mount's linear and angular velocity, then each object's (6 numbers each).
    Parameters (per world): E, nu, density, damping; all differentiable.
    The mesh is given in the mount's frame; `mount` (N,) bool marks the vertices fixed to it
    (default: those in its base plane y = 0).
    """

    def __init__(self, mesh, num_worlds=1, dt=1e-5, segment=32, material=None, gravity=(0.0, -9.8, 0.0),
                 mount=None, body_pose=(0, 0, 0, 1, 0, 0, 0), objects=None, contact=None, coupled=False):
        init()
        self.mesh = mesh
        self.N, self.T = len(mesh.vertices), len(mesh.tets)
        self.B, self.K, self.dt, self.dim = int(num_worlds), int(segment), float(dt), 3
        self.coupled = bool(coupled)  # a coupling (sims/coupling.py) adds its force f_cpl per substep
        material = _checked("material", MATERIAL, material)
        self.contact_cfg = c = _checked("contact", CONTACT, contact)
        self._c = SimpleNamespace(**c)
        if c["filter"] < 0:
            raise ValueError(f"contact key 'filter' must be >= 0 (s), got {c['filter']}")
        self._keep = 1.0 - math.exp(-float(dt) / c["filter"]) if c["filter"] > 0 else 1.0  # this substep's share
        self.gravity = tuple(float(g) for g in np.broadcast_to(np.asarray(gravity, float), (3,)))
        edges = mesh.vertices[mesh.surface] - mesh.vertices[np.roll(mesh.surface, 1, axis=1)]
        self.h = float(np.linalg.norm(edges, axis=-1).mean())  # the mesh's own length scale
        self.slip = c["slip"] * self.h / self.dt
        self.objects, self.pose_init = col.parse(objects, 3, 2 * c["softness"] * self.h)
        self.NO = len(self.objects)
        self.A = VEL * (1 + self.NO)
        self.body_init = np.asarray(body_pose, float).reshape(7)
        if mount is None:
            y = mesh.vertices[:, 1]
            mount = y >= -1e-9 * np.ptp(mesh.vertices)  # the base plane y = 0 (a tolerance relative to the mesh)
        self.mount = np.asarray(mount, bool).reshape(self.N)
        self._geometry()
        self.material_init = material
        self._check_stable(material)
        self.dtype = float_dtype()
        self.np_dtype = np.float64 if self.dtype == ti.f64 else np.float32
        self._allocate()
        self.reset_params()

    # ------------------------------------------------------------------ set-up
    def _geometry(self):
        """Rest shape matrices, volumes, lumped volumes and surface areas per vertex, and the
        row sums that bound the stiffness matrix's largest eigenvalue (for the dt check)."""
        X, tets = self.mesh.vertices, self.mesh.tets
        Dm = np.stack([X[tets[:, k]] - X[tets[:, 0]] for k in (1, 2, 3)], -1)
        self.vol0 = np.linalg.det(Dm) / 6.0
        self.Dm_inv = np.linalg.inv(Dm)
        self.vol_v = np.bincount(tets.ravel(), np.repeat(self.vol0 / 4, 4), minlength=self.N)
        area = 0.5 * np.linalg.norm(tetmesh.face_normals(X, self.mesh.surface), axis=-1)
        self.area_v = np.bincount(self.mesh.surface.ravel(), np.repeat(area / 3, 3), minlength=self.N)
        # shape-function gradients (T, 4, 3): rows of Dm^-1, and minus their sum for vertex 0
        g = np.concatenate([-self.Dm_inv.sum(1, keepdims=True), self.Dm_inv], 1)
        # the displacement gradient of u (12 numbers) is sum_k u_k (x) g_k: the (T, 9, 12) map G
        G = np.einsum("ac,tkb->tabkc", np.eye(3), g).reshape(-1, 9, 12)
        sym = 0.5 * (np.eye(9) + np.eye(9).reshape(3, 3, 3, 3).transpose(1, 0, 2, 3).reshape(9, 9))
        trace = np.eye(3).reshape(1, 9)
        A_mu = 2 * np.einsum("tai,ab,tbj->tij", G, sym.T @ sym, G)   # K_e / V_e = lambda A_la + mu A_mu
        A_la = np.einsum("tai,ab,tbj->tij", G, trace.T @ trace, G)
        # Gershgorin on M^-1/2 K M^-1/2 (lumped M = density * vol_v): the largest eigenvalue is at most
        # max over rows of sum_j |K_ij| / sqrt(m_i m_j) <= (lambda row_la + mu row_mu) / density. Unlike
        # Irons' element bound, slivers count with their vertices' whole masses, not their own.
        scale = 1 / np.sqrt(self.vol_v[np.repeat(tets, 3, axis=1)])  # (T, 12)
        rows = lambda A: np.bincount(np.repeat(tets, 3, axis=1).ravel(), (np.abs(A * self.vol0[:, None, None])
                                     * scale[:, :, None] * scale[:, None, :]).sum(2).ravel(), minlength=self.N)
        # (a vertex's three rows summed: a bound on each, cheaper than keeping them apart)
        self.row_mu, self.row_la = rows(A_mu), rows(A_la)

    def _check_stable(self, m):
        """dt against the largest frequency: a Gershgorin bound of the lumped-mass stiffness plus
        the contact penalty's, damped by the larger of the material's and the contact's ratios."""
        E, nu, rho, beta = (np.asarray(m[k], float) for k in ("E", "nu", "density", "damping"))
        for k, ok in (("E", E > 0), ("nu", (nu > -1) & (nu < 0.5)), ("density", rho > 0), ("damping", beta >= 0)):
            if not (np.isfinite(m[k]).all() and np.all(ok)):
                raise ValueError(f"FEM parameter {k!r} out of range: {np.ravel(m[k])} (need E > 0, -1 < nu < 0.5, "
                                 "density > 0, damping >= 0)")
        mu, lam = E / (2 * (1 + nu)), E * nu / ((1 + nu) * (1 - 2 * nu))
        w_el = np.max(np.multiply.outer(lam, self.row_la) + np.multiply.outer(mu, self.row_mu), -1) / rho
        surf = self.area_v > 0
        w_c = self.contact_cfg["stiffness"] * E / self.h * np.max(self.area_v[surf] / self.vol_v[surf]) / rho \
            if self.NO else 0 * E
        omega = np.sqrt(w_el + w_c)
        zeta = np.maximum(0.5 * beta * np.sqrt(w_el), self.contact_cfg["damping"] if self.NO else 0.0)
        limit = np.min(2.0 / omega * (np.sqrt(1 + zeta ** 2) - zeta))
        if not (0 < self.dt < limit):
            raise ValueError(f"unstable dt={self.dt}: FEM parameters 'E' (up to {np.max(E):.4g}), 'nu' "
                             f"(up to {np.max(nu):.3g}), 'density' (down to {np.min(rho):.4g}), 'damping' "
                             f"({np.max(beta):.3g}) and the contact stiffness on this mesh need dt < {limit:.3g}")

    def _check_params(self, values):
        self._check_stable(values)

    def _allocate(self):
        B, N, T, dt = self.B, self.N, self.T, self.dtype
        fb = self._fields([("x", N, (3,)), ("v", N, (3,)), ("body", 1, (7,)), ("pose", max(self.NO, 1), (7,)),
                           ("contact", 1, (3,)), ("clock", 1, ())], [(k, ()) for k in MATERIAL])
        self.f_int = ti.Vector.field(3, dt, needs_grad=True)
        fb.dense(ti.ij, (B, N)).place(self.f_int, self.f_int.grad)
        self._scratch = (self.f_int,)
        if self.coupled:
            self.f_cpl = ti.Vector.field(3, dt, needs_grad=True)
            fb.dense(ti.ij, (B, N)).place(self.f_cpl, self.f_cpl.grad)
            self._scratch += (self.f_cpl,)
        self.tets = ti.Vector.field(4, ti.i32)
        self.Dm_inv_f, self.vol0_f = ti.Matrix.field(3, 3, dt), ti.field(dt)
        fb.dense(ti.i, T).place(self.tets, self.Dm_inv_f, self.vol0_f)
        self.rest, self.vol_v_f, self.root_a, self.fixed = ti.Vector.field(3, dt), ti.field(dt), ti.field(dt), ti.field(dt)
        fb.dense(ti.i, N).place(self.rest, self.vol_v_f, self.root_a, self.fixed)
        self._finalize(fb)
        f = self.np_dtype
        self.tets.from_numpy(self.mesh.tets.astype(np.int32))
        self.Dm_inv_f.from_numpy(self.Dm_inv.astype(f))
        self.vol0_f.from_numpy(self.vol0.astype(f))
        self.rest.from_numpy(self.mesh.vertices.astype(f))
        self.vol_v_f.from_numpy(self.vol_v.astype(f))
        self.root_a.from_numpy(np.sqrt(self.area_v / self.vol_v).astype(f))  # sqrt(area / volume) per vertex
        self.fixed.from_numpy(self.mount.astype(f))

    # ------------------------------------------------------------------ physics
    @ti.kernel
    def _forces(self, f: ti.i32):
        for b in range(self.B):
            self.body[b, f + 1, 0] = col.advance(self.body[b, f, 0], self._velocity(b, f, 0), self.dt)
            self.contact[b, f + 1, 0] = (1 - self._keep) * self.contact[b, f, 0]
            self.clock[b, f + 1, 0] = self.clock[b, f, 0] + self.dt
        for b, c in ti.ndrange(self.B, max(self.NO, 1)):
            self.pose[b, f + 1, c] = col.advance(self.pose[b, f, c], self._velocity(b, f, c + 1), self.dt)
        for b, i in ti.ndrange(self.B, self.N):
            self.f_int[b, i] = ti.Vector.zero(self.dtype, 3)
        for b, e in ti.ndrange(self.B, self.T):
            self._elastic(b, f, e)

    @ti.kernel
    def _move(self, f: ti.i32):
        for b, i in ti.ndrange(self.B, self.N):
            self._integrate(b, f, i)

    @ti.func
    def _velocity(self, b, f, c):
        """Body c's (linear, angular) velocity: c = 0 the mount, c >= 1 object c - 1 (zero for
        the dummy row of a scene without objects)."""
        on = ti.cast(c <= self.NO, self.dtype)
        return ti.Vector([on * self.act[b, f, ti.min(VEL * c + k, self.A - 1)] for k in ti.static(range(VEL))])

    @ti.func
    def _elastic(self, b, f, e):
        ids = self.tets[e]
        x0, v0 = self.x[b, f, ids[0]], self.v[b, f, ids[0]]
        Ds = ti.Matrix.cols([self.x[b, f, ids[k]] - x0 for k in ti.static(range(1, 4))])
        Dv = ti.Matrix.cols([self.v[b, f, ids[k]] - v0 for k in ti.static(range(1, 4))])
        Dinv = self.Dm_inv_f[e]
        F, dF = _mm(Ds, Dinv), _mm(Dv, Dinv)
        mu, lam = mat.lame(self.E[b], self.nu[b])
        la = lam + mu
        c0 = ti.Vector([F[0, 0], F[1, 0], F[2, 0]])
        c1 = ti.Vector([F[0, 1], F[1, 1], F[2, 1]])
        c2 = ti.Vector([F[0, 2], F[1, 2], F[2, 2]])
        cof = ti.Matrix.cols([c1.cross(c2), c2.cross(c0), c0.cross(c1)])  # J F^-T
        P = mu * F + la * (c0.dot(c1.cross(c2)) - 1.0 - mu / la) * cof
        rate = _mm(F.transpose(), dF)
        rate = 0.5 * (rate + rate.transpose())
        P += self.damping[b] * _mm(F, 2 * mu * rate + lam * rate.trace() * ti.Matrix.identity(self.dtype, 3))
        H = -self.vol0_f[e] * _mm(P, Dinv.transpose())
        h0 = ti.Vector.zero(self.dtype, 3)
        for k in ti.static(range(3)):
            hk = ti.Vector([H[0, k], H[1, k], H[2, k]])
            self.f_int[b, ids[k + 1]] += hk
            h0 -= hk
        self.f_int[b, ids[0]] += h0

    @ti.func
    def _integrate(self, b, f, i):
        m = self.density[b] * self.vol_v_f[i]
        x = self.x[b, f, i]
        fc = ti.Vector.zero(self.dtype, 3)  # the coupled MPM body's push (sims/coupling.py)
        if ti.static(self.coupled):
            fc = self.f_cpl[b, i]
        v1 = self.v[b, f, i] + self.dt * ((self.f_int[b, i] + fc) / m + ti.Vector(self.gravity, self.dtype))
        v2 = v1
        for c in ti.static(range(self.NO)):
            v2 = self._touch(b, f, c, x, v2, i)
        # a mounted vertex follows the body: at its rest point in the body's new pose
        pose = self.body[b, f + 1, 0]
        xm = sdf.rotate(pose, self.rest[i]) + ti.Vector([pose[0], pose[1], pose[2]])
        w = self.fixed[i]
        xn = w * xm + (1 - w) * (x + self.dt * v2)
        self.x[b, f + 1, i] = xn
        self.v[b, f + 1, i] = (xn - x) / self.dt
        self.contact[b, f + 1, 0] += self._keep * (1 - w) * (m / self.dt * (v2 - v1) + fc)

    @ti.func
    def _touch(self, b, f, c: ti.template(), x, v, i):
        """Velocity after object c's penalty push (softplus of the penetration, per surface area,
        stiffness kappa E / h) with a dashpot, then smoothed Coulomb friction on the tangential
        velocity relative to the object's surface."""
        pose = self.pose[b, f, c]
        phi = sdf.world(self.objects[c], pose, x)
        n = sdf.normal(self.objects[c], pose, x, 0.25 * self.h)
        s = self.objects[c].softness
        z = -phi / s
        zc = ti.min(ti.max(z, -30.0), 30.0)
        pen = s * (ti.log(1.0 + ti.exp(zc)) + ti.max(z - 30.0, 0.0))
        cover = 1.0 / (1.0 + ti.exp(-zc))
        vel = self._velocity(b, f, c + 1)
        r = x - ti.Vector([pose[0], pose[1], pose[2]])
        vo = ti.Vector([vel[0], vel[1], vel[2]]) + ti.Vector([vel[3], vel[4], vel[5]]).cross(r)
        rel = v - vo
        vn = rel.dot(n)
        # the penalty's frequency^2 k = kappa E / h * area / mass, split so that no sqrt meets a zero area
        w = ti.sqrt(self._c.stiffness * self.E[b] / (self.h * self.density[b]))
        a = self.root_a[i]
        push = ti.max(self.dt * w * a * (w * a * pen - 2 * self._c.damping * cover * vn), 0.0)
        vt = friction.coulomb(rel - vn * n, push, self.objects[c].friction, self.slip)
        return vo + vt + (vn + push) * n

    # ------------------------------------------------------- adjoint engine contract
    def units(self, n):
        """Substep f as two stages; the reverse recomputes the first (restoring the force scratch)."""
        return [[Stage(self._forces, (f,), recompute=True), Stage(self._move, (f,))] for f in range(n)]

    def reset_params(self):
        self.set_params({k: self.material_init[k] for k in self.param_names})

    def initial_state(self):
        """At rest: the mesh placed at the body's configured pose, zero velocity and contact force,
        objects at their configured poses (one all-zero row when there is none), time zero."""
        x = transform(self.body_init, self.mesh.vertices)
        pose = self.pose_init if self.NO else np.zeros((1, 7))
        rep = lambda a: np.broadcast_to(a, (self.B,) + np.shape(a)).astype(np.float64).copy()
        return rep(x), rep(np.zeros_like(x)), rep(self.body_init[None]), rep(pose), rep(np.zeros((1, 3))), rep(np.zeros(1))


@ti.func
def _mm(A, B):
    """A @ B as one expression: Taichi's matmul accumulates into a local, whose reverse made the
    force kernel's compile take minutes."""
    return ti.Matrix([[A[i, 0] * B[0, j] + A[i, 1] * B[1, j] + A[i, 2] * B[2, j] for j in ti.static(range(3))]
                      for i in ti.static(range(3))])


def quat_matrix(q):
    """Rotation matrices (..., 3, 3) of quaternions (..., 4) as (w, x, y, z), torch (normalized first)."""
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack([torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
                        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
                        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)], -2)


def transform(pose, points):
    """Points (N, 3) given in a body's frame, placed at pose (7,): world points (N, 3), numpy."""
    pose = np.asarray(pose, float)
    return points @ quat_matrix(torch.as_tensor(pose[3:])).numpy().T + pose[:3]


def _checked(where, defaults, given):
    given = dict(given or {})
    if set(given) - set(defaults):
        raise ValueError(f"unknown {where} key(s) {sorted(set(given) - set(defaults))}; allowed {sorted(defaults)}")
    out = {**defaults, **{k: float(v) for k, v in given.items()}}
    bad = [k for k, v in out.items() if not math.isfinite(v)]
    if bad:
        raise ValueError(f"{where} key {bad[0]!r} must be finite, got {out[bad[0]]}")
    return out
