"""Kinematic rigid manipulators as signed distance functions, for grid-based contact.

A collider is a static description (shape and size, compiled into the kernel) plus a pose
that is simulator state: 2D (x, y, angle), 3D (x, y, z, qw, qx, qy, qz). Actions set its
linear and angular velocity. Contact blends a node's velocity toward the collider's
surface velocity with a smooth coverage sigmoid(-sdf / softness): approaching normal motion
is removed and the tangential part slowed by smoothed Coulomb friction.
"""
import numpy as np
import taichi as ti

from . import friction, sdf

POSE_KEYS = ("position", "angle", "quat", "friction", "softness")


def parse(specs, dim, dx):
    """Check collider dicts (any sims/sdf.py shape, CSG included, plus a pose, friction and
    contact softness) and return static descriptions and initial poses (n, pose_dim)."""
    out, poses = [], []
    for i, c in enumerate(specs or []):
        shape = sdf.shape(c, dim, f"colliders[{i}]", extra=POSE_KEYS)
        shape.friction, shape.softness = float(c.get("friction", 1.0)), float(c.get("softness", 0.5 * dx))
        out.append(shape)
        pos = np.asarray(c.get("position", np.zeros(dim)), float)
        if pos.shape != (dim,):
            raise ValueError(f"colliders[{i}].position must have {dim} numbers, got {c.get('position')}")
        rot = [float(c.get("angle", 0.0))] if dim == 2 else list(np.asarray(c.get("quat", [1, 0, 0, 0]), float))
        poses.append(np.concatenate([pos, rot]))
    return out, (np.array(poses) if poses else np.zeros((0, dim + (1 if dim == 2 else 4))))


@ti.func
def contact(shape: ti.template(), pose, vel, x, v, h, eps):
    """New velocity at world point x for velocity v. vel: (linear, angular) velocity packed
    as dim + (1 or 3) numbers; h: finite-difference step for the surface normal; eps: the
    friction rule's smoothing speed (sims/friction.py)."""
    dim = ti.static(x.n)
    phi = sdf.world(shape, pose, x)
    n = sdf.normal(shape, pose, x, h)
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
    slid = friction.coulomb(rel - vn * n, -approach, shape.friction, eps) + (vn - approach) * n
    cover = 1.0 / (1.0 + ti.exp(ti.min(ti.max(phi / shape.softness, -30.0), 30.0)))
    return v + cover * (vc + slid - v)


@ti.func
def velocity(act, b, f, first, n: ti.template()):
    """A collider's (linear, angular) velocity: n actions of world b, substep f, from index first."""
    return ti.Vector([act[b, f, first + i] for i in ti.static(range(n))])


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
        qn = (q + dq) / sdf.length(q + dq)  # finite for the all-zero dummy row of a scene without colliders
        for i in ti.static(range(4)):
            out[3 + i] = qn[i]
    return out
