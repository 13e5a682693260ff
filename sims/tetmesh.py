"""Tetrahedral meshes for FEM: a structured box, a dome (spherical cap), any closed trimesh
surface (through the `tetgen` package), and their boundary surfaces.

A mesh is a SimpleNamespace: vertices (N, 3) float64, tets (T, 4) int64 with positive
volume (vertex 3 on the side of face 0-1-2 its normal points to), surface (S, 3) boundary
triangles ordered counter-clockwise seen from outside.

Sensor convention (sims/tactile.py): a gel's mounted base lies in the plane y = 0 and the
gel hangs below it (y < 0), so a sensor at the identity orientation presses downward.
"""
from types import SimpleNamespace

import numpy as np

# Kuhn's six tetrahedra of a unit cube: one per axis order, the paths from corner 000 to 111.
# Neighbouring cubes split their shared faces alike, so the mesh is conforming.
_KUHN = []
for _order in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):
    _c, _path = np.zeros(3, int), [(0, 0, 0)]
    for _a in _order:
        _c[_a] = 1
        _path.append(tuple(_c))
    _KUHN.append(_path)


def _oriented(vertices, tets):
    """tets with vertices 1 and 2 swapped where the volume is negative."""
    tets = np.array(tets, dtype=np.int64)
    neg = volumes(vertices, tets) < 0
    tets[neg, 1], tets[neg, 2] = tets[neg, 2].copy(), tets[neg, 1].copy()
    return tets


def volumes(vertices, tets):
    a, b, c, d = (vertices[tets[:, i]] for i in range(4))
    return np.einsum("ij,ij->i", np.cross(b - a, c - a), d - a) / 6.0


