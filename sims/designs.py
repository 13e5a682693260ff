"""Mass-spring designs (robots, cloth, rope) built from plain config dicts."""
from dataclasses import dataclass
import itertools

import numpy as np


@dataclass
class Design:
    """Point masses and springs. A spring with actuator k >= 0 follows action k."""
    positions: np.ndarray        # (N, dim)
    masses: np.ndarray           # (N,), 0 = pinned in place
    springs: np.ndarray          # (S, 2) int object indices
    rest: np.ndarray             # (S,) rest lengths
    stiffness: np.ndarray        # (S,) force per unit extension
    damping: np.ndarray          # (S,) dashpot along the spring
    coef: np.ndarray             # (S,) actuation amplitude: target = rest * (1 + coef * action)
    actuator: np.ndarray         # (S,) int action index, -1 = passive

    @property
    def dim(self):
        return self.positions.shape[1]

    @property
    def n_actuators(self):
        return int(self.actuator.max()) + 1 if len(self.actuator) else 0


class _Builder:
    """Collects objects (deduplicated by key) and springs (first definition of a pair wins)."""

    def __init__(self):
        self.ids, self.pos, self.pairs, self.springs = {}, [], set(), []

    def point(self, key, xyz):
        if key not in self.ids:
            self.ids[key] = len(self.pos)
            self.pos.append(np.asarray(xyz, dtype=np.float64))
        return self.ids[key]

    def spring(self, a, b, k, coef=0.0):
        if a == b or frozenset((a, b)) in self.pairs:
            return
        self.pairs.add(frozenset((a, b)))
        self.springs.append((a, b, k, coef))

    def design(self, masses=None, damping=0.0):
        pos = np.array(self.pos)
        s = np.array([(a, b) for a, b, _, _ in self.springs], dtype=np.int64).reshape(-1, 2)
        k = np.array([sp[2] for sp in self.springs], dtype=np.float64)
        coef = np.array([sp[3] for sp in self.springs], dtype=np.float64)
        actuated = coef != 0
        actuator = np.where(actuated, np.cumsum(actuated) - 1, -1)
        return Design(
            positions=pos,
            masses=np.ones(len(pos)) if masses is None else np.asarray(masses, dtype=np.float64),
            springs=s,
            rest=np.linalg.norm(pos[s[:, 0]] - pos[s[:, 1]], axis=1),
            stiffness=k, damping=np.full(len(k), float(damping)), coef=coef,
            actuator=actuator.astype(np.int64))


def _explicit(cfg):
    b = _Builder()
    for i, p in enumerate(cfg["objects"]):
        b.point(i, p)
    for a, c, k, coef in cfg["springs"]:
        b.spring(int(a), int(c), float(k), float(coef))
    return b


def _lattice(cfg):
    """DiffTaichi-style 2D robot from squares (vertical edges are muscles) and triangles."""
    b, h = _Builder(), float(cfg["spacing"])
    ox, oy = cfg.get("origin", [0.1, 0.1])
    k = float(cfg["stiffness"])
    pt = lambda i, j: b.point((i, j), (ox + h * i, oy + h * j))
    for shape, i, j, coef in cfg["shapes"]:
        if shape == "square":
            a, bb, c, d = pt(i, j), pt(i, j + 1), pt(i + 1, j), pt(i + 1, j + 1)
            for p, q, cc in [(a, bb, coef), (c, d, coef), (a, c, 0), (a, d, 0), (bb, c, 0), (bb, d, 0)]:
                b.spring(p, q, k, float(cc))
        elif shape == "triangle":
            a, bb, d = pt(i + 0.5, j + 0.5), pt(i, j + 1), pt(i + 1, j + 1)
            for p, q in [(a, bb), (a, d), (bb, d)]:
                b.spring(p, q, k, 0.0)
        else:
            raise ValueError(f"design shape must be 'square' or 'triangle', got {shape!r}")
    return b


def _cubes(cfg):
    """3D robot from unit cubes; the four vertical (y) edges of a cube with coef != 0 are muscles."""
    b, h = _Builder(), float(cfg["spacing"])
    org = np.asarray(cfg.get("origin", [0.1, 0.1, 0.1]), dtype=np.float64)
    k = float(cfg["stiffness"])
    for i, j, l, coef in cfg["cubes"]:
        corners = [b.point((i + di, j + dj, l + dl), org + h * np.array([i + di, j + dj, l + dl]))
                   for di, dj, dl in itertools.product((0, 1), repeat=3)]
        offs = list(itertools.product((0, 1), repeat=3))
        for (p, op), (q, oq) in itertools.combinations(zip(corners, offs), 2):
            vertical = op[0] == oq[0] and op[2] == oq[2]
            b.spring(p, q, k, float(coef) if vertical else 0.0)
    return b


def _cloth(cfg):
    """A sheet in the x-z plane at height y: structural, shear and bend springs."""
    b, h = _Builder(), float(cfg["spacing"])
    nx, nz = int(cfg["nx"]), int(cfg["nz"])
    ox, y, oz = cfg.get("origin", [0.0, 0.5, 0.0])
    k = float(cfg["stiffness"])
    ids = {(i, j): b.point((i, j), (ox + h * i, y, oz + h * j)) for i in range(nx) for j in range(nz)}
    for (i, j), p in ids.items():
        for di, dj, scale in [(1, 0, 1), (0, 1, 1), (1, 1, 0.5), (1, -1, 0.5), (2, 0, 0.2), (0, 2, 0.2)]:
            q = ids.get((i + di, j + dj))
            if q is not None:
                b.spring(p, q, k * scale)
    masses = np.ones(len(ids))
    for i, j in cfg.get("pinned", []):
        masses[ids[(i, j)]] = 0.0
    return b, masses


def _rope(cfg):
    """A chain of masses along x with bend springs; the first mass may be pinned."""
    b, h = _Builder(), float(cfg["spacing"])
    n, org = int(cfg["n"]), np.asarray(cfg.get("origin", [0.1, 0.5]), dtype=np.float64)
    k = float(cfg["stiffness"])
    ids = [b.point(i, org + h * i * np.eye(len(org))[0]) for i in range(n)]
    for i in range(n - 1):
        b.spring(ids[i], ids[i + 1], k)
    for i in range(n - 2):
        b.spring(ids[i], ids[i + 2], k * float(cfg.get("bend", 0.1)))
    masses = np.ones(n)
    if cfg.get("pin_first", True):
        masses[0] = 0.0
    return b, masses


_KINDS = {"explicit": _explicit, "lattice": _lattice, "cubes": _cubes, "cloth": _cloth, "rope": _rope}


def build(cfg):
    """Design from a config dict with a 'kind' key (explicit, lattice, cubes, cloth, rope)."""
    kind = cfg.get("kind")
    if kind not in _KINDS:
        raise ValueError(f"design 'kind' must be one of {sorted(_KINDS)}, got {kind!r}")
    out = _KINDS[kind](cfg)
    b, masses = out if isinstance(out, tuple) else (out, None)
    return b.design(masses=masses, damping=cfg.get("spring_damping", 0.0))
