"""sims/sdf.py "mesh" shapes, trilinear and B-spline: a trimesh icosphere's grid SDF against
|p| - R, a box's against sims/sdf.py's own box (exact where the distance is affine over all
the interpolation's nodes), Taichi autodiff in the point against float64 central differences,
a sphere-traced render's silhouette and image gradcheck, the grid cache, and bad input named
by its key."""
import itertools
import math

import numpy as np
import pytest
import taichi as ti
import torch
import trimesh

from diffsuite.render.camera import Camera
from diffsuite.render.shading import lights
from diffsuite.render.sphere_tracer import SDFScene, render
from diffsuite.sims import init, sdf

R, RES = 0.3, 24  # the icosphere's radius; cells on the grid's longest side
HALF = np.array([0.1, 0.05, 0.08])  # the box's half sizes
N = 2000  # points a check evaluates
INTERP = sdf.INTERPOLATIONS
LIGHT = [{"kind": "ambient", "color": [0.2, 0.2, 0.2]},
         {"kind": "directional", "direction": [-0.3, -1.0, -0.5], "color": [0.9, 0.8, 0.7]}]


@pytest.fixture(scope="module")
def ball():
    return trimesh.creation.icosphere(subdivisions=3, radius=R)


@pytest.fixture(scope="module")
def shapes(ball):
    """The icosphere's and the box mesh's grids, each interpolated both ways, and sims/sdf.py's
    closed-form box last."""
    init()
    box = trimesh.creation.box(extents=2 * HALF)
    out = {(name, how): sdf.shape({"shape": "mesh", "mesh": m, "resolution": RES, "interpolation": how}, 3)
           for name, m in (("ball", ball), ("box", box)) for how in INTERP}
    out["exact box"] = sdf.shape({"shape": "box", "half": HALF.tolist()}, 3)
    return out


@pytest.fixture(scope="module")
def kernel(shapes):
    """Distances of points x (N, 3) to every shape, in their own frames, with autodiff."""
    names, x = list(shapes), ti.Vector.field(3, float, shape=N, needs_grad=True)
    out = ti.field(float, shape=(len(names), N), needs_grad=True)
    static = [shapes[k] for k in names]

    @ti.kernel
    def run():
        for i in range(N):
            for s in ti.static(range(len(static))):
                out[s, i] = sdf.evaluate(static[s], x[i])

    def distances(pts):
        x.from_numpy(pts)
        run()
        return dict(zip(names, out.to_numpy()))

    def gradient(pts, name):
        distances(pts)
        g = np.zeros((len(names), N))
        g[names.index(name)] = 1.0
        out.grad.from_numpy(g)
        x.grad.fill(0)
        run.grad()
        return x.grad.to_numpy()
    return distances, gradient


def _in_box(s, rng, n=N, grow=0.0):
    """Uniform points in a mesh shape's grid box, grown by `grow` cells on each side."""
    lo = np.array(s.origin) - grow * s.cell
    return lo + rng.uniform(0, 1, (n, 3)) * (s.cell * (np.array(s.dims) - 1 + 2 * grow))


def _taps(s, pts):
    """Integer coordinates (n, taps, 3) of the nodes the interpolation weighs at pts (in the box)."""
    c = np.clip((pts - np.array(s.origin)) / s.cell, 0, np.array(s.dims) - 1)
    if s.interpolation == "trilinear":
        base, offsets = np.minimum(np.floor(c), np.array(s.dims) - 2), itertools.product((0, 1), repeat=3)
    else:
        base, offsets = np.floor(c + 0.5), itertools.product((-1, 0, 1), repeat=3)
    return (base[:, None] + np.array(list(offsets))[None]).astype(int)


@pytest.mark.parametrize("how", INTERP)
def test_icosphere_grid_is_the_sphere_distance_with_the_right_sign(shapes, kernel, how):
    s = shapes["ball", how]
    pts = _in_box(s, np.random.default_rng(0))
    d = kernel[0](pts)["ball", how]
    exact = np.linalg.norm(pts, axis=1) - R
    err = np.abs(d - exact)
    # the polyhedron lies within a sagitta of the sphere and both interpolations are O(h^2) on
    # a smooth field; the cone at the centre costs trilinear up to half a cell, and the
    # B-spline, which smooths it over its 3 x 3 x 3 nodes, two thirds of one
    assert err.max() < (0.5 if how == "trilinear" else 0.7) * s.cell
    band = np.abs(exact) < 2 * s.cell
    assert band.sum() > 100 and err[band].max() < 0.15 * s.cell
    away = np.abs(exact) > 0.5 * s.cell
    assert np.array_equal(d[away] < 0, exact[away] < 0) and (d < 0).any() and (d > 0).any()
    assert sdf.radius(s) == pytest.approx(math.sqrt(3) * 0.5 * s.cell * (s.dims[0] - 1), rel=1e-12)


