"""Signed distance functions: primitives, smooth CSG and rigid transforms, 2D and 3D.

One geometry library for the colliders, the sphere tracer and FEM contact. A shape is a
static description (a SimpleNamespace, compiled into the kernel):
  primitives  plane (the half-space y < 0), sphere(radius), box(half), capsule(radius,
              half_length; axis x), cylinder(radius, half_height; axis y), torus(radius,
              tube; in the x-z plane; in 2D the annulus of the circle of that radius)
  CSG         union / intersection / subtraction of shapes a and b, smoothed over a
              length k (k = 0: the hard min / max)
  extrude     (3D) a 2D shape `a` in the x-y plane, extruded over |z| <= depth: how a 2D
              world's tools look from its front
  placement   any shape may carry `offset` (a fixed local pose: position + angle or
              quaternion) applied before it is evaluated.
Distances are negative inside. All functions are plain differentiable ti.funcs; the
only guard is `length`, which stays finite at the origin without a length scale.
"""
from types import SimpleNamespace

import numpy as np
import taichi as ti

PRIMITIVES = {"plane": (), "box": ("half",), "sphere": ("radius",), "capsule": ("radius", "half_length"),
              "cylinder": ("radius", "half_height"), "torus": ("radius", "tube")}
CSG = ("union", "intersection", "subtraction")
TINY = 1e-30  # a float guard for 0/0 at the origin, far below any length a simulation uses (f32 too)


def shape(spec, dim, where="shape", extra=()):
    """A static shape description from a dict: {"shape": kind, sizes..., "offset": pose},
    CSG nodes {"shape": "union", "a": {...}, "b": {...}, "k": 0.01}. Errors name the key;
    `extra` names keys the caller reads itself (a collider's pose, friction)."""
    kind = spec.get("shape")
    spec = {k: v for k, v in spec.items() if k not in extra}
    if kind == "extrude":
        if dim != 3 or set(spec) - {"shape", "a", "depth", "offset"} or "a" not in spec or "depth" not in spec:
            raise ValueError(f"{where} (extrude) is 3D and takes a (a 2D shape), depth and optional offset; "
                             f"got {sorted(spec)} in {dim}D")
        depth = float(spec["depth"])
        if not depth > 0:
            raise ValueError(f"{where}.depth must be positive, got {spec['depth']!r}")
        return SimpleNamespace(kind=kind, a=shape(spec["a"], 2, f"{where}.a"), depth=depth,
                               offset=_offset(spec, dim, where))
    if kind in CSG:
        extra = set(spec) - {"shape", "a", "b", "k", "offset"}
        if extra or "a" not in spec or "b" not in spec:
            raise ValueError(f"{where} ({kind}) takes a, b and optional k, offset; got {sorted(spec)}")
        k = float(spec.get("k", 0.0))
        if not k >= 0:
            raise ValueError(f"{where}.k must be >= 0, got {spec['k']!r}")
        return SimpleNamespace(kind=kind, a=shape(spec["a"], dim, f"{where}.a"), b=shape(spec["b"], dim, f"{where}.b"),
                               k=k, offset=_offset(spec, dim, where))
    if kind not in PRIMITIVES:
        raise ValueError(f"{where}.shape must be one of {sorted(PRIMITIVES) + list(CSG) + ['extrude']}, got {kind!r}")
    allowed = {"shape", "offset", *PRIMITIVES[kind]}
    if set(spec) - allowed:
        raise ValueError(f"{where}: unknown key(s) {sorted(set(spec) - allowed)}; allowed {sorted(allowed | set(extra))}")
    missing = set(PRIMITIVES[kind]) - set(spec)
    if missing:
        raise ValueError(f"{where} ({kind}) needs {sorted(missing)}")
    half = np.broadcast_to(np.asarray(spec.get("half", 0.0), float), (dim,))
    sizes = {k: float(spec.get(k, 0.0)) for k in ("radius", "half_length", "half_height", "tube")}
    bad = [k for k in PRIMITIVES[kind] if not (np.asarray(spec[k], float) > 0).all()]
    if bad:
        raise ValueError(f"{where}.{bad[0]} must be positive, got {spec[bad[0]]!r}")
    return SimpleNamespace(kind=kind, half=tuple(half.tolist()), offset=_offset(spec, dim, where), **sizes)


def radius(s):
    """A radius about the shape's own origin that holds all of it (inf for a plane): rays that
    pass farther than r + e from a shape are at least e from its surface."""
    off = float(np.linalg.norm(s.offset[:3 if len(s.offset) == 7 else 2])) if s.offset else 0.0
    if s.kind in CSG:
        ra, rb = radius(s.a), radius(s.b)
        r = {"union": max(ra, rb), "intersection": min(ra, rb), "subtraction": ra}[s.kind] + s.k  # smoothing bulges
    elif s.kind == "extrude":
        r = float(np.hypot(radius(s.a), s.depth))
    else:
        r = {"plane": np.inf, "sphere": s.radius, "box": float(np.linalg.norm(s.half)),
             "capsule": s.radius + s.half_length, "cylinder": float(np.hypot(s.radius, s.half_height)),
             "torus": s.radius + s.tube}[s.kind]
    return r + off


