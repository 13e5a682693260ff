"""MassSpringWalker-v0 through its three faces: Gymnasium, vector, differentiable."""
import gymnasium as gym
from gymnasium.utils.env_checker import check_env
import numpy as np
import pytest
import torch

import diffsuite.envs
from diffsuite.envs import make_diff

ID = "diffsuite/MassSpringWalker-v0"


def test_gym_face_passes_check_env_and_renders():
    env = gym.make(ID, render_mode="rgb_array", max_steps=20)
    check_env(env.unwrapped, skip_render_check=False)
    obs, _ = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    frame = env.render()
    assert frame.shape == (256, 384, 3) and frame.dtype == np.uint8 and frame.std() > 10
    for _ in range(20):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert truncated and not terminated and np.isfinite(reward)


def test_reset_is_reproducible_from_a_seed():
    env = gym.make(ID, init_noise=0.01)
    a, _ = env.reset(seed=7)
    b, _ = env.reset(seed=7)
    c, _ = env.reset(seed=8)
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_vector_face_is_one_batched_simulator():
    env = gym.make_vec(ID, num_envs=3, max_steps=4)
    assert isinstance(env.unwrapped, diffsuite.envs.VecEnv) and env.unwrapped.diff.sim.B == 3
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3, env.single_observation_space.shape[0])
    same = np.tile(np.linspace(-1, 1, env.single_action_space.shape[0]), (3, 1))
    same[2] *= -1
    for t in range(4):
        obs, rew, term, trunc, info = env.step(same)
    assert np.allclose(info["final_obs"][0], info["final_obs"][1]) and not np.allclose(info["final_obs"][0], info["final_obs"][2])
    assert trunc.all() and info["_final_obs"].all()
    reset_obs, _ = env.reset(seed=0)
    assert np.allclose(obs, reset_obs)  # same-step autoreset returned the first observation


def _episode(env, actions, x0, k):
    env.params["stiffness"] = k
    obs, _ = env.reset(state=(x0, torch.zeros_like(x0)))
    total = 0
    for t in range(actions.shape[1]):
        obs, reward, _, _, info = env.step(actions[:, t])
        total = total + reward.sum() + 0.1 * obs.sum()
    return total


def test_diff_face_passes_gradcheck():
    env = make_diff(ID, num_envs=2, max_steps=3, substeps=4)
    g = torch.Generator().manual_seed(0)
    acts = (torch.rand(2, 3, env.task.action_dim, generator=g, dtype=torch.float64) - 0.5).requires_grad_()
    x0 = (torch.as_tensor(env.sim.initial_state()[0]) + 0.01).requires_grad_()
    k = env.params["stiffness"].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, x, s: _episode(env, a, x, s), (acts, x0, k),
                                    eps=1e-6, atol=1e-5, rtol=1e-4)


def test_detach_and_state_snapshots():
    env = make_diff(ID, num_envs=1, max_steps=10)
    env.reset(seed=0)
    a = torch.full((1, env.task.action_dim), 0.5, dtype=torch.float64, requires_grad=True)
    env.step(a)
    snap = env.get_state()
    env.detach()
    obs1, *_ = env.step(torch.zeros(1, env.task.action_dim, dtype=torch.float64))
    assert not obs1.requires_grad  # the graph back to `a` was cut
    env.set_state(snap)
    obs2, *_ = env.step(torch.zeros(1, env.task.action_dim, dtype=torch.float64))
    obs2.sum().backward()
    assert torch.allclose(obs1, obs2.detach()) and a.grad.abs().sum() > 0


@pytest.mark.parametrize("overrides, match", [
    ({"frction": 1.0}, "unknown config key 'frction'"),
    ({"ground": {"frction": 1.0}}, "unknown config key 'ground.frction'"),
    ({"substeps": 0}, "'substeps' must be a positive int"),
    ({"dt": 0.1}, "unstable dt=0.1"),
    ({"robot": "no_such_robot"}, "no config named 'no_such_robot'"),
    ({"robot": "cloth"}, "config key 'robot'.*no actuated springs"),
])
def test_bad_config_is_named(overrides, match):
    with pytest.raises(ValueError, match=match):
        make_diff(ID, **overrides)


def test_bad_actions_are_named():
    env = gym.make(ID)
    env.reset(seed=0)
    n = env.action_space.shape[0]
    with pytest.raises(ValueError, match=rf"shape \({n},\), got \(3,\)"):
        env.step(np.zeros(3))
    bad = np.zeros(n)
    bad[2] = np.nan
    with pytest.raises(ValueError, match=r"NaN/Inf at index \[2\]"):
        env.step(bad)
    denv = make_diff(ID, num_envs=2)
    denv.reset()
    with pytest.raises(ValueError, match=rf"shape \(2, {n}\)"):
        denv.step(torch.zeros(n))
    with pytest.raises(ValueError, match="NaN/Inf"):
        denv.step(torch.full((2, n), float("nan")))


def test_bad_gradient_clip_is_named():
    with pytest.raises(ValueError, match="clip must be None or a positive number .* got 0"):
        make_diff("diffsuite/MassSpringWalker-v0", clip=0)


@pytest.mark.parametrize("env_id", sorted(diffsuite.envs.TASKS))
def test_diff_face_has_the_spaces_of_a_vector_env(env_id):
    """Generic code sizes a policy from make_diff as from gymnasium.make_vec."""
    task = diffsuite.envs.TASKS[env_id]()
    env = diffsuite.envs.DiffEnv(task, num_envs=3)
    assert env.single_action_space.shape == (task.action_dim,)
    assert env.single_observation_space.shape == (task.obs_dim,)
    assert env.action_space.shape == (3, task.action_dim) and env.observation_space.shape == (3, task.obs_dim)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.shape == tuple(obs.shape)
    assert env.action_space.contains(env.action_space.sample())
    env.sim.free()
