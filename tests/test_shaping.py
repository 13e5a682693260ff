"""Shaping envs (PlasticinePress, PlasticinePinch, SandPush): faces, shape distance, gradients (coarse)."""
import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env
import pytest
import torch

from diffsuite.envs import ShapingTask, make_diff
from diff_face import gradcheck_episode

COARSE = dict(particle_spacing=1 / 40, max_steps=3, substeps=5)


@pytest.mark.parametrize("name, tools", [("PlasticinePress", 1), ("PlasticinePinch", 2), ("SandPush", 1)])
def test_gym_face_and_render(name, tools):
    env = gym.make(f"diffsuite/{name}-v0", render_mode="rgb_array", **COARSE)
    check_env(env.unwrapped, skip_render_check=False)
    assert env.action_space.shape == (3 * tools,)
    env.reset(seed=0)
    assert env.render().std() > 10


def test_shape_distance_is_zero_on_target_and_grows_with_offset():
    task = ShapingTask()
    t = task.target.clone()
    d0 = task.distance(t[None])
    assert d0.item() < 0.02 * task.distance((t + 0.05)[None]).item()
    assert task.distance((t + 0.02)[None]).item() < task.distance((t + 0.05)[None]).item()


def test_pressing_down_flattens_toward_the_target():
    env = make_diff("diffsuite/PlasticinePress-v0", num_envs=1, **{**COARSE, "max_steps": 12})
    env.reset()
    total = 0
    for _ in range(12):
        _, r, *_ = env.step(torch.tensor([[0.0, -1.0, 0.0]]))
        total += r.item()
    assert total > 0  # the distance to the flat target shrank


def test_diff_face_passes_gradcheck():
    env = make_diff("diffsuite/PlasticinePress-v0", num_envs=1, **COARSE)
    assert gradcheck_episode(env, [0.1, -1.0, 0.3], 3, "yield_stress", nondet_tol=1e-9)  # P2G's parallel float atomics sum in any order


def test_bad_max_speed_is_named():
    with pytest.raises(ValueError, match="'max_speed' needs 3 numbers"):
        ShapingTask(max_speed=[1.0, 1.0])


def test_3d_press_steps_and_flattens_toward_the_target():
    """dim: 3: 6 velocities per tool, quaternion poses in the observation, a 3D press config."""
    env = make_diff("diffsuite/PlasticinePress-v0", num_envs=1, config="plasticine_press_3d",
                    particle_spacing=0.04, max_steps=6, substeps=5)
    assert env.single_action_space.shape == (6,) and env.single_observation_space.shape == (2 * 3 + 7 + 1,)
    env.reset()
    total = 0
    for _ in range(6):
        _, r, _, _, info = env.step(torch.tensor([[0.0, -1.0, 0.0, 0.0, 0.0, 0.0]]))
        total += r.item()
    obs, state = info["final_obs"], info["final_state"]  # the episode's end, before the automatic reset
    assert torch.isfinite(obs).all() and total > 0
    assert np.isclose(obs[0, 6 + 1].item(), 0.34 - 6 * 5 * 0.001 * 0.5)  # the tool went down as told
    assert env.task.draw(tuple(s[0].numpy() for s in state)).std() > 10
    with pytest.raises(ValueError, match="'max_speed' needs 6 numbers"):
        ShapingTask(config="plasticine_press_3d", max_speed=[1.0, 1.0, 1.0])
