"""render/shading.py: Lambert's cosine law, the inverse-square point light, the Blinn-Phong
highlight at the mirror direction, hard-shadow masks, and float64 gradcheck in every input."""
import math

import pytest
import torch

from diffsuite.render.shading import blinn_phong, lights

f64 = torch.float64


def _unit(v):
    return v / v.norm(dim=-1, keepdim=True)


def test_lambert_inverse_square_and_the_highlight_match_closed_forms():
    n = torch.tensor([[0.0, 0.0, 1.0]], dtype=f64).expand(5, 3)
    x = torch.zeros(5, 3, dtype=f64)
    albedo = torch.tensor([0.5, 0.25, 1.0], dtype=f64).expand(5, 3)
    view = torch.tensor([0.0, 0.0, -1.0], dtype=f64).expand(5, 3)  # from the eye toward x, along -n
    zero = torch.zeros(5, dtype=f64)
    angles = torch.tensor([0.0, 0.3, 0.8, 1.2, 1.9], dtype=f64)  # the last from below the surface
    for i, a in enumerate(angles):
        d = torch.tensor([-math.sin(a), 0.0, -math.cos(a)])  # toward the scene
        light = lights([{"kind": "directional", "direction": d.tolist(), "color": [2.0, 2.0, 2.0]}])
        rgb = blinn_phong(x[i:i + 1], n[i:i + 1], view[i:i + 1], albedo[i:i + 1], zero[:1], zero[:1] + 8, light)
        assert torch.allclose(rgb[0], 2 * albedo[0] * max(math.cos(a), 0.0), atol=1e-12)
    for dist in (1.0, 2.0, 4.0):  # a point light straight above: intensity / distance^2
        light = lights([{"kind": "point", "position": [0.0, 0.0, dist], "color": [3.0, 3.0, 3.0]}])
        rgb = blinn_phong(x[:1], n[:1], view[:1], albedo[:1], zero[:1], zero[:1] + 8, light)
        assert torch.allclose(rgb[0], 3 * albedo[0] / dist ** 2, atol=1e-12)
    # the specular lobe peaks where the half vector meets the normal: light and eye mirrored
    light = lights([{"kind": "directional", "direction": [-0.6, 0.0, -0.8], "color": [1.0, 1.0, 1.0]}])
    spec = []
    for b in torch.linspace(-1.3, 0.5, 37, dtype=f64):  # eye directions in the x-z plane
        v = torch.tensor([[-math.sin(b), 0.0, -math.cos(b)]], dtype=f64)
        spec.append(float(blinn_phong(x[:1], n[:1], v, albedo[:1] * 0, zero[:1] + 1, zero[:1] + 32, light)[0, 0]))
    best = float(torch.linspace(-1.3, 0.5, 37)[int(torch.tensor(spec).argmax())])
    assert abs(best - (-math.asin(0.6))) <= 0.05 and abs(max(spec) - 1) < 1e-3  # peak: (n . h)^s = 1


def test_visibility_masks_switch_lights_off_one_by_one():
    light = lights([{"kind": "ambient", "color": [0.1, 0.1, 0.1]},
                    {"kind": "directional", "direction": [0.0, 0.0, -1.0], "color": [1.0, 1.0, 1.0]},
                    {"kind": "point", "position": [0.0, 0.0, 1.0], "color": [0.5, 0.5, 0.5]}])
    args = (torch.zeros(1, 3, dtype=f64), torch.tensor([[0.0, 0.0, 1.0]], dtype=f64),
            torch.tensor([[0.0, 0.0, -1.0]], dtype=f64), torch.ones(1, 3, dtype=f64), torch.zeros(1, dtype=f64),
            torch.full((1,), 8.0, dtype=f64), light)
    for vis, want in (((1, 1), 1.6), ((0, 1), 0.6), ((1, 0), 1.1), ((0, 0), 0.1)):
        rgb = blinn_phong(*args, visible=torch.tensor([vis], dtype=f64))
        assert torch.allclose(rgb, torch.full((1, 3), want, dtype=f64), atol=1e-12), vis


@pytest.mark.parametrize("wrt", ["x", "n", "view", "albedo", "specular", "shininess", "ambient", "directional",
                                 "point"])
def test_gradcheck_each_input(wrt):
    g = torch.Generator().manual_seed(0)
    N = 7
    args = dict(x=torch.randn(N, 3, generator=g, dtype=f64) * 0.3,
                n=_unit(torch.randn(N, 3, generator=g, dtype=f64) + torch.tensor([0.0, 0.0, 2.0], dtype=f64)),
                view=_unit(torch.randn(N, 3, generator=g, dtype=f64) * 0.3 + torch.tensor([0.0, 0.0, -1.0], dtype=f64)),
                albedo=torch.rand(N, 3, generator=g, dtype=f64), specular=torch.rand(N, generator=g, dtype=f64),
                shininess=4 + 10 * torch.rand(N, generator=g, dtype=f64))
    light = lights([{"kind": "ambient", "color": [0.2, 0.3, 0.1]},
                    {"kind": "directional", "direction": [-0.2, -0.3, -1.0], "color": [0.9, 0.8, 0.7]},
                    {"kind": "point", "position": [0.5, 1.0, 2.0], "color": [2.0, 1.5, 1.0]}])

    def f(v):
        a = dict(args)
        lt = dict(light)
        if wrt in lt:
            lt[wrt] = v
        else:
            a[wrt] = v
        return blinn_phong(a["x"], a["n"], a["view"], a["albedo"], a["specular"], a["shininess"], lt)
    v = (light[wrt] if wrt in light else args[wrt]).clone().requires_grad_()
    assert torch.autograd.gradcheck(f, (v,), eps=1e-6, atol=1e-8, rtol=1e-6)
