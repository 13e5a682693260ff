"""scripts/inverse_render.py and render/inverse.py: the image loss's gradient through the ray
tracer AND the simulator matches finite differences; each problem's fit lowers its loss and
raises its PSNR, writing its strip, loss curve and summary."""
import json
import pathlib
import sys

import numpy as np
import pytest
import torch

from diffsuite.envs import config
from diffsuite.render import inverse

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "scripts"))
import inverse_render  # noqa: E402

# small versions of the three problems: few pixels, frames and iterations
SMALL = {
    "spheres": dict(spheres=30, resolution=32, iterations=25, views=2),
    "sdf": dict(resolution=20, iterations=20, views=2, lr=0.02),
    "mpm": dict(frames=4, substeps_per_frame=15, resolution=32, iterations=6,
                body={"lower": [0.35, 0.08], "upper": [0.5, 0.16], "spacing": 0.025}),  # lands at once
}


def _small(tmp_path, problem):
    path = tmp_path / f"{problem}.yaml"
    path.write_text(json.dumps({"problem": problem, **SMALL[problem]}))  # JSON is YAML
    return path


def test_image_loss_gradient_through_renderer_and_simulator_matches_finite_differences(monkeypatch):
    """d(loss)/d(log E, v0) of a rendered video of MPM against a target video, f64, central
    differences. (The fit's own loss: the optimizer is replaced by one evaluation.)"""
    cfg = config.merge(config.read_yaml("inverse_render_mpm"), {"problem": "mpm", **SMALL["mpm"]})
    got = {}

    def one_step(params, lrs, iterations, loss_fn, desc, progress):
        got.update(params=params, loss_fn=loss_fn)
        return [0.0]
    monkeypatch.setattr(inverse, "_adam", one_step)
    monkeypatch.setattr(inverse.MPM, "free", lambda self: None)  # the closure keeps using the simulator
    inverse.fit_mpm(cfg, progress=False)
    p, f = got["params"], got["loss_fn"]
    loss = f()
    loss.backward()
    assert float(loss) > 0
    for name, idx in (("logE", None), ("v0", 0), ("v0", 1)):
        t, h = p[name], 1e-5
        with torch.no_grad():
            view = t if idx is None else t[idx]
            view += h
            up = float(f())
            view -= 2 * h
            down = float(f())
            view += h
        fd = (up - down) / (2 * h)
        g = float(p[name].grad if idx is None else p[name].grad[idx])
        assert abs(g - fd) <= 0.05 * abs(fd) and abs(fd) > 0, (name, idx, g, fd)


@pytest.mark.parametrize("problem", ["spheres", "sdf", "mpm"])
def test_each_problem_fits_and_writes_its_artifacts(tmp_path, problem):
    s = inverse_render.run(_small(tmp_path, problem), out=str(tmp_path / "out"), progress=False)
    out = tmp_path / "out"
    for name in ("strip.png", "loss.png", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    if problem == "mpm":
        assert (out / "fit.mp4").stat().st_size > 0 and (out / "target.mp4").stat().st_size > 0
    saved = json.loads((out / "summary.json").read_text())
    assert saved["problem"] == problem and len(saved["history"]) == SMALL[problem]["iterations"]
    h = np.asarray(s["history"])
    assert np.isfinite(h).all() and h[-1] < 0.8 * h[0], h
    assert s["psnr_after"] > s["psnr_before"] + 0.5, (s["psnr_before"], s["psnr_after"])
    assert all(np.isfinite(v).all() for v in s["errors"].values())


def test_bad_configs_name_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("problem: teapot\n")
    with pytest.raises(ValueError, match="problem"):
        inverse_render.run(bad, out=str(tmp_path / "o"), progress=False)
    bad.write_text("problem: spheres\nspherez: 3\n")
    with pytest.raises(ValueError, match="spherez"):
        inverse_render.run(bad, out=str(tmp_path / "o"), progress=False)
