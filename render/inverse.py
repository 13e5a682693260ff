"""Inverse rendering: recover scene parameters from images by gradient descent through the
renderers, and physical parameters through a renderer AND a simulator (scripts/inverse_render.py).

Three problems, each a function of its config that returns the fit's history, the before /
after / target images and the parameter errors:
- spheres: positions and colours of ~100 spheres from a few views (render/ray_tracer.py);
- sdf: the pose, scale and colour of a smooth CSG shape and a directional light's direction
  (render/sphere_tracer.py);
- mpm: a material's Young's modulus and the initial velocity of an MLS-MPM body from a
  rendered video of its motion: the image loss reaches E and v0 through the ray tracer and
  the checkpointed simulator (sims/torch_ops.rollout) in one torch graph. Each frame's render
  is checkpointed too (torch.utils.checkpoint), so memory stays flat in the number of frames.
"""
import math

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint
from tqdm import tqdm

from ..sims import sdf, torch_ops
from ..sims.mpm import MPM
from ..sims.sampling import lattice
from . import ray_tracer, sphere_tracer
from .camera import Camera
from .shading import lights


def psnr(a, b):
    """Peak signal-to-noise ratio (dB) of images in [0, 1]."""
    mse = float(((a - b) ** 2).mean())
    return 10 * math.log10(1.0 / max(mse, 1e-20))


def pyramid_mse(a, b, levels=1):
    """Mean squared error of images (..., H, W, 3) summed over `levels` scales (each half the
    last, by 2x2 averages): the coarse scales see a body that overlaps nothing of its target
    yet, which widens the basin of the fit."""
    a, b = (x.reshape(-1, *x.shape[-3:]).permute(0, 3, 1, 2) for x in (a, b))
    loss = 0
    for level in range(levels):
        loss = loss + ((a - b) ** 2).mean()
        if level + 1 < levels:
            a, b = torch.nn.functional.avg_pool2d(a, 2, ceil_mode=True), torch.nn.functional.avg_pool2d(b, 2, ceil_mode=True)
    return loss


def orbit(n, distance, elevation, width, target=(0.0, 0.0, 0.0), fov=40.0):
    """n pinhole views on a circle around target, `elevation` degrees up."""
    az = torch.arange(n, dtype=torch.float64) * 2 * math.pi / n + 0.3
    el = math.radians(elevation)
    eye = torch.stack([torch.sin(az) * math.cos(el), torch.full_like(az, math.sin(el)), torch.cos(az) * math.cos(el)], -1)
    return Camera(distance * eye + torch.tensor(target), torch.tensor(target).expand(n, 3), width, width, fov=fov)


def _adam(params, lrs, iterations, loss_fn, desc, progress):
    """Adam on named tensors with per-name learning rates, decaying 10x over the run.
    Returns the loss history."""
    opt = torch.optim.Adam([{"params": [params[k]], "lr": lr} for k, lr in lrs.items()])
    decay = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.1 ** (1 / max(iterations, 1)))
    history = []
    for _ in tqdm(range(iterations), desc=desc, disable=not progress):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        history.append(float(loss.detach()))
        opt.step()
        decay.step()
    return history


# ------------------------------------------------------------------ spheres
def fit_spheres(cfg, progress=True):
    rng = np.random.default_rng(cfg["seed"])
    M, r = int(cfg["spheres"]), float(cfg["radius"])
    truth = dict(centers=torch.as_tensor(rng.uniform(-0.5, 0.5, (M, 3))),
                 colors=torch.as_tensor(rng.uniform(0.1, 0.9, (M, 3))))
    guess = dict(centers=truth["centers"] + torch.as_tensor(rng.normal(0, cfg["position_noise"] * r, (M, 3))),
                 colors=torch.full((M, 3), 0.5, dtype=torch.float64))
    cam = orbit(cfg["views"], cfg["distance"], cfg["elevation"], cfg["resolution"])
    light = lights(cfg["lights"])
    tracer = ray_tracer.SphereTracer()
    image = lambda p: ray_tracer.render(cam, p["centers"], r, p["colors"].clamp(0, 1), light, specular=0.2,
                                        band=cfg["band"], background=cfg["background"], tracer=tracer)["rgb"]
    with torch.no_grad():
        target, before = image(truth), image(guess)
    params = {k: v.clone().requires_grad_() for k, v in guess.items()}
    history = _adam(params, {"centers": cfg["lr"] * r, "colors": cfg["lr"]}, cfg["iterations"],
                    lambda: pyramid_mse(image(params), target, cfg["pyramid"]), "spheres", progress)
    with torch.no_grad():
        after = image(params)
        rms = lambda a: float(a.pow(2).sum(-1).mean().sqrt())
        err = dict(position_rmse_over_radius=rms(params["centers"] - truth["centers"]) / r,
                   start_position_rmse_over_radius=rms(guess["centers"] - truth["centers"]) / r,
                   color_rmse=float((params["colors"].clamp(0, 1) - truth["colors"]).pow(2).mean().sqrt()))
    return dict(history=history, before=before, after=after, target=target, errors=err)


