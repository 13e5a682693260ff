"""The fused segment kernel: physics sanity and float64 gradients vs finite differences."""
import numpy as np
import pytest

from diffsuite.sims import adjoint, gradcheck
from diffsuite.sims.mass_spring import MassSpring


def _loss_and_grads(sim, T, seed=0, u=None):
    """A loss touching positions and velocities at several frames, and its adjoint."""
    rng = np.random.default_rng(seed)
    x0, v0, *pose = sim.initial_state()
    p = dict(x0=x0 + 0.002 * rng.standard_normal(x0.shape), v0=0.1 * rng.standard_normal(x0.shape),
             u=rng.uniform(-1, 1, (sim.B, T, sim.A)) if u is None else u, k=sim.get_params()["stiffness"],
             rest=sim.get_params()["rest"])
    if pose:
        p["pose"] = pose[0]
    wx = rng.standard_normal((sim.B, T // 5, sim.N, sim.dim))

    def run(q):
        state = (q["x0"], q["v0"]) + ((q["pose"],) if pose else ())
        return adjoint.forward(sim, state, q["u"], {"stiffness": q["k"], "rest": q["rest"]}, every=5)

    def loss(q):
        outs, fin, _ = run(q)
        return float((outs[0] * wx).sum() + (fin[1] ** 2).sum())

    outs, fin, tape = run(p)
    (gx, gv, *gpose), gu, gp = adjoint.backward(sim, tape, [wx, None], [None, 2 * fin[1]])
    return loss, p, dict(x0=gx, v0=gv, u=gu, k=gp["stiffness"], rest=gp["rest"], **({"pose": gpose[0]} if pose else {}))


@pytest.fixture(scope="module")
def walker(load_design):
    return MassSpring(load_design("walker_a"), num_worlds=2, segment=16)


@pytest.mark.parametrize("wrt", ["x0", "v0", "u", "k", "rest"])
def test_walker_gradient_matches_finite_differences(walker, wrt):
    loss, p, g = _loss_and_grads(walker, 60)
    sub = lambda q: loss({**p, **q})
    gradcheck.assert_close(sub, {wrt: p[wrt]}, {wrt: g[wrt]}, rtol=1e-4)


@pytest.mark.parametrize("name", ["walker_3d", "cloth", "rope"])
def test_other_designs_gradient(load_design, name):
    sim = MassSpring(load_design(name), num_worlds=1, segment=8, dt=0.002)
    loss, p, g = _loss_and_grads(sim, 20)
    keys = ["x0", "v0", "k"] + (["u"] if sim.A else [])
    sub = lambda q: loss({**p, **q})
    gradcheck.assert_close(sub, {k: p[k] for k in keys}, {k: g[k] for k in keys}, rtol=1e-4)
    sim.free()


def test_robot_rests_on_ground_and_stays_finite(walker):
    T = 500
    _, (x, v), _ = adjoint.forward(walker, walker.initial_state(), np.zeros((2, T, walker.A)))
    assert np.isfinite(x).all()
    assert abs(x[..., 1].min() - 0.1) < 2e-3          # sits on y = 0.1, barely sinking in
    assert np.abs(v).max() < 1e-2                      # and has come to rest


def test_friction_stops_sliding(load_design):
    sim = MassSpring(load_design("walker_a"), num_worlds=1, segment=16, damping=0.0)
    x0, v0 = sim.initial_state()
    v0[..., 0] = 1.0                                    # slide right along the ground
    _, (x, v), _ = adjoint.forward(sim, (x0, v0), np.zeros((1, 400, sim.A)))
    assert abs(v[..., 0]).max() < 0.05 and x[0, 0, 0] - x0[0, 0, 0] < 0.2
    sim.free()


def test_pinned_masses_do_not_move(load_design):
    sim = MassSpring(load_design("cloth"), num_worlds=1, segment=8, dt=0.002)
    x0, v0 = sim.initial_state()
    _, (x, _), _ = adjoint.forward(sim, (x0, v0), np.zeros((1, 100, 0)))
    pinned = sim.design.masses == 0
    assert np.array_equal(x[0, pinned], x0[0, pinned]) and not np.allclose(x[0, ~pinned], x0[0, ~pinned])
    sim.free()


def test_worlds_are_independent(walker, load_design):
    rng = np.random.default_rng(1)
    u = rng.uniform(-1, 1, (2, 40, walker.A))
    _, (x2, _), _ = adjoint.forward(walker, walker.initial_state(), u)
    one = MassSpring(load_design("walker_a"), num_worlds=1, segment=16)
    _, (x1, _), _ = adjoint.forward(one, one.initial_state(), u[1:])
    assert np.allclose(x1[0], x2[1], atol=1e-12) and not np.allclose(x2[0], x2[1])
    one.free()


def test_unstable_dt_is_refused(load_design):
    with pytest.raises(ValueError, match="unstable dt=0.05"):
        MassSpring(load_design("walker_a"), dt=0.05)


def test_unknown_ground_key_is_named(load_design):
    with pytest.raises(ValueError, match="frction"):
        MassSpring(load_design("walker_a"), ground={"frction": 1.0})


def _draped(colliders):
    """A 6 x 6 unpinned sheet dropped 4 cm above a sphere of radius 0.08."""
    from diffsuite.sims import designs
    d = designs.build({"kind": "cloth", "nx": 6, "nz": 6, "spacing": 0.04, "origin": [0.4, 0.42, 0.4],
                       "stiffness": 3000, "spring_damping": 2.0, "pinned": []})
    return MassSpring(d, num_worlds=1, segment=10, dt=0.002, damping=1.0, colliders=colliders)


SPHERE = [{"shape": "sphere", "radius": 0.08, "position": [0.5, 0.3, 0.5], "friction": 0.5}]


def test_cloth_drapes_over_a_sphere_collider():
    out = {}
    for name, cols in (("free", None), ("sphere", SPHERE)):
        sim = _draped(cols)
        outs, _, _ = adjoint.forward(sim, sim.initial_state(), np.zeros((1, 250, sim.A)), every=10)
        out[name] = outs[0][0]  # (frames, N, 3)
        sim.free()
    dist = np.linalg.norm(out["sphere"] - [0.5, 0.3, 0.5], axis=-1)
    assert out["free"][-1, :, 1].max() < 0.2               # without it, the sheet falls to the ground
    assert dist.min() > 0.08 - 0.01                        # with it, nodes sink at most a few 2 mm contact bands
    assert out["sphere"][-1, :, 1].max() > 0.36            # and the middle rests on top (0.38)


def test_collider_contact_gradient_matches_finite_differences():
    """Smoothed contact (sigmoid coverage, smoothed friction): differentiable throughout. The
    sphere rises into the falling sheet, so the gradient reaches its pose and velocity."""
    sim = _draped(SPHERE)
    assert sim.A == 6 and sim.state_names == ("x", "v", "pose")
    u = np.tile([0.1, 0.3, -0.1, 0.5, 0.0, 1.0], (1, 100, 1)) * np.linspace(0.5, 1.5, 100)[None, :, None]
    loss, p, g = _loss_and_grads(sim, 100, u=u)
    _, (x, _, pose), _ = adjoint.forward(sim, (p["x0"], p["v0"], p["pose"]), u)
    assert np.allclose(pose[0, 0, :3], p["pose"][0, 0, :3] + sim.dt * u[0, :, :3].sum(0))  # moved as told
    assert np.linalg.norm(x[0] - pose[0, 0, :3], axis=-1).min() < 0.09  # in the contact band
    sub = lambda q: loss({**p, **q})
    for keys in (["x0", "v0", "k"], ["pose"], ["u"]):
        gradcheck.assert_close(sub, {k: p[k] for k in keys}, {k: g[k] for k in keys}, rtol=1e-4)
    assert np.abs(g["pose"]).max() > 0 and np.abs(g["u"]).max() > 0
    sim.free()


def test_bad_collider_is_named(load_design):
    with pytest.raises(ValueError, match=r"colliders\[0\].shape must be one of"):
        MassSpring(load_design("rope"), colliders=[{"shape": "cone"}])
