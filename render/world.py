"""Pictures of a simulated world through this package's renderers: what environments show
for render_mode="rgb_array" (no gradients; render with ray_tracer/sphere_tracer directly to
differentiate).

A frame holds particles or point masses as spheres (render/ray_tracer.py, with hard
shadows in 3D), springs as chains of thinner spheres, tools and colliders as SDF objects
(render/sphere_tracer.py on sims/sdf.py shapes), and a checkered ground plane y = ground
that shows motion and, in 3D, the spheres' shadows. A 2D world is seen from its front by an
orthographic camera: its spheres lie in the plane z = 0 and its tools are its 2D shapes
extruded along z. Not drawn: the tools' own shadows.
"""
import numpy as np
import torch

from ..sims import sdf
from ..sims.colliders import POSE_KEYS
from .camera import Camera
from .ray_tracer import SphereTracer, render as render_spheres
from .shading import lights
from .sphere_tracer import SDFScene, render as render_sdf

# the worlds' lights: ambient and directional only (the ground's shading relies on it)
LIGHT_2D = [{"kind": "ambient", "color": [0.35, 0.35, 0.35]},
            {"kind": "directional", "direction": [-0.3, -0.5, -1.0], "color": [0.75, 0.75, 0.75]}]
LIGHT_3D = [{"kind": "ambient", "color": [0.3, 0.3, 0.32]},
            {"kind": "directional", "direction": [-0.35, -1.0, -0.45], "color": [0.8, 0.78, 0.72]}]
GROUND = (np.array([0.80, 0.76, 0.68]), np.array([0.70, 0.66, 0.58]))  # the checker's two colours
SKY = (0.96, 0.96, 0.96)
_SCENES = {}  # SDF scenes by their tools: one compile per tool set, shared by every renderer


def _tool_scene(specs, dim, color):
    """The SDFScene of a world's tools; a 2D shape is extruded over |z| <= twice its radius,
    which puts it in front of the particles of its plane."""
    shapes = [{k: v for k, v in s.items() if k not in POSE_KEYS} for s in specs]
    if dim == 2:
        shapes = [{"shape": "extrude", "a": s, "depth": min(2 * sdf.radius(sdf.shape(s, 2)), 1e3)} for s in shapes]
    key = repr((shapes, color))
    if key not in _SCENES:
        _SCENES[key] = SDFScene([{**s, "color": list(color)} for s in shapes], march_steps=64)
    return _SCENES[key]


def _pose3(pose, dim):
    """A tool pose (2D: x, y, angle; 3D: position + quaternion) as (n, 7) position + quaternion."""
    p = torch.as_tensor(np.asarray(pose, np.float64)).reshape(len(pose), -1)
    if dim == 3:
        return p
    half = 0.5 * p[:, 2]
    zero = torch.zeros_like(half)
    return torch.stack([p[:, 0], p[:, 1], zero, torch.cos(half), zero, zero, torch.sin(half)], -1)


def spring_beads(x, springs, radius, colors):
    """Springs (S, 2) between points x (N, 3) as beads of `radius` spaced half a radius apart:
    centres (B, 3), and each bead's spring's colour from colors (S, 3)."""
    x, springs = np.asarray(x, np.float64), np.asarray(springs)
    a, b = x[springs[:, 0]], x[springs[:, 1]]
    n = np.maximum(np.ceil(np.linalg.norm(b - a, axis=1) / (0.5 * radius)).astype(int), 1)
    which = np.repeat(np.arange(len(springs)), n + 1)
    t = np.concatenate([np.linspace(0, 1, k + 1) for k in n])
    return a[which] + t[:, None] * (b - a)[which], np.asarray(colors, np.float64)[which]


