"""sims/sdf.py: every primitive and CSG node against independent closed forms in a turned
frame, exact distances have unit gradient, and gradients to points and pose match float64
finite differences (each input alone and along random directions)."""
import numpy as np
import pytest
import taichi as ti

from diffsuite.sims import gradcheck, init, sdf


def _rodrigues(axis, angle):
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def _box(p, half):
    q = np.abs(p) - half
    outside = np.linalg.norm(np.maximum(q, 0), axis=1)
    return np.where(outside > 0, outside, q.max(1))


def _reference(spec, p):
    """Closed forms in the shape's frame, written independently of sims/sdf.py."""
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
        return _box(p, np.asarray(spec["half"])[:p.shape[1]])
    radial = np.abs(p[:, 0]) if p.shape[1] == 2 else np.hypot(p[:, 0], p[:, 2])
    if kind == "cylinder":  # on the y axis: a 2D box in (radial distance, height)
        return _box(np.stack([radial, p[:, 1]], 1), np.array([spec["radius"], spec["half_height"]]))
    if kind == "torus":
        if p.shape[1] == 2:
            return np.abs(np.linalg.norm(p, axis=1) - spec["radius"]) - spec["tube"]
        return np.hypot(radial - spec["radius"], p[:, 1]) - spec["tube"]
    a, b = _reference(spec["a"], p), _reference(spec["b"], p)
    return {"union": np.minimum(a, b), "intersection": np.maximum(a, b), "subtraction": np.maximum(a, -b)}[kind]


PRIMS = [dict(shape="plane"), dict(shape="sphere", radius=0.1), dict(shape="box", half=[0.1, 0.05, 0.08]),
         dict(shape="capsule", radius=0.05, half_length=0.1), dict(shape="cylinder", radius=0.07, half_height=0.04),
         dict(shape="torus", radius=0.1, tube=0.03)]
HARD_CSG = [dict(shape="union", a=PRIMS[1], b=PRIMS[3]), dict(shape="intersection", a=PRIMS[2], b=PRIMS[1]),
            dict(shape="subtraction", a=PRIMS[2], b=PRIMS[4])]
# a smooth CSG of three primitives, one of them placed by an offset: what a sphere-traced scene holds
SMOOTH = dict(shape="subtraction", k=0.02, b=dict(PRIMS[1], radius=0.06),
              a=dict(shape="union", k=0.03, a=PRIMS[2], b=dict(PRIMS[3], offset=None)))


def _pose(dim):
    pos = np.array([0.5, 0.4, 0.45][:dim])
    if dim == 2:
        angle = 0.7
        return pos, np.r_[pos, angle], np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    axis, angle = np.array([1.0, -2.0, 0.5]) / np.linalg.norm([1.0, -2.0, 0.5]), 0.9
    return pos, np.r_[pos, np.cos(angle / 2), np.sin(angle / 2) * axis], _rodrigues(axis, angle)


def _smooth(dim):
    off = [0.03, 0.05, 0.3] if dim == 2 else [0.03, 0.05, 0.0, np.cos(0.15), 0.0, 0.0, np.sin(0.15)]
    spec = {**SMOOTH, "a": {**SMOOTH["a"], "b": {**PRIMS[3], "offset": off}}}
    return _fix(spec, dim)


def _fix(spec, dim):
    spec = {k: (_fix(v, dim) if isinstance(v, dict) else v) for k, v in spec.items()}
    if "half" in spec:
        spec["half"] = spec["half"][:dim]
    return spec


def _kernels(shapes, dim):
    """Distances of points x (N, dim) to every shape at pose `pose`, with autodiff."""
    init()
    n_pose = len(_pose(dim)[1])
    x = ti.Vector.field(dim, float, shape=400, needs_grad=True)
    pose = ti.field(float, shape=n_pose, needs_grad=True)
    out = ti.field(float, shape=(len(shapes), 400), needs_grad=True)

    @ti.kernel
    def run():
        for i in range(400):
            pv = ti.Vector([pose[j] for j in ti.static(range(n_pose))])
            for s in ti.static(range(len(shapes))):
                out[s, i] = sdf.world(shapes[s], pv, x[i])
    return x, pose, out, run


@pytest.mark.parametrize("dim", [2, 3])
def test_every_shape_matches_its_closed_form_in_a_turned_frame(dim):
    specs = [_fix(s, dim) for s in PRIMS + HARD_CSG]
    shapes = [sdf.shape(s, dim) for s in specs]
    x, pose, out, run = _kernels(shapes, dim)
    pos, pv, R = _pose(dim)
    pts = pos + np.random.default_rng(dim).uniform(-0.2, 0.2, (400, dim))
    x.from_numpy(pts)
    pose.from_numpy(pv)
    run()
    d = out.to_numpy()
    for k, spec in enumerate(specs):
        want = _reference(spec, (pts - pos) @ R)
        assert np.allclose(d[k], want, rtol=0, atol=1e-12), spec["shape"]
        assert (d[k] < 0).any() and (d[k] > 0).any(), spec["shape"]  # points on both sides of each surface