# ------------------------------------------------------------------ SDF shape + light
def _unit(v):
    return v / v.norm(dim=-1, keepdim=True)


def _angle(a, b):
    """Angle (degrees) between two directions."""
    return math.degrees(math.acos(max(-1.0, min(1.0, float((_unit(a) * _unit(b)).sum())))))


def fit_sdf(cfg, progress=True):
    scene = sphere_tracer.SDFScene([{**cfg["shape"], "color": cfg["truth"]["color"]}], march_steps=96)
    base = scene.params()
    t, g = cfg["truth"], cfg["guess"]
    as_t = lambda v: torch.tensor(v, dtype=torch.float64)
    truth = dict(position=as_t(t["position"]), quat=_unit(as_t(t["quat"])), scale=as_t(t["scale"]),
                 color=as_t(t["color"]), light=_unit(as_t(t["light_direction"])))
    guess = dict(position=as_t(g["position"]), quat=_unit(as_t(g["quat"])), scale=as_t(g["scale"]),
                 color=as_t(g["color"]), light=_unit(as_t(g["light_direction"])))
    cam = orbit(cfg["views"], cfg["distance"], cfg["elevation"], cfg["resolution"])
    ambient = lights([{"kind": "ambient", "color": cfg["ambient"]}])["ambient"]
    color = as_t(cfg["light_color"])

    def image(p):
        light = {"ambient": ambient, "point": torch.zeros(0, 6, dtype=torch.float64),
                 "directional": torch.cat([_unit(p["light"]), color])[None]}
        params = {**base, "pose": torch.cat([p["position"], _unit(p["quat"])])[None], "scale": p["scale"].reshape(1),
                  "color": p["color"].clamp(0, 1)[None], "specular": torch.full((1,), cfg["specular"], dtype=torch.float64)}
        return sphere_tracer.render(scene, cam, light, params, background=cfg["background"])["rgb"]

    with torch.no_grad():
        target, before = image(truth), image(guess)
    params = {k: v.clone().requires_grad_() for k, v in guess.items()}
    lr = cfg["lr"]
    history = _adam(params, {"position": lr, "quat": lr, "scale": lr, "color": lr, "light": lr}, cfg["iterations"],
                    lambda: pyramid_mse(image(params), target, cfg["pyramid"]), "sdf", progress)
    with torch.no_grad():
        after = image(params)
        q, qt = _unit(params["quat"]), truth["quat"]
        size = float(sdf.radius(scene.shapes[0]))
        err = dict(position_error_over_size=float((params["position"] - truth["position"]).norm()) / size,
                   rotation_error_deg=math.degrees(2 * math.acos(min(1.0, abs(float((q * qt).sum()))))),
                   scale_rel_error=abs(float(params["scale"] / truth["scale"]) - 1),
                   color_rmse=float((params["color"].clamp(0, 1) - truth["color"]).pow(2).mean().sqrt()),
                   light_direction_error_deg=_angle(params["light"], truth["light"]))
    return dict(history=history, before=before, after=after, target=target, errors=err)


