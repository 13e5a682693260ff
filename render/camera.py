"""Pinhole cameras in torch: batches of views, look-at extrinsics, rays and projection.

Everything is a torch expression of the camera's tensors (eye, target, up, fx, fy, cx,
cy), so gradients reach the camera through the renderers' rays and through `project`.
World axes: y up. A camera looks along its -z axis (OpenGL convention), x right, y up;
pixel (0, 0) is the top-left corner, pixel centres at integer + 0.5.
"""
import math

import torch


def look_at(eye, target, up=(0.0, 1.0, 0.0)):
    """Camera-to-world rotations (V, 3, 3) whose -z axis points from eye to target."""
    eye, target = torch.as_tensor(eye), torch.as_tensor(target)
    up = torch.as_tensor(up, dtype=eye.dtype).expand_as(eye)
    back = eye - target
    z = back / back.norm(dim=-1, keepdim=True)
    x = torch.linalg.cross(up, z)
    x = x / x.norm(dim=-1, keepdim=True)
    y = torch.linalg.cross(z, x)
    return torch.stack([x, y, z], -1)


class Camera:
    """V pinhole views of width x height pixels.

    eye, target: (V, 3) or (3,) tensors (or lists); up: the world's up; fov: vertical field
    of view in degrees, or fx, fy (pixels) with cx, cy (default: the image centre).
    ortho: instead of a pinhole, an orthographic view this many world units tall.
    Pass tensors with requires_grad to differentiate w.r.t. the camera.
    """

    def __init__(self, eye, target, width, height, up=(0.0, 1.0, 0.0), fov=None, fx=None, fy=None,
                 cx=None, cy=None, ortho=None, dtype=torch.float64):
        if (fov is None) == (fx is None) and ortho is None:
            raise ValueError("give either fov (degrees) or fx (pixels), not both, not neither")
        if not (int(width) > 0 and int(height) > 0):
            raise ValueError(f"width and height must be positive, got {width}, {height}")
        as_t = lambda v: torch.as_tensor(v, dtype=dtype)
        self.eye, self.target = as_t(eye).reshape(-1, 3), as_t(target).reshape(-1, 3)
        self.eye, self.target = torch.broadcast_tensors(self.eye, self.target)
        self.V, self.width, self.height, self.up, self.ortho = len(self.eye), int(width), int(height), up, ortho
        if fov is not None:
            fov = as_t(fov)
            if not ((fov > 0) & (fov < 180)).all():
                raise ValueError(f"fov must lie in (0, 180) degrees, got {fov}")
            fx = 0.5 * self.height / torch.tan(0.5 * fov * math.pi / 180)
        if fx is not None:
            fx = as_t(fx)
            if not (fx > 0).all():
                raise ValueError(f"fx must be positive, got {fx}")
        self.fx = as_t(fx).expand(self.V) if fx is not None else None
        self.fy = as_t(fy).expand(self.V) if fy is not None else self.fx
        self.cx = as_t(0.5 * self.width if cx is None else cx).expand(self.V)
        self.cy = as_t(0.5 * self.height if cy is None else cy).expand(self.V)

    def rotation(self):
        return look_at(self.eye, self.target, self.up)

    def _plane(self):
        """Pixel centres on the image plane at unit depth, (V, H, W, 2) in camera x, y."""
        ys, xs = torch.meshgrid(torch.arange(self.height, dtype=self.eye.dtype) + 0.5,
                                torch.arange(self.width, dtype=self.eye.dtype) + 0.5, indexing="ij")
        if self.ortho is not None:
            s = self.ortho / self.height
            return torch.stack([(xs - 0.5 * self.width) * s, (0.5 * self.height - ys) * s], -1).expand(self.V, -1, -1, -1)
        u = (xs[None] - self.cx[:, None, None]) / self.fx[:, None, None]
        v = (self.cy[:, None, None] - ys[None]) / self.fy[:, None, None]
        return torch.stack([u, v], -1)

    def rays(self):
        """Ray origins and unit directions in world space, each (V, H, W, 3)."""
        R, uv = self.rotation(), self._plane()
        if self.ortho is not None:
            local = torch.cat([uv, torch.zeros_like(uv[..., :1])], -1)
            origins = self.eye[:, None, None] + torch.einsum("vij,vhwj->vhwi", R, local)
            return origins, (-R[:, :, 2])[:, None, None].expand_as(origins)
        local = torch.cat([uv, -torch.ones_like(uv[..., :1])], -1)
        d = torch.einsum("vij,vhwj->vhwi", R, local)
        d = d / d.norm(dim=-1, keepdim=True)
        return self.eye[:, None, None].expand_as(d), d

    def project(self, points):
        """World points (V or 1, N, 3) -> pixel coordinates (V, N, 2) and depth along the view (V, N)."""
        R = self.rotation()
        local = torch.einsum("vji,vnj->vni", R, torch.as_tensor(points, dtype=self.eye.dtype) - self.eye[:, None])
        depth = -local[..., 2]
        if self.ortho is not None:
            s = self.height / self.ortho
            px = torch.stack([local[..., 0] * s + 0.5 * self.width, 0.5 * self.height - local[..., 1] * s], -1)
            return px, depth
        px = torch.stack([self.cx[:, None] + self.fx[:, None] * local[..., 0] / depth,
                          self.cy[:, None] - self.fy[:, None] * local[..., 1] / depth], -1)
        return px, depth
