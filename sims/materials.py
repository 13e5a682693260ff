"""Constitutive models for MLS-MPM, as Taichi functions of the deformation gradient.

Two forms of the same models. The matrix form (2D, fused into the MPM substep) uses closed
forms without an SVD: the polar rotation, and log / exp of a symmetric 2x2 matrix written
smooth in the squared eigenvalue gap, so their reverse-mode gradients are finite and correct
at F = I and at repeated singular values. The principal form (any dimension, 3D's path) takes
the eigenvalues of b = F F^T; sims/spectral.py assembles it and supplies the exact reverse.

Kinds: 0 fixed-corotated, 1 neo-Hookean, 2 plasticine (von Mises on Hencky strain,
St. Venant-Kirchhoff elasticity), 3 sand (Drucker-Prager, same elasticity), 4 fluid
(weakly compressible with viscosity). Stresses are Kirchhoff stresses tau = P F^T.
"""
import math

import taichi as ti

from .spectral import eye_like as _identity_like

KINDS = {"fixed_corotated": 0, "neo_hookean": 1, "plasticine": 2, "sand": 3, "fluid": 4}
# the parameters each material owns, with defaults; all are differentiable
PARAMS = {"E": 1e3, "nu": 0.2, "yield_stress": 50.0, "friction_angle": 30.0, "viscosity": 0.0}


@ti.func
def lame(E, nu):
    """(mu, lambda) from Young's modulus and Poisson ratio."""
    return E / (2 * (1 + nu)), E * nu / ((1 + nu) * (1 - 2 * nu))


@ti.func
def polar_rotation(F):
    """R of F = R S (2x2, closed form)."""
    a, b = F[0, 0] + F[1, 1], F[1, 0] - F[0, 1]
    r = ti.sqrt(a * a + b * b + 1e-20)
    return ti.Matrix([[a / r, -b / r], [b / r, a / r]])


@ti.func
def _sym2(M, log: ti.template()):
    """log or exp of a symmetric 2x2 M in closed form: f0 I + f1 (M - m I), where m +- d are
    its eigenvalues. f0 and f1 are even in d, so they are smooth in q = d^2 and a series takes
    over near repeated eigenvalues (no division by zero, no kink). Both forms are computed and
    ti.select picks one: Taichi's reverse mode mishandles locals assigned in branches that
    neighbouring particles take differently."""
    m = 0.5 * (M[0, 0] + M[1, 1])
    q = 0.25 * (M[0, 0] - M[1, 1]) ** 2 + M[0, 1] * M[1, 0]
    f0, f1 = 0.0 * m, 0.0 * m
    if ti.static(log):
        small = q < 1e-8 * m * m
        d = ti.sqrt(ti.max(q, 1e-8 * m * m))
        f0 = 0.5 * ti.log(m * m - q)
        f1 = ti.select(small, 1 / m + q / (3 * m ** 3) + q * q / (5 * m ** 5), 0.5 * (ti.log(m + d) - ti.log(m - d)) / d)
    else:
        small = q < 1e-8
        d = ti.sqrt(ti.max(q, 1e-8))
        em = ti.exp(m)
        f0 = em * ti.select(small, 1 + q / 2 + q * q / 24, 0.5 * (ti.exp(d) + ti.exp(-d)))
        f1 = em * ti.select(small, 1 + q / 6 + q * q / 120, 0.5 * (ti.exp(d) - ti.exp(-d)) / d)
    Id = _identity_like(M)
    return f0 * Id + f1 * (M - m * Id)


@ti.func
def hencky(F):
    """Left Hencky strain log(F F^T) / 2 (symmetric)."""
    return 0.5 * _sym2(F @ F.transpose(), True)


@ti.func
def _dev_norm(eps):
    d = ti.static(eps.n)
    dev = eps - eps.trace() / d * _identity_like(eps)
    return dev, ti.sqrt((dev * dev).sum() + 1e-20)


@ti.func
def _von_mises(norm, mu, yield_stress):
    """Fraction of the deviatoric strain (norm: its size) that the von Mises return removes."""
    return ti.max(0.0, 1.0 - yield_stress / (2 * mu * norm))


@ti.func
def _drucker_prager(norm, tr, d: ti.template(), mu, lam, friction_angle):
    """Klar et al. 2016: the plastic multiplier (> 0: outside the cone) for deviatoric strain
    of size norm and volumetric strain tr."""
    sphi = ti.sin(friction_angle * math.pi / 180)
    alpha = ti.sqrt(2.0 / 3.0) * 2 * sphi / (3 - sphi)
    return norm + (d * lam + 2 * mu) / (2 * mu) * tr * alpha


