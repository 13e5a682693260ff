"""envs/learn/imitate.py (ILD) and scripts/imitate.py's experiment, on short episodes."""
import json

import numpy as np
import pytest
import torch
import yaml

from diffsuite.envs import ShapingTask, WalkerTask
from diffsuite.envs.learn import imitate
from diffsuite.envs.learn.trajopt import SinePolicy

SHORT = {"max_steps": 15, "substeps": 8}


@pytest.fixture(scope="module")
def walker():
    task = WalkerTask(**SHORT)
    acts = imitate.demo_actions(task, {"kind": "sine", "amplitude": 0.8, "omega": 10.0})
    return task, acts, imitate.record_demo(task, acts)


def test_chamfer_ignores_order_and_points_do_not():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(30, 2, generator=g, dtype=torch.float64)
    y = x[torch.randperm(30, generator=g)]
    assert imitate.state_distance(x, y, "chamfer") == 0 < imitate.state_distance(x, y, "points")
    shift = torch.tensor([0.03, -0.04], dtype=torch.float64)  # |shift| = 0.05
    assert torch.isclose(imitate.state_distance(x + shift, x, "points"), torch.tensor(0.05, dtype=torch.float64))
    assert 0 < imitate.state_distance(x + shift, x, "chamfer") <= 0.05 + 1e-12


def test_losses_have_finite_gradients_where_states_coincide():
    x = torch.rand(4, 10, 2, dtype=torch.float64, requires_grad=True)
    for distance in imitate.DISTANCES:
        for alpha in (None, 0.5):
            loss = imitate.trajectory_loss((x, None), (x.detach(), None), distance, alpha)
            (g,) = torch.autograd.grad(loss, x)
            assert loss.item() == 0 and torch.isfinite(g).all()


def test_chamfer_alpha_forgives_a_gait_that_runs_ahead():
    g = torch.Generator().manual_seed(1)
    demo = torch.cumsum(torch.rand(12, 6, 2, generator=g, dtype=torch.float64), 0)
    ahead = torch.cat([demo[1:], demo[-1:]])  # the same states, one step early
    aligned = imitate.trajectory_loss((ahead, None), (demo, None))
    chamfer = imitate.trajectory_loss((ahead, None), (demo, None), alpha=1.0)
    assert 0 < chamfer < 0.2 * aligned


def test_demo_specs_are_checked(walker):
    task = walker[0]
    two = [[0.5] * task.action_dim, [0.0] * task.action_dim]
    keys = imitate.demo_actions(task, {"kind": "keyframes", "actions": two})
    assert keys.shape == (task.max_steps, task.action_dim) and keys[0, 0] == 0.5 and keys[-1, 0] == 0.0
    for spec, key in (({"kind": "keyframes", "actions": [[2.0] * task.action_dim]}, "demo.actions"),
                      ({"kind": "keyframes", "actions": [[0.0]]}, "demo.actions"),
                      ({"kind": "sine", "amplitude": 0.0, "omega": 1.0}, "demo.amplitude"),
                      ({"kind": "spline"}, "demo.kind")):
        with pytest.raises(ValueError, match=key):
            imitate.demo_actions(task, spec)
    with pytest.raises(ValueError, match="distance"):
        imitate.imitate(task, walker[2], iterations=1, distance="hausdorff", progress=False)


def test_walker_imitation_ends_far_closer_to_the_demo_than_no_action(walker):
    task, acts, demo = walker
    assert demo[0].shape == (task.max_steps + 1, task.N, task.dim)
    assert torch.equal(demo[0], imitate.record_demo(task, acts)[0])  # recorded once, reproducible
    r = imitate.imitate(task, demo, iterations=25, lr=0.02, progress=False)
    err, noop = r["errors"], r["noop_errors"]
    assert all(np.isfinite(list(e.values())).all() for e in (err, noop, r["initial_errors"]))
    assert err["mean"] < 0.4 * noop["mean"] and err["final"] < 0.5 * noop["final"]
    assert r["tool_errors"] is None and r["best_loss"] < r["curve"][0][1]
    assert r["states"][0].shape == demo[0].shape and r["actions"].shape == (task.max_steps, task.action_dim)


def test_plasticine_imitation_matches_particles_and_tools():
    task = ShapingTask("plasticine_pinch", max_steps=4, substeps=5)
    keys = [[0.8, 0.0, 0.0, -0.8, 0.0, 0.0]]
    demo = imitate.record_demo(task, imitate.demo_actions(task, {"kind": "keyframes", "actions": keys}))
    r = imitate.imitate(task, demo, iterations=4, lr=0.05, distance="chamfer", progress=False)
    losses = [c[1] for c in r["curve"]]
    assert np.isfinite(losses).all() and r["best_loss"] < losses[0]
    assert r["tool_errors"] is not None and np.isfinite(list(r["tool_errors"].values())).all()


def test_experiment_writes_loss_plot_gif_policy_and_summary(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"env_config": SHORT, "iterations": 2}))
    s = imitate.experiment(str(cfg), out=str(tmp_path / "out"), progress=False)
    for name in ("loss.png", "imitation.gif", "policy.pt", "summary.json"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["errors"] == s["errors"] and len(saved["curve"]) == 2 and np.isfinite(saved["scale"])
    blob = torch.load(tmp_path / "out" / "policy.pt", weights_only=True)
    policy = SinePolicy(blob["obs_dim"], blob["action_dim"], blob["hidden"])
    policy.load_state_dict(blob["state_dict"])
    assert blob["env"] == "diffsuite/MassSpringWalker-v0" and blob["env_config"] == SHORT
    cfg.write_text(yaml.safe_dump({"iteratons": 2}))
    with pytest.raises(ValueError, match="iteratons"):
        imitate.experiment(str(cfg), out=str(tmp_path / "out"), progress=False)
