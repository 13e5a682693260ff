"""The tactile sensor: markers, forces in the sensor's frame, the optics (marker pixels and the
photometric image) with torch gradchecks, and what a press and a slide do to them."""
import numpy as np
import pytest
import torch

from diffsuite.render.tactile import TactileCamera
from diffsuite.sims import adjoint
from diffsuite.sims.tactile import Sensor, quat_matrix

GEL = {"gel": {"kind": "box", "size": [0.016, 0.004, 0.016], "cells": [4, 1, 4]},
       "material": dict(E=1e5, nu=0.4, density=1000.0, damping=2e-4),
       "markers": dict(rows=3, cols=4, pitch=0.003)}
BALL = {"shape": "sphere", "radius": 0.01, "position": [0.0, -0.0142, 0.0], "friction": 1.0}


@pytest.fixture(scope="module")
def sensor():
    s = Sensor(GEL)
    s.fem = s.simulator([BALL], dt=1e-5, segment=50)
    yield s
    s.fem.free()


def test_markers_lie_on_the_contact_surface(sensor):
    rest = sensor.rest_markers().numpy()
    assert rest.shape == (12, 3)
    assert np.allclose(rest[:, 1], -0.004)
    assert np.allclose(np.unique(rest[:, 0].round(9)), (np.arange(4) - 1.5) * 0.003)
    with pytest.raises(ValueError, match="reaches past"):
        Sensor({**GEL, "markers": dict(rows=3, cols=30, pitch=0.003)})
    with pytest.raises(ValueError, match="unknown sensor key"):
        Sensor({"gell": {}})


def test_forces_and_points_in_the_sensor_frame():
    # a sensor turned 90 degrees about z: its -y axis (toward what it touches) is the world's +x
    q = torch.tensor([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)], dtype=torch.float64)
    body = torch.cat([torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), q])[None, None]
    assert torch.allclose(quat_matrix(q) @ torch.tensor([0, -1.0, 0], dtype=torch.float64),
                          torch.tensor([1.0, 0, 0], dtype=torch.float64))
    push = torch.tensor([[[-2.0, 0.5, 0.0]]], dtype=torch.float64)  # the object pushes back along -x
    s = Sensor.__new__(Sensor)
    f = s.forces(push[None], body[None])[0, 0]
    assert torch.allclose(f, torch.tensor([2.0, 0.5, 0.0], dtype=torch.float64))
    p = Sensor.to_body(body, torch.tensor([[[1.0, 1.0, 3.0]]], dtype=torch.float64))
    assert torch.allclose(p, torch.tensor([[[-1.0, 0.0, 0.0]]], dtype=torch.float64), atol=1e-12)


def _pressed_state(sensor, T=300, slide=0.0):
    u = np.zeros((1, T, sensor.fem.A))
    u[..., 7] = 0.2  # the ball rises into the gel
    u[..., 0] = slide  # the sensor slides along x
    _, fin, _ = adjoint.forward(sensor.fem, sensor.fem.initial_state(), u)
    return [torch.as_tensor(a) for a in fin]


def test_marker_projection_and_image_gradients(sensor):
    optics = TactileCamera(sensor, dict(width=20, height=16, fov=40.0, distance=0.03))
    x = _pressed_state(sensor)[0][0]
    local = Sensor.to_body(torch.as_tensor(sensor.fem.initial_state()[2])[0:1], x[None])[0]
    px = optics.markers(local)
    assert px.shape == (12, 2) and (px > 0).all() and (px[:, 0] < 20).all()
    xs = local.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda v: optics.markers(v), (xs,), eps=1e-8, atol=1e-5, rtol=1e-5)
    # the image in the vertices of the contact surface (away from the patch's own silhouette),
    # jittered so that no pixel centre lies on a projected edge (where the image is only C0)
    local = local + 2e-5 * torch.randn(local.shape, generator=torch.Generator().manual_seed(0), dtype=local.dtype)
    inner = np.unique(sensor.faces)
    inner = inner[(np.abs(sensor.mesh.vertices[inner][:, [0, 2]]) < 0.007).all(1)]
    sub = local[inner].clone().requires_grad_()

    def image(v):
        full = local.index_put((torch.as_tensor(inner),), v)
        return optics.image(full)
    assert torch.autograd.gradcheck(image, (sub,), eps=1e-9, atol=1e-5, rtol=1e-4)


def test_press_shows_in_force_image_and_slide_in_markers(sensor):
    optics = TactileCamera(sensor, dict(width=32, height=24, fov=40.0))
    rest = optics.image(torch.as_tensor(sensor.mesh.vertices))
    x, _, body, _, contact, _ = _pressed_state(sensor)
    f = sensor.forces(contact, body)[0]
    assert f[0] > 0 and f[1:].abs().max() < 0.15 * f[0]  # a straight press: little shear (the coarse Kuhn mesh's bias)
    pressed = optics.image(Sensor.to_body(body, x)[0])
    diff = (pressed - rest).abs().sum(-1)
    assert diff[10:14, 14:18].mean() > 10 * diff[:3, :3].mean() + 1e-3  # the bump shows at the centre
    # slide the sensor along x while pressing: friction pulls the gel back, the markers lag behind
    for way in (1, -1):
        x, _, body, _, contact, _ = _pressed_state(sensor, slide=0.5 * way)
        f = sensor.forces(contact, body)[0]
        assert f[0] > 0 and way * f[1] < -0.5 * f[0]
        lag = (sensor.markers(Sensor.to_body(body, x)) - sensor.rest_markers())[0, :, 0].mean()
        assert way * lag < -1e-2 * 0.003  # a hundredth of the marker pitch, against the motion
