"""A GelSight-like vision-based tactile sensor: a soft FEM gel on a rigid sensor body.

The sensor body's 6-dof velocity is the action (sims/fem.py moves the mounted base). Its gel
is a sims/tetmesh.py mesh in the body's frame: base at y = 0, gel below, contact surface
facing -y. This module holds the sensor's geometry and its torch observation functions of
the simulator state (differentiable): surface markers (barycentric points on contact-surface
triangles), and the contact normal force and shear in the sensor's frame. The optics (the
camera's projection of markers, the tactile RGB image) live in render/tactile.py, since
sims/ never imports render/.
"""
import numpy as np
import torch

from . import tetmesh
from .fem import FEM, quat_matrix  # noqa: F401  (quat_matrix: for the sensor's users too)

SENSOR = dict(gel={"kind": "dome", "radius": 0.012, "height": 0.004},
              material=dict(E=3e5, nu=0.4, density=1000.0, damping=1e-6),
              contact=dict(stiffness=20.0, damping=0.5, softness=2e-3, slip=1e-4, filter=1e-4),
              markers=dict(rows=9, cols=9, pitch=0.0018))


class Sensor:
    """The gel, its contact surface and markers; `simulator(...)` makes the FEM that moves it.

    cfg: {gel: a tetmesh.build spec, material: FEM material, contact: FEM contact,
    markers: {rows, cols, pitch (m)}}; every key is checked.
    """

    def __init__(self, cfg=None):
        cfg = dict(cfg or {})
        unknown = set(cfg) - set(SENSOR)
        if unknown:
            raise ValueError(f"unknown sensor key(s) {sorted(unknown)}; allowed {sorted(SENSOR)}")
        self.cfg = {k: cfg.get(k, v) for k, v in SENSOR.items()}
        self.mesh = tetmesh.build(self.cfg["gel"])
        n = tetmesh.face_normals(self.mesh.vertices, self.mesh.surface)
        self.faces = self.mesh.surface[n[:, 1] < -0.5 * np.linalg.norm(n, axis=1)]  # facing away from the mount
        self.marker_tri, self.marker_bary = self._markers(self.cfg["markers"])

    def simulator(self, objects=(), num_worlds=1, dt=1e-5, segment=32, body_pose=(0, 0, 0, 1, 0, 0, 0),
                  gravity=(0.0, 0.0, 0.0), coupled=False):
        """The FEM of this gel mounted on the sensor body (starting at body_pose), touching
        objects (sims/sdf.py shapes with position, quat, friction); coupled: ready for an MPM
        body (sims/coupling.py)."""
        return FEM(self.mesh, num_worlds=num_worlds, dt=dt, segment=segment, material=self.cfg["material"],
                   contact=self.cfg["contact"], objects=list(objects), body_pose=body_pose, gravity=gravity,
                   coupled=coupled)

    def _markers(self, spec):
        """A rows x cols grid in the x-z plane, each point dropped along -y onto the contact surface."""
        if set(spec) != {"rows", "cols", "pitch"}:
            raise ValueError(f"sensor markers need exactly rows, cols, pitch; got {sorted(spec)}")
        rows, cols, pitch = int(spec["rows"]), int(spec["cols"]), float(spec["pitch"])
        gx = (np.arange(cols) - 0.5 * (cols - 1)) * pitch
        gz = (np.arange(rows) - 0.5 * (rows - 1)) * pitch
        pts = np.stack(np.meshgrid(gx, gz, indexing="xy"), -1).reshape(-1, 2)
        tri = self.mesh.vertices[self.faces][:, :, [0, 2]]  # (F, 3, 2) in x-z
        a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
        det = (b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]
        d = pts[:, None] - a[None]
        u = (d[..., 0] * (c - a)[None, :, 1] - d[..., 1] * (c - a)[None, :, 0]) / det
        w = ((b - a)[None, :, 0] * d[..., 1] - (b - a)[None, :, 1] * d[..., 0]) / det
        inside = (u >= -1e-9) & (w >= -1e-9) & (u + w <= 1 + 1e-9)
        if not inside.any(1).all():
            raise ValueError(f"sensor markers: the {rows} x {cols} grid at pitch {pitch} reaches past the gel's "
                             "contact surface")
        f = inside.argmax(1)
        u, w = u[np.arange(len(pts)), f], w[np.arange(len(pts)), f]
        return f, np.stack([1 - u - w, u, w], 1)

    # ---------------------------------------------------------- observations (torch)
    def markers(self, x):
        """Marker points (..., M, 3) of vertex positions x (..., N, 3)."""
        idx = torch.as_tensor(self.faces[self.marker_tri], device=x.device)
        bary = torch.as_tensor(self.marker_bary, dtype=x.dtype, device=x.device)
        return (x[..., idx, :] * bary[..., None]).sum(-2)

    def rest_markers(self):
        """Marker points of the undeformed gel in the sensor's frame (M, 3), float64."""
        return self.markers(torch.as_tensor(self.mesh.vertices))

    @staticmethod
    def to_body(body, points, direction=False):
        """World points (..., P, 3) in the frame of the sensor at pose body (..., 1, 7); with
        direction, vectors (rotated only)."""
        body = body[..., 0, :]
        local = points if direction else points - body[..., None, :3]
        return torch.einsum("...ji,...pj->...pi", quat_matrix(body[..., 3:]), local)

    def forces(self, contact, body):
        """The objects' total force on the gel, contact (..., 1, 3) in the world frame, as
        (normal, shear_x, shear_z) in the sensor's frame (..., 3); normal > 0 pushes the gel
        into the sensor (its +y)."""
        f = self.to_body(body, contact, direction=True)[..., 0, :]
        return torch.stack([f[..., 1], f[..., 0], f[..., 2]], -1)

