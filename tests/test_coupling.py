"""A FEM gel touching an MPM body through the grid (sims/coupling.py): momentum, the push, the
engine contract's checkpointing, and float64 gradients of every input vs finite differences."""
import numpy as np
import pytest

from diffsuite.sims import adjoint, gradcheck, sampling, tetmesh
from diffsuite.sims.coupling import GelMPM
from diffsuite.sims.fem import FEM
from diffsuite.sims.mpm import MPM

GEL = dict(E=200.0, nu=0.3, density=1.0, damping=1e-4)


def _unit(K=8, mount=None, gravity=0.0, gel_y=0.52, B=1):
    x = sampling.sample({"kind": "box", "lower": [0.42, 0.3, 0.42], "upper": [0.58, 0.4, 0.58]}, 1 / 32)
    mpm = MPM({"x": x}, [dict(kind="neo_hookean", E=100.0, nu=0.3)], num_worlds=B, n_grid=16, dt=1e-3, segment=K,
              gravity=gravity)
    mesh = tetmesh.box([0.3, 0.1, 0.3], [3, 1, 3])
    fem = FEM(mesh, num_worlds=B, dt=1e-3, segment=K, material=GEL, gravity=(0.0, gravity, 0.0), mount=mount,
              body_pose=(0.5, gel_y, 0.5, 1, 0, 0, 0), coupled=True)
    return GelMPM(fem, mpm, friction=0.5)


def test_free_gel_hits_the_block_and_momentum_is_conserved():
    unit = _unit(K=20, mount=np.zeros(4 * 2 * 4, bool), gel_y=0.55)
    state = list(unit.initial_state())
    state[1] = np.broadcast_to([0.0, -1.0, 0.0], state[1].shape).copy()  # the gel falls onto the block
    m_gel = (unit.fem.vol_v * GEL["density"])[:, None]
    m_mpm = unit.mpm.vol[:, None] * 1.0
    momentum = lambda s: (m_gel * s[1][0]).sum(0) + (m_mpm * s[7][0]).sum(0)
    _, fin, _ = adjoint.forward(unit, state, np.zeros((1, 100, unit.A)))  # before the block nears the floor
    p0, p1 = momentum(state), momentum(fin)
    assert np.abs(p1 - p0).max() < 1e-9 * np.abs(p0).max()
    assert (m_mpm * fin[7][0]).sum(0)[1] < -0.2 * abs(p0[1])  # the block took a good share of the momentum
    assert fin[4][0, 0, 1] > 0  # the gel felt the block push up


@pytest.fixture(scope="module")
def pressed():
    unit = _unit()
    yield unit
    unit.free()


def _loss_and_grads(unit, T=16, seed=0):
    unit.fem.reset_params()  # earlier finite differences leave perturbed parameters behind
    unit.mpm.reset_params()
    rng = np.random.default_rng(seed)
    s = list(unit.initial_state())
    s[1] = 0.02 * rng.standard_normal(s[1].shape)
    s[7] = 0.02 * rng.standard_normal(s[7].shape)
    p = dict(gel_x=s[0] + 1e-3 * rng.standard_normal(s[0].shape), gel_v=s[1], mpm_x=s[6], mpm_v=s[7],
             u=np.r_[0.0, -0.5, 0.0, 0.0, 0.0, 0.0][None, None] + 0.1 * rng.standard_normal((1, T, unit.A)),
             **unit.get_params())
    names = list(unit.param_names)
    rest = [s[0][:, None], s[6][:, None]]
    w = [rng.standard_normal((1, T // 4) + a.shape[1:]) for a in (s[0], s[6])]

    def run(q):
        state = [q["gel_x"], q["gel_v"]] + s[2:6] + [q["mpm_x"], q["mpm_v"]] + s[8:]
        return adjoint.forward(unit, state, q["u"], {k: q[k] for k in names}, every=4)

    def loss(q):
        outs, fin, _ = run(q)
        return float(((outs[0] - rest[0]) * w[0]).sum() + ((outs[6] - rest[1]) * w[1]).sum() + (fin[4] ** 2).sum())

    outs, fin, tape = run(p)
    g_out = [w[0]] + [None] * 5 + [w[1]]
    g_fin = [None] * 4 + [2 * fin[4]]
    gs, gu, gp = adjoint.backward(unit, tape, g_out, g_fin)
    return loss, p, dict(gel_x=gs[0], gel_v=gs[1], mpm_x=gs[6], mpm_v=gs[7], u=gu, **gp)


@pytest.mark.parametrize("wrt", ["gel_x", "gel_v", "mpm_x", "mpm_v", "u", "gel_E", "mpm_E", "gel_density"])
def test_coupling_gradient_matches_finite_differences(pressed, wrt):
    loss, p, g = _loss_and_grads(pressed)
    assert np.abs(g[wrt]).max() > 0
    sub = lambda q: loss({**p, **q})
    eps = {"gel_x": 1e-7, "mpm_x": 1e-7}.get(wrt, 1e-6)
    gradcheck.assert_close(sub, {wrt: p[wrt]}, {wrt: g[wrt]}, rtol=1e-4, eps=eps)


def test_checkpointed_equals_store_all_and_bad_names_are_refused(pressed):
    """One unit for both runs (each instance compiles its own kernels): its fields hold 9 frames,
    so segments of 4 substeps fit in them as well as the one of 8."""
    loss, p, g = _loss_and_grads(pressed)  # K = 8: two segments of the 16 substeps
    pressed.K = 4
    try:
        loss2, p2, g2 = _loss_and_grads(pressed)
    finally:
        pressed.K = 8
    for k in g:
        assert np.allclose(g[k], g2[k], rtol=1e-10, atol=1e-12 * np.abs(g2[k]).max()), k
    before = pressed.get_params()
    with pytest.raises(ValueError, match="unknown parameter"):
        pressed.set_params({"E": 1.0})
    with pytest.raises(ValueError, match="'E'"):
        pressed.set_params({"gel_E": 2.0 * before["gel_E"], "mpm_E": 1e9})  # MPM's CFL refuses; the gel's is undone
    assert all(np.array_equal(before[k], pressed.get_params()[k]) for k in before)