def _offset(spec, dim, where):
    if spec.get("offset") is None:
        return ()
    off = tuple(float(a) for a in np.ravel(spec["offset"]))
    if len(off) != (dim + 1 if dim == 2 else dim + 4):
        raise ValueError(f"{where}.offset must be a pose of {dim + 1 if dim == 2 else dim + 4} numbers, got {off}")
    return off


@ti.func
def length(v):
    return ti.sqrt(ti.max(v.dot(v), TINY))


@ti.func
def rotation(pose, dim: ti.template()):
    """Rotation matrix of a pose: (x, y, angle) in 2D, (x, y, z, qw, qx, qy, qz) in 3D."""
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
def to_local(pose, x):
    """World point x in the frame of a body at `pose`."""
    dim = ti.static(x.n)
    pos = ti.Vector([pose[i] for i in ti.static(range(dim))])
    return rotation(pose, dim).transpose() @ (x - pos)


@ti.func
def smooth_min(a, b, k: ti.template()):
    """min(a, b), rounded over a band of width k (polynomial smooth minimum; k = 0 exact)."""
    out = ti.min(a, b)
    if ti.static(k > 0):
        h = ti.max(k - ti.abs(a - b), 0.0) / k
        out -= 0.25 * k * h * h
    return out


@ti.func
def primitive(s: ti.template(), p):
    """Signed distance of a point p given in the primitive's own frame."""
    d = p[0] * 0
    if ti.static(s.kind == "plane"):
        d = p[1]
    elif ti.static(s.kind == "sphere"):
        d = length(p) - s.radius
    elif ti.static(s.kind == "box"):
        q = ti.abs(p) - ti.Vector(s.half[:p.n])
        d = length(ti.max(q, 0.0)) + ti.min(q.max(), 0.0)
    elif ti.static(s.kind == "capsule"):
        q = p
        q[0] = p[0] - ti.min(ti.max(p[0], -s.half_length), s.half_length)
        d = length(q) - s.radius
    elif ti.static(s.kind == "cylinder"):
        radial = ti.abs(p[0]) if ti.static(p.n == 2) else length(ti.Vector([p[0], p[2]]))
        q = ti.Vector([radial - s.radius, ti.abs(p[1]) - s.half_height])
        d = length(ti.max(q, 0.0)) + ti.min(q.max(), 0.0)
    elif ti.static(s.kind == "torus"):
        if ti.static(p.n == 2):
            d = ti.abs(length(p) - s.radius) - s.tube
        else:
            ring = length(ti.Vector([p[0], p[2]])) - s.radius
            d = length(ti.Vector([ring, p[1]])) - s.tube
    return d


@ti.func
def evaluate(s: ti.template(), p):
    """Signed distance of point p (in the shape's parent frame) to shape s, CSG included."""
    q = p
    if ti.static(len(s.offset) > 0):
        q = to_local(ti.Vector(s.offset, float), p)
    d = q[0] * 0
    if ti.static(s.kind == "union"):
        d = smooth_min(evaluate(s.a, q), evaluate(s.b, q), s.k)
    elif ti.static(s.kind == "intersection"):
        d = -smooth_min(-evaluate(s.a, q), -evaluate(s.b, q), s.k)
    elif ti.static(s.kind == "subtraction"):  # a without b
        d = -smooth_min(-evaluate(s.a, q), evaluate(s.b, q), s.k)
    elif ti.static(s.kind == "extrude"):  # a box in (2D distance, z): exact outside and in
        w = ti.Vector([evaluate(s.a, ti.Vector([q[0], q[1]])), ti.abs(q[2]) - s.depth])
        d = length(ti.max(w, 0.0)) + ti.min(w.max(), 0.0)
    else:
        d = primitive(s, q)
    return d


@ti.func
def world(s: ti.template(), pose, x):
    """Signed distance of world point x to shape s placed at `pose`."""
    return evaluate(s, to_local(pose, x))


@ti.func
def normal(s: ti.template(), pose, x, h):
    """Outward unit normal at x by central differences of step h (a length of the problem)."""
    dim = ti.static(x.n)
    n = x * 0
    for i in ti.static(range(dim)):
        e = ti.Vector.unit(dim, i, float) * h
        n[i] = world(s, pose, x + e) - world(s, pose, x - e)
    return n / length(n)
