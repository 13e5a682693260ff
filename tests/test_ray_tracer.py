"""The sphere ray tracer against closed forms, hard shadows, and float64 gradcheck."""
import math

import pytest
import torch

from diffsuite.render import ray_tracer as rt
from diffsuite.render.camera import Camera
from diffsuite.render.shading import lights

LIGHT = lights([dict(kind="ambient", color=[0.2, 0.2, 0.2]),
                dict(kind="directional", direction=[-0.3, -1.0, -0.5], color=[0.9, 0.8, 0.7]),
                dict(kind="point", position=[2.0, 3.0, 4.0], color=[6.0, 6.0, 6.0])])


@pytest.fixture(scope="module")
def tracer():
    return rt.SphereTracer()


def test_disk_depth_and_normal_match_closed_forms(tracer):
    cam = Camera([0.0, 0.0, 5.0], [0.0, 0.0, 0.0], 64, 48, fov=40)
    out = rt.render(cam, torch.tensor([[0.0, 0.0, 0.0]], dtype=torch.float64), 1.0, [1.0, 0.5, 0.2], LIGHT,
                    tracer=tracer)
    R = float(cam.fy[0]) * math.tan(math.asin(1 / 5))  # the silhouette's radius in pixels
    assert abs(float(out["mask"][0].sum()) - math.pi * R * R) < 0.02 * math.pi * R * R
    o, d = cam.rays()
    hit = out["mask"][0] == 1
    tc = -(o[0] * d[0]).sum(-1)  # closed-form ray-sphere distance
    t = tc - torch.sqrt((1 - ((o[0] + tc[..., None] * d[0]) ** 2).sum(-1)).clamp(min=0))
    assert torch.allclose(out["depth"][0][hit], t[hit], rtol=1e-9)
    x = o[0] + out["depth"][0][..., None] * d[0]
    assert torch.allclose(out["normal"][0][hit], x[hit], atol=1e-9)  # unit sphere at the origin
    assert (out["mask"][0][~hit] < 1).all() and float(out["mask"][0, 0, 0]) == 0


def test_hard_shadow_under_a_sphere(tracer):
    c, r = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64), torch.tensor([0.3], dtype=torch.float64)
    light = lights([dict(kind="directional", direction=[0.0, -1.0, 0.0], color=[1.0, 1.0, 1.0]),
                    dict(kind="point", position=[0.0, 3.0, 0.0], color=[1.0, 1.0, 1.0])])
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.2, 0.0, 0.1], [0.5, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=torch.float64)
    vis = tracer.visible(pts, light, c, r)
    assert vis.tolist() == [[False, False], [False, False], [True, True], [True, True]]
    # a small sphere above a big one darkens the big one's top, and only where its shadow falls
    cen = torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.6, 0.0]], dtype=torch.float64)
    cam = Camera([0.0, 4.0, 0.01], [0.0, 0.0, 0.0], 32, 32, fov=40)
    light = lights([dict(kind="directional", direction=[-0.5, -1.0, 0.0], color=[1.0, 1.0, 1.0])])
    lit = rt.render(cam, cen[:1], 1.0, [1.0, 1.0, 1.0], light, tracer=tracer)["rgb"]
    both = rt.render(cam, cen, torch.tensor([1.0, 0.3], dtype=torch.float64), [1.0, 1.0, 1.0], light,
                     tracer=tracer)
    ring = (both["depth"][0] > 2.8) & (both["mask"][0] == 1)  # the big sphere's top around the small one
    assert (both["rgb"][0][ring] < lit[0][ring] - 0.1).any()  # the shadow is there
    dark = both["rgb"][0][ring][:, 0] < lit[0][ring][:, 0] - 0.1
    assert 0.02 < float(dark.double().mean()) < 0.5  # and only in part of it


def _scene():
    g = torch.Generator().manual_seed(3)
    cen = torch.tensor([[-0.4, 0.1, 0.0], [0.35, -0.15, 0.3]], dtype=torch.float64)
    cen = cen + 0.01 * torch.rand(2, 3, generator=g, dtype=torch.float64)
    return (cen, torch.tensor([0.45, 0.3], dtype=torch.float64), torch.tensor([[0.9, 0.3, 0.2], [0.2, 0.6, 0.9]],
                                                                               dtype=torch.float64))


@pytest.mark.parametrize("wrt", ["centers", "radii", "colors", "specular", "shininess", "eye", "fov", "ambient",
                                 "directional", "point", "background"])
