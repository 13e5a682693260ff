"""The tactile sensor's optics (sims/tactile.py): its camera, marker pixels and tactile image.

A GelSight-style sensor films the inside of its gel's reflective skin through the clear gel.
Here the camera sits in the sensor's frame on its axis, above the mounted base (y > 0),
looking down -y at the contact surface; three coloured lights (red, green, blue by default)
shine from around the rim at a low elevation, so each colour channel is a Lambertian image of
the surface normal under one light (photometric stereo's set-up). Both outputs are torch
functions of the deformed vertices (differentiable): markers through camera.project, the image
through render/mesh_tracer (its antialiased silhouettes included).
"""
import math

import torch

from . import shading
from .camera import Camera
from .mesh_tracer import render_mesh

OPTICS = dict(width=160, height=120, distance=0.03, fov=50.0, elevation=30.0,
              colors=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], intensity=1.6, ambient=0.15,
              albedo=[0.8, 0.8, 0.8])


class TactileCamera:
    """The sensor's camera and lights. cfg keys (OPTICS): width, height (pixels), distance (the
    camera's height above the base, m), fov (degrees), elevation (the lights' angle above the
    surface plane, degrees), colors (one RGB per light, evenly spaced around the rim),
    intensity, ambient, albedo (the skin's colour)."""

    def __init__(self, sensor, cfg=None, dtype=torch.float64):
        cfg = dict(cfg or {})
        unknown = set(cfg) - set(OPTICS)
        if unknown:
            raise ValueError(f"unknown optics key(s) {sorted(unknown)}; allowed {sorted(OPTICS)}")
        self.cfg = c = {**OPTICS, **cfg}
        self.sensor, self.dtype = sensor, dtype
        self.camera = Camera([0.0, c["distance"], 0.0], [0.0, 0.0, 0.0], c["width"], c["height"], up=(0.0, 0.0, -1.0),
                             fov=c["fov"], dtype=dtype)
        el = math.radians(c["elevation"])
        specs = [{"kind": "ambient", "color": [c["ambient"]] * 3}]
        for k, col in enumerate(c["colors"]):
            az = 2 * math.pi * k / len(c["colors"])
            # from the rim toward the axis and down into the gel
            d = [-math.cos(az) * math.cos(el), -math.sin(el), -math.sin(az) * math.cos(el)]
            specs.append({"kind": "directional", "direction": d, "color": [c["intensity"] * v for v in col]})
        self.light = shading.lights(specs, dtype)
        self.albedo = torch.as_tensor(c["albedo"], dtype=dtype)
        self.faces = torch.as_tensor(sensor.faces)

    def markers(self, x_local):
        """Pixel coordinates (..., M, 2) of the markers of vertex positions in the sensor's frame."""
        pts = self.sensor.markers(x_local)
        lead = pts.shape[:-2]
        px, _ = self.camera.project(pts.reshape(1, -1, 3).to(self.dtype))
        return px.reshape(lead + (pts.shape[-2], 2))

    def image(self, x_local):
        """The tactile RGB image (H, W, 3) of one gel's vertices in the sensor's frame (N, 3)."""
        out = render_mesh(self.camera, x_local.to(self.dtype), self.faces, self.albedo, self.light,
                          smooth=True)  # the tracer's shared scene: one compile for every camera
        return out["rgb"][0]

    def images(self, x_local):
        """Images (B, H, W, 3) of a batch of gels (B, N, 3)."""
        return torch.stack([self.image(x) for x in x_local])
