"""Particle positions filling primitives and watertight triangle meshes."""
import numpy as np

SHAPES = ("box", "sphere", "cylinder", "capsule", "mesh")


def lattice(lower, upper, spacing, jitter=0.0, rng=None):
    """Cell-centred lattice points in the box [lower, upper], optionally jittered."""
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    counts = np.maximum(np.floor((upper - lower) / spacing).astype(int), 1)
    step = (upper - lower) / counts
    axes = [lower[d] + (np.arange(counts[d]) + 0.5) * step[d] for d in range(len(lower))]
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(lower))
    if jitter:
        pts = pts + (rng or np.random.default_rng(0)).uniform(-0.5, 0.5, pts.shape) * jitter * step
    return pts


def sample(shape, spacing, jitter=0.0, seed=0):
    """Points filling a shape dict: {kind: box, lower, upper} | {kind: sphere, center, radius}
    | {kind: cylinder, center, radius, height} (axis y) | {kind: capsule, center, radius,
    length} (axis x) | {kind: mesh, file, scale, offset}."""
    kind, rng = shape.get("kind"), np.random.default_rng(seed)
    if kind == "box":
        return lattice(shape["lower"], shape["upper"], spacing, jitter, rng)
    if kind == "mesh":
        return _mesh(shape, spacing, jitter, rng)
    if kind not in SHAPES:
        raise ValueError(f"shape 'kind' must be one of {SHAPES}, got {kind!r}")
    c, r = np.asarray(shape["center"], float), float(shape["radius"])
    ext = np.full(len(c), r)
    if kind == "cylinder":
        ext[1] = shape["height"] / 2
    if kind == "capsule":
        ext[0] = r + shape["length"] / 2
    pts = lattice(c - ext, c + ext, spacing, jitter, rng)
    d = pts - c
    if kind == "sphere":
        keep = (d ** 2).sum(1) <= r * r
    elif kind == "cylinder":
        keep = (np.delete(d, 1, axis=1) ** 2).sum(1) <= r * r
    else:
        d[:, 0] = np.maximum(np.abs(d[:, 0]) - shape["length"] / 2, 0)
        keep = (d ** 2).sum(1) <= r * r
    return pts[keep]


def _mesh(shape, spacing, jitter, rng):
    import trimesh

    mesh = shape["mesh"] if "mesh" in shape else trimesh.load(shape["file"], force="mesh")
    mesh = mesh.copy()
    mesh.apply_scale(float(shape.get("scale", 1.0)))
    mesh.apply_translation(np.asarray(shape.get("offset", [0, 0, 0]), float))
    if not mesh.is_watertight:
        raise ValueError("shape 'mesh' must be watertight to be filled with particles")
    lo, hi = mesh.bounds
    pts = lattice(lo, hi, spacing, jitter, rng)
    return pts[mesh.contains(pts)]
