"""Signed distance functions: primitives, smooth CSG and rigid transforms, 2D and 3D.

One geometry library for the colliders, the sphere tracer and FEM contact. A shape is a
static description (a SimpleNamespace, compiled into the kernel):
  primitives  plane (the half-space y < 0), sphere(radius), box(half), capsule(radius,
              half_length; axis x), cylinder(radius, half_height; axis y), torus(radius,
              tube; in the x-z plane; in 2D the annulus of the circle of that radius)
  mesh        (3D) a watertight trimesh mesh (path or mesh) as a grid of signed distances
              (resolution, padding), a C1 B-spline or trilinear (interpolation; see _mesh_shape)
  CSG         union / intersection / subtraction of shapes a and b, smoothed over a
              length k (k = 0: the hard min / max)
  extrude     (3D) a 2D shape `a` in the x-y plane, extruded over |z| <= depth: how a 2D
              world's tools look from its front
  placement   any shape may carry `offset` (a fixed local pose: position + angle or
              quaternion) applied before it is evaluated.
Distances are negative inside. All functions are plain differentiable ti.funcs; the
only guard is `length`, which stays finite at the origin without a length scale.
"""
import hashlib
import itertools
import math
import numbers
import os
from types import SimpleNamespace

import numpy as np
import taichi as ti

PRIMITIVES = {"plane": (), "box": ("half",), "sphere": ("radius",), "capsule": ("radius", "half_length"),
              "cylinder": ("radius", "half_height"), "torus": ("radius", "tube")}
CSG = ("union", "intersection", "subtraction")
MESH_KEYS = ("path", "mesh", "resolution", "padding", "interpolation")
INTERPOLATIONS = ("trilinear", "bspline")
_GRIDS = {}  # built mesh grids by (mesh's hash, resolution, padding): building a shape again reuses its field
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
    if kind == "mesh":
        return _mesh_shape(spec, dim, where)
    if kind not in PRIMITIVES:
        raise ValueError(f"{where}.shape must be one of {sorted(PRIMITIVES) + list(CSG) + ['extrude', 'mesh']}, "
                         f"got {kind!r}")
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
    elif s.kind == "mesh":  # the farthest corner of the grid box
        lo, hi = np.array(s.origin), np.array(s.origin) + s.cell * (np.array(s.dims) - 1)
        r = float(np.linalg.norm(np.maximum(np.abs(lo), np.abs(hi))))
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


# ---------------------------------------------------------------- mesh grids
def _mesh_shape(spec, dim, where):
    """A "mesh" shape: {"shape": "mesh", "path": a file trimesh reads | "mesh": a trimesh.Trimesh,
    "resolution": cells on the grid's longest side (64), "padding": the margin around the mesh's
    box as a fraction of its longest side (0.1), "interpolation": "bspline" (default) | "trilinear"}.
    Its grid (a Taichi field of nodal signed distances) is built once per (mesh, resolution,
    padding) and shared by every shape made from them. "trilinear" is exact at the nodes but
    only C0: its gradient jumps across cell faces, where a ray's closest approach often lies,
    so the sphere tracer's silhouette gradients need "bspline" (C1, smooth by O(cell^2))."""
    if dim != 3:
        raise ValueError(f"{where} (mesh) is 3D only; got {dim}D")
    allowed = {"shape", "offset", *MESH_KEYS}
    if set(spec) - allowed:
        raise ValueError(f"{where}: unknown key(s) {sorted(set(spec) - allowed)}; allowed {sorted(allowed)}")
    res = spec.get("resolution", 64)
    if isinstance(res, bool) or not isinstance(res, numbers.Integral) or res < 2:
        raise ValueError(f"{where}.resolution must be an integer >= 2 (cells on the longest side), got {res!r}")
    try:
        pad = float(spec.get("padding", 0.1))
    except (TypeError, ValueError):
        pad = float("nan")
    if not 0 < pad < math.inf:  # > 0: the surface stays inside the box, where the grid holds it
        raise ValueError(f"{where}.padding must be a positive fraction of the mesh's size, got {spec.get('padding')!r}")
    interpolation = spec.get("interpolation", "bspline")  # C1: gradients (contacts, silhouettes) stay continuous
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"{where}.interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    key = (_mesh_key(spec, where), int(res), pad)
    if key not in _GRIDS:
        _GRIDS[key] = _build_grid(_load_mesh(spec, where), int(res), pad)
    field, origin, cell, dims = _GRIDS[key]
    return SimpleNamespace(kind="mesh", grid=field, origin=origin, cell=cell, dims=dims,
                           interpolation=interpolation,
                           offset=_offset(spec, dim, where))