def _box_piece(p):
    """The affine piece of the box's distance at points p (..., 3): the axis and side of the
    largest |p_k| - half_k (the distance is s p_k - half_k there); -1 where two or more axes
    are outside (the distance curves) or the side is undecided."""
    q = np.abs(p) - HALF
    k = q.argmax(-1)
    side = np.sign(np.take_along_axis(p, k[..., None], -1)[..., 0])
    return np.where(((q > 0).sum(-1) >= 2) | (side == 0), -1, 2 * k + (side > 0))


@pytest.mark.parametrize("how", INTERP)
def test_box_grid_is_exact_where_the_box_distance_is_affine_over_its_nodes(shapes, kernel, how):
    s = shapes["box", how]
    nodes, values = sdf.grid_nodes(s)
    # the nodes hold the mesh's exact signed distance, which for a box mesh is the box's
    q = np.abs(nodes) - HALF
    assert np.abs(values - np.linalg.norm(np.maximum(q, 0), axis=-1) - np.minimum(q.max(-1), 0)).max() < 1e-12 * s.cell
    pts = _in_box(s, np.random.default_rng(1))
    d = kernel[0](pts)
    err = np.abs(d["box", how] - d["exact box"])
    # both interpolations reproduce an affine field: exact where every node they weigh (and
    # so, the piece being convex, all between) lies in one affine piece of the box's distance
    piece = _box_piece(np.array(s.origin) + s.cell * _taps(s, pts))
    affine = (piece[:, :1] == piece).all(1) & (piece[:, 0] >= 0)
    assert affine.sum() > N // 5 and (~affine).sum() > N // 10
    assert err[affine].max() < 1e-10 * s.cell
    assert err.max() < 0.5 * s.cell  # across the edges' curved pieces and the inner ridges
    away = np.abs(d["exact box"]) > 0.5 * s.cell
    assert np.array_equal(d["box", how][away] < 0, d["exact box"][away] < 0)


@pytest.mark.parametrize("how", INTERP)
def test_autodiff_in_the_point_matches_central_differences(shapes, kernel, how):
    """Inside the grid box and outside it (the bound's branch), at points away from cell
    faces (the trilinear field's kinks) and from the box's edges and faces (the bound's);
    the step is a millionth of a cell."""
    distances, gradient = kernel
    s = shapes["ball", how]
    pts = _in_box(s, np.random.default_rng(2), n=4 * N, grow=3.0)
    u = (pts - np.array(s.origin)) / s.cell
    c = np.clip(u, 0, np.array(s.dims) - 1)
    frac = c - np.minimum(np.floor(c), np.array(s.dims) - 2)
    smooth = np.where(c == u, (frac > 0.02) & (frac < 0.98), np.abs(u - c) > 0.02)
    pts, outside = pts[smooth.all(1)][:N], (c != u)[smooth.all(1)][:N].any(1)
    assert len(pts) == N and outside.sum() > 100 and (~outside).sum() > 100
    ad = gradient(pts, ("ball", how))
    h = 1e-6 * s.cell
    fd = np.stack([(distances(pts + h * e)["ball", how] - distances(pts - h * e)["ball", how]) / (2 * h)
                   for e in np.eye(3)], 1)
    assert np.isfinite(ad).all() and np.abs(ad).max() > 0.5
    assert np.allclose(ad, fd, rtol=1e-6, atol=1e-7)
    # the bound outside the box stays below the distance to the sphere (up to the grid's error)
    exact = np.linalg.norm(pts, axis=1) - R
    assert (distances(pts)["ball", how][outside] <= exact[outside] + 0.1 * s.cell).all()


# padding 0.5 holds every ray's closest approach of the 8 x 8 image below inside the grid,
# clear of the bound's edges past it
TRACED = {"shape": "mesh", "resolution": 32, "padding": 0.5, "color": [0.9, 0.4, 0.2]}


@pytest.fixture(scope="module")
def scenes(ball):
    out = {how: SDFScene([{**TRACED, "mesh": ball, "interpolation": how}]) for how in INTERP}
    yield out
    for s in out.values():
        s.free()