class WorldRenderer:
    """Frames of one world.

    dim: 2 or 3; tools: sims/sdf.py collider dicts (their shape keys are drawn; 2D shapes in
    2D), posed each frame; ground: the ground plane's height (None: no ground); cell: the
    checker's square (default: a tenth of the view's width); size: (height, width) pixels;
    regions: 2D (lower, upper, RGB) boxes tinted on the backdrop (a target area).
    """

    def __init__(self, dim, tools=(), ground=None, size=(256, 256), cell=None, tool_color=(0.32, 0.32, 0.36),
                 regions=()):
        if dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {dim!r}")
        self.dim, self.tools, self.ground, self.cell = dim, list(tools), ground, cell
        self.height, self.width = (int(s) for s in size)
        self.tool_color, self.regions = tuple(tool_color), list(regions)
        self.light = lights(LIGHT_2D if dim == 2 else LIGHT_3D)
        self.tracer = SphereTracer()
        self._scene = None  # the tools' SDFScene, made at the first frame that shows them

    def camera_2d(self, view):
        """The orthographic front view of a 2D world's (left, bottom, width) box."""
        left, bottom, width = (float(v) for v in view)
        tall = width * self.height / self.width
        c = [left + 0.5 * width, bottom + 0.5 * tall]
        return Camera([c[0], c[1], 10 * width], [c[0], c[1], 0.0], self.width, self.height, ortho=tall)

    def camera_3d(self, eye, target, fov=40.0):
        return Camera(eye, target, self.width, self.height, fov=fov)

    def frame(self, camera, centers, radii, colors, tool_poses=()):
        """An RGB uint8 image (H, W, 3) of spheres (centers (M, 3), or (M, 2) in z = 0; radii (M,) or a float,
        colors (M, 3) in [0, 1]) and the tools at tool_poses, seen by camera (camera_2d/3d)."""
        with torch.no_grad():
            c = torch.as_tensor(np.asarray(centers, np.float64))
            if c.shape[-1] == 2:  # a 2D world's plane z = 0
                c = torch.cat([c, torch.zeros(len(c), 1, dtype=c.dtype)], 1)
            r = torch.as_tensor(np.broadcast_to(np.asarray(radii, np.float64), (len(c),)).copy())
            col = torch.as_tensor(np.asarray(colors, np.float64))
            scale = float(camera.ortho if camera.ortho is not None else (camera.eye - camera.target).norm())
            rays = camera.rays()  # one set for the three layers
            rgb, depth = self._ground(camera, rays, c, r, scale)
            if self.tools:
                rgb, depth = self._tools(camera, rays, tool_poses, rgb, depth)
            if len(c):
                out = render_spheres(camera, c, r, col, self.light, specular=0.15, shininess=24.0,
                                     shadows=self.dim == 3, background=rgb, background_depth=depth, tracer=self.tracer,
                                     rays=rays)
                rgb = out["rgb"]
        return (rgb[0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()

    def _ground(self, camera, rays, c, r, scale):
        """Sky and ground: rgb (1, H, W, 3) and depth (1, H, W; 0 for the open sky). The ground
        is flat and lit by directional lights (and ambient): Lambert is one factor a light,
        times the spheres' shadows in 3D."""
        o, d = (a.reshape(-1, 3) for a in rays)
        rgb = torch.tensor(SKY, dtype=o.dtype).expand(len(o), 3).clone()
        depth = torch.zeros(len(o), dtype=o.dtype)
        for lo, hi, color in self.regions:
            inside = ((o[:, :2] >= torch.as_tensor(lo, dtype=o.dtype)) & (o[:, :2] <= torch.as_tensor(hi, dtype=o.dtype))).all(1)
            rgb[inside] = torch.as_tensor(color, dtype=o.dtype)
        if self.ground is None:
            return rgb.reshape(1, camera.height, camera.width, 3), depth.reshape(1, camera.height, camera.width)
        if self.dim == 2:  # edge-on: the ground fills y < ground, far behind the world's plane
            below = o[:, 1] < self.ground
            x = o[below]
            t = torch.full((len(x),), 2 * float((camera.eye - camera.target).norm()), dtype=o.dtype)
            up, across = torch.tensor([0.0, 0.0, 1.0], dtype=o.dtype), 1
        else:
            t_all = (self.ground - o[:, 1]) / torch.where(d[:, 1] < 0, d[:, 1], -torch.ones_like(d[:, 1]))
            below = (d[:, 1] < 0) & (t_all > 0)
            t = t_all[below]
            x = o[below] + t[:, None] * d[below]
            up, across = torch.tensor([0.0, 1.0, 0.0], dtype=o.dtype), 2
        cell = self.cell or 0.1 * scale
        odd = ((torch.floor(x[:, 0] / cell) + torch.floor(x[:, across] / cell)) % 2)[:, None]
        g0, g1 = (torch.as_tensor(a, dtype=o.dtype) for a in GROUND)
        albedo = g0 + odd * (g1 - g0)
        dirs = self.light["directional"].to(o.dtype)
        lam = (-(dirs[:, :3] @ up) / dirs[:, :3].norm(dim=-1)).clamp(min=0)  # (L,)
        lit = lam[None].expand(len(x), -1)
        if self.dim == 3 and len(c) and len(dirs):
            lit = lit * self.tracer.visible(x, self.light, c, r).to(o.dtype)
        ambient = self.light["ambient"].to(o.dtype).sum(0)
        rgb[below] = albedo * (ambient + lit @ dirs[:, 3:])
        depth[below] = t
        return rgb.reshape(1, camera.height, camera.width, 3), depth.reshape(1, camera.height, camera.width)

    def _tools(self, camera, rays, poses, rgb, depth):
        """The tools over rgb/depth, where they are in front."""
        if self._scene is None:
            self._scene = _tool_scene(self.tools, self.dim, self.tool_color)
        scene = self._scene
        params = scene.params()
        params["pose"] = _pose3(poses, self.dim)
        # the march ends past the world: twice the camera's distance
        dist = float((camera.eye - camera.target).norm())
        px = camera.ortho / camera.height if camera.ortho is not None else dist / float(camera.fy[0])  # a pixel, in world units
        # a crisp edge: the coverage band a third of a pixel wide (sigmoid tails fade within 2 px)
        out = render_sdf(scene, camera, self.light, params, far=2 * dist, width=px / 3, rays=rays)
        m = out["mask"]
        front = (m > 0) & ((depth == 0) | (out["depth"] < depth) | (out["depth"] == 0))
        m = torch.where(front, m, torch.zeros_like(m))[..., None]
        rgb = m * out["rgb"] + (1 - m) * rgb
        depth = torch.where(front & (out["depth"] > 0), out["depth"], depth)
        return rgb, depth
