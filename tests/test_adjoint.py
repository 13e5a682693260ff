"""The checkpointed engine: equal to the store-everything run, memory or disk checkpoints."""
import numpy as np
import pytest

from diffsuite.sims import adjoint
from diffsuite.sims.mass_spring import MassSpring


def _grads(sim, u, w, store="memory", every=10):
    outs, fin, tape = adjoint.forward(sim, sim.initial_state(), u, every=every, store=store)
    (gx, gv), gu, gp = adjoint.backward(sim, tape, [w, w], [np.ones_like(fin[0]), None])
    return outs, np.concatenate([gx.ravel(), gv.ravel(), gu.ravel(), gp["stiffness"].ravel()])


@pytest.fixture(scope="module")
def problem(load_design):
    T = 1000
    rng = np.random.default_rng(0)
    design = load_design("walker_a")
    u = rng.uniform(-1, 1, (1, T, design.n_actuators))
    w = rng.standard_normal((1, T // 10, len(design.positions), 2))
    store_all = MassSpring(design, num_worlds=1, segment=T)
    ref = _grads(store_all, u, w)
    store_all.free()
    return design, u, w, ref


@pytest.mark.parametrize("K, store", [(32, "memory"), (37, "disk")])
def test_checkpointed_equals_store_all_over_1000_substeps(problem, K, store):
    design, u, w, (outs_ref, g_ref) = problem
    sim = MassSpring(design, num_worlds=1, segment=K)
    outs, g = _grads(sim, u, w, store=store)
    sim.free()
    assert np.abs(g_ref).max() > 0 and np.isfinite(g).all()
    assert np.allclose(outs[0], outs_ref[0], rtol=0, atol=1e-12)
    assert np.allclose(g, g_ref, rtol=1e-9, atol=1e-9 * np.abs(g_ref).max())


def test_outputs_at_every_frame_and_horizon_check(problem):
    design, u, _, _ = problem
    sim = MassSpring(design, num_worlds=1, segment=7)
    outs, fin, _ = adjoint.forward(sim, sim.initial_state(), u[:, :20], every=1)
    assert outs[0].shape == (1, 20, 6, 2) and np.array_equal(outs[0][:, -1], fin[0])
    with pytest.raises(ValueError, match="multiple of every=3"):
        adjoint.forward(sim, sim.initial_state(), u[:, :20], every=3)
    sim.free()


def test_nan_gradient_raises_naming_kernel(problem):
    design, u, _, _ = problem
    sim = MassSpring(design, num_worlds=1, segment=8)
    _, fin, tape = adjoint.forward(sim, sim.initial_state(), u[:, :16])
    with pytest.raises(FloatingPointError, match="MassSpring reverse of substeps 8..16"):
        adjoint.backward(sim, tape, None, [np.full_like(fin[0], np.nan), None])
    sim.free()


def test_clip_zeroes_nan_and_bounds_the_adjoint_per_world(problem):
    design, u, _, _ = problem
    sim = MassSpring(design, num_worlds=2, segment=8)
    u2 = np.concatenate([u[:, :24], -u[:, :24]])
    _, fin, tape = adjoint.forward(sim, sim.initial_state(), u2)
    seed = [np.ones_like(fin[0]), None]
    ref = adjoint.backward(sim, tape, None, seed)
    same = adjoint.backward(sim, tape, None, seed, clip=1e30)  # never reached: the plain gradient
    assert all(np.array_equal(a, b) for a, b in zip(ref[0] + [ref[1]], same[0] + [same[1]]))
    norms = np.sqrt(sum((g.reshape(2, -1) ** 2).sum(1) for g in ref[0]))
    clip = 0.5 * norms.min()
    (gx, gv), gu, _ = adjoint.backward(sim, tape, None, seed, clip=clip)
    clipped = np.sqrt((gx.reshape(2, -1) ** 2).sum(1) + (gv.reshape(2, -1) ** 2).sum(1))
    assert clipped.max() <= clip * (1 + 1e-12) and np.isclose(clipped.max(), clip)  # clipped at t=0 too
    assert not np.allclose(gu, ref[1])  # and earlier checkpoints' clipping reached the controls
    bad = np.ones_like(fin[0])
    bad[1] = np.nan  # world 1's seed is NaN: zeroed, world 0 untouched
    (gx, gv), gu, gp = adjoint.backward(sim, tape, None, [bad, None], clip=1e30)
    assert np.array_equal(gx[0], ref[0][0][0]) and np.array_equal(gu[0], ref[1][0])
    assert np.isfinite(gp["stiffness"]).all() and not gx[1].any()
    sim.free()


def test_default_segment_is_sqrt_unless_frames_are_small():
    assert adjoint.default_segment(10000) == 100 and adjoint.default_segment(1) == 1
    assert adjoint.default_segment(10000, frame_bytes=2 ** 20, budget=2 ** 28) == 256
    assert adjoint.default_segment(10000, frame_bytes=100) == 10000


def test_held_controls_equal_repeated_controls(problem):
    design, u, _, _ = problem
    sim = MassSpring(design, num_worlds=1, segment=7)
    held = u[:, :6]
    _, fin_h, tape_h = adjoint.forward(sim, sim.initial_state(), held, hold=5)
    _, fin_r, tape_r = adjoint.forward(sim, sim.initial_state(), np.repeat(held, 5, axis=1))
    assert np.array_equal(fin_h[0], fin_r[0])
    _, gu_h, _ = adjoint.backward(sim, tape_h, None, [np.ones_like(fin_h[0]), None])
    _, gu_r, _ = adjoint.backward(sim, tape_r, None, [np.ones_like(fin_r[0]), None])
    assert np.allclose(gu_h, gu_r.reshape(1, 6, 5, -1).sum(2), rtol=1e-12, atol=1e-14)
    sim.free()
