"""render/world.py: environments' pictures put spheres, tools, ground and shadows where
the geometry says, in 2D (orthographic front view) and 3D."""
import math

import numpy as np
import torch

from diffsuite.render.world import SKY, WorldRenderer, spring_beads

SKY_U8 = np.round(np.array(SKY) * 255).astype(int)


def _world_xy(w, view):
    """World (x, y) of every pixel centre of a 2D frame of this view."""
    left, bottom, width = view
    s = width / w.width
    ys, xs = np.mgrid[0:w.height, 0:w.width] + 0.5
    return left + xs * s, bottom + (w.height - ys) * s, s


def test_2d_sphere_ground_and_an_extruded_tool_land_where_the_geometry_is():
    view = (0.0, 0.0, 1.0)
    w = WorldRenderer(2, [{"shape": "box", "half": [0.1, 0.05], "position": [0.0, 0.0], "friction": 1.0}],
                      ground=0.1, size=(64, 96))
    X, Y, s = _world_xy(w, view)
    c, r = np.array([[0.3, 0.35], [0.7, 0.3]]), 0.08
    img = w.frame(w.camera_2d(view), c, r, np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]), [[0.7, 0.3, 0.0]])
    assert img.shape == (64, 96, 3) and img.dtype == np.uint8
    img = img.astype(int)
    sky = (img == SKY_U8).all(-1)
    # the red sphere covers its disk: pixels clear of the rim are red, its area is pi r^2
    d = np.hypot(X - 0.3, Y - 0.35)
    red = (img[..., 0] > img[..., 2] + 40) & (img[..., 0] > img[..., 1] + 40)
    assert red[d < r - 2 * s].all() and not red[d > r + 2 * s].any()
    assert abs(red.sum() * s * s / (math.pi * r * r) - 1) < 0.1
    # the tool (a box turned by 0) hides the blue sphere inside it: dark grey, no blue
    box = (np.abs(X - 0.7) < 0.1 - 2 * s) & (np.abs(Y - 0.3) < 0.05 - 2 * s)
    grey = img[box].astype(int)
    assert (np.abs(grey - grey.mean(-1, keepdims=True)) < 12).all() and (grey < 150).all()
    blue = (img[..., 2] > img[..., 0] + 40)
    assert blue.any() and not blue[box].any()  # the sphere shows around the box, not through it
    # ground below y = 0.1, sky above where nothing else is
    free = (np.hypot(X - 0.3, Y - 0.35) > r + 2 * s) & (np.hypot(X - 0.7, Y - 0.3) > 0.15)
    assert sky[free & (Y > 0.1 + 2 * s)].all() and not sky[Y < 0.1 - 2 * s].any()


def test_3d_sphere_casts_its_shadow_on_the_ground_along_the_light():
    w = WorldRenderer(3, ground=0.0, size=(96, 96), cell=100.0)  # one checker colour everywhere near
    cam = w.camera_3d([0.0, 1.2, 1.6], [0.0, 0.0, 0.0], fov=50.0)
    c, r = np.array([[0.0, 0.35, 0.0]]), 0.12
    img = w.frame(cam, c, r, np.array([[0.9, 0.9, 0.9]])).astype(float)
    L = w.light["directional"][0, :3].numpy()
    L = L / np.linalg.norm(L)
    shadow = c[0] + (0.0 - c[0, 1]) / L[1] * L  # where the centre's ray to the light meets y = 0
    mirror = np.array([-shadow[0], 0.0, -shadow[2]])  # lit ground as far from the sphere's foot
    px, _ = cam.project(torch.tensor(np.stack([shadow, mirror]))[None])
    (sx, sy), (mx, my) = np.floor(px[0].numpy()).astype(int)
    assert 0 <= sx < 96 and 0 <= sy < 96 and 0 <= mx < 96 and 0 <= my < 96
    dark, lit = img[sy, sx].mean(), img[my, mx].mean()
    assert dark < 0.75 * lit, (dark, lit)
    # and the lit ground has the directional light's Lambert share over the ambient
    amb, col = w.light["ambient"][0].numpy(), w.light["directional"][0, 3:].numpy()
    from diffsuite.render.world import GROUND
    expect = 255 * GROUND[0] * (amb + col * max(-L[1], 0))
    assert np.allclose(img[my, mx], expect, atol=3), (img[my, mx], expect)
    assert np.allclose(img[sy, sx], 255 * GROUND[0] * amb, atol=3)  # the umbra: ambient only


def test_spring_beads_cover_each_spring_end_to_end():
    x = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 2.0, 0.0]])
    springs = np.array([[0, 1], [1, 2]])
    beads, colors = spring_beads(x, springs, 0.1, np.array([[1.0, 0, 0], [0, 0, 1.0]]))
    for (a, b), col in zip(springs, ([1.0, 0, 0], [0, 0, 1.0])):
        mine = beads[(colors == col).all(1)]
        assert np.allclose(mine[0], x[a]) and np.allclose(mine[-1], x[b])
        gaps = np.linalg.norm(np.diff(mine, axis=0), axis=1)
        assert gaps.max() <= 0.05 + 1e-12  # half a radius apart: a continuous tube
