"""Kinematic rigid manipulators as signed distance functions, for grid-based contact.

A collider is a static description (shape and size, compiled into the kernel) plus a pose
that is simulator state: 2D (x, y, angle), 3D (x, y, z, qw, qx, qy, qz). Actions set its
linear and angular velocity. Contact blends a node's velocity toward the collider's
surface velocity with a smooth coverage sigmoid(-sdf / softness): approaching normal motion
is removed and the tangential part slowed by smoothed Coulomb friction.
"""
from types import SimpleNamespace

import numpy as np
import taichi as ti

SHAPES = {"plane": (), "box": ("half",), "sphere": ("radius",), "capsule": ("radius", "half_length"),
          "cylinder": ("radius", "half_height")}
OPTIONAL = {"position", "angle", "quat", "friction", "softness"}


def parse(specs, dim, dx):
    """Check collider dicts and return static descriptions and initial poses (n, pose_dim)."""
    out, poses = [], []
    for i, c in enumerate(specs or []):
        kind = c.get("shape")
        if kind not in SHAPES:
            raise ValueError(f"colliders[{i}].shape must be one of {sorted(SHAPES)}, got {kind!r}")
        allowed = {"shape", *SHAPES[kind], *OPTIONAL}
        if set(c) - allowed:
            raise ValueError(f"colliders[{i}]: unknown key(s) {sorted(set(c) - allowed)}; allowed {sorted(allowed)}")
        missing = set(SHAPES[kind]) - set(c)
        if missing:
            raise ValueError(f"colliders[{i}] ({kind}) needs {sorted(missing)}")
        half = np.broadcast_to(np.asarray(c.get("half", 0.0), float), (dim,))
        out.append(SimpleNamespace(kind=kind, half=tuple(half.tolist()), radius=float(c.get("radius", 0.0)),
                                   half_length=float(c.get("half_length", 0.0)),
                                   half_height=float(c.get("half_height", 0.0)),
                                   friction=float(c.get("friction", 1.0)), softness=float(c.get("softness", 0.5 * dx))))
        pos = np.asarray(c.get("position", np.zeros(dim)), float)
        if pos.shape != (dim,):
            raise ValueError(f"colliders[{i}].position must have {dim} numbers, got {c.get('position')}")
        rot = [float(c.get("angle", 0.0))] if dim == 2 else list(np.asarray(c.get("quat", [1, 0, 0, 0]), float))
        poses.append(np.concatenate([pos, rot]))
    return out, (np.array(poses) if poses else np.zeros((0, dim + (1 if dim == 2 else 4))))


@ti.func
def rotation(pose, dim: ti.template()):
    """Rotation matrix of a pose (2D angle or 3D unit quaternion)."""
    R = ti.Matrix.identity(float, dim)
    if ti.static(dim == 2):
        c, s = ti.cos(pose[2]), ti.sin(pose[2])
        R = ti.Matrix([[c, -s], [s, c]])
    else:
        w, x, y, z = pose[3], pose[4], pose[5], pose[6]
        R = ti.Matrix([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                       [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                       [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])
    return R


@ti.func
def local_sdf(shape: ti.template(), p):
    """Signed distance of a point p given in the collider's own frame."""
    d = p[0] * 0
    if ti.static(shape.kind == "plane"):  # the half-space y < 0
        d = p[1]
    elif ti.static(shape.kind == "sphere"):
        d = p.norm(1e-12) - shape.radius
    elif ti.static(shape.kind == "box"):
        q = ti.abs(p) - ti.Vector(shape.half[:p.n])
        d = ti.max(q, 0.0).norm(1e-12) + ti.min(q.max(), 0.0)
    elif ti.static(shape.kind == "capsule"):  # axis x
        q = p
        q[0] = p[0] - ti.min(ti.max(p[0], -shape.half_length), shape.half_length)
        d = q.norm(1e-12) - shape.radius
    elif ti.static(shape.kind == "cylinder"):  # axis y
        radial = ti.abs(p[0]) if ti.static(p.n == 2) else ti.sqrt(p[0] ** 2 + p[2] ** 2 + 1e-12)
        q = ti.Vector([radial - shape.radius, ti.abs(p[1]) - shape.half_height])
        d = ti.max(q, 0.0).norm(1e-12) + ti.min(q.max(), 0.0)
    return d


@ti.func
def world_sdf(shape: ti.template(), pose, x):
    dim = ti.static(x.n)
    pos = ti.Vector([pose[i] for i in ti.static(range(dim))])
    return local_sdf(shape, rotation(pose, dim).transpose() @ (x - pos))


@ti.func
def contact(shape: ti.template(), pose, vel, x, v, h):
    """New grid velocity at world point x for node velocity v. vel: (linear, angular) velocity
    packed as dim + (1 or 3) numbers; h: finite-difference step for the surface normal."""
    dim = ti.static(x.n)
    phi = world_sdf(shape, pose, x)
    n = x * 0
    for i in ti.static(range(dim)):
        e = ti.Vector.unit(dim, i, float) * h
        n[i] = world_sdf(shape, pose, x + e) - world_sdf(shape, pose, x - e)
    n = n / n.norm(1e-12)
    pos = ti.Vector([pose[i] for i in ti.static(range(dim))])
    r = x - pos
    vc = ti.Vector([vel[i] for i in ti.static(range(dim))])
    if ti.static(dim == 2):
        vc += vel[2] * ti.Vector([-r[1], r[0]])
    else:
        vc += ti.Vector([vel[3], vel[4], vel[5]]).cross(r)
    rel = v - vc
    vn = rel.dot(n)
    approach = ti.min(vn, 0.0)
    vt = rel - vn * n
    speed = ti.sqrt(vt.dot(vt) + 1e-8)
    slid = vt * speed / (speed - shape.friction * approach) + (vn - approach) * n
    cover = 1.0 / (1.0 + ti.exp(ti.min(ti.max(phi / shape.softness, -30.0), 30.0)))
    return v + cover * (vc + slid - v)


@ti.func
def advance(pose, vel, dt):
    """Pose after dt at constant linear and angular velocity (quaternions stay unit)."""
    out = pose
    dim = ti.static(3 if pose.n == 7 else 2)
    for i in ti.static(range(dim)):
        out[i] = pose[i] + dt * vel[i]
    if ti.static(dim == 2):
        out[2] = pose[2] + dt * vel[2]
    else:
        w = ti.Vector([vel[3], vel[4], vel[5]])
        q = ti.Vector([pose[3], pose[4], pose[5], pose[6]])
        dq = 0.5 * dt * ti.Vector([-w.dot(ti.Vector([q[1], q[2], q[3]])),
                                   q[0] * w[0] + w[1] * q[3] - w[2] * q[2],
                                   q[0] * w[1] + w[2] * q[1] - w[0] * q[3],
                                   q[0] * w[2] + w[0] * q[2] - w[1] * q[1]])
        qn = (q + dq) / (q + dq).norm(1e-12)
        for i in ti.static(range(4)):
            out[3 + i] = qn[i]
    return out
