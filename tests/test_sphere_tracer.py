"""render/sphere_tracer.py: a sphere's depth, normal and silhouette against closed forms,
the query op and whole images against float64 gradcheck, and a silhouette-only gradient
with the right sign."""
import math

import numpy as np
import pytest
import torch

from diffsuite.render.camera import Camera
from diffsuite.render.shading import lights
from diffsuite.render.sphere_tracer import SDFScene, render

# a smooth CSG of three primitives, one placed by an offset: a rounded capsule-box with a dent
CSG = {"shape": "subtraction", "k": 0.05,
       "a": {"shape": "union", "k": 0.08, "a": {"shape": "box", "half": [0.25, 0.12, 0.15]},
             "b": {"shape": "capsule", "radius": 0.1, "half_length": 0.2, "offset": [0.0, 0.12, 0.0, 1, 0, 0, 0]}},
       "b": {"shape": "sphere", "radius": 0.08, "offset": [0.25, 0.0, 0.15, 1, 0, 0, 0]}}
LIGHT = [{"kind": "ambient", "color": [0.2, 0.2, 0.2]}, {"kind": "directional", "direction": [-0.3, -1.0, -0.5],
                                                         "color": [0.9, 0.8, 0.7]},
         {"kind": "point", "position": [1.0, 1.5, 1.5], "color": [2.0, 2.0, 2.0]}]


@pytest.fixture(scope="module")
def scenes():
    out = {"sphere": SDFScene([{"shape": "sphere", "radius": 0.3, "color": [0.9, 0.4, 0.2]}]),
           "csg": SDFScene([{**CSG, "position": [0.05, 0.0, 0.0], "quat": [0.96, 0.0, 0.28, 0.0], "scale": 1.2,
                             "color": [0.3, 0.6, 0.9], "specular": 0.3, "shininess": 8.0}])}
    yield out
    for s in out.values():
        s.free()


def test_sphere_depth_normal_and_silhouette_match_closed_forms(scenes):
    D, r, H = 2.0, 0.3, 65
    cam = Camera([0.0, 0.0, D], [0.0, 0.0, 0.0], width=H, height=H, fov=30.0)
    out = render(scenes["sphere"], cam, lights(LIGHT))
    c = H // 2
    assert math.isclose(out["depth"][0, c, c].item(), D - r, rel_tol=1e-9)  # the centre pixel's ray is the axis
    assert torch.allclose(out["normal"][0, c, c], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), atol=1e-6)
    # the silhouette: a disk of pixel radius f tan(asin(r / D)); hits are exactly the pixels inside
    hit = out["depth"][0] > 0
    r_px = cam.fx[0].item() * math.tan(math.asin(r / D))
    ys, xs = np.mgrid[0:H, 0:H] + 0.5
    inside = (xs - H / 2) ** 2 + (ys - H / 2) ** 2 < r_px ** 2
    ring = np.abs(np.sqrt((xs - H / 2) ** 2 + (ys - H / 2) ** 2) - r_px) < 0.05  # pixels on the edge itself
    assert np.array_equal(hit.numpy()[~ring], inside[~ring])
    # every ray that hits lands on the sphere
    o, d = (a.reshape(-1, 3) for a in cam.rays())
    x = o + out["depth"].reshape(-1, 1) * d
    assert torch.allclose(x[hit.reshape(-1)].norm(dim=-1), torch.full((int(hit.sum()),), r, dtype=torch.float64))


def test_query_op_passes_gradcheck(scenes):
    scene = scenes["csg"]
    p = scene.params()
    g = torch.Generator().manual_seed(0)
    x = (0.4 * torch.rand(20, 3, generator=g, dtype=torch.float64) - 0.2).requires_grad_()
    pose, scale = p["pose"].requires_grad_(), p["scale"].requires_grad_()
    ids = torch.zeros(20, dtype=torch.int64)
    # nondet_tol: the pose's gradient sums over points by parallel atomic adds, in no fixed order
    assert torch.autograd.gradcheck(lambda x, pose, scale: scene.query(x, ids, pose, scale), (x, pose, scale),
                                    eps=1e-6, atol=1e-5, rtol=1e-4, nondet_tol=1e-12)


def test_image_passes_gradcheck_in_every_input(scenes):
    """Every input separately: pose, scale, colour, specular, each light, the camera."""
    scene = scenes["csg"]
    base = scene.params()
    light0 = lights(LIGHT)
    eye0 = torch.tensor([0.3, 0.6, 1.6], dtype=torch.float64)
    w = torch.rand(1, 10, 10, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def image(**kw):
        p = {k: kw.get(k, v) for k, v in base.items()}
        light = {k: kw.get("light_" + k, v) for k, v in light0.items()}
        cam = Camera(kw.get("eye", eye0), [0.0, 0.0, 0.0], width=10, height=10, fov=35.0)
        return (render(scene, cam, light, p)["rgb"] * w).sum()
    inputs = dict(pose=base["pose"], scale=base["scale"], color=base["color"], specular=base["specular"],
                  light_directional=light0["directional"], light_point=light0["point"],
                  light_ambient=light0["ambient"], eye=eye0)
    for name, value in inputs.items():
        v = value.clone().requires_grad_()
        assert torch.autograd.gradcheck(lambda v: image(**{name: v}), (v,), eps=1e-6, atol=1e-5, rtol=1e-3), name


def test_silhouette_alone_pulls_a_flat_sphere_toward_its_target(scenes):
    """Flat (ambient-only) shading over black: the interior carries no gradient, so the pull
    comes from the soft silhouette band, and it points toward the target."""
    scene = scenes["sphere"]
    cam = Camera([0.0, 0.0, 2.0], [0.0, 0.0, 0.0], width=24, height=24, fov=40.0)
    flat = lights([{"kind": "ambient", "color": [1.0, 1.0, 1.0]}])
    p = scene.params()
    target_pose = p["pose"].clone()
    target_pose[0, 0] += 0.1
    target = render(scene, cam, flat, {**p, "pose": target_pose})["rgb"].detach()
    for shift, sign in ((-0.05, -1), (0.25, 1)):  # left of the target, then right of it
        pose = p["pose"].clone()
        pose[0, 0] += shift
        pose.requires_grad_()
        loss = ((render(scene, cam, flat, {**p, "pose": pose})["rgb"] - target) ** 2).sum()
        loss.backward()
        gx = pose.grad[0, 0].item()
        assert gx * sign > 0 and torch.isfinite(pose.grad).all()  # descent moves it toward x = 0.1
        assert abs(pose.grad[0, 1].item()) < 1e-3 * abs(gx)          # and not up or down (symmetry)