# ------------------------------------------------------------------ physics + rendering
def _mpm_scene(cfg):
    """The simulator and its particles' colour. One colour and a light along the view: where
    two spheres of the body meet, the image stays continuous (equal colour, mirrored normals),
    so its gradient is the whole derivative; which sphere shows at a pixel is not
    differentiated, and a pattern's edges inside the body would move unseen by it."""
    c = cfg["body"]
    x = lattice(c["lower"], c["upper"], c["spacing"])
    sim = MPM({"x": x, "vol": np.full(len(x), c["spacing"] ** 2)}, [cfg["material"]], n_grid=cfg["n_grid"],
              dt=cfg["dt"], gravity=cfg["gravity"], friction=cfg["friction"], segment=cfg["segment"])
    return sim, np.tile(np.asarray(cfg["color"], float), (len(x), 1))


def fit_mpm(cfg, progress=True):
    sim, colors = _mpm_scene(cfg)
    dt = torch.float64 if sim.np_dtype == np.float64 else torch.float32
    x0, _, C0, F0, pose0 = (torch.as_tensor(s, dtype=dt) for s in sim.initial_state())
    steps, every = int(cfg["frames"]), int(cfg["substeps_per_frame"])
    actions = torch.zeros((1, steps, sim.A), dtype=dt)
    base = {k: torch.as_tensor(v, dtype=dt) for k, v in sim.get_params().items()}
    colors = torch.as_tensor(colors, dtype=torch.float64)
    res, r = int(cfg["resolution"]), cfg["radius"] * cfg["body"]["spacing"]
    cam = Camera([0.5, 0.5, 2.0], [0.5, 0.5, 0.0], res, res, ortho=1.0)
    light = lights(cfg["lights"])
    tracer = ray_tracer.SphereTracer()

    def frame(x):  # one frame of the video, from the 2D positions (P, 2)
        xyz = torch.cat([x, torch.zeros_like(x[:, :1])], 1).to(torch.float64)
        return ray_tracer.render(cam, xyz, r, colors, light, shadows=False, background=cfg["background"],
                                 tracer=tracer)["rgb"][0]

    def video(E, v0):
        params = {**base, "E": E.to(dt).reshape(1)}
        v = v0.to(dt).expand_as(x0).contiguous()
        states, _ = torch_ops.rollout(sim, (x0, v, C0, F0, pose0), params, actions, substeps=every)
        xs = torch.cat([x0[:, None], states[0]], 1)[0]  # (frames + 1, P, 2)
        # checkpointed: each frame's render is recomputed in the backward, not stored
        return torch.stack([checkpoint(frame, x, use_reentrant=False) for x in xs])

    as_t = lambda v: torch.tensor(v, dtype=torch.float64)
    truth = dict(E=as_t(float(cfg["material"]["E"])), v0=as_t(cfg["truth"]["v0"]))
    guess = dict(E=as_t(float(cfg["guess"]["E"])), v0=as_t(cfg["guess"]["v0"]))
    speed = float(guess["v0"].norm())  # v0's step scale: the guess's own (the fit never sees the truth)
    if not speed > 0:
        raise ValueError(f"config key 'guess.v0' must be a nonzero velocity (it scales the fit's steps), got {cfg['guess']['v0']}")
    with torch.no_grad():
        target, before = video(**truth), video(**guess)
    logE = torch.log(guess["E"]).clone().requires_grad_()
    v0 = guess["v0"].clone().requires_grad_()
    params = {"logE": logE, "v0": v0}
    history = _adam(params, {"logE": cfg["lr"], "v0": cfg["lr"] * speed},
                    cfg["iterations"], lambda: pyramid_mse(video(torch.exp(logE), v0), target, cfg["pyramid"]), "mpm",
                    progress)
    with torch.no_grad():
        E, v = torch.exp(logE), v0.detach()
        after = video(E, v)
        err = dict(E=float(E), E_rel_error=abs(float(E / truth["E"]) - 1), v0=v.tolist(),
                   v0_rel_error=float((v - truth["v0"]).norm() / truth["v0"].norm()))
    sim.free()
    return dict(history=history, before=before, after=after, target=target, errors=err)


PROBLEMS = {"spheres": fit_spheres, "sdf": fit_sdf, "mpm": fit_mpm}
