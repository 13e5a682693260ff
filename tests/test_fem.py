"""Tetrahedral FEM: conservation, rest, the mount, the dt check, meshes, and float64 gradients
of every input (forces, contact with a rigid object, mount actions) vs finite differences."""
import numpy as np
import pytest
import trimesh

from diffsuite.sims import adjoint, gradcheck, tetmesh
from diffsuite.sims.fem import FEM

GEL = dict(E=1e5, nu=0.4, density=1000.0, damping=2e-4)
SIZE = [0.02, 0.01, 0.02]


def _pressed(num_worlds=1, segment=8, **kw):
    """A small gel block mounted at its top, a sphere touching its bottom face from below."""
    # under the bottom-face vertex (3.33, -10, 3.33) mm, 0.2 mm deep: contact is tested at vertices
    ball = {"shape": "sphere", "radius": 0.01, "position": [0.0035, -0.0198, 0.0032], "friction": 0.5}
    kw = {"dt": 2e-5, "material": GEL, "objects": [ball], **kw}
    return FEM(tetmesh.box(SIZE, [3, 2, 3]), num_worlds=num_worlds, segment=segment, **kw)


def _loss_and_grads(sim, T, seed=0):
    rng = np.random.default_rng(seed)
    x0, v0, body, pose, contact, clock = sim.initial_state()
    rest = x0[:, None]
    p = dict(x0=x0 + 2e-5 * rng.standard_normal(x0.shape), v0=0.01 * rng.standard_normal(x0.shape),
             u=rng.uniform(-0.1, 0.1, (sim.B, T, sim.A)) + np.r_[[0.0] * 6, 0, 0.5, 0, 0, 0, 0],
             pose=pose, body=body, **{k: v for k, v in sim.get_params().items()})
    wx = rng.standard_normal((sim.B, T // 4, sim.N, 3))
    wf = rng.standard_normal((sim.B, T // 4, 1, 3))
    names = list(sim.param_names)

    def run(q):
        return adjoint.forward(sim, (q["x0"], q["v0"], q["body"], q["pose"], contact, clock), q["u"],
                               {k: q[k] for k in names}, every=4)

    def loss(q):
        outs, fin, _ = run(q)
        # displacements, not positions: a loss without a large constant part keeps the differences' rounding small
        return float(((outs[0] - rest) * wx).sum() * 1e3 + (outs[4] * wf).sum() + (fin[1] ** 2).sum())

    outs, fin, tape = run(p)
    (gx, gv, gb, gpose, _, _), gu, gp = adjoint.backward(sim, tape, [1e3 * wx, None, None, None, wf],
                                                      [None, 2 * fin[1]])
    return loss, p, dict(x0=gx, v0=gv, u=gu, body=gb, pose=gpose, **gp)


@pytest.fixture(scope="module")
def pressed():
    sim = _pressed()
    yield sim
    sim.free()


def test_contact_is_active_in_the_gradient_problem(pressed):
    _, fin, _ = adjoint.forward(pressed, pressed.initial_state(), np.r_[[0.0] * 7, 0.5, 0, 0, 0, 0][None, None]
                                * np.ones((1, 40, 1)))
    assert fin[4][0, 0, 1] > 0  # the sphere below pushes the gel up


@pytest.mark.parametrize("wrt", ["x0", "v0", "u", "body", "pose", "E", "nu", "density", "damping"])
def test_gradient_matches_finite_differences(pressed, wrt):
    loss, p, g = _loss_and_grads(pressed, 40)
    sub = lambda q: loss({**p, **q})
    # positions move by 1e-8 m: the contact's softplus is 2e-4 m wide
    eps = {"x0": 1e-8, "body": 1e-8, "pose": 1e-8, "v0": 1e-6, "u": 1e-6, "damping": 1e-8}.get(wrt, 1e-5)
    gradcheck.assert_close(sub, {wrt: p[wrt]}, {wrt: g[wrt]}, rtol=1e-4, eps=eps)


def test_free_body_conserves_momentum():
    m = tetmesh.box(SIZE, [2, 2, 2])
    sim = FEM(m, num_worlds=2, dt=2e-5, segment=16, mount=np.zeros(len(m.vertices), bool), gravity=(0, 0, 0),
              material=GEL)
    rng = np.random.default_rng(1)
    x, v, *rest = sim.initial_state()
    x, v = x + 2e-4 * rng.standard_normal(x.shape), 0.05 * rng.standard_normal(x.shape)
    mass = (sim.vol_v * GEL["density"])[:, None]
    _, fin, _ = adjoint.forward(sim, (x, v, *rest), np.zeros((2, 300, sim.A)))
    p0, p1 = (mass * v).sum(-2), (mass * fin[1]).sum(-2)
    L0, L1 = ((mass * np.cross(a, b)).sum(-2) for a, b in ((x, v), fin[:2]))
    scale = np.abs(mass * v).sum(-2).max()
    assert np.abs(p1 - p0).max() < 1e-10 * scale
    assert np.abs(L1 - L0).max() < 1e-4 * np.abs(L0).max()  # symplectic Euler: close, not exact
    ke = lambda vv: (mass * vv ** 2).sum()
    assert ke(fin[1]) < ke(v) + 10 * ke(v)  # bounded: no blow-up
    sim.free()


def test_rest_stays_at_rest_and_mount_follows_the_body():
    m = tetmesh.box(SIZE, [2, 1, 2])
    sim = FEM(m, num_worlds=1, dt=2e-5, segment=50, gravity=(0, 0, 0), material=GEL)
    state = sim.initial_state()
    _, fin, _ = adjoint.forward(sim, state, np.zeros((1, 100, sim.A)))
    assert np.abs(fin[0] - state[0]).max() < 1e-12 * 0.02
    # spin the body about y at 2 rad/s for 0.02 s: the mounted base turns rigidly by 0.04 rad
    u = np.zeros((1, 1000, sim.A))
    u[..., 4] = 2.0
    _, fin, _ = adjoint.forward(sim, state, u)
    q = fin[2][0, 0]
    assert abs(2 * np.arctan2(q[5], q[3]) - 0.04) < 1e-9
    base = sim.mount
    from diffsuite.sims.fem import transform
    assert np.allclose(fin[0][0, base], transform(q, m.vertices[base]), atol=1e-12)
    sim.free()


def test_unstable_dt_and_bad_keys_are_named():
    m = tetmesh.box(SIZE, [2, 1, 2])
    with pytest.raises(ValueError, match="unstable dt.*'E'"):
        FEM(m, dt=1e-3, material=GEL)
    with pytest.raises(ValueError, match="unknown material key"):
        FEM(m, material={"young": 1.0})
    with pytest.raises(ValueError, match="unknown contact key"):
        FEM(m, contact={"stifness": 1.0})
    with pytest.raises(ValueError, match="'nu'"):
        FEM(m, material={"nu": 0.5})


def test_meshes_are_closed_and_positive():
    for mesh in (tetmesh.box(SIZE, [3, 2, 2], grade=1.5), tetmesh.dome(0.01, 0.004, rings=6),
                 tetmesh.from_trimesh(trimesh.creation.icosphere(1, radius=0.01))):
        assert (tetmesh.volumes(mesh.vertices, mesh.tets) > 0).all()
        surf = trimesh.Trimesh(mesh.vertices, mesh.surface, process=False)
        assert surf.is_watertight
        assert np.isclose(surf.volume, tetmesh.volumes(mesh.vertices, mesh.tets).sum(), rtol=1e-9)
    box = tetmesh.box(SIZE, [3, 2, 2])
    assert len(box.tets) == 6 * 12 and np.isclose(tetmesh.volumes(box.vertices, box.tets).sum(), np.prod(SIZE))
    with pytest.raises(ValueError, match="watertight"):
        tetmesh.from_trimesh(trimesh.Trimesh(box.vertices, box.surface[:-1]))
    with pytest.raises(ValueError, match="unknown key"):
        tetmesh.build({"kind": "dome", "radius": 1, "height": 0.5, "size": 2})
