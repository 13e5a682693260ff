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
