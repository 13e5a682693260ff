"""RopeShape-v0: a kinematic mass-spring collider pushes a rope; faces, physics, gradients."""
import gymnasium as gym
from gymnasium.utils.env_checker import check_env
import numpy as np
import torch

from diffsuite.envs import RopeShapeTask, make_diff
from diff_face import gradcheck_episode

SHORT = dict(max_steps=4, substeps=5)


def test_gym_and_vector_faces():
    env = gym.make("diffsuite/RopeShape-v0", render_mode="rgb_array", **SHORT)
    check_env(env.unwrapped, skip_render_check=False)
    env.reset(seed=0)
    assert env.render().std() > 10
    vec = gym.make_vec("diffsuite/RopeShape-v0", num_envs=2, **SHORT)
    obs, _ = vec.reset(seed=0)
    obs2, rew, term, trunc, _ = vec.step(np.array([[0.0, 1.0], [0.0, -1.0]], np.float32))
    assert obs.shape == (2, vec.unwrapped.task.obs_dim) and rew[0] != rew[1]


def test_pushing_the_middle_forward_bends_the_rope_toward_the_arc():
    """The pusher moves as told, the rope's middle follows it (contact), its ends stay
    behind (friction holds them), and the distance to the arc shrinks; no push, no change."""
    task = RopeShapeTask(max_steps=20)
    env = make_diff("diffsuite/RopeShape-v0", max_steps=20)
    out = {}
    for name, a in (("push", [0.0, 1.0]), ("still", [0.0, 0.0])):
        env.reset()
        x0, ret = env.state[0][0].clone(), 0.0
        for _ in range(20):
            _, r, _, _, info = env.step(torch.tensor([a]))
            ret += r.item()
        x, _, pose = info["final_state"]  # the episode's end, before the automatic reset
        out[name] = ret, (x[0] - x0)[:, 2], pose[0, 0]
    assert out["push"][0] > 0.2 and abs(out["still"][0]) < 0.02 * out["push"][0]  # settling only
    _, dz, pose = out["push"]
    travel = 20 * task.substeps * task.cfg["dt"] * task.cfg["max_speed"][1]
    assert np.isclose(pose[2].item() - task.cfg["tools"][0]["position"][2], travel)
    mid = dz[task.N // 2].item()
    # the bar carries the middle part of the way (the rope slips around its ends, the contact band
    # lets some through), the ends stay behind: the rope bends
    assert 0.3 * travel < mid < travel and dz[0].item() < 0.5 * mid and dz[-1].item() < 0.5 * mid


def test_diff_face_passes_gradcheck():
    env = make_diff("diffsuite/RopeShape-v0", **SHORT)
    assert gradcheck_episode(env, [0.0, 1.0], 4, "stiffness", atol=1e-6, rtol=1e-5)