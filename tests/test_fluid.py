"""FluidTransport-v0 (water carried in a kinematic cup): faces, spill physics, gradients (coarse)."""
import gymnasium as gym
from gymnasium.utils.env_checker import check_env
import numpy as np
import pytest
import torch

import diffsuite.envs
from diffsuite.envs import FluidTransportTask, make_diff
from diff_face import gradcheck_episode

ID = "diffsuite/FluidTransport-v0"
# 32 cells: the cup's walls two cells thick, the water 8 x 3 particles
COARSE = dict(n_grid=32, particle_spacing=1 / 64, max_steps=3, substeps=5)


def test_gym_face_passes_check_env_and_renders():
    env = gym.make(ID, render_mode="rgb_array", **COARSE)
    check_env(env.unwrapped, skip_render_check=False)
    assert env.action_space.shape == (2,) and env.observation_space.shape == (10,)
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (256, 384, 3) and frame.dtype == np.uint8 and frame.std() > 10


def test_vector_face_steps_both_worlds_in_one_simulator():
    env = gym.make_vec(ID, num_envs=2, **COARSE)
    assert isinstance(env.unwrapped, diffsuite.envs.VecEnv) and env.unwrapped.diff.sim.B == 2
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2, 10)
    for _ in range(3):
        obs, rew, term, trunc, info = env.step(np.array([[1.0, 0.0], [-1.0, 0.0]]))
    assert trunc.all() and not term.any() and info["_final_obs"].all()
    cup_x = info["final_obs"][:, 0]
    assert cup_x[0] > obs[0, 0] > cup_x[1]  # one cup went right, one left; both reset
    assert rew[0] > rew[1]  # right is toward the target


@pytest.fixture(scope="module")
def env():
    """One world of the default task, 15 steps (0.3 s), its simulator shared by the physics tests."""
    return diffsuite.envs.DiffEnv(FluidTransportTask(max_steps=15), num_envs=1, autoreset=False)


def _episode(env, velocities):
    """Return, the largest spilled fraction and the last state following cup velocities (steps, 2)."""
    env.reset(seed=0)
    total, spill = 0.0, 0.0
    with torch.no_grad():
        for a in velocities:
            obs, r, *_ = env.step(torch.as_tensor(np.asarray(a, float)[None], dtype=env.dtype))
            total, spill = total + r.item(), max(spill, obs[0, 8].item())
    return total, spill, tuple(s[0] for s in env.state)


def test_held_still_the_water_stays_in_the_cup(env):
    total, spill, (x, *_) = _episode(env, [[0.0, 0.0]] * 15)
    task, h = env.task, env.task.cfg["particle_spacing"]
    c = torch.tensor(task.cfg["cup"]["position"], dtype=x.dtype)
    # the soft contact band lets the water's weight press it a fraction of a spacing into the walls
    assert ((x[:, 0] - c[0]).abs() < task.half_inner + h).all() and (x[:, 1] > c[1] - h).all()
    assert spill == 0 and abs(total) < 0.01  # the water only settles


def test_a_smooth_carry_beats_standing_still_and_a_jerk_spills(env):
    still, *_ = _episode(env, [[0.0, 0.0]] * 15)
    ramp = np.stack([np.linspace(0.2, 1.0, 15), np.zeros(15)], 1)
    carried, carried_spill, _ = _episode(env, ramp)
    assert carried > still + 0.3 and carried_spill < 0.01
    _, jerk_spill, _ = _episode(env, [[1.0, 0.0]] * 8 + [[-1.0, 0.0]] * 7)  # full speed, then reverse
    assert jerk_spill > 0.05


def test_spill_counts_water_past_the_walls_and_below_the_bottom(env):
    task = env.task
    pose = torch.as_tensor(env.sim.initial_state()[4][0])
    c, w, t = torch.tensor(task.cfg["cup"]["position"]), task.half_inner, task.thick
    pts = torch.stack([c, c + torch.tensor([w + 0.4 * t, 0.01]), c + torch.tensor([-w - 1.1 * t, 0.01]),
                       c - torch.tensor([0.0, 1.1 * t])]).double()
    per_point = [task.spilled(p[None], pose).item() for p in pts]
    assert per_point[0] == 0 and per_point[1] == 0 and per_point[2] == 1 and per_point[3] == 1


def test_diff_face_passes_gradcheck():
    env = make_diff(ID, num_envs=1, **COARSE)
    assert gradcheck_episode(env, [0.6, 0.4], 3, "viscosity", nondet_tol=1e-9)  # P2G's parallel float atomics sum in any order


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="'max_speed' needs 2 numbers"):
        FluidTransportTask(max_speed=[1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="'water_depth'"):
        FluidTransportTask(water_depth=0.2)
    with pytest.raises(ValueError, match="unknown config key 'cup.height'"):
        FluidTransportTask(cup={"height": 0.1})