@pytest.mark.parametrize("how", INTERP)
def test_sphere_traced_icosphere_covers_the_sphere_disk(scenes, how):
    D, H = 2.0, 32
    cam = Camera([0.0, 0.0, D], [0.0, 0.0, 0.0], width=H, height=H, fov=30.0)
    out = render(scenes[how], cam, lights(LIGHT))
    hit = (out["depth"][0] > 0).numpy()
    r_px = cam.fx[0].item() * math.tan(math.asin(R / D))
    ys, xs = np.mgrid[0:H, 0:H] + 0.5
    rho = np.hypot(xs - H / 2, ys - H / 2)
    assert abs(hit.sum() / (rho < r_px).sum() - 1) < 0.03  # the disk's own pixels
    assert np.array_equal(hit[np.abs(rho - r_px) > 0.5], (rho < r_px)[np.abs(rho - r_px) > 0.5])
    # the centre pixel's ray is the axis, through an icosphere vertex: depth D - R to the grid's error
    cell = scenes[how].shapes[0].cell
    assert abs(out["depth"][0, H // 2, H // 2].item() - (D - R)) < 0.1 * cell
    n = out["normal"][0][torch.as_tensor(hit)]
    assert torch.allclose(n.norm(dim=-1), torch.ones(len(n), dtype=torch.float64))


def test_image_gradcheck_in_the_position(scenes):
    """With the B-spline (C1): a miss's colour follows its closest approach to the surface,
    which on the trilinear field often sits on a cell face, where its gradient jumps."""
    scene = scenes["bspline"]
    base = scene.params()
    w = torch.rand(1, 8, 8, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    cam = Camera([0.3, 0.4, 1.8], [0.0, 0.0, 0.0], width=8, height=8, fov=35.0)
    light = lights(LIGHT)

    def image(pos):
        pose = torch.cat([pos, base["pose"][:, 3:]], -1)
        return (render(scene, cam, light, {**base, "pose": pose})["rgb"] * w).sum()
    pos = base["pose"][:, :3].clone().requires_grad_()
    assert torch.autograd.gradcheck(image, (pos,), eps=1e-6, atol=1e-5, rtol=1e-3)


def test_grids_are_cached_by_content_resolution_and_padding(ball, tmp_path):
    path = tmp_path / "ball.ply"
    ball.export(path)
    a = sdf.shape({"shape": "mesh", "path": str(path), "resolution": RES}, 3)
    b = sdf.shape({"shape": "mesh", "path": path, "resolution": RES, "offset": [0.1, 0, 0, 1, 0, 0, 0]}, 3)
    assert b.grid is a.grid and b.offset and not a.offset  # one field, two shapes
    spline = sdf.shape({"shape": "mesh", "path": str(path), "resolution": RES, "interpolation": "bspline"}, 3)
    assert spline.grid is a.grid and spline.interpolation == "bspline"  # the same nodes, weighed otherwise
    mem = sdf.shape({"shape": "mesh", "mesh": ball, "resolution": RES}, 3)
    assert np.allclose(sdf.grid_nodes(a)[1], sdf.grid_nodes(mem)[1], rtol=0, atol=1e-6 * a.cell)
    for other in ({"resolution": RES + 1}, {"padding": 0.2}):
        assert sdf.shape({"shape": "mesh", "path": str(path), "resolution": RES, **other}, 3).grid is not a.grid
    trimesh.creation.box(extents=2 * HALF).export(path)  # the same path, other content: built anew
    c = sdf.shape({"shape": "mesh", "path": str(path), "resolution": RES}, 3)
    assert c.grid is not a.grid and c.dims != a.dims


def test_bad_input_is_named_by_its_key(ball, tmp_path):
    tri = trimesh.Trimesh(vertices=[[0, 0, 0], [1, 0, 0], [0, 1, 0]], faces=[[0, 1, 2]])
    junk = tmp_path / "junk.stl"
    junk.write_text("not a mesh")
    cases = [({"mesh": tri}, 3, r"shape\.mesh must be a watertight mesh"),
             ({"path": str(tmp_path / "none.obj")}, 3, r"shape\.path: no such file"),
             ({"path": str(junk)}, 3, r"shape\.path"),
             ({"mesh": ball}, 2, r"shape \(mesh\) is 3D only"),
             ({"mesh": np.zeros((3, 3))}, 3, r"shape\.mesh must be a trimesh\.Trimesh"),
             ({}, 3, r"shape \(mesh\) takes one of path"),
             ({"mesh": ball, "path": "x.obj"}, 3, r"shape \(mesh\) takes one of path"),
             ({"mesh": ball, "radius": 1.0}, 3, r"shape: unknown key\(s\) \['radius'\]")]
    cases += [({"mesh": ball, "resolution": r}, 3, r"shape\.resolution must be an integer >= 2")
              for r in (1, 0, -4, 2.5, "32", True)]
    cases += [({"mesh": ball, "padding": p}, 3, r"shape\.padding must be a positive") for p in (0, -0.1, "x")]
    cases += [({"mesh": ball, "interpolation": "cubic"}, 3, r"shape\.interpolation must be one of")]
    for spec, dim, message in cases:
        with pytest.raises(ValueError, match=message):
            sdf.shape({"shape": "mesh", **spec}, dim)
    with pytest.raises(ValueError, match=r"objects\[0\]\.resolution"):
        SDFScene([{"shape": "mesh", "mesh": ball, "resolution": 1, "color": [1.0, 1.0, 1.0]}])
