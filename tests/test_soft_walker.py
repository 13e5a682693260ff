"""SoftWalker-v0 (MLS-MPM) through its three faces, on a coarse grid."""
import gymnasium as gym
from gymnasium.utils.env_checker import check_env
import numpy as np
import pytest
import torch

from diffsuite.envs import make_diff

ID = "diffsuite/SoftWalker-v0"
COARSE = dict(n_grid=32, particle_spacing=1 / 32, offset=[0.1, 0.1], max_steps=3, substeps=4)


def test_gym_and_vector_faces():
    env = gym.make(ID, render_mode="rgb_array", **COARSE)
    check_env(env.unwrapped, skip_render_check=False)
    env.reset(seed=0)
    assert env.render().std() > 10
    vec = gym.make_vec(ID, num_envs=2, **COARSE)
    obs, _ = vec.reset(seed=0)
    for _ in range(3):
        obs, rew, term, trunc, info = vec.step(np.array([[1, -1, 1, -1], [-1, 1, -1, 1.0]]))
    assert vec.unwrapped.diff.sim.B == 2 and trunc.all() and not np.allclose(info["final_obs"][0], info["final_obs"][1])


def test_diff_face_passes_gradcheck():
    env = make_diff(ID, num_envs=1, **COARSE)
    g = torch.Generator().manual_seed(0)
    acts = (torch.rand(1, 3, 4, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_()
    E = env.params["E"].clone().requires_grad_()

    def episode(a, E):
        env.params["E"] = E
        obs, _ = env.reset()
        total = 0
        for t in range(3):
            obs, r, *_ = env.step(a[:, t])
            total = total + r.sum() + 0.1 * obs.sum()
        return total
    assert torch.autograd.gradcheck(episode, (acts, E), eps=1e-6, atol=1e-5, rtol=1e-4,
                                    nondet_tol=1e-9)  # P2G's parallel float atomics sum in any order


@pytest.mark.parametrize("overrides, match", [
    ({"blocks": [[0.0, 0.0, 0.1, 0.1]]}, r"'blocks\[0\]' needs 5 numbers"),
    ({"material": {"kind": "jelly"}}, r"materials\[0\]\.kind"),
    ({"offset": [0.1, 0.0]}, "particles must lie inside"),
    ({"n_grid": 0}, "'n_grid' must be a positive int"),
])
def test_bad_config_is_named(overrides, match):
    with pytest.raises(ValueError, match=match):
        make_diff(ID, **{**COARSE, **overrides})


def test_task_classes_take_a_config_by_name_as_trajopt_passes_it():
    from diffsuite.envs import TASKS
    task = TASKS["diffsuite/SoftWalker-v0"](config="soft_walker_3d", max_steps=4)
    assert task.dim == 3 and task.max_steps == 4
    assert TASKS["diffsuite/PlasticinePinch-v0"](config="sand_push").cfg["material"]["kind"] == "sand"