def test_gradcheck_each_input(tracer, wrt):
    """Each input alone, through the fused kernel and its written-out reverse (fov: through
    the torch pass, which the band's width in pixels makes depend on fy)."""
    cen, rad, col = _scene()
    g = torch.Generator().manual_seed(5)
    args = dict(centers=cen, radii=rad, colors=col, specular=torch.tensor([0.3, 0.6], dtype=torch.float64),
                shininess=torch.tensor([8.0, 5.0], dtype=torch.float64), eye=torch.tensor([0.1, 0.2, 3.0], dtype=torch.float64),
                fov=torch.tensor(35.0, dtype=torch.float64), background=torch.rand(1, 7, 9, 3, generator=g, dtype=torch.float64),
                **LIGHT)

    def f(x):
        a = {**args, wrt: x}
        cam = Camera(a["eye"], [0.0, 0.0, 0.0], 9, 7, fov=a["fov"])
        light = {k: a[k] for k in LIGHT}
        out = rt.render(cam, a["centers"], a["radii"], a["colors"], light, specular=a["specular"],
                        shininess=a["shininess"], band=1.5, background=a["background"], tracer=tracer)
        return torch.cat([out["rgb"].reshape(-1), out["depth"].reshape(-1), out["normal"].reshape(-1),
                          out["mask"].reshape(-1)])
    x = args[wrt].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_silhouette_alone_pulls_toward_the_target(tracer):
    """A flat white sphere over black (ambient light only): only coverage depends on x."""
    flat = lights([dict(kind="ambient", color=[1.0, 1.0, 1.0])])
    cam = Camera([0.0, 0.0, 4.0], [0.0, 0.0, 0.0], 24, 24, fov=30)
    target = rt.render(cam, torch.tensor([[0.05, 0.0, 0.0]], dtype=torch.float64), 0.5, [1.0, 1.0, 1.0], flat,
                       tracer=tracer)["rgb"]
    for start, sign in ((-0.05, -1), (0.15, 1)):
        c = torch.tensor([[start, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
        img = rt.render(cam, c, 0.5, [1.0, 1.0, 1.0], flat, tracer=tracer)["rgb"]
        ((img - target) ** 2).sum().backward()
        assert sign * float(c.grad[0, 0]) > 0  # descending moves x toward 0.05
        assert abs(float(c.grad[0, 1])) < 1e-6 * abs(float(c.grad[0, 0]))  # symmetric in y


@pytest.mark.parametrize("ortho", [None, 3.0])
def test_the_fused_forward_equals_the_differentiable_pass(tracer, ortho):
    """render() runs its differentiable pass as one Taichi kernel; the plain torch pass (kept
    for gradients to fy) gives the same image, depth, normal and mask: overlapping soft rims,
    shadows, three kinds of light, a background image with its depth, per-sphere materials."""
    g = torch.Generator().manual_seed(3)
    M = 40
    c = (torch.rand(M, 3, generator=g, dtype=torch.float64) - 0.5) * 1.6
    r = 0.08 + 0.15 * torch.rand(M, generator=g, dtype=torch.float64)
    col, spec = torch.rand(M, 3, generator=g, dtype=torch.float64), torch.rand(M, generator=g, dtype=torch.float64)
    shin = 4 + 20 * torch.rand(M, generator=g, dtype=torch.float64)
    cam = Camera([0.6, 0.9, 3.5], [0.0, 0.0, 0.0], 40, 30, fov=None if ortho else 40, ortho=ortho)
    bg = torch.rand(1, 30, 40, 3, generator=g, dtype=torch.float64)
    bg_depth = torch.where(torch.rand(1, 30, 40, generator=g) < 0.5, 3.4, 0.0).to(torch.float64)
    kw = dict(specular=spec, shininess=shin, background=bg, background_depth=bg_depth, tracer=tracer)
    fused = rt.render(cam, c, r, col, LIGHT, **kw)
    rec = tracer.visibility(cam, c, r, 0.5, LIGHT, bg_depth)
    torch_pass = rt._torch_pass(cam, cam.rays(), c, r, col, spec, shin, LIGHT, bg, 0.5, rec)
    assert 0.1 < float(fused["mask"].mean()) < 0.9 and ((fused["mask"] > 0) & (fused["mask"] < 1)).any()
    for k in ("rgb", "depth", "normal", "mask"):
        assert torch.allclose(fused[k], torch_pass[k].detach(), rtol=1e-9, atol=1e-12), k


def test_bad_input_names_the_argument(tracer):
    cam = Camera([0.0, 0.0, 4.0], [0.0, 0.0, 0.0], 8, 8, fov=30)
    c = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="centers"):
        rt.render(cam, torch.zeros(2, 2), 0.5, [1.0, 1.0, 1.0], LIGHT, tracer=tracer)
    with pytest.raises(ValueError, match="radii"):
        rt.render(cam, c, torch.tensor([0.5, -1.0]), [1.0, 1.0, 1.0], LIGHT, tracer=tracer)
    with pytest.raises(ValueError, match="colors"):
        rt.render(cam, c, 0.5, torch.ones(3, 3), LIGHT, tracer=tracer)
    with pytest.raises(ValueError, match="centers must be finite"):
        rt.render(cam, torch.full((2, 3), float("nan")), 0.5, [1.0, 1.0, 1.0], LIGHT, tracer=tracer)