def test_extruded_2d_shapes_are_the_3d_box_and_cylinder():
    """A 2D box extruded over |z| <= depth is the 3D box; a 2D disk, the cylinder on z."""
    shapes = [sdf.shape(dict(shape="extrude", a=dict(shape="box", half=[0.1, 0.05]), depth=0.08), 3),
              sdf.shape(dict(shape="extrude", a=dict(shape="sphere", radius=0.07), depth=0.04), 3)]
    x, pose, out, run = _kernels(shapes, 3)
    pos, pv, R = _pose(3)
    pts = pos + np.random.default_rng(5).uniform(-0.2, 0.2, (400, 3))
    x.from_numpy(pts)
    pose.from_numpy(pv)
    run()
    p = (pts - pos) @ R
    d = out.to_numpy()
    assert np.allclose(d[0], _box(p, np.array([0.1, 0.05, 0.08])), rtol=0, atol=1e-12)
    on_z = _reference(dict(shape="cylinder", radius=0.07, half_height=0.04), p[:, [0, 2, 1]])  # its axis y -> z
    assert np.allclose(d[1], on_z, rtol=0, atol=1e-12)
    for k in range(2):
        assert (d[k] < 0).any() and (d[k] > 0).any()


@pytest.mark.parametrize("dim", [2, 3])
def test_smooth_csg_rounds_within_its_band_and_gradients_match_finite_differences(dim):
    spec = _smooth(dim)
    hard = _fix({**spec, "k": 0.0, "a": {**spec["a"], "k": 0.0}}, dim)
    shapes = [sdf.shape(spec, dim), sdf.shape(hard, dim)] + [sdf.shape(_fix(s, dim), dim) for s in PRIMS[1:]]
    x, pose, out, run = _kernels(shapes, dim)
    pos, pv, _ = _pose(dim)
    rng = np.random.default_rng(10 + dim)
    pts = pos + rng.uniform(-0.2, 0.2, (400, dim))
    pose.from_numpy(pv)
    x.from_numpy(pts)
    run()
    d = out.to_numpy()
    # smooth min lies below the hard min by at most k/4 per node; the union's band enters the subtraction
    assert np.all(np.abs(d[0] - d[1]) <= 0.25 * (0.02 + 0.03) + 1e-12) and np.abs(d[0] - d[1]).max() > 1e-4
    w = rng.standard_normal(d.shape)

    def loss(q):
        x.from_numpy(q["x"])
        pose.from_numpy(q["pose"])
        run()
        return float((out.to_numpy() * w).sum())
    loss({"x": pts, "pose": pv})
    out.grad.from_numpy(w)
    x.grad.fill(0)
    pose.grad.fill(0)
    run.grad()
    grads = {"x": x.grad.to_numpy(), "pose": pose.grad.to_numpy()}
    assert np.isfinite(grads["x"]).all() and np.abs(grads["pose"]).max() > 0
    gradcheck.assert_close(loss, {"x": pts, "pose": pv}, grads, rtol=1e-6)
    # exact distances (the primitives, outside) have unit gradient
    for k in range(2, len(shapes)):
        x.grad.fill(0)
        g = np.zeros_like(w)
        g[k] = 1.0
        out.grad.from_numpy(g)
        run.grad()
        outside = d[k] > 1e-3
        norm = np.linalg.norm(x.grad.to_numpy()[outside], axis=1)
        assert np.allclose(norm, 1.0, atol=1e-9), PRIMS[k - 1]["shape"]


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r"shape \(extrude\) is 3D"):
        sdf.shape({"shape": "extrude", "a": {"shape": "sphere", "radius": 1.0}, "depth": 1.0}, 2)
    with pytest.raises(ValueError, match=r"shape\.depth must be positive"):
        sdf.shape({"shape": "extrude", "a": {"shape": "sphere", "radius": 1.0}, "depth": 0.0}, 3)
    with pytest.raises(ValueError, match=r"shape\.shape must be one of"):
        sdf.shape({"shape": "cone"}, 3)
    with pytest.raises(ValueError, match=r"shape\.a \(torus\) needs \['tube'\]"):
        sdf.shape({"shape": "union", "a": {"shape": "torus", "radius": 1.0}, "b": {"shape": "plane"}}, 3)
    with pytest.raises(ValueError, match=r"shape\.radius must be positive"):
        sdf.shape({"shape": "sphere", "radius": -1.0}, 2)
    with pytest.raises(ValueError, match=r"shape\.offset must be a pose of 7 numbers"):
        sdf.shape({"shape": "sphere", "radius": 1.0, "offset": [0, 0, 0]}, 3)
