"""The engine contract every simulator passes (DESIGN section 3), run on each simulator.

checkpointed == store-all, resident reuse == replay, gradients zeroed between backwards,
a failed forward in between changes nothing, mutating the caller's inputs after a forward
changes nothing, bad parameter names, shapes and values refused without a trace."""
import numpy as np
import pytest

from diffsuite.sims import adjoint, sampling, tetmesh
from diffsuite.sims.fem import FEM
from diffsuite.sims.mass_spring import MassSpring
from diffsuite.sims.mpm import MPM

T = 24


def _mass_spring(load_design, K):
    return MassSpring(load_design("walker_a"), num_worlds=2, segment=K)


def _mpm(load_design, K):
    x = sampling.sample({"kind": "box", "lower": [0.4, 0.4], "upper": [0.5, 0.5]}, 1 / 32)
    return MPM({"x": x}, [dict(kind="neo_hookean", E=100, nu=0.3)], n_grid=16, dt=2e-3, segment=K, num_worlds=2,
               gravity=-1.0)


def _fem(load_design, K):
    ball = {"shape": "sphere", "radius": 0.01, "position": [0.0, -0.02, 0.0]}
    return FEM(tetmesh.box([0.02, 0.01, 0.02], [2, 1, 2]), num_worlds=2, dt=2e-5, segment=K, objects=[ball],
               material=dict(E=1e5, nu=0.4, density=1000.0, damping=1e-4))


SIMS = {"mass_spring": _mass_spring, "mpm": _mpm, "fem": _fem}


def _inputs(sim, seed=0):
    rng = np.random.default_rng(seed)
    state = list(sim.initial_state())
    state[1] = state[1] + 0.1 * rng.standard_normal(state[1].shape)  # m/s: FEM's gel is 2 cm
    u = rng.uniform(-1, 1, (sim.B, T, sim.A))
    w = [rng.standard_normal(s.shape) for s in state[:2]]
    return state, u, w


def _grads(sim, tape, w):
    g_state, g_u, g_p = adjoint.backward(sim, tape, None, w)
    return np.concatenate([g.ravel() for g in g_state] + [g_u.ravel()] + [g_p[k].ravel() for k in sim.param_names])


def _diverging(sim):
    """An initial state that overflows within a few substeps (finite when it starts)."""
    x, v, *rest = sim.initial_state()
    return (x, np.full_like(v, 1e300), *rest)


@pytest.fixture(params=list(SIMS), scope="module")
def sims(request, load_design):
    make = SIMS[request.param]
    a, b = make(load_design, 5), make(load_design, T)  # checkpointed, and store-all in one segment
    yield a, b
    a.free()
    b.free()


def test_checkpointed_equals_store_all(sims):
    sim, ref = sims
    state, u, w = _inputs(sim)
    _, fin, tape = adjoint.forward(sim, state, u)
    _, fin_ref, tape_ref = adjoint.forward(ref, state, u)
    assert all(np.allclose(a, b, rtol=1e-12, atol=1e-12) for a, b in zip(fin, fin_ref))
    g, g_ref = _grads(sim, tape, w), _grads(ref, tape_ref, w)
    assert np.abs(g_ref).max() > 0
    assert np.allclose(g, g_ref, rtol=1e-8, atol=1e-10 * np.abs(g_ref).max())


def test_resident_reuse_equals_replay_and_grads_are_zeroed(sims):
    sim, _ = sims
    state, u, w = _inputs(sim)
    _, _, tape = adjoint.forward(sim, state, u)
    first = _grads(sim, tape, w)  # reuses the last segment left in the fields
    second = _grads(sim, tape, w)  # replays it; accumulated gradients would double
    assert np.allclose(first, second, rtol=1e-10, atol=1e-12 * np.abs(first).max())


def test_a_failed_forward_in_between_changes_nothing(sims):
    sim, _ = sims
    state, u, w = _inputs(sim)
    _, _, tape = adjoint.forward(sim, state, u)
    ref = _grads(sim, tape, w)
    _, _, tape = adjoint.forward(sim, state, u)
    with pytest.raises(FloatingPointError, match="diverged"):
        adjoint.forward(sim, _diverging(sim), u[:, ::-1])  # caught, as CEM or a sysid scan would
    g = _grads(sim, tape, w)
    assert np.isfinite(g).all() and np.allclose(g, ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())


def test_mutating_inputs_after_forward_changes_nothing(sims):
    sim, _ = sims
    state, u, w = _inputs(sim)
    params = {k: v.copy() for k, v in sim.get_params().items()}
    _, _, tape = adjoint.forward(sim, state, u, params)
    ref = _grads(sim, tape, w)
    _, _, tape = adjoint.forward(sim, state, u, params)
    u[:] = -u
    for v in params.values():
        v *= 1.1
    sim.set_params(params)  # the simulator itself changes too: the tape replays its own copy
    g = _grads(sim, tape, w)
    assert np.allclose(g, ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())


def test_bad_parameters_are_refused_and_change_nothing(sims):
    sim, _ = sims
    before = sim.get_params()
    name = sim.param_names[0]
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['x'\]"):
        sim.set_params({"x": np.zeros(3)})
    with pytest.raises(ValueError, match=f"parameter '{name}' must broadcast to"):
        sim.set_params({name: np.ones((7, 5, 3))})
    with pytest.raises(ValueError, match=f"parameter '{name}' has non-finite values"):
        sim.set_params({name: np.full_like(before[name], np.nan)})
    unstable = "stiffness" if isinstance(sim, MassSpring) else "E"
    with pytest.raises(ValueError, match=f"'{unstable}'"):
        sim.set_params({unstable: 1e6 * before[unstable]})
    after = sim.get_params()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    state, u, _ = _inputs(sim)
    _, fin, _ = adjoint.forward(sim, state, u)  # still usable
    assert np.isfinite(fin[0]).all()


def test_bad_state_shapes_are_named(sims):
    sim, _ = sims
    x, *rest = sim.initial_state()
    with pytest.raises(ValueError, match="state 'x' must broadcast to"):
        adjoint.forward(sim, (x[:, :-1], *rest), np.zeros((sim.B, 2, sim.A)))
