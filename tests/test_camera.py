"""render/camera.py: rays and projection agree, intrinsics follow the field of view,
gradients reach the camera's tensors (float64 gradcheck)."""
import math

import pytest
import torch

from diffsuite.render.camera import Camera, look_at


def test_look_at_is_a_rotation_looking_at_the_target():
    eye, target = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.5, -2.0]]), torch.tensor([[0.0, 0.0, 0.0], [0.2, 0.1, 0.0]])
    R = look_at(eye, target)
    assert torch.allclose(R.transpose(1, 2) @ R, torch.eye(3).expand(2, 3, 3), atol=1e-6)
    assert torch.allclose(torch.linalg.det(R), torch.ones(2), atol=1e-6)
    ahead = (target - eye) / (target - eye).norm(dim=-1, keepdim=True)
    assert torch.allclose(-R[:, :, 2], ahead, atol=1e-6)


@pytest.mark.parametrize("ortho", [None, 0.8])
def test_rays_project_back_to_their_pixels(ortho):
    cam = Camera([[0.5, 0.6, 2.0], [1.5, 1.0, 0.3]], [0.5, 0.3, 0.5], width=7, height=5,
                 fov=None if ortho else 40.0, ortho=ortho)
    o, d = cam.rays()
    pts = (o + 1.7 * d).reshape(2, -1, 3)
    px, depth = cam.project(pts)
    ys, xs = torch.meshgrid(torch.arange(5.0) + 0.5, torch.arange(7.0) + 0.5, indexing="ij")
    want = torch.stack([xs, ys], -1).reshape(1, -1, 2).expand(2, -1, -1)
    assert torch.allclose(px, want.double(), atol=1e-9) and (depth > 0).all()
    assert torch.allclose(d.norm(dim=-1), torch.ones(2, 5, 7, dtype=torch.float64))


def test_fov_sets_the_focal_length_and_bad_input_is_named():
    cam = Camera([0, 0, 1], [0, 0, 0], width=64, height=48, fov=60.0)
    assert math.isclose(cam.fx[0].item(), 24 / math.tan(math.radians(30)))
    with pytest.raises(ValueError, match="either fov"):
        Camera([0, 0, 1], [0, 0, 0], width=4, height=4)
    with pytest.raises(ValueError, match="fov must lie in"):
        Camera([0, 0, 1], [0, 0, 0], width=4, height=4, fov=180.0)


def test_rays_and_projection_pass_gradcheck():
    eye = torch.tensor([0.3, 0.5, 2.0], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0.1, 0.2, 0.0], dtype=torch.float64, requires_grad=True)
    fx = torch.tensor(5.0, dtype=torch.float64, requires_grad=True)
    pts = torch.tensor([[[0.2, 0.3, 0.1], [-0.1, 0.0, 0.4]]], dtype=torch.float64, requires_grad=True)

    def f(eye, target, fx, pts):
        cam = Camera(eye, target, width=3, height=2, fx=fx)
        o, d = cam.rays()
        px, depth = cam.project(pts)
        return o.sum() + (d * torch.arange(3.0, dtype=d.dtype)).sum(), px, depth
    assert torch.autograd.gradcheck(f, (eye, target, fx, pts))