def face_normals(vertices, faces):
    """Each triangle's normal, (b - a) x (c - a): twice its area long, outward for surface faces."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    return np.cross(b - a, c - a)


def boundary(tets):
    """Faces that belong to one tet only, outward (counter-clockwise seen from outside)."""
    # for a positive tet (a, b, c, d) these faces have outward normals
    faces = np.concatenate([tets[:, [0, 2, 1]], tets[:, [0, 1, 3]], tets[:, [1, 2, 3]], tets[:, [0, 3, 2]]])
    key = np.sort(faces, axis=1)
    _, inv, count = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    return faces[count[inv.ravel()] == 1]


def _mesh(vertices, tets):
    vertices = np.asarray(vertices, dtype=np.float64)
    tets = _oriented(vertices, tets)
    vol = volumes(vertices, tets)
    if not (vol > 0).all():
        raise ValueError(f"mesh has {(vol <= 0).sum()} degenerate tetrahedra")
    return SimpleNamespace(vertices=vertices, tets=tets, surface=boundary(tets))


def box(size, cells, grade=1.0):
    """A structured box of size (sx, sy, sz) centred on x = z = 0 with its top face at y = 0,
    cells (nx, ny, nz) cubes of six Kuhn tets each (6 nx ny nz tets).

    grade > 1 packs the cells toward the bottom face's centre (y = -sy, x = z = 0), where a
    tactile sensor touches: node coordinates s in [-1, 1] map to sign(s) |s|^grade."""
    size, cells = np.asarray(size, float), np.asarray(cells, int)
    if size.shape != (3,) or cells.shape != (3,) or (size <= 0).any() or (cells < 1).any():
        raise ValueError(f"box needs size (3 positive numbers) and cells (3 positive integers), got {size}, {cells}")
    if not grade >= 1:
        raise ValueError(f"box grade must be >= 1, got {grade}")
    axes = []
    for d in range(3):
        if d == 1:  # t = 0 at the bottom face, graded toward it
            axes.append(size[1] * (np.linspace(0.0, 1.0, cells[1] + 1) ** grade - 1.0))
        else:
            s = np.linspace(-1.0, 1.0, cells[d] + 1)
            axes.append(0.5 * size[d] * np.sign(s) * np.abs(s) ** grade)
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    index = np.arange(len(grid)).reshape(tuple(cells + 1))
    base = np.stack(np.meshgrid(*(np.arange(c) for c in cells), indexing="ij"), -1).reshape(-1, 3)
    tets = np.concatenate([np.stack([index[tuple((base + np.array(c)).T)] for c in path], 1) for path in _KUHN])
    return _mesh(grid, tets)


def dome(radius, height, max_volume=None, rings=18):
    """A spherical cap: a flat disc of `radius` at y = 0 and a curved face bulging down to
    y = -height (height <= radius). Its surface has `rings` rings of triangles from the apex
    to the rim (6 k points on ring k), tetrahedralized by tetgen with tets of at most
    max_volume; the defaults give about 8,400 tets (DiffTactile's gel has about 8k), rings=8
    about 1,200."""
    import trimesh
    if not (radius > 0 and 0 < height <= radius):
        raise ValueError(f"dome needs radius > 0 and 0 < height <= radius, got {radius}, {height}")
    rho = (radius ** 2 + height ** 2) / (2 * height)  # the sphere through the rim and the apex
    theta = np.arcsin(radius / rho) if height < rho else 0.5 * np.pi
    r, phi, faces = _disk(rings)
    cap = np.stack([rho * np.sin(r * theta) * np.cos(phi), rho - height - rho * np.cos(r * theta),
                    rho * np.sin(r * theta) * np.sin(phi)], 1)
    inner = r < 1  # the flat base shares the cap's rim
    flat = np.stack([radius * r * np.cos(phi), 0 * r, radius * r * np.sin(phi)], 1)[inner]
    index = np.arange(len(r))
    index[inner] = len(r) + np.arange(inner.sum())
    surf = trimesh.Trimesh(np.concatenate([cap, flat]), np.concatenate([faces, index[faces][:, ::-1]]), process=False)
    if surf.volume < 0:
        surf.invert()
    if max_volume is None:
        max_volume = float(surf.volume) / 8000 * 2.0  # tetgen's quality refinement adds about as many again
    return from_trimesh(surf, max_volume)


def _disk(rings):
    """A triangulated unit disc: its centre and rings k = 1..rings of 6k points. Returns each
    point's radius and angle and the triangles (in an orientation the caller fixes once the
    surface is closed)."""
    r, phi, start = [0.0], [0.0], [0]
    for k in range(1, rings + 1):
        start.append(len(r))
        r += [k / rings] * (6 * k)
        phi += list(2 * np.pi * np.arange(6 * k) / (6 * k))
    faces = []
    for k in range(1, rings + 1):  # zip ring k - 1 (n_a points) with ring k (n_b) by angle
        n_a, n_b = max(1, 6 * (k - 1)), 6 * k
        a = b = 0
        while a < n_a or b < n_b:
            ia, ib = start[k - 1] + a % n_a, start[k] + b % n_b
            # advance the ring whose next point comes first around the circle
            if k > 1 and a < n_a and (b >= n_b or (a + 1) / n_a <= (b + 1) / n_b):
                faces.append((ia, start[k - 1] + (a + 1) % n_a, ib))
                a += 1
            else:
                faces.append((ia, start[k] + (b + 1) % n_b, ib))
                b += 1
                if k == 1:
                    a = n_a
    return np.array(r), np.array(phi), np.array(faces, dtype=np.int64)


def from_trimesh(mesh, max_volume=None, min_ratio=1.5):
    """Tetrahedralize a closed trimesh surface (a Trimesh or a path) with tetgen: quality tets
    (radius-edge ratio <= min_ratio) of at most max_volume (default: no limit)."""
    import tetgen
    import trimesh
    if not isinstance(mesh, trimesh.Trimesh):
        mesh = trimesh.load(str(mesh), force="mesh")
    if not mesh.is_watertight:
        raise ValueError("from_trimesh needs a closed (watertight) surface")
    tg = tetgen.TetGen(np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int32))
    kw = dict(order=1, quality=True, minratio=float(min_ratio), mindihedral=10.0)
    if max_volume:
        kw["maxvolume"] = float(max_volume)
    nodes, elems = tg.tetrahedralize(**kw)[:2]
    return _mesh(nodes, elems)


def build(spec):
    """A mesh from a config dict: {kind: box, size, cells, grade} | {kind: dome, radius,
    height, max_volume, rings} | {kind: mesh, path, max_volume}. Errors name the key."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    allowed = {"box": {"size", "cells", "grade"}, "dome": {"radius", "height", "max_volume", "rings"},
               "mesh": {"path", "max_volume"}}
    if kind not in allowed:
        raise ValueError(f"gel mesh 'kind' must be one of {sorted(allowed)}, got {kind!r}")
    if set(spec) - allowed[kind]:
        raise ValueError(f"gel mesh ({kind}): unknown key(s) {sorted(set(spec) - allowed[kind])}; "
                         f"allowed {sorted(allowed[kind])}")
    if kind == "box":
        return box(spec["size"], spec["cells"], spec.get("grade", 1.0))
    if kind == "dome":
        return dome(spec["radius"], spec["height"], spec.get("max_volume"), spec.get("rings", 18))
    return from_trimesh(spec["path"], spec.get("max_volume"))