def _mesh_key(spec, where):
    """The cache key of a mesh: the hash of its file's bytes, or of its vertices and faces."""
    import trimesh

    if ("path" in spec) == ("mesh" in spec):
        raise ValueError(f"{where} (mesh) takes one of path (a mesh file) or mesh (a trimesh.Trimesh)")
    if "path" in spec:
        try:
            path = os.fspath(spec["path"])
        except TypeError:
            raise ValueError(f"{where}.path must be a file path, got {spec['path']!r}") from None
        if not os.path.isfile(path):
            raise ValueError(f"{where}.path: no such file {path!r}")
        with open(path, "rb") as f:
            return "file", hashlib.sha1(f.read()).hexdigest()
    mesh = spec["mesh"]
    if not isinstance(mesh, trimesh.Trimesh):
        raise ValueError(f"{where}.mesh must be a trimesh.Trimesh, got {type(mesh).__name__}")
    h = hashlib.sha1(np.ascontiguousarray(mesh.vertices, np.float64).tobytes())
    h.update(np.ascontiguousarray(mesh.faces, np.int64).tobytes())
    return "mesh", h.hexdigest()


def _load_mesh(spec, where):
    """The spec's trimesh.Trimesh, checked watertight: the sign needs an inside."""
    import trimesh

    name = "path" if "path" in spec else "mesh"
    mesh = spec.get("mesh")
    if name == "path":
        try:
            mesh = trimesh.load(os.fspath(spec["path"]), force="mesh")
        except Exception as e:  # trimesh raises many kinds for an unreadable file
            raise ValueError(f"{where}.path: trimesh cannot read {spec['path']!r} as a mesh ({e})") from None
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise ValueError(f"{where}.{name} holds no triangle mesh")
    if not mesh.is_watertight:
        raise ValueError(f"{where}.{name} must be a watertight mesh (every edge shared by two faces) "
                         f"for its inside to be known")
    return mesh


def _build_grid(mesh, res, pad):
    """Nodal signed distances over the mesh's bounding box grown by pad times its longest side:
    cubic cells, `res` of them on the longest side. Returns (field, origin, cell, dims)."""
    from . import float_dtype

    lo, hi = np.asarray(mesh.bounds, np.float64)
    size = float((hi - lo).max())
    margin = pad * size  # the same on every side, so thin axes keep whole cells around the surface
    cell = (size + 2 * margin) / res
    dims = np.maximum(np.ceil((hi - lo + 2 * margin) / cell - 1e-9).astype(int), 1) + 1
    origin = 0.5 * (lo + hi) - 0.5 * cell * (dims - 1)
    nodes = _nodes(origin, cell, dims).reshape(-1, 3)
    tri = np.ascontiguousarray(mesh.triangles, np.float64)
    dist = np.zeros(len(nodes))
    _mesh_distances(*_clusters(tri), np.ascontiguousarray(nodes), dist)
    values = _ghost(np.where(_inside(tri, origin, cell, dims), -dist.reshape(dims), dist.reshape(dims)))
    dtype = float_dtype()
    field = ti.field(dtype, shape=values.shape)
    field.from_numpy(values.astype(np.float64 if dtype == ti.f64 else np.float32))
    return field, tuple(float(a) for a in origin), float(cell), tuple(int(n) for n in dims)


def _nodes(origin, cell, dims):
    return np.stack(np.meshgrid(*[origin[k] + cell * np.arange(dims[k]) for k in range(3)], indexing="ij"), -1)


def grid_nodes(s):
    """A mesh shape's grid: its nodes (nx, ny, nz, 3), in the shape's frame, and their signed
    distances (nx, ny, nz)."""
    values = s.grid.to_numpy()[1:-1, 1:-1, 1:-1]  # less the ghost layer
    return _nodes(s.origin, s.cell, s.dims), values.astype(np.float64)


def _ghost(v):
    """v with one more layer of nodes on every side, extrapolated linearly: the B-spline's
    taps at the box, and it still reproduces an affine field up to the box."""
    for k in range(3):
        lo, hi = 2 * np.take(v, [0], k) - np.take(v, [1], k), 2 * np.take(v, [-1], k) - np.take(v, [-2], k)
        v = np.concatenate([lo, v, hi], k)
    return v


CLUSTER = 16  # triangles a bounding sphere holds in the distance search
CORNERS = tuple(itertools.product((0, 1), repeat=3))  # a grid cell's, as offsets
TAPS = tuple(itertools.product(range(3), repeat=3))  # the quadratic B-spline's 3 x 3 x 3 nodes


