"""render/mesh_tracer.py: depth, normals and coverage against closed forms, whole images
against float64 gradcheck in every input (interior terms and the antialiasing term), a
silhouette-only gradient with the right sign, a trimesh-loaded sphere's area, bad input."""
import math

import numpy as np
import pytest
import torch

from diffsuite.render.camera import Camera
from diffsuite.render.mesh_tracer import MeshScene, load_mesh, render_mesh
from diffsuite.render.shading import lights

f64 = torch.float64
SQUARE_V = torch.tensor([[-0.5, -0.5, 0.0], [0.5, -0.5, 0.0], [0.5, 0.5, 0.0], [-0.5, 0.5, 0.0]], dtype=f64)
SQUARE_F = torch.tensor([[0, 1, 2], [0, 2, 3]])
AMBIENT = lights([{"kind": "ambient", "color": [1.0, 1.0, 1.0]}])
# a closed pyramid (apex, four base corners; the base faces down), seen from above at a slant
PYRAMID_V = torch.tensor([[0.03, 0.45, -0.02], [-0.5, 0.0, -0.45], [0.52, 0.0, -0.5], [0.47, 0.0, 0.5],
                          [-0.5, 0.0, 0.55]], dtype=f64)
PYRAMID_F = torch.tensor([[0, 2, 1], [0, 3, 2], [0, 4, 3], [0, 1, 4], [1, 2, 3], [1, 3, 4]])
PYRAMID_C = torch.tensor([[0.9, 0.8, 0.7], [0.2, 0.5, 0.9], [0.8, 0.3, 0.2], [0.3, 0.9, 0.4], [0.6, 0.6, 0.1]],
                         dtype=f64)
LIGHT = [{"kind": "ambient", "color": [0.2, 0.25, 0.3]},
         {"kind": "directional", "direction": [-0.3, -1.0, -0.4], "color": [0.9, 0.8, 0.7]},
         {"kind": "point", "position": [0.8, 1.5, 1.2], "color": [2.0, 1.8, 1.6]}]


@pytest.fixture(scope="module")
def scene():
    s = MeshScene(n_faces_max=2000, n_pixels_max=64 * 64, n_views_max=2)  # one compile for the file
    yield s
    s.free()


def test_square_facing_an_orthographic_camera_matches_closed_forms(scene):
    """Depth exactly the eye's distance, the normal toward the camera (from either side), the
    mask exactly 1 on the square's 6 x 6 pixels, 0 elsewhere (its edges lie midway between
    pixel centres, where antialiasing blends nothing)."""
    inside = torch.zeros(12, 12, dtype=torch.bool)
    inside[3:9, 3:9] = True
    for z, nz in ((2.0, 1.0), (-2.0, -1.0)):
        cam = Camera([0.0, 0.0, z], [0.0, 0.0, 0.0], width=12, height=12, ortho=2.0)
        for aa in (False, True):
            out = render_mesh(cam, SQUARE_V, SQUARE_F, [0.3, 0.6, 0.9], AMBIENT, antialias=aa, scene=scene)
            assert torch.allclose(out["mask"][0], inside.to(f64), atol=1e-9)
            assert torch.allclose(out["depth"][0][inside], torch.full((36,), 2.0, dtype=f64), atol=1e-12)
            assert (out["depth"][0][~inside] == 0).all() and (out["tri"][0][~inside] == -1).all()
            assert ((out["tri"][0][inside] == 0) | (out["tri"][0][inside] == 1)).all()
            assert torch.allclose(out["normal"][0][inside], torch.tensor([0.0, 0.0, nz], dtype=f64).expand(36, 3))
            assert (out["normal"][0][~inside] == 0).all()
            assert torch.allclose(out["rgb"][0][inside], torch.tensor([0.3, 0.6, 0.9], dtype=f64).expand(36, 3))


