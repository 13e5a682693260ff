"""Kinematic SDF manipulators pressing plasticine: gradients w.r.t. their pose and velocities."""
import numpy as np
import pytest
import taichi as ti

from diffsuite.sims import adjoint, colliders as col, gradcheck, init, sampling
from diffsuite.sims.mpm import MPM

TOOLS = {
    "box": dict(shape="box", half=[0.05, 0.02], position=[0.4, 0.235], angle=0.2, friction=1.0),
    "capsule": dict(shape="capsule", radius=0.02, half_length=0.04, position=[0.4, 0.235], angle=-0.3),
}


def _press(sim, u, rng, min_change):
    """Drive the tool with controls u (1, T, A) into the block: check that it deformed the
    block and moved as told, then the pose, control and E gradients against finite differences."""
    st = sim.initial_state()
    w = rng.standard_normal(st[0].shape)

    def run(q):
        return adjoint.forward(sim, (*st[:4], q["pose"]), q["u"], {**sim.get_params(), "E": q["E"]})
    p = dict(pose=st[4], u=u, E=sim.get_params()["E"])
    _, fin, tape = run(p)
    assert np.abs(fin[0] - st[0]).max() > min_change
    d = sim.dim
    assert np.allclose(fin[4][0, 0, :d], st[4][0, 0, :d] + sim.dt * u[0, :, :d].sum(0))
    (_, _, _, _, gpose), gu, gp = adjoint.backward(sim, tape, None, [w])
    loss = lambda q: float((run({**p, **q})[1][0] * w).sum())
    for k, g in {"pose": gpose, "u": gu, "E": gp["E"]}.items():
        gradcheck.assert_close(loss, {k: p[k]}, {k: g}, rtol=1e-5)
    sim.free()


@pytest.mark.parametrize("tool", list(TOOLS))
def test_press_gradients_match_finite_differences(tool):
    """Contact is smoothed (coverage sigmoid of the SDF over half a cell), so finite
    differences are meaningful while the tool presses into the block."""
    x = sampling.sample({"kind": "box", "lower": [0.3, 0.1], "upper": [0.5, 0.2]}, 1 / 64)
    sim = MPM({"x": x}, [dict(kind="plasticine", E=200, nu=0.3, yield_stress=3.0)], n_grid=32, dt=1e-3,
              segment=10, colliders=[TOOLS[tool]])
    assert sim.A == 3  # vx, vy, angular velocity
    rng = np.random.default_rng(0)
    u = np.tile([0.2, -1.0, 0.5], (1, 60, 1)) + 0.1 * rng.standard_normal((1, 60, 3))
    _press(sim, u, rng, min_change=0.02)


@pytest.mark.parametrize("spec, match", [
    (dict(shape="cone"), r"colliders\[0\]\.shape must be one of"),
    (dict(shape="sphere"), r"colliders\[0\] \(sphere\) needs \['radius'\]"),
    (dict(shape="sphere", radius=0.1, size=2), r"unknown key\(s\) \['size'\]"),
    (dict(shape="sphere", radius=0.1, position=[0.5]), r"colliders\[0\]\.position must have 2 numbers"),
])
def test_bad_colliders_are_named(spec, match):
    x = sampling.sample({"kind": "box", "lower": [0.3, 0.1], "upper": [0.5, 0.2]}, 1 / 32)
    with pytest.raises(ValueError, match=match):
        MPM({"x": x}, [dict(kind="plasticine")], n_grid=32, colliders=[spec])


def test_3d_tool_presses_plasticine_with_exact_gradients():
    """3D: a turned capsule (quaternion pose) presses plasticine through the spectral path;
    gradients w.r.t. its pose, its 6-dof velocity and E match finite differences. (Not a
    box: a box's SDF has creases inside, where the nearest face changes; with this many
    nodes one lies within eps of a crease, and there finite differences jump.)"""
    x = sampling.sample({"kind": "box", "lower": [0.3, 0.13, 0.3], "upper": [0.5, 0.23, 0.5]}, 1 / 48)
    s, c = np.sin(0.1), np.cos(0.1)
    tool = dict(shape="capsule", radius=0.03, half_length=0.06, position=[0.4, 0.26, 0.4], quat=[c, 0, s, 0],
                friction=0.5)
    # below yield: finite differences in E would straddle particles' yield onsets (2D covers the
    # plastic return under contact, tests/test_spectral.py the 3D return)
    sim = MPM({"x": x}, [dict(kind="plasticine", E=200, nu=0.3, yield_stress=50.0)], n_grid=24, dt=1e-3,
              segment=8, colliders=[tool])
    assert sim.A == 6  # linear and angular velocity
    rng = np.random.default_rng(0)
    u = np.tile([0.1, -1.0, 0.0, 0.0, 0.5, 1.0], (1, 16, 1)) + 0.1 * rng.standard_normal((1, 16, 6))
    _press(sim, u, rng, min_change=5e-3)