def _clusters(tri):
    """Triangles in Morton order of their centroids, padded (by repeats) to runs of CLUSTER,
    and each run's bounding sphere (centre, radius): a node skips runs that cannot hold a
    nearer triangle than one it knows."""
    cen = tri.mean(1)
    span = max(float(np.ptp(cen, 0).max()), np.finfo(float).tiny)
    q = ((cen - cen.min(0)) / span * 1023).astype(np.uint64)
    order = np.argsort(_spread(q[:, 0]) | _spread(q[:, 1]) << 1 | _spread(q[:, 2]) << 2, kind="stable")
    order = np.concatenate([order, np.full(-len(order) % CLUSTER, order[-1])])
    runs = tri[order].reshape(-1, CLUSTER * 3, 3)
    centre = 0.5 * (runs.min(1) + runs.max(1))
    radius = np.linalg.norm(runs - centre[:, None], axis=2).max(1)
    return np.ascontiguousarray(tri[order]), np.ascontiguousarray(np.c_[centre, radius])


def _spread(v):
    """10-bit integers with two zero bits after each bit: the Morton code's interleave."""
    for shift, mask in ((16, 0x030000FF), (8, 0x0300F00F), (4, 0x030C30C3), (2, 0x09249249)):
        v = (v | v << np.uint64(shift)) & np.uint64(mask)
    return v