def test_pinhole_triangle_covers_exactly_the_pixel_centres_inside_its_projection(scene):
    A = torch.tensor([[-0.4, -0.3, 0.1], [0.5, -0.2, -0.3], [0.0, 0.45, 0.2]], dtype=f64)
    cam = Camera([0.3, 0.2, 2.0], [0.0, 0.0, 0.0], width=40, height=30, fov=35.0)
    out = render_mesh(cam, A, torch.tensor([[0, 1, 2]]), [1.0, 1.0, 1.0], AMBIENT, antialias=False, scene=scene)
    px, _ = cam.project(A[None])
    P = px[0]
    ys, xs = torch.meshgrid(torch.arange(30, dtype=f64) + 0.5, torch.arange(40, dtype=f64) + 0.5, indexing="ij")
    side = lambda a, b: (b[0] - a[0]) * (ys - a[1]) - (b[1] - a[1]) * (xs - a[0])
    s = torch.stack([side(P[0], P[1]), side(P[1], P[2]), side(P[2], P[0])])
    lengths = torch.stack([(P[1] - P[0]).norm(), (P[2] - P[1]).norm(), (P[0] - P[2]).norm()])[:, None, None]
    inside = (s > 0).all(0) | (s < 0).all(0)
    clear = ((s / lengths).abs() > 1e-6).all(0)  # no centre on an edge itself
    assert inside.sum() > 100
    assert torch.equal((out["tri"][0] == 0)[clear], inside[clear])
    assert torch.equal(out["mask"][0] > 0, out["tri"][0] == 0)
    # the depth is the distance along the ray to the triangle's plane
    o, d = cam.rays()
    n = torch.linalg.cross(A[1] - A[0], A[2] - A[0])
    t = ((A[0] - o[0]) @ n) / (d[0] @ n)
    assert torch.allclose(out["depth"][0][inside], t[inside], atol=1e-12)


def _grid_square(n, offset):
    """The unit square of SQUARE_V cut into n x n cells (2 n^2 triangles), moved by offset."""
    g = torch.linspace(-0.5, 0.5, n + 1, dtype=f64)
    Y, X = torch.meshgrid(g, g, indexing="ij")
    v = torch.stack([X, Y, torch.zeros_like(X)], -1).reshape(-1, 3) + offset
    a = (torch.arange(n)[:, None] * (n + 1) + torch.arange(n)[None, :]).reshape(-1)
    return v, torch.cat([torch.stack([a, a + 1, a + n + 2], -1), torch.stack([a, a + n + 2, a + n + 1], -1)])


def test_cells_smaller_than_pixels_antialias_as_the_two_triangle_square(scene):
    """In front of a farther red quad: the outline's blend comes from the mesh's true boundary
    even where its triangles cover no pixel centre (the walk along the pixel segment)."""
    cam = Camera([0.0, 0.0, 2.0], [0.0, 0.0, 0.0], width=16, height=16, ortho=2.0)  # 8 px per unit
    back = torch.tensor([[-0.9, -0.9, -0.5], [0.9, -0.9, -0.5], [0.9, 0.9, -0.5], [-0.9, 0.9, -0.5]], dtype=f64)
    images = []
    for n in (1, 30):  # cells of 8 and of 0.27 pixels
        v, f = _grid_square(n, torch.tensor([0.03, 0.02, 0.0], dtype=f64))
        colors = torch.cat([torch.ones(len(v), 3, dtype=f64), torch.tensor([[1.0, 0.0, 0.0]], dtype=f64).expand(4, 3)])
        images.append(render_mesh(cam, torch.cat([v, back]), torch.cat([f, SQUARE_F + len(v)]), colors, AMBIENT,
                                  scene=scene)["rgb"])
    blended = (images[0][..., 1] > 0.01) & (images[0][..., 1] < 0.99)
    assert blended.sum() >= 28  # the outline is blended with the red behind it
    assert torch.allclose(images[0], images[1], atol=1e-9)