def _rodrigues(axis, angle):
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def _reference_sdf(spec, p):
    """Closed forms in the collider's frame, written independently of sims/colliders.py."""
    kind = spec["shape"]
    if kind == "plane":
        return p[:, 1]
    if kind == "sphere":
        return np.linalg.norm(p, axis=1) - spec["radius"]
    if kind == "capsule":  # distance to the segment on the x axis
        seg = np.zeros_like(p)
        seg[:, 0] = np.clip(p[:, 0], -spec["half_length"], spec["half_length"])
        return np.linalg.norm(p - seg, axis=1) - spec["radius"]
    if kind == "box":
        half = np.broadcast_to(spec["half"], p.shape[1:])
    else:  # cylinder on the y axis: a 2D box in (radial distance, height)
        radial = np.abs(p[:, 0]) if p.shape[1] == 2 else np.hypot(p[:, 0], p[:, 2])
        p, half = np.stack([radial, p[:, 1]], 1), np.array([spec["radius"], spec["half_height"]])
    q = np.abs(p) - half
    outside = np.linalg.norm(np.maximum(q, 0), axis=1)
    return np.where(outside > 0, outside, q.max(1))


SPECS = [dict(shape="plane"), dict(shape="sphere", radius=0.1), dict(shape="box", half=[0.1, 0.05, 0.08]),
         dict(shape="capsule", radius=0.05, half_length=0.1), dict(shape="cylinder", radius=0.07, half_height=0.04)]


@pytest.mark.parametrize("dim", [2, 3])
def test_every_shape_sdf_matches_its_closed_form_in_a_turned_frame(dim):
    init()
    rng = np.random.default_rng(dim)
    pos = np.array([0.5, 0.4, 0.45][:dim])
    if dim == 2:
        angle = 0.7
        pose, R = np.r_[pos, angle], np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    else:
        axis, angle = np.array([1.0, -2.0, 0.5]) / np.linalg.norm([1.0, -2.0, 0.5]), 0.9
        pose, R = np.r_[pos, np.cos(angle / 2), np.sin(angle / 2) * axis], _rodrigues(axis, angle)
    x = pos + rng.uniform(-0.2, 0.2, (400, dim))
    for spec in SPECS:
        shape, _ = col.parse([{**spec, "half": spec["half"][:dim]} if "half" in spec else spec], dim, 0.01)

        @ti.kernel
        def sdf(xs: ti.types.ndarray(), p: ti.types.ndarray(), out: ti.types.ndarray()):
            for i in range(xs.shape[0]):
                pv = ti.Vector([p[j] for j in ti.static(range(len(pose)))])
                out[i] = col.world_sdf(shape[0], pv, ti.Vector([xs[i, j] for j in ti.static(range(dim))]))
        out = np.zeros(len(x))
        sdf(x, pose, out)
        want = _reference_sdf({**spec, "half": np.asarray(spec.get("half", [0, 0, 0]))[:dim]}, (x - pos) @ R)
        assert np.allclose(out, want, atol=1e-5), spec["shape"]  # norms carry a 1e-12 guard inside the root
        assert (out < 0).any() or spec["shape"] == "plane"  # some points inside each solid


def test_pose_advance_turns_the_quaternion_by_the_angular_velocity():
    init()
    w = np.array([0.3, -0.5, 0.8])

    @ti.kernel
    def integrate(pose: ti.types.ndarray(), vel: ti.types.ndarray(), steps: ti.i32):
        for _ in range(1):
            p = ti.Vector([pose[j] for j in ti.static(range(7))])
            v = ti.Vector([vel[j] for j in ti.static(range(6))])
            for _s in range(steps):
                p = col.advance(p, v, 1e-3)
            for j in ti.static(range(7)):
                pose[j] = p[j]
    pose = np.array([0.5, 0.5, 0.5, 1.0, 0.0, 0.0, 0.0])
    integrate(pose, np.r_[0.1, 0.0, -0.2, w], 1000)  # one second
    angle = np.linalg.norm(w)
    assert np.allclose(pose[:3], [0.6, 0.5, 0.3])
    assert np.allclose(pose[3:], np.r_[np.cos(angle / 2), np.sin(angle / 2) * w / angle], atol=1e-6)
