"""TactilePress-v0, TactileSlide-v0, TactilePose-v0: faces, physics and gradients."""
import gymnasium as gym
from gymnasium.utils.env_checker import check_env
import numpy as np
import pytest
import torch

from diffsuite.envs import make_diff
from diff_face import gradcheck_episode

SMALL = dict(sensor={"gel": {"rings": 4}}, optics=dict(width=24, height=18), max_steps=3, substeps=5)
IDS = ["diffsuite/TactilePress-v0", "diffsuite/TactileSlide-v0", "diffsuite/TactilePose-v0", "diffsuite/TactileDough-v0"]


def _small(env_id):
    box = env_id == "diffsuite/TactilePose-v0"  # a flat gel
    return {**SMALL, "sensor": {"gel": {"cells": [4, 1, 4]} if box else {"rings": 4}}}


@pytest.mark.parametrize("env_id", IDS)
def test_gym_and_vector_faces(env_id):
    env = gym.make(env_id, render_mode="rgb_array", **_small(env_id))
    check_env(env.unwrapped, skip_render_check=False)
    env.reset(seed=0)
    frame = env.render()
    assert frame.ndim == 3 and frame.std() > 10
    vec = gym.make_vec(env_id, num_envs=2, **_small(env_id))
    obs, _ = vec.reset(seed=0)
    a = np.zeros((2, vec.unwrapped.task.action_dim), np.float32)
    a[:, 1], a[1, 0] = -1.0, 0.5
    obs2, rew, *_ = vec.step(a)
    assert obs.shape == (2, vec.unwrapped.task.obs_dim) and np.isfinite(obs2).all()


def test_press_follows_the_force_the_gel_feels():
    """From first touch, pressing down raises the normal force; holding or lifting does not."""
    env = make_diff("diffsuite/TactilePress-v0", sensor={"gel": {"rings": 4}}, max_steps=17)  # no reset in 16
    task = env.task
    out = {}
    for name, vy in (("press", -1.0), ("hold", 0.0), ("lift", 1.0)):
        env.reset()
        forces = []
        for _ in range(16):
            obs, r, *_ = env.step(torch.tensor([[0.0, vy, 0.0]]))
            forces.append(obs[0, 0].item() * task.peak)
        out[name] = forces
    f = out["press"]
    assert f[-1] > 0.2 and f[-1] > f[-4] > f[-8] > f[0] >= 0
    assert abs(out["hold"][-1]) < 0.05 * out["press"][-1] and abs(out["lift"][-1]) < 1e-3 * out["press"][-1]


def test_press_diff_face_passes_gradcheck():
    env = make_diff("diffsuite/TactilePress-v0", sensor={"gel": {"rings": 3}},
                    object={"position": [0.0, -0.0099, 0.0]}, max_steps=2, substeps=4)
    assert gradcheck_episode(env, [0.1, -0.5, 0.0], 2, "E", atol=1e-6, rtol=1e-4)


def test_pose_reward_is_the_estimate_error_and_the_state_holds_the_pose():
    env = make_diff("diffsuite/TactilePose-v0", num_envs=3, **_small("diffsuite/TactilePose-v0"))
    env.reset(seed=3)
    truth = env.task.normalised_pose(env.state)
    assert (truth.abs() <= 1).all() and truth.std() > 0.1  # drawn per world
    _, r_true, *_ = env.step(torch.cat([torch.zeros(3, 4, dtype=truth.dtype), truth], -1))
    _, r_zero, *_ = env.step(torch.zeros(3, 7))
    assert r_true.abs().max() < 1e-12 and (r_zero < 0).all()


def test_trajopt_presses_to_the_force_profile_and_reports_its_error(tmp_path):
    """Open-loop Adam through the sensor cuts the force-profile error; the script reports it."""
    import yaml
    from diffsuite.envs.learn import trajopt
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"env": "diffsuite/TactilePress-v0", "methods": ["adam"],
                                   "env_config": {"sensor": {"gel": {"rings": 4}}, "max_steps": 10, "substeps": 25},
                                   "adam": {"iterations": 8, "lr": 0.2}}))
    s = trajopt.experiment(str(cfg), out=str(tmp_path / "out"), progress=False)
    adam = s["methods"]["adam"]
    assert adam["best_return"] > s["noop_return"] + 0.5 * abs(s["noop_return"])
    assert adam["metrics"]["force_rms_error"] < 0.5


def test_dough_gives_way_and_pushes_back():
    """Pressing the gel into the dough lowers the dough and the gel feels it; hovering does neither."""
    out = {}
    for name, vy in (("press", -1.0), ("hover", 0.0)):
        env = make_diff("diffsuite/TactileDough-v0", max_steps=9)
        env.reset()
        with torch.no_grad():
            for _ in range(8):
                obs, *_ = env.step(torch.tensor([[0.0, vy, 0.0]]))
        out[name] = obs[0]
    press, hover = out["press"], out["hover"]
    # normal force over max_force; hovering 0.01 above the dough still feels it a little: the grid couples
    # across about a cell (0.04)
    assert press[0] > 0.02 and abs(hover[0]) < 0.2 * press[0]
    assert press[6] < hover[6] - 0.05  # the dough's mean height, in units of travel
