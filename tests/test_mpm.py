"""MLS-MPM: every material's gradient vs float64 finite differences, and checkpointing."""
import numpy as np
import pytest
import torch

from diffsuite.sims import adjoint, gradcheck, sampling, torch_ops
from diffsuite.sims.mpm import MPM

MATERIALS = {
    "fixed_corotated": dict(kind="fixed_corotated", E=200, nu=0.3),
    "neo_hookean": dict(kind="neo_hookean", E=200, nu=0.3),
    "plasticine": dict(kind="plasticine", E=200, nu=0.3, yield_stress=5.0),
    "sand": dict(kind="sand", E=200, nu=0.3, friction_angle=35.0),
    "fluid": dict(kind="fluid", E=200, nu=0.3, viscosity=0.1),
}
PARAM_OF = {"fixed_corotated": "E", "neo_hookean": "nu", "plasticine": "yield_stress",
            "sand": "friction_angle", "fluid": "viscosity"}


def _block(dim=2, spacing=1 / 64):
    x = sampling.sample({"kind": "box", "lower": [0.3] * dim, "upper": [0.45] * dim}, spacing)
    return {"x": x, "actuator": np.where(x[:, 0] > 0.375, 0, -1)}


def _problem(sim, T, seed=0):
    """Loss on final positions and velocities from a perturbed, moving start."""
    rng = np.random.default_rng(seed)
    x0, v0, C0, F0, pose0 = sim.initial_state()
    p = dict(x0=x0, v0=v0 + 0.3 * rng.standard_normal(v0.shape), F0=F0 + 0.05 * rng.standard_normal(F0.shape),
             u=rng.uniform(-1, 1, (sim.B, T, sim.A)), **sim.get_params())
    w = rng.standard_normal(x0.shape)

    def run(q):
        params = {k: q[k] for k in sim.param_names}
        return adjoint.forward(sim, (q["x0"], q["v0"], C0, q["F0"], pose0), q["u"], params)

    def loss(q):
        _, fin, _ = run(q)
        return float((fin[0] * w).sum() + (fin[1] ** 2).sum())

    _, fin, tape = run(p)
    (gx, gv, _, gF, _), gu, gp = adjoint.backward(sim, tape, None, [w, 2 * fin[1], None, None])
    return loss, p, dict(x0=gx, v0=gv, F0=gF, u=gu, **gp)


@pytest.mark.parametrize("name", list(MATERIALS))
def test_material_gradients_match_finite_differences(name):
    """A block thrown at moderate speed, away from walls, so the loss is smooth. A plastic
    return puts a particle exactly on its yield surface, where the next step has a kink that
    finite differences straddle: the plastic materials are checked over one substep, from
    a start well past yield (the return's own derivative), and over 12 substeps in the
    elastic range below."""
    T = 1 if name in ("plasticine", "sand") else 12
    sim = MPM(_block(), [MATERIALS[name]], n_grid=32, dt=1e-3, segment=5, num_worlds=2)
    loss, p, g = _problem(sim, T)
    for keys in (["x0", "v0", "F0"], ["u"], ["E", PARAM_OF[name]]):
        sub = lambda q: loss({**p, **q})
        gradcheck.assert_close(sub, {k: p[k] for k in keys}, {k: g[k] for k in keys}, rtol=2e-5)
    sim.free()


def test_plasticine_below_yield_over_many_substeps():
    sim = MPM(_block(), [{**MATERIALS["plasticine"], "yield_stress": 1e3}], n_grid=32, dt=1e-3, segment=5)
    loss, p, g = _problem(sim, 12)
    sub = lambda q: loss({**p, **q})
    keys = ["x0", "F0", "u", "E"]
    gradcheck.assert_close(sub, {k: p[k] for k in keys}, {k: g[k] for k in keys}, rtol=2e-5)
    sim.free()


def test_two_materials_in_one_scene():
    a, b = _block(), _block()
    b["x"] = b["x"] + [0.2, 0.0]
    parts = {"x": np.concatenate([a["x"], b["x"]]), "material": np.r_[np.zeros(len(a["x"])), np.ones(len(b["x"]))]}
    sim = MPM(parts, [MATERIALS["fluid"], MATERIALS["neo_hookean"]], n_grid=32, dt=1e-3, segment=8)
    loss, p, g = _problem(sim, 8)
    sub = lambda q: loss({**p, **q})
    gradcheck.assert_close(sub, {"E": p["E"], "x0": p["x0"]}, {"E": g["E"], "x0": g["x0"]}, rtol=2e-5)
    assert np.abs(g["E"]).min() > 0  # both materials' moduli matter
    sim.free()


