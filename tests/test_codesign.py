"""envs/learn/codesign.py: a walker's design optimized with its in-kernel controller, on a tiny problem."""
import json

import numpy as np
import pytest
import torch
import yaml

from diffsuite.envs import WalkerTask
from diffsuite.envs.learn import codesign
from diffsuite.envs.learn.trajopt import episode_return, start_state

TINY = {"max_steps": 12, "substeps": 5, "controller": {"hidden": 4, "sines": 2}}
BOUNDS = {"low": 0.5, "high": 1.5, "stability": 0.5, "rest_range": 0.2}


@pytest.fixture(scope="module")
def task():
    return WalkerTask(**TINY)


def test_stiffness_bounds_stay_under_the_integrators_limit(task):
    lo, hi = codesign.stiffness_bounds(task, 0.5, 100.0, 0.5)
    k0 = task.design.stiffness
    assert np.allclose(lo, 0.5 * k0) and (hi > k0).all() and (hi < 100 * k0).all()  # the limit binds
    sim = task.make_sim(1)
    sim.set_params({"stiffness": hi[None] / 0.5 * 0.99})  # just under the limit: accepted
    with pytest.raises(ValueError, match="stiffness"):
        sim.set_params({"stiffness": hi[None] / 0.5 * 1.01})
    sim.free()
    for bad in ({"low": 1.2}, {"high": 0.9}, {"stability": 1.0}):
        with pytest.raises(ValueError):
            codesign.stiffness_bounds(task, **{**{"low": 0.5, "high": 2.0, "stability": 0.5}, **bad})


def test_design_starts_at_the_robot_and_stays_in_bounds(task):
    d = codesign.Design(task, **BOUNDS)
    with torch.no_grad():
        p = d()
    assert torch.allclose(p["stiffness"][0], torch.as_tensor(task.design.stiffness, dtype=torch.float64))
    assert torch.allclose(p["rest"][0], torch.as_tensor(task.design.rest, dtype=torch.float64))
    with torch.no_grad():
        d.z.fill_(50.0), d.w.fill_(-50.0)
        p = d()
    lo, hi = codesign.stiffness_bounds(task, 0.5, 1.5, 0.5)
    assert (p["stiffness"][0].numpy() <= hi).all() and (p["stiffness"][0].numpy() > lo).all()
    assert (p["rest"][0].numpy() >= 0.8 * task.design.rest * (1 - 1e-12)).all()


def test_design_parameters_get_gradients_and_move(task):
    d = codesign.Design(task, **BOUNDS)
    sim = task.make_sim(1)
    ret = episode_return(task, sim, start_state(task, sim, 0, torch.float64),
                         torch.zeros(1, task.max_steps, task.action_dim, dtype=torch.float64), d())
    ret.sum().backward()
    sim.free()
    for g in (d.z.grad, d.w.grad):
        assert torch.isfinite(g).all() and g.abs().max() > 0
    control = codesign.optimize(task, iterations=4, lr=0.02, worlds=2, progress=False)
    co = codesign.optimize(task, iterations=4, lr=0.02, design_lr=0.1, design=BOUNDS, worlds=2, progress=False)
    for r in (control, co):
        assert len(r["curve"]) == 4 and np.isfinite([c[1] for c in r["curve"]]).all()
    # the same start, then the design's steps change the dynamics
    c0, d0 = control["curve"], co["curve"]
    assert abs(c0[0][1] - d0[0][1]) <= 1e-9 * max(1.0, abs(d0[0][1])) and c0[-1][1] != d0[-1][1]
    assert np.array_equal(control["design"]["rest"][0], task.design.rest)


def test_a_design_needs_the_in_kernel_controller():
    with pytest.raises(ValueError, match="controller"):
        codesign.optimize(WalkerTask(max_steps=2, substeps=2), iterations=1, progress=False)


def test_experiment_writes_curves_params_and_summary(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"env_config": {**TINY, "init_noise": 0.005}, "worlds": 2, "iterations": 2,
                                   "design": BOUNDS}))
    s = codesign.experiment(str(cfg), out=str(tmp_path / "out"), progress=False)
    for name in ("curves.png", "params.pt", "summary.json"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert set(saved["runs"]) == {"control only", "design + control"}
    assert saved["runs"] == json.loads(json.dumps(s["runs"]))
    params = torch.load(tmp_path / "out" / "params.pt", weights_only=True)
    assert {"stiffness", "rest", "ctrl_w1"} <= set(params["design + control"])
    with pytest.raises(ValueError, match="worlds_typo"):
        (tmp_path / "bad.yaml").write_text("worlds_typo: 3\n")
        codesign.experiment(str(tmp_path / "bad.yaml"), out=str(tmp_path / "bad"), progress=False)
