"""The 3D constitutive stages (eigensolver, principal-form materials, hand-written reverse)
against float64 finite differences, at generic, doubly and triply repeated eigenvalues, and
the spectral path against 2D's closed forms."""
import numpy as np
import pytest
import taichi as ti

from diffsuite.sims import gradcheck, init, sampling, spectral
from diffsuite.sims.mpm import MPM

from test_mpm import MATERIALS, PARAM_OF, _block, _problem


def _rotation(rng):
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.linalg.det(q))


def _cases(P, rng):
    """(F, C) batches: generic; b with a double eigenvalue; b = 0.81 I (triple), C = 0."""
    generic = (np.eye(3) + 0.3 * rng.standard_normal((P, 3, 3)), rng.standard_normal((P, 3, 3)))
    double = np.stack([R @ np.diag([1.1, 1.1, 0.85]) @ R.T for R in (_rotation(rng) for _ in range(P))])
    triple = np.broadcast_to(0.9 * np.eye(3), (P, 3, 3)).copy()
    zero = np.zeros((P, 3, 3))
    return {"generic": generic, "double": (double, zero), "triple": (triple, zero)}


def test_jacobi_eigensolver_is_exact_at_repeated_eigenvalues():
    init()
    rng = np.random.default_rng(0)
    A = np.stack([np.eye(3), np.diag([1.2, 1.2, 0.8])] + [m @ m.T for m in np.eye(3) + rng.standard_normal((30, 3, 3))])
    A[1] = (R := _rotation(rng)) @ A[1] @ R.T
    A_f, lam_f = ti.Matrix.field(3, 3, ti.f64, len(A)), ti.Vector.field(3, ti.f64, len(A))
    Q_f = ti.Matrix.field(3, 3, ti.f64, len(A))

    @ti.kernel
    def eig():
        for i in A_f:
            lam_f[i], Q_f[i] = spectral.sym_eig(A_f[i])
    A_f.from_numpy(A)
    eig()
    lam, Q = lam_f.to_numpy(), Q_f.to_numpy()
    assert np.abs(Q @ (lam[:, :, None] * Q.transpose(0, 2, 1)) - A).max() < 1e-12 * np.abs(A).max()
    assert np.abs(Q.transpose(0, 2, 1) @ Q - np.eye(3)).max() < 1e-13


@pytest.mark.parametrize("name", list(MATERIALS))
def test_3d_constitutive_stages_match_finite_differences(name):
    """F[f+1] and the stress from F[f], C[f] and the parameters, through the three stages."""
    rng = np.random.default_rng(1)
    x = np.full((6, 3), 0.5) + 0.01 * rng.standard_normal((6, 3))
    sim = MPM({"x": x}, [MATERIALS[name]], n_grid=16, dt=3e-3, segment=1, spectral=True)
    stages = sim.units(1)[0][:3]
    W1, W2 = rng.standard_normal((2, sim.P, 3, 3))
    x0, v0, _, _, pose = sim.initial_state()
    keys = ["E", "nu", PARAM_OF[name]]

    def run(q):
        sim.set_params({k: q[k] for k in keys})
        sim.load(0, (x0, v0, q["C"][None], q["F"][None], pose))
        for st in stages:
            st.forward()
        return float((sim.F.to_numpy()[0, 1] * W1).sum() + (sim.tau_e.to_numpy()[0] * W2 / 100).sum())

    for case, (F, C) in _cases(sim.P, rng).items():
        q = dict(F=F, C=C, **{k: sim.get_params()[k] for k in keys})
        run(q)
        sim.zero_param_grads()
        sim.seed_grads([1], [np.zeros((1, 1, sim.P, 3)), np.zeros((1, 1, sim.P, 3)), np.zeros((1, 1, sim.P, 3, 3)),
                             W1[None, None], np.zeros((1, 1, 1, sim.pose_dim))])
        sim.tau_e.grad.from_numpy(W2[None] / 100)
        for st in reversed(stages):
            st.backward()
        _, _, gC, gF, _ = sim.frame_grad(0)
        g = dict(F=gF[0], C=gC[0], **{k: v for k, v in sim.param_grads().items() if k in keys})
        assert all(np.isfinite(v).all() for v in g.values()), case
        try:
            gradcheck.assert_close(run, q, g, rtol=1e-6)
        except AssertionError as e:
            raise AssertionError(f"{name}, {case} eigenvalues: {e}") from None
    sim.free()


@pytest.mark.parametrize("name", ["plasticine"])
def test_spectral_path_equals_2d_closed_forms(name):
    """The same 2D rollout and gradients through both constitutive paths, to rounding."""
    out = []
    for spectral_path in (False, True):
        sim = MPM(_block(), [MATERIALS[name]], n_grid=32, dt=1e-3, segment=3, num_worlds=2, spectral=spectral_path)
        loss, p, g = _problem(sim, 5)
        out.append((loss(p), g))
        sim.free()
    (l0, g0), (l1, g1) = out
    assert abs(l0 - l1) < 1e-12 * abs(l0)
    for k in g0:
        assert np.allclose(g0[k], g1[k], rtol=1e-10, atol=1e-10 * (np.abs(g0[k]).max() + 1e-30)), k


def test_3d_plasticine_rollout_matches_finite_differences():
    """End to end in 3D: the spectral stages inside substeps, over two checkpoint segments."""
    x = sampling.sample({"kind": "box", "lower": [0.35] * 3, "upper": [0.5] * 3}, 1 / 24)
    parts = {"x": x, "actuator": np.where(x[:, 0] > 0.425, 0, -1)}
    sim = MPM(parts, [MATERIALS["plasticine"]], n_grid=16, dt=1e-3, segment=2, num_worlds=2)
    assert sim.spectral
    loss, p, g = _problem(sim, 3)
    for keys in (["x0", "v0", "F0"], ["u"], ["E", "yield_stress"]):
        gradcheck.assert_close(lambda q: loss({**p, **q}), {k: p[k] for k in keys}, {k: g[k] for k in keys}, rtol=2e-5)
    sim.free()