def _inside(tri, origin, cell, dims):
    """Which nodes lie inside the closed mesh: the parity of the mesh's crossings along each
    grid line in x, counted from the grid's low side. The lines run a generic millionth of a
    cell off the nodes, so none meets an edge or a vertex exactly; that changes the answer
    only within that sliver of the surface, where the distance is 0 anyway."""
    nudge = cell * 1e-6 * np.array([np.sqrt(2.0), np.sqrt(3.0)])
    yz = (tri[:, :, 1:] - origin[1:] - nudge) / cell  # line (j, k) sits at the integers
    lo = np.maximum(np.ceil(yz.min(1)), 0).astype(int)
    hi = np.minimum(np.floor(yz.max(1)), np.asarray(dims[1:]) - 1).astype(int)
    cnt = np.maximum(hi - lo + 1, 0)  # lines under each triangle's box, in y and z
    n = cnt[:, 0] * cnt[:, 1]
    f = np.repeat(np.arange(len(tri)), n)
    r = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)  # each pair's rank within its triangle
    line = np.stack([lo[f, 0] + r // cnt[f, 1], lo[f, 1] + r % cnt[f, 1]], 1)
    A, B, C = yz[f, 0], yz[f, 1], yz[f, 2]
    area = _cross2(B - A, C - A)
    wa, wb, wc = _cross2(C - B, line - B), _cross2(A - C, line - C), _cross2(B - A, line - A)
    s = np.sign(area)
    hit = (s != 0) & (np.sign(wa) == s) & (np.sign(wb) == s) & (np.sign(wc) == s)  # edge-on faces never cross
    x = (wa * tri[f, 0, 0] + wb * tri[f, 1, 0] + wc * tri[f, 2, 0])[hit] / area[hit]
    ix = np.clip(np.ceil((x - origin[0]) / cell), 0, dims[0]).astype(int)  # the first node past the crossing
    count = np.zeros((dims[0] + 1, dims[1], dims[2]), np.int64)
    np.add.at(count, (ix, line[hit, 0], line[hit, 1]), 1)
    return np.cumsum(count, 0)[:-1] % 2 == 1


def _cross2(u, v):
    return u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]


@ti.kernel
def _mesh_distances(tri: ti.types.ndarray(), sphere: ti.types.ndarray(), nodes: ti.types.ndarray(),
                    dist: ti.types.ndarray()):
    """Unsigned distance of every node to the nearest triangle, exact, in float64: the runs'
    spheres bound it from above (pass 1), then only runs whose sphere comes nearer than the
    bound are searched triangle by triangle (pass 2). A GPU takes the nodes in parallel."""
    for i in range(nodes.shape[0]):
        p = ti.Vector([nodes[i, 0], nodes[i, 1], nodes[i, 2]])
        best = (ti.Vector([sphere[0, 0], sphere[0, 1], sphere[0, 2]]) - p).norm() + sphere[0, 3]
        for g in range(sphere.shape[0]):  # every run's vertices lie within its radius of its centre
            best = ti.min(best, (ti.Vector([sphere[g, 0], sphere[g, 1], sphere[g, 2]]) - p).norm() + sphere[g, 3])
        best2 = best * best
        for g in range(sphere.shape[0]):
            near = (ti.Vector([sphere[g, 0], sphere[g, 1], sphere[g, 2]]) - p).norm() - sphere[g, 3]
            if near <= 0 or near * near < best2:
                for t in range(g * CLUSTER, (g + 1) * CLUSTER):
                    a = ti.Vector([tri[t, 0, 0], tri[t, 0, 1], tri[t, 0, 2]]) - p
                    b = ti.Vector([tri[t, 1, 0], tri[t, 1, 1], tri[t, 1, 2]]) - p
                    c = ti.Vector([tri[t, 2, 0], tri[t, 2, 1], tri[t, 2, 2]]) - p
                    best2 = ti.min(best2, _triangle_distance2(a, b, c))
        dist[i] = ti.sqrt(best2)


@ti.func
def _triangle_distance2(a, b, c):
    """Squared distance from the origin to the triangle abc: to its plane where the origin
    projects inside it, else to the nearest edge (a degenerate triangle has only edges)."""
    n = (b - a).cross(a - c)  # this orientation makes the three signs +1 inside (Quilez's udTriangle)
    inside = (ti.math.sign((b - a).cross(n).dot(-a)) + ti.math.sign((c - b).cross(n).dot(-b))
              + ti.math.sign((a - c).cross(n).dot(-c)))
    d2 = ti.cast(0.0, ti.f64)
    if inside < 2.0:
        d2 = ti.min(_segment_distance2(a, b), _segment_distance2(b, c), _segment_distance2(c, a))
    else:
        d2 = n.dot(a) ** 2 / n.dot(n)
    return d2


@ti.func
def _segment_distance2(a, b):
    e = b - a
    t = ti.cast(0.0, ti.f64)
    if e.dot(e) > 0:
        t = ti.math.clamp(-a.dot(e) / e.dot(e), 0.0, 1.0)
    q = a + t * e
    return q.dot(q)


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
    R, d = rotation(pose, dim), x - pos
    # R^T d written out: Taichi's matmul accumulates into a local, whose reverse compiles slowly
    if ti.static(dim == 3):
        return ti.Vector([R[0, i] * d[0] + R[1, i] * d[1] + R[2, i] * d[2] for i in ti.static(range(3))])
    return R.transpose() @ d


@ti.func
def rotate(pose, v):
    """R v for the rotation of a 3D pose, written out like to_local's R^T d."""
    R = rotation(pose, 3)
    return ti.Vector([R[k, 0] * v[0] + R[k, 1] * v[1] + R[k, 2] * v[2] for k in ti.static(range(3))])


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
    elif ti.static(s.kind == "mesh"):
        d = grid_distance(s, p)
    return d


@ti.func
def grid_distance(s: ti.template(), p):
    """A mesh shape's grid interpolated at p: trilinearly (C0, exact at the nodes) or by the
    quadratic B-spline of the nodes (C1, exact for affine fields). Differentiable in p through
    the weights. Past the grid box, sqrt(a^2 + b^2) of the distance a to the box and the value
    b at its nearest point: continuous, and below the true distance (the box is convex and
    holds the surface), so a ray from afar marches in long steps without passing the surface."""
    u = (p - ti.Vector(s.origin)) / s.cell  # grid coordinates: nodes at the integers
    c = ti.min(ti.max(u, 0.0), ti.Vector(s.dims) - 1.0)  # the box's nearest point
    b = p[0] * 0
    if ti.static(s.interpolation == "trilinear"):
        i = ti.min(ti.cast(c, ti.i32), ti.Vector(s.dims) - 2)  # c >= 0: the cast is the floor; the last node's cell
        t = c - i
        for k in ti.static(CORNERS):  # the grid has a ghost layer: node n sits at n + 1
            w = (t[0] if k[0] else 1 - t[0]) * (t[1] if k[1] else 1 - t[1]) * (t[2] if k[2] else 1 - t[2])
            b += w * s.grid[i[0] + k[0] + 1, i[1] + k[1] + 1, i[2] + k[2] + 1]
    else:
        j = ti.cast(c + 0.5, ti.i32)  # the nearest node
        t = c - j
        wx, wy, wz = _bspline2(t[0]), _bspline2(t[1]), _bspline2(t[2])
        for k in ti.static(TAPS):  # nodes j - 1 .. j + 1, at j .. j + 2 in the ghosted grid
            b += wx[k[0]] * wy[k[1]] * wz[k[2]] * s.grid[j[0] + k[0], j[1] + k[1], j[2] + k[2]]
    a2 = (u - c).dot(u - c) * s.cell ** 2
    d = b
    if a2 > 0:  # a branch, not a select: sqrt's derivative at 0 would make 0 * inf inside
        d = ti.sqrt(a2 + b * b)
    return d


@ti.func
def _bspline2(t):
    """The uniform quadratic B-spline's weights of the nodes j - 1, j, j + 1 at j + t (|t| <= 1/2)."""
    return ti.Vector([0.5 * (0.5 - t) ** 2, 0.75 - t * t, 0.5 * (0.5 + t) ** 2])


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