def test_polar_and_strain_gradients_are_finite_at_identity():
    """F = I exactly (repeated singular values): forward from rest must give finite gradients."""
    sim = MPM(_block(), [MATERIALS["plasticine"]], n_grid=32, dt=1e-3, segment=4)
    _, fin, tape = adjoint.forward(sim, sim.initial_state(), np.zeros((1, 4, sim.A)))
    (gx, gv, gC, gF, _), gu, gp = adjoint.backward(sim, tape, None, [np.ones_like(fin[0]), None, None, np.ones_like(fin[3])])
    assert all(np.isfinite(a).all() for a in (gx, gv, gC, gF, gu)) and np.isfinite(gp["E"]).all()
    assert np.abs(gF).sum() > 0
    sim.free()


def test_checkpointed_equals_store_all_over_4000_substeps():
    parts = _block(spacing=1 / 32)
    T = 4000
    u = np.random.default_rng(0).uniform(-1, 1, (1, T // 50, 1))
    grads = []
    for K in (64, T):
        sim = MPM(parts, [MATERIALS["neo_hookean"]], n_grid=16, dt=2e-3, segment=K, act_strength=20.0)
        _, fin, tape = adjoint.forward(sim, sim.initial_state(), u, hold=50, store="disk" if K < T else "memory")
        (gx, gv, gC, gF, _), gu, gp = adjoint.backward(sim, tape, None, [np.ones_like(fin[0]), None, None, None])
        grads.append((fin[0], np.concatenate([gx.ravel(), gF.ravel(), gu.ravel(), gp["E"].ravel()])))
        sim.free()
    (x_ck, g_ck), (x_all, g_all) = grads
    assert np.isfinite(g_all).all() and np.abs(g_all).max() > 0
    assert np.array_equal(x_ck, x_all)
    assert np.allclose(g_ck, g_all, rtol=1e-9, atol=1e-9 * np.abs(g_all).max())


def test_block_falls_and_rests_on_floor():
    sim = MPM(_block(spacing=1 / 32), [MATERIALS["neo_hookean"]], n_grid=32, dt=1e-3, segment=100)
    _, (x, v, _, F, _), _ = adjoint.forward(sim, sim.initial_state(), np.zeros((1, 1500, sim.A)))
    assert np.isfinite(x).all() and x[..., 1].min() < 0.3 and x[..., 1].min() > 3 / 32 - 1e-3
    assert np.abs(v).max() < 0.2
    sim.free()


@pytest.mark.parametrize("bad, match", [
    (dict(kind="rubber"), r"materials\[0\]\.kind must be one of"),
    (dict(kind="fluid", Young=1.0), r"materials\[0\]: unknown key\(s\) \['Young'\]"),
    (dict(kind="fluid", nu=0.5), r"materials\[0\]: need .* nu=0.5"),
    (dict(kind="neo_hookean", E=1e7), r"unstable dt=0.001"),
])
def test_bad_materials_and_dt_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        MPM(_block(), [bad], n_grid=32, dt=1e-3)


def test_unstable_parameters_and_diverging_states_are_named():
    sim = MPM(_block(spacing=1 / 32), [MATERIALS["neo_hookean"]], n_grid=32, dt=1e-3, segment=5)
    with pytest.raises(ValueError, match=r"unstable dt=0.001: .*'E' up to 1e\+07"):
        sim.set_params({"E": np.array([[1e7]])})  # what an optimizer's step may ask for
    with pytest.raises(ValueError, match="'E' must be positive"):
        sim.set_params({"E": np.array([[-1.0]])})
    x, v, C, F, pose = sim.initial_state()
    with pytest.raises(ValueError, match="initial state 'v' has non-finite"):
        adjoint.forward(sim, (x, v + np.nan, C, F, pose), np.zeros((1, 10, sim.A)))
    v[0, 0] = 1e200  # finite, but it overflows within a few substeps
    with pytest.raises(FloatingPointError, match="MPM diverged: the state is non-finite by substep 5"):
        adjoint.forward(sim, (x, v, C, F, pose), np.zeros((1, 10, sim.A)))
    sim.free()


def test_particles_outside_the_grid_are_refused():
    with pytest.raises(ValueError, match="particles must lie inside"):
        MPM({"x": np.array([[0.01, 0.5]])}, [MATERIALS["fluid"]], n_grid=32)


def test_sampling_shapes():
    sph = sampling.sample({"kind": "sphere", "center": [0.5, 0.5, 0.5], "radius": 0.1}, 0.01)
    assert abs(len(sph) * 1e-6 - 4 / 3 * np.pi * 1e-3) < 0.15 * 4 / 3 * np.pi * 1e-3  # 20 cells across
    assert np.linalg.norm(sph - 0.5, axis=1).max() <= 0.1
    cap = sampling.sample({"kind": "capsule", "center": [0.5, 0.5], "radius": 0.05, "length": 0.2}, 0.01)
    assert np.ptp(cap[:, 0]) > 0.25 and np.ptp(cap[:, 1]) < 0.1
    import trimesh
    mesh = sampling.sample({"kind": "mesh", "mesh": trimesh.creation.icosphere(radius=0.1), "offset": [0.5] * 3}, 0.01)
    assert abs(len(mesh) - len(sph)) < 0.1 * len(sph)


def test_gradient_through_floor_contact_with_friction():
    """A block driven down and sideways into the floor: the walls and the smoothed Coulomb
    friction are differentiable away from the instants a node's contact switches."""
    x = sampling.sample({"kind": "box", "lower": [0.3, 0.1], "upper": [0.45, 0.2]}, 1 / 64)
    sim = MPM({"x": x, "actuator": np.where(x[:, 0] > 0.375, 0, -1)}, [MATERIALS["neo_hookean"]],
              n_grid=32, dt=1e-3, segment=10, friction=0.5)
    rng = np.random.default_rng(0)
    x0, v0, C0, F0, pose0 = sim.initial_state()
    p = dict(v0=v0 + [0.5, -1.0], u=rng.uniform(-1, 1, (1, 40, 1)), E=sim.get_params()["E"])
    w = rng.standard_normal(x0.shape)

    def run(q):
        return adjoint.forward(sim, (x0, q["v0"], C0, F0, pose0), q["u"], {**sim.get_params(), "E": q["E"]})
    _, fin, tape = run(p)
    assert fin[0][..., 1].min() < 0.1  # it reached the floor (3 cells = 0.094)
    (_, gv, _, _, _), gu, gp = adjoint.backward(sim, tape, None, [w, None, None, None])
    loss = lambda q: float((run({**p, **q})[1][0] * w).sum())
    gradcheck.assert_close(loss, {k: p[k] for k in ("v0", "u", "E")}, {"v0": gv, "u": gu, "E": gp["E"]}, rtol=1e-5)
    sim.free()


def test_free_body_conserves_momentum_and_motion_does_not_depend_on_units():
    """An elastic disk translating with no gravity, far from the walls: linear momentum is
    conserved to rounding, and at density 1e-6 (E scaled with it, so the same motion)
    the trajectory is the same. A mass epsilon in the grid update broke both."""
    x = sampling.sample({"kind": "sphere", "center": [0.45, 0.5], "radius": 0.08}, 1 / 64)
    runs = []
    for rho in (1.0, 1e-6):
        sim = MPM({"x": x}, [dict(kind="neo_hookean", E=200 * rho, nu=0.3, density=rho)], n_grid=32, dt=1e-3,
                  segment=50, gravity=0.0)
        x0, v0, C0, F0, pose0 = sim.initial_state()
        v0 = v0 + np.array([0.5, 0.2])
        _, fin, _ = adjoint.forward(sim, (x0, v0, C0, F0, pose0), np.zeros((1, 400, sim.A)))
        runs.append(fin)
        momentum = fin[1][0].sum(0)  # particles of equal mass
        assert np.allclose(momentum, v0[0].sum(0), rtol=1e-12), rho
        sim.free()
    assert np.allclose(runs[0][0], runs[1][0], rtol=0, atol=1e-12)
    assert np.allclose(runs[0][1], runs[1][1], rtol=1e-10, atol=1e-12)


def test_gradients_do_not_depend_on_the_unit_of_mass():
    """A disk thrown onto the floor at density 1 and 1e-150 (E scaled with it): the same
    gradient of its final positions to its initial velocity, finite. At 1e-150 a grid node's
    mass squared (the reverse of v = mv / m) underflows float64 unless the grid measures mass
    in particles; in float32 the same happens at everyday densities where a node holds only
    the far tail of a particle's weights."""
    x = sampling.sample({"kind": "sphere", "center": [0.45, 0.2], "radius": 0.06}, 1 / 64)
    grads = []
    for rho in (1.0, 1e-150):
        sim = MPM({"x": x}, [dict(kind="fixed_corotated", E=150 * rho, nu=0.2, density=rho)], n_grid=32, dt=1e-3,
                  segment=20)
        x0, v0, C0, F0, pose0 = (torch.as_tensor(a) for a in sim.initial_state())
        v0 = (v0 + torch.tensor([0.8, -1.5], dtype=torch.float64)).requires_grad_()
        states, _ = torch_ops.rollout(sim, (x0, v0, C0, F0, pose0), None, torch.zeros((1, 8, 0), dtype=torch.float64),
                                      substeps=20)
        w = torch.rand(states[0].shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        (states[0] * w).sum().backward()
        grads.append(v0.grad.clone())
        sim.free()
    assert torch.isfinite(grads[1]).all() and grads[0].abs().max() > 0
    assert torch.allclose(grads[0], grads[1], rtol=1e-8, atol=1e-10 * float(grads[0].abs().max()))
