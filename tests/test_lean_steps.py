"""Lean steps (DESIGN 4): tape-free forwards with the state resident in the simulator, the
fused one-segment reverse, per-world resets and termination."""
import gymnasium as gym
import numpy as np
import pytest
import torch

from diffsuite.envs import WalkerTask, make_diff
from diffsuite.sims import torch_ops
from diffsuite.sims.mass_spring import MassSpring

ID = "diffsuite/MassSpringWalker-v0"


@pytest.fixture(scope="module")
def sim(load_design):
    return MassSpring(load_design("walker_a"), num_worlds=2, segment=4)


def _start(sim, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0, v0 = (torch.as_tensor(a) for a in sim.initial_state())
    return x0 + 0.002 * torch.randn(x0.shape, generator=g, dtype=torch.float64), 0.1 * torch.randn(
        x0.shape, generator=g, dtype=torch.float64)


def _actions(sim, steps, seed=1):
    return torch.rand(sim.B, steps, sim.A, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1


def test_lean_steps_equal_the_checkpointed_rollout(sim):
    """Resident steps (no reload between them) end where one engine rollout ends, bit for bit
    in float64, for steps shorter and longer than a segment."""
    for substeps in (3, 6):
        state0, act = _start(sim), _actions(sim, 5)
        _, (xr, vr) = torch_ops.rollout(sim, state0, None, act, substeps=substeps)
        state = state0
        with torch.no_grad():
            for t in range(5):
                state = torch_ops.step(sim, state, act[:, t], substeps=substeps)
        assert torch.equal(state[0], xr) and torch.equal(state[1], vr)


def test_a_foreign_or_changed_state_is_loaded_not_reused(sim):
    state0, act = _start(sim), _actions(sim, 2)
    with torch.no_grad():
        s1 = torch_ops.step(sim, state0, act[:, 0], substeps=3)
        ref = torch_ops.step(sim, tuple(s.clone() for s in s1), act[:, 1], substeps=3)
        s1 = torch_ops.step(sim, state0, act[:, 0], substeps=3)
        s1[0].add_(0.01)  # an in-place change of the resident state's tensor
        moved = torch_ops.step(sim, s1, act[:, 1], substeps=3)
        fresh = torch_ops.step(sim, tuple(s.clone() for s in s1), act[:, 1], substeps=3)
    assert not torch.equal(moved[0], ref[0]) and torch.equal(moved[0], fresh[0])


def test_fused_step_reverse_passes_gradcheck(sim):
    """substeps <= K takes the simulator's fused one-segment reverse (four launches)."""
    x0, v0 = (s.requires_grad_() for s in _start(sim))
    a = _actions(sim, 1)[:, 0].requires_grad_()
    k = torch.as_tensor(sim.get_params()["stiffness"]).requires_grad_()
    f = lambda x0, v0, a, k: torch_ops.step(sim, (x0, v0), a, {"stiffness": k}, substeps=3)
    assert torch.autograd.gradcheck(f, (x0, v0, a, k), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_fused_reverse_equals_the_engine_reverse(sim):
    state0, act = _start(sim), _actions(sim, 1)
    k = torch.as_tensor(sim.get_params()["stiffness"]).requires_grad_()
    x0, v0 = (s.clone().requires_grad_() for s in state0)
    a = act[:, 0].clone().requires_grad_()
    x, v = torch_ops.step(sim, (x0, v0), a, {"stiffness": k}, substeps=4)  # fused: 4 <= K
    g1 = torch.autograd.grad((x ** 2).sum() + v.sum(), (x0, v0, a, k))
    _, (x, v) = torch_ops.rollout(sim, (x0, v0), {"stiffness": k}, a[:, None], substeps=4)
    g2 = torch.autograd.grad((x ** 2).sum() + v.sum(), (x0, v0, a, k))
    for p, q in zip(g1, g2):
        assert torch.isfinite(p).all() and torch.allclose(p, q, rtol=1e-10, atol=1e-14)


def test_changed_parameters_reach_the_next_step(sim):
    state0, act = _start(sim), _actions(sim, 1)
    k = torch.as_tensor(sim.get_params()["stiffness"])
    with torch.no_grad():
        a = torch_ops.step(sim, state0, act[:, 0], {"stiffness": k}, substeps=3)
        k.data.mul_(0.5)  # through .data: no version bump, so the bridge compares values
        b = torch_ops.step(sim, state0, act[:, 0], {"stiffness": k}, substeps=3)
    _, (xr, _) = torch_ops.rollout(sim, state0, {"stiffness": k}, act, substeps=3)
    assert not torch.equal(a[0], b[0]) and torch.equal(b[0], xr)


def test_reset_mask_resets_only_those_worlds():
    env = make_diff(ID, num_envs=3, max_steps=50, init_noise=0.01)
    env.reset(seed=0)
    for _ in range(3):
        env.step(torch.full((3, env.task.action_dim), 0.5, dtype=torch.float64))
    before = tuple(s.clone() for s in env.state)
    mask = torch.tensor([False, True, False])
    env.reset(mask=mask)
    start = env.task.initial_state(env.sim, np.random.default_rng(123))[0]
    assert torch.equal(env.t, torch.tensor([3, 0, 3]))
    assert torch.equal(env.state[0][[0, 2]], before[0][[0, 2]]) and not torch.equal(env.state[0][1], before[0][1])
    assert np.allclose(env.state[0][1].numpy().mean(0), start[1].mean(0), atol=0.05)  # back near the rest pose
    with pytest.raises(ValueError, match="mask must have shape"):
        env.reset(mask=torch.tensor([True, False]))


class _FallingWalker(WalkerTask):
    """Ends a world's episode once its centre moves right faster than 2 cm/s."""

    def terminated(self, state):
        return state[1][..., 0].mean(-1) > 0.02


def test_per_world_termination_resets_only_the_ended_worlds():
    from diffsuite.envs import DiffEnv
    env = DiffEnv(_FallingWalker(max_steps=40), num_envs=2)
    obs, _ = env.reset(seed=0)
    push = torch.zeros(2, env.task.action_dim, dtype=torch.float64)
    ended = None
    for t in range(40):
        state_before = tuple(s.clone() for s in env.state)
        v = torch.zeros_like(env.state[1])
        v[0, :, 0] = 1.0  # world 0 moves right at 1 m/s: it terminates on its first step
        env.set_state({"state": (state_before[0], v), "t": env.t})
        obs, rew, term, trunc, info = env.step(push)
        if term.any():
            ended = (term.clone(), info, env.t.clone())
            break
    term, info, t_after = ended
    assert term.tolist() == [True, False]
    assert info["_final_obs"].tolist() == [True, False] and torch.isfinite(info["final_obs"]).all()
    assert t_after.tolist()[0] == 0 and t_after.tolist()[1] >= 1


def test_vector_face_resets_worlds_on_their_own():
    env = gym.make_vec(ID, num_envs=2, max_steps=3)
    env.reset(seed=0)
    env.unwrapped.diff.t = torch.tensor([1, 0])  # world 0 is one step ahead
    a = np.zeros((2, env.single_action_space.shape[0]))
    _, _, _, trunc, info = env.step(a)
    _, _, _, trunc, info = env.step(a)
    assert trunc.tolist() == [True, False] and info["_final_obs"].tolist() == [True, False]
    assert env.unwrapped.diff.t.tolist() == [0, 2]


def test_make_diff_keeps_tensors_on_the_chosen_device():
    env = make_diff(ID, num_envs=2, max_steps=5, device="cpu")
    obs, _ = env.reset(seed=0)
    obs, rew, term, trunc, _ = env.step(torch.zeros(2, env.task.action_dim, dtype=torch.float64))
    assert all(t.device.type == "cpu" for t in (obs, rew, term, trunc, *env.state))


def test_substeps_run_counts_what_really_runs(sim):
    """Forward T, then the backward's replays: every segment but the resident last one."""
    state0, act = _start(sim), _actions(sim, 3)
    before = sim.substeps_run
    _, (x, _) = torch_ops.rollout(sim, tuple(s.requires_grad_() for s in state0), None, act, substeps=3)
    forward = sim.substeps_run - before
    x.sum().backward()
    replay = sim.substeps_run - before - forward
    assert forward == 9 and replay == 9 - 1  # K = 4: segments 4, 4, 1; the last stays resident
    before = sim.substeps_run
    with torch.no_grad():
        torch_ops.step(sim, state0, act[:, 0], substeps=3)
    assert sim.substeps_run - before == 3


def test_f32_reverse_with_colliders_over_several_worlds_runs(tmp_path):
    """A regression: the serialized reverse of the collider kernel over 2 worlds crashed in f32."""
    import subprocess
    import sys
    code = ("import torch; from diffsuite.envs import make_diff\n"
            "env = make_diff('diffsuite/RopeShape-v0', num_envs=2, max_steps=3)\n"
            "env.reset(seed=0); a = torch.zeros(2, env.task.action_dim, requires_grad=True)\n"
            "total = sum(env.step(a)[1].sum() for _ in range(3)); total.backward()\n"
            "assert torch.isfinite(a.grad).all(); print('ok')\n")
    env = {**__import__("os").environ, "DIFFSUITE_FP": "f32"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]


def test_masked_reset_keeps_the_other_worlds_goals():
    env = make_diff("diffsuite/GoalWalker-v0", num_envs=3, max_steps=20)
    env.reset(seed=0)
    before = env.task.goal.clone()
    env.reset(mask=torch.tensor([True, False, False]))
    assert torch.equal(env.task.goal[1:], before[1:]) and not torch.equal(env.task.goal[0], before[0])