def test_triangles_behind_the_camera_are_skipped(scene):
    cam = Camera([0.0, 0.0, 2.0], [0.0, 0.0, 0.0], width=12, height=10, fov=40.0)
    v = torch.tensor([[-0.3, -0.3, 0.0], [0.3, -0.3, 0.0], [0.0, 0.3, 0.0],  # in view
                      [-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [0.0, 0.0, 3.0]], dtype=f64)  # one vertex behind the eye
    out = render_mesh(cam, v, torch.tensor([[0, 1, 2], [3, 4, 5]]), [1.0, 1.0, 1.0], AMBIENT, scene=scene)
    assert (out["tri"] == 0).any() and not (out["tri"] == 1).any()


def test_two_views_render_as_each_view_alone(scene):
    eyes, targets = [[0.3, 1.2, 1.6], [-1.5, 0.6, -0.4]], [[0.0, 0.1, 0.0], [0.05, 0.15, 0.0]]
    both = render_mesh(Camera(eyes, targets, width=16, height=12, fov=40.0), PYRAMID_V, PYRAMID_F, PYRAMID_C,
                       lights(LIGHT), specular=0.3, scene=scene)
    for v in range(2):
        one = render_mesh(Camera(eyes[v], targets[v], width=16, height=12, fov=40.0), PYRAMID_V, PYRAMID_F, PYRAMID_C,
                          lights(LIGHT), specular=0.3, scene=scene)
        for k in ("rgb", "depth", "normal", "mask", "tri"):
            assert torch.allclose(both[k][v].double(), one[k][0].double(), atol=1e-12), k
    assert 0 < both["mask"].mean() < 1 and (both["mask"] > 0).any()


@pytest.mark.parametrize("antialias", [False, True])
def test_image_passes_gradcheck_in_every_input(scene, antialias):
    """Vertices, colours, each light, specular and the camera eye, each separately. The
    pyramid's pixel centres all lie clear of its projected edges, and no antialiasing crossing
    sits at a pair's midpoint (the blend's kink)."""
    light0 = lights(LIGHT)
    eye0 = torch.tensor([0.3, 1.2, 1.6], dtype=f64)
    w = torch.rand(1, 10, 12, 3, generator=torch.Generator().manual_seed(0), dtype=f64)

    def image(vertices=PYRAMID_V, colors=PYRAMID_C, specular=torch.tensor(0.4, dtype=f64), eye=eye0, **kw):
        light = {k: kw.get("light_" + k, v) for k, v in light0.items()}
        cam = Camera(eye, [0.0, 0.1, 0.0], width=12, height=10, fov=35.0)
        out = render_mesh(cam, vertices, PYRAMID_F, colors, light, specular=specular, shininess=8.0,
                          antialias=antialias, scene=scene)
        return out["rgb"] * w

    base = render_mesh(Camera(eye0, [0.0, 0.1, 0.0], width=12, height=10, fov=35.0), PYRAMID_V, PYRAMID_F,
                       PYRAMID_C, light0, antialias=True, scene=scene)
    assert 0.2 < base["mask"].mean() < 0.8 and (base["tri"][0] >= 0).sum() > 30
    assert ((base["mask"] > 0.01) & (base["mask"] < 0.99)).sum() > 10  # the antialiasing term is exercised
    inputs = dict(vertices=PYRAMID_V, colors=PYRAMID_C, specular=torch.tensor(0.4, dtype=f64), eye=eye0,
                  light_ambient=light0["ambient"], light_directional=light0["directional"], light_point=light0["point"])
    for name, value in inputs.items():
        v = value.clone().requires_grad_()
        assert torch.autograd.gradcheck(lambda v: image(**{name: v}), (v,), eps=1e-6, atol=1e-5, rtol=1e-3), name


@pytest.mark.parametrize("smooth", [False, True])
def test_the_fused_forward_equals_the_differentiable_pass(scene, smooth):
    """Without gradients render_mesh shades in one Taichi kernel; with them, in torch. The same
    rgb, depth, normal and mask, antialiasing included, in two views."""
    cam = Camera([[0.3, 1.2, 1.6], [-1.5, 0.6, -0.4]], [[0.0, 0.1, 0.0], [0.05, 0.15, 0.0]], width=24, height=20,
                 fov=40.0)
    kw = dict(specular=0.4, shininess=6.0, background=(0.1, 0.2, 0.3), smooth=smooth, scene=scene)
    fused = render_mesh(cam, PYRAMID_V, PYRAMID_F, PYRAMID_C, lights(LIGHT), **kw)
    graph = render_mesh(cam, PYRAMID_V.clone().requires_grad_(), PYRAMID_F, PYRAMID_C, lights(LIGHT), **kw)
    assert ((fused["mask"] > 0.01) & (fused["mask"] < 0.99)).any() and (fused["tri"] >= 0).sum() > 100
    for k in ("rgb", "depth", "normal", "mask"):
        assert torch.allclose(fused[k], graph[k].detach(), rtol=1e-9, atol=1e-12), k


def test_silhouette_alone_pulls_a_flat_square_toward_its_target(scene):
    """Ambient light, one colour: the square's interior carries no gradient, so the pull on its
    vertices comes from the antialiasing term alone, and it points toward the target."""
    cam = Camera([0.0, 0.0, 2.0], [0.0, 0.0, 0.0], width=16, height=16, ortho=2.0)  # 8 px per unit

    def render(shift_px, aa=True):
        v = (SQUARE_V + torch.tensor([0.03, 0.02, 0.0], dtype=f64)).clone()  # edges clear of centres, midpoints
        v = v.clone().requires_grad_()
        out = render_mesh(cam, v + torch.tensor([shift_px / 8, 0.0, 0.0], dtype=f64), SQUARE_F, [0.8, 0.8, 0.8],
                          AMBIENT, antialias=aa, scene=scene)
        return v, out["rgb"]

    target = render(0.3)[1].detach()
    for shift, sign in ((0.0, -1), (0.55, 1)):  # left of the target, then right of it
        v, rgb = render(shift)
        ((rgb - target) ** 2).sum().backward()
        gx, gy = v.grad[:, 0].sum().item(), v.grad[:, 1].sum().item()
        assert gx * sign > 0, (shift, gx)  # descent moves it toward the target
        assert abs(gy) < 0.1 * abs(gx)  # and hardly up or down (the target differs in x only)
        v, rgb = render(shift, aa=False)
        ((rgb - target) ** 2).sum().backward()
        assert (v.grad == 0).all()  # without antialiasing nothing pulls


def test_trimesh_icosphere_covers_a_disk_of_its_radius(scene, tmp_path):
    import trimesh
    path = tmp_path / "ball.obj"
    trimesh.creation.icosphere(subdivisions=2, radius=0.8).export(path)
    vertices, faces = load_mesh(path)
    assert vertices.dtype == f64 and faces.dtype == torch.int64 and faces.shape == (320, 3)
    cam = Camera([0.3, 0.4, 3.0], [0.0, 0.0, 0.0], width=64, height=64, ortho=2.0)  # 32 px per unit
    for smooth in (False, True):
        out = render_mesh(cam, vertices, faces, [0.5, 0.5, 0.5], lights(LIGHT), smooth=smooth, scene=scene)
        area = out["mask"].sum().item()
        assert abs(area / (math.pi * (0.8 * 32) ** 2) - 1) < 0.03, area
        # normals: unit, near the sphere's own at the hit point; flat ones face the camera
        # (smooth ones may turn a little away near the outline, as interpolated normals do)
        hit = out["tri"][0] >= 0
        o, d = cam.rays()
        x = o[0][hit] + out["depth"][0][hit][:, None] * d[0][hit]
        n = out["normal"][0][hit]
        assert torch.allclose(n.norm(dim=-1), torch.ones(len(n), dtype=f64))
        assert smooth or ((n * d[0][hit]).sum(-1) < 0).all()
        assert (n * x / x.norm(dim=-1, keepdim=True)).sum(-1).min() > (0.99 if smooth else 0.95)


def test_bad_input_raises_naming_the_argument(scene):
    cam = Camera([0.0, 0.0, 2.0], [0.0, 0.0, 0.0], width=8, height=8, fov=40.0)
    bad_v = SQUARE_V.clone()
    bad_v[1, 0] = float("nan")
    cases = [(dict(vertices=SQUARE_V[:, :2]), "vertices"), (dict(vertices=bad_v), "vertices"),
             (dict(faces=SQUARE_F + 2), "faces"), (dict(faces=SQUARE_F.double()), "faces"),
             (dict(faces=SQUARE_F[:, :2]), "faces"), (dict(colors=torch.ones(3, 3)), "colors"),
             (dict(camera="cam"), "camera"), (dict(light={}), "light"), (dict(specular=[1.0, 2.0]), "specular"),
             (dict(background=(0.0, 0.0)), "background")]
    for kw, name in cases:
        args = {**dict(camera=cam, vertices=SQUARE_V, faces=SQUARE_F, colors=[1.0, 1.0, 1.0], light=AMBIENT), **kw}
        with pytest.raises(ValueError, match=name):
            render_mesh(**args, scene=scene)
    with pytest.raises(ValueError, match="path_or_trimesh"):
        load_mesh(np.zeros(3))