@ti.func
def project(kinds: ti.template(), kind, F, mu, lam, yield_stress, friction_angle):
    """Plastic return mapping: the elastic part of F after this step's deformation.

    `kinds` (static) lists the kinds present, so a scene compiles only its own materials."""
    out = F
    if ti.static(2 in kinds):
        if kind == 2:  # von Mises: shrink the deviatoric Hencky strain onto the yield surface
            dev, norm = _dev_norm(hencky(F))
            gamma = _von_mises(norm, mu, yield_stress)
            out = _sym2(-gamma * dev, False) @ F
    if ti.static(3 in kinds):
        if kind == 3:  # Drucker-Prager (Klar et al. 2016): no tension, cone in compression
            eps = hencky(F)
            dev, norm = _dev_norm(eps)
            tr = eps.trace()
            dgamma = _drucker_prager(norm, tr, ti.static(F.n), mu, lam, friction_angle)
            if tr > 0:
                out = _sym2(-eps, False) @ F
            elif dgamma > 0:
                out = _sym2(-dgamma / norm * dev, False) @ F
    if ti.static(4 in kinds):
        if kind == 4:  # fluid keeps only the volume change
            J = F.determinant()
            out = _identity_like(F) * ti.pow(J, 1.0 / ti.static(F.n))
    return out


@ti.func
def kirchhoff(kinds: ti.template(), kind, F, C, mu, lam, viscosity):
    """Kirchhoff stress tau of elastic deformation F (C: the particle's velocity gradient)."""
    J = F.determinant()
    Id = _identity_like(F)
    tau = Id * 0
    if ti.static(0 in kinds):
        if kind == 0:
            R = polar_rotation(F)
            tau = 2 * mu * (F - R) @ F.transpose() + lam * (J - 1) * J * Id
    if ti.static(1 in kinds):
        if kind == 1:
            tau = mu * (F @ F.transpose() - Id) + lam * ti.log(J) * Id
    if ti.static(2 in kinds or 3 in kinds):
        if kind == 2 or kind == 3:
            eps = hencky(F)
            tau = 2 * mu * eps + lam * eps.trace() * Id
    if ti.static(4 in kinds):
        if kind == 4:  # fluid: bulk modulus K = lambda + 2 mu / d, pressure from J, plus viscosity
            K = lam + 2 * mu / ti.static(F.n)
            tau = K * (J - 1) * J * Id + viscosity * J * (C + C.transpose())
    return tau


@ti.func
def _pick(kind, k: ti.template(), val, out):
    """out with val where kind == k (element-wise select: safe under reverse mode)."""
    for i in ti.static(range(out.n)):
        out[i] = ti.select(kind == k, val[i], out[i])
    return out


@ti.func
def principal(kinds: ti.template(), kind, lam, mu, la, yield_stress, friction_angle):
    """The same models in principal form, for the spectral path (sims/spectral.py).

    lam: eigenvalues of b = F F^T for the trial F (after this step's deformation). Returns
    (p, r, t): the elastic F after the plastic return is Q diag(p) Q^T F + Q diag(r) Q^T, and
    its Kirchhoff stress (less fluid viscosity) is Q diag(t) Q^T. Branch-free, for reverse mode."""
    d = ti.static(lam.n)
    one = lam * 0 + 1
    J = ti.sqrt(_prod(lam))
    p, r, t = one, lam * 0, lam * 0
    if ti.static(0 in kinds):
        t = _pick(kind, 0, 2 * mu * (lam - ti.sqrt(lam)) + la * (J - 1) * J * one, t)
    if ti.static(1 in kinds):
        t = _pick(kind, 1, mu * (lam - 1) + la * ti.log(J) * one, t)
    if ti.static(2 in kinds or 3 in kinds):
        eps = 0.5 * ti.log(lam)  # principal Hencky strains
        tr = eps.sum()
        dev = eps - tr / d
        norm = ti.sqrt(dev.dot(dev) + 1e-20)
        shift = eps * 0  # the plastic strain this step removes
        if ti.static(2 in kinds):  # von Mises: shrink the deviatoric strain onto the yield surface
            shift = _pick(kind, 2, _von_mises(norm, mu, yield_stress) * dev, shift)
        if ti.static(3 in kinds):  # Drucker-Prager: no tension; in compression, back to the cone
            dgamma = _drucker_prager(norm, tr, d, mu, la, friction_angle)
            tension = ti.select(tr > 0, 1.0, 0.0)
            cone = (1 - tension) * ti.select(dgamma > 0, 1.0, 0.0)
            shift = _pick(kind, 3, tension * eps + cone * dgamma / norm * dev, shift)
        eps_e = eps - shift
        plastic = kind == 2 or kind == 3
        p = _pick(plastic, True, ti.exp(-shift), p)
        t = _pick(plastic, True, 2 * mu * eps_e + la * eps_e.sum() * one, t)
    if ti.static(4 in kinds):  # fluid keeps only the volume change: F -> J^(1/d) I
        p = _pick(kind, 4, 0 * one, p)
        r = _pick(kind, 4, ti.pow(J, 1.0 / d) * one, r)
        t = _pick(kind, 4, (la + 2 * mu / d) * (J - 1) * J * one, t)
    return p, r, t


@ti.func
def _prod(v):
    out = v[0]
    for i in ti.static(range(1, v.n)):
        out *= v[i]
    return out
