"""Isotropic functions of a symmetric matrix and their exact reverse, for 3D materials.

A material's plastic return and stress are isotropic functions of b = F F^T:
G(b) = Q diag(g(lam)) Q^T with b = Q diag(lam) Q^T. Differentiating through an SVD or an
eigensolver divides by lam_i - lam_j, which is 0/0 at repeated eigenvalues (every particle
at rest has F = I). The reverse here avoids that (Daleckii-Krein): with M = Q^T sym(G_bar) Q,

    g_bar = diag(M)                      (to the autodiff'd g, which returns lam_bar)
    b_bar = Q (diag(lam_bar) + Gamma o M) Q^T,   Gamma_ij = (g_i - g_j) / (lam_i - lam_j),

and Gamma_ij, a divided difference, is evaluated at symmetrically spread eigenvalues when
lam_i and lam_j nearly coincide (`spread`): Gamma is even in lam_i - lam_j, so that costs
O(SPREAD^2). The eigensolver is cyclic Jacobi, forward only (Taichi 1.7.4's 3x3
ti.sym_eig loses a third of the matrix near repeated eigenvalues).
"""
import taichi as ti

JACOBI_SWEEPS = 6  # quadratic convergence: 3x3 reaches rounding in 4-5 sweeps from any start


@ti.func
def eye_like(A):
    Id = A * 0
    for i in ti.static(range(A.n)):
        Id[i, i] = 1
    return Id


@ti.func
def sym_eig(A):
    """Eigenvalues (vector) and orthonormal eigenvectors (columns of Q) of a symmetric A.
    Forward only; the sweeps are a runtime loop, which keeps the kernel quick to compile."""
    n = ti.static(A.n)
    Q = eye_like(A)
    for _ in range(JACOBI_SWEEPS):
        for p, q in ti.static([(p, q) for p in range(n) for q in range(p + 1, n)]):
            apq = A[p, q]
            theta = (A[q, q] - A[p, p]) / (2 * apq + ti.select(apq == 0, 1.0, 0.0))
            t = ti.select(theta >= 0, 1.0, -1.0) / (ti.abs(theta) + ti.sqrt(1 + theta * theta))
            t = ti.select(apq == 0, 0.0, t)
            c = 1 / ti.sqrt(1 + t * t)
            s = t * c
            A[p, p] -= t * apq
            A[q, q] += t * apq
            A[p, q], A[q, p] = 0.0, 0.0
            for r in ti.static([r for r in range(n) if r != p and r != q]):
                arp, arq = A[r, p], A[r, q]
                A[r, p] = A[p, r] = c * arp - s * arq
                A[r, q] = A[q, r] = s * arp + c * arq
            for r in ti.static(range(n)):
                vrp, vrq = Q[r, p], Q[r, q]
                Q[r, p], Q[r, q] = c * vrp - s * vrq, s * vrp + c * vrq
    return ti.Vector([A[i, i] for i in ti.static(range(n))]), Q


@ti.func
def assemble(Q, g):
    """Q diag(g) Q^T."""
    out = Q * 0
    for k in ti.static(range(g.n)):
        col = ti.Vector([Q[i, k] for i in ti.static(range(g.n))])
        out += g[k] * col.outer_product(col)
    return out


@ti.func
def spread(lam, i: ti.template(), j: ti.template(), rel):
    """lam with entries i, j moved to their mean -+ rel * mean / 2, and whether they were
    closer than that (then Gamma_ij is taken at the spread pair)."""
    m = 0.5 * (lam[i] + lam[j])
    out = lam
    out[i], out[j] = m + 0.5 * rel * m, m - 0.5 * rel * m
    return out, ti.abs(lam[i] - lam[j]) < rel * m


@ti.func
def divided(lam, g, lam_s, g_s, close, i: ti.template(), j: ti.template()):
    """Gamma_ij = (g_i - g_j) / (lam_i - lam_j), from the spread pair when lam_i ~ lam_j."""
    near = (g_s[i] - g_s[j]) / (lam_s[i] - lam_s[j])
    far = (g[i] - g[j]) / (lam[i] - lam[j] + ti.select(close, 1.0, 0.0))
    return ti.select(close, near, far)


@ti.func
def reverse(Q, G_bar, Gamma):
    """(g_bar, off-diagonal part of b_bar) for G = Q diag(g) Q^T; Gamma has a zero diagonal."""
    M = Q.transpose() @ (0.5 * (G_bar + G_bar.transpose())) @ Q
    g_bar = ti.Vector([M[i, i] for i in ti.static(range(M.n))])
    return g_bar, Q @ (Gamma * M) @ Q.transpose()
