"""The PyTorch bridge: torch.autograd.gradcheck in float64, re-entrancy, bad input."""
import pytest
import torch

from diffsuite.sims import torch_ops
from diffsuite.sims.mass_spring import MassSpring


@pytest.fixture(scope="module")
def sim(load_design):
    return MassSpring(load_design("walker_a"), num_worlds=2, segment=4)


def _inputs(sim, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0, v0 = (torch.as_tensor(a) for a in sim.initial_state())
    x0 = (x0 + 0.002 * torch.randn(x0.shape, generator=g, dtype=torch.float64)).requires_grad_()
    v0 = (0.1 * torch.randn(x0.shape, generator=g, dtype=torch.float64)).requires_grad_()
    act = (torch.rand(sim.B, steps, sim.A, generator=g, dtype=torch.float64) * 2 - 1).requires_grad_()
    k = torch.as_tensor(sim.get_params()["stiffness"]).requires_grad_()
    return x0, v0, act, k


def test_rollout_passes_gradcheck(sim):
    x0, v0, act, k = _inputs(sim, 3)
    def f(x0, v0, act, k):
        obs, final = torch_ops.rollout(sim, (x0, v0), {"stiffness": k}, act, substeps=3)
        return obs + final
    assert torch.autograd.gradcheck(f, (x0, v0, act, k), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_step_passes_gradcheck(sim):
    x0, v0, act, k = _inputs(sim, 1)
    f = lambda x0, v0, a, k: torch_ops.step(sim, (x0, v0), a, {"stiffness": k}, substeps=5)
    assert torch.autograd.gradcheck(f, (x0, v0, act[:, 0], k), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_steps_compose_like_a_rollout(sim):
    x0, v0, act, k = _inputs(sim, 4)
    obs, (xr, vr) = torch_ops.rollout(sim, (x0, v0), {"stiffness": k}, act, substeps=3)
    g_roll = torch.autograd.grad(xr[..., 0].sum() + obs[1].sum(), (x0, act, k))
    state, loss = (x0, v0), 0
    for t in range(4):
        state = torch_ops.step(sim, state, act[:, t], {"stiffness": k}, substeps=3)
        loss = loss + state[1].sum()
    g_step = torch.autograd.grad(state[0][..., 0].sum() + loss, (x0, act, k))
    assert torch.allclose(xr, state[0], atol=1e-12)
    for a, b in zip(g_roll, g_step):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-10)


def test_rollouts_are_reentrant(sim):
    """Two forward passes, then backward of the first: the second must not disturb it."""
    x0, v0, act, k = _inputs(sim, 3)
    _, (x_a, _) = torch_ops.rollout(sim, (x0, v0), {"stiffness": k}, act, substeps=2)
    g_ref, = torch.autograd.grad(x_a.sum(), act, retain_graph=True)
    _, (x_b, _) = torch_ops.rollout(sim, (x0, v0), {"stiffness": 2 * k}, -act, substeps=2)
    g_again, = torch.autograd.grad(x_a.sum(), act)
    assert torch.equal(g_ref, g_again) and not torch.allclose(x_a, x_b)


def test_bad_actions_are_refused(sim):
    x0, v0, act, k = _inputs(sim, 2)
    with pytest.raises(ValueError, match=r"shape \(B=2, \.\.\., A=11\)"):
        torch_ops.rollout(sim, (x0, v0), None, act[..., :3])
    bad = act.detach().clone()
    bad[1, 1, 4] = float("nan")
    with pytest.raises(ValueError, match=r"NaN/Inf \(first at index \[1, 1, 4\]\)"):
        torch_ops.rollout(sim, (x0, v0), None, bad)


def test_clip_bounds_the_state_gradient_and_bad_clip_is_named(sim):
    x0, v0, act, k = _inputs(sim, 4)
    _, (xr, _) = torch_ops.rollout(sim, (x0, v0), {"stiffness": k}, act, substeps=3)
    g_ref = torch.autograd.grad(xr.sum(), (x0, v0))
    norm = torch.sqrt(sum((g.reshape(sim.B, -1) ** 2).sum(1) for g in g_ref))
    _, (xc, _) = torch_ops.rollout(sim, (x0, v0), {"stiffness": k}, act, substeps=3, clip=0.1 * norm.min().item())
    g_clip = torch.autograd.grad(xc.sum(), (x0, v0))
    clipped = torch.sqrt(sum((g.reshape(sim.B, -1) ** 2).sum(1) for g in g_clip))
    assert clipped.max() <= 0.1 * norm.min() * (1 + 1e-12) and torch.isclose(clipped.max(), 0.1 * norm.min())
    state = torch_ops.step(sim, (x0, v0), act[:, 0], {"stiffness": k}, substeps=3, clip=1e-3)
    g_step = torch.autograd.grad(state[0].sum(), x0)[0]
    assert 0 < g_step.reshape(sim.B, -1).norm(dim=1).max() <= 1e-3 * (1 + 1e-12)
    with pytest.raises(ValueError, match="clip must be None or a positive number"):
        torch_ops.rollout(sim, (x0, v0), {"stiffness": k}, act, clip=-1.0)
