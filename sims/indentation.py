"""Contact mechanics check: a rigid sphere pressed into a thick FEM block, against Hertz.

Hertz (a sphere of radius R on an elastic half-space, frictionless, small depth d):
  F = 4/3 E* sqrt(R) d^(3/2),  E* = E / (1 - nu^2).
The block hangs from its mounted top face; the sphere rises into its bottom face at a constant
slow speed (quasi-static: the depth rate is far below the shear wave speed), and the contact
force the sim reports is recorded against the depth.
"""
import numpy as np

from . import adjoint, tetmesh
from .fem import FEM

KEYS = ("size", "cells", "grade", "radius", "depth", "material", "contact", "dt", "steps", "every")  # configs/hertz.yaml


def run(**c):
    """Press the sphere in, the experiment given by every key of KEYS (configs/hertz.yaml holds
    one); returns depth (m), force (N, along the press), penetration (the deepest surface vertex
    inside the sphere, m), the sim's mesh size, and the Hertz force."""
    unknown, missing = set(c) - set(KEYS), set(KEYS) - set(c)
    if unknown or missing:
        raise ValueError(f"indentation: unknown key(s) {sorted(unknown)}, missing {sorted(missing)}; "
                         f"need exactly {list(KEYS)}")
    R, H = float(c["radius"]), float(c["size"][1])
    mesh = tetmesh.box(c["size"], c["cells"], c["grade"])
    top = -H - R  # the sphere's centre when it first touches the bottom face
    ball = {"shape": "sphere", "radius": R, "position": [0.0, top, 0.0], "friction": 0.0}
    sim = FEM(mesh, num_worlds=1, dt=c["dt"], segment=int(np.ceil(np.sqrt(c["steps"]))), material=c["material"],
              gravity=(0, 0, 0), objects=[ball], contact=c["contact"])
    speed = c["depth"] / (c["steps"] * c["dt"])
    u = np.zeros((1, c["steps"], sim.A))
    u[..., 7] = speed  # the sphere's upward velocity
    outs, _, _ = adjoint.forward(sim, sim.initial_state(), u, every=c["every"])
    x, pose, force = outs[0][0], outs[3][0, :, 0], outs[4][0, :, 0]
    depth = pose[:, 1] - top
    surf = np.unique(mesh.surface)
    pen = np.max(R - np.linalg.norm(x[:, surf] - pose[:, None, :3], axis=-1), axis=1)
    E, nu = c["material"]["E"], c["material"]["nu"]
    hertz = 4.0 / 3.0 * E / (1 - nu ** 2) * np.sqrt(R) * np.clip(depth, 0, None) ** 1.5
    sim.free()
    return dict(depth=depth, force=force[:, 1], penetration=pen, hertz=hertz, tets=len(mesh.tets), config=c)


def fit(depth, force, lo=0.2, hi=1.0):
    """Exponent and prefactor of F = A d^n by least squares in log-log over depths in
    [lo, hi] times the largest depth."""
    d_max = depth.max()
    keep = (depth >= lo * d_max) & (depth <= hi * d_max) & (force > 0)
    n, logA = np.polyfit(np.log(depth[keep]), np.log(force[keep]), 1)
    return float(n), float(np.exp(logA))
