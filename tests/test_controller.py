"""DiffTaichi's sine-feature MLP inside the mass-spring segment kernel: the same actions as
the controller written in torch, and gradients to its weights that match finite differences
and torch's own."""
import math

import numpy as np
import pytest
import torch

from diffsuite.envs import make_diff
from diffsuite.sims import adjoint, gradcheck, torch_ops
from diffsuite.sims.mass_spring import MassSpring

SPEC = dict(hidden=6, sines=3, omega=10.0, scale=0.05, goal=[0.9, 0.2], seed=1)
T = 12


@pytest.fixture(scope="module")
def pair(load_design):
    design = load_design("walker_a")
    return (MassSpring(design, num_worlds=2, segment=5, controller=SPEC),
            MassSpring(design, num_worlds=2, segment=5))


def _torch_controller(w, x, v, time):
    """The controller as DiffTaichi writes it, in torch: (B, N, 2) states -> (B, A) actions."""
    c = x.mean(1)
    j = torch.arange(SPEC["sines"], dtype=x.dtype)
    sines = torch.sin(SPEC["omega"] * time + 2 * math.pi * j / SPEC["sines"]).expand(x.shape[0], -1)
    objects = torch.cat([SPEC["scale"] * (x - c[:, None]), SPEC["scale"] * v], -1).flatten(1)
    goal = torch.as_tensor(SPEC["goal"], dtype=x.dtype) - c
    inputs = torch.cat([sines, objects, goal], -1)
    h = torch.tanh(torch.einsum("bhi,bi->bh", w["ctrl_w1"], inputs) + w["ctrl_b1"])
    return torch.tanh(torch.einsum("bah,bh->ba", w["ctrl_w2"], h) + w["ctrl_b2"])


def _weights(sim):
    return {k: torch.as_tensor(v).requires_grad_() for k, v in sim.get_params().items() if k.startswith("ctrl_")}


def test_in_kernel_controller_equals_the_torch_controller_and_its_gradients(pair):
    inner, outer = pair
    w = _weights(inner)
    x0, v0, clock = (torch.as_tensor(a) for a in inner.initial_state())
    u = 0.2 * torch.ones(2, T, inner.A, dtype=torch.float64)  # open-loop actions add to the controller's
    _, (x1, v1, c1) = torch_ops.rollout(inner, (x0, v0, clock), w, u)
    loss1 = -x1[:, 0, 0].sum() + (v1 ** 2).sum()
    g1 = torch.autograd.grad(loss1, list(w.values()))
    state = (x0, v0)
    for t in range(T):  # one substep per step, the controller in torch
        state = torch_ops.step(outer, state, u[:, t] + _torch_controller(w, *state, t * inner.dt))
    loss2 = -state[0][:, 0, 0].sum() + (state[1] ** 2).sum()
    g2 = torch.autograd.grad(loss2, list(w.values()))
    assert torch.allclose(x1, state[0], rtol=0, atol=1e-12) and torch.allclose(c1, torch.full_like(c1, T * inner.dt))
    for a, b in zip(g1, g2):
        assert torch.isfinite(a).all() and a.abs().max() > 0 and torch.allclose(a, b, rtol=1e-9, atol=1e-13)


def test_weight_gradients_match_finite_differences(pair):
    inner = pair[0]
    state0 = inner.initial_state()
    u = np.zeros((2, T, inner.A))
    w0 = {k: v for k, v in inner.get_params().items() if k.startswith("ctrl_")}

    def loss(q):
        _, final, _ = adjoint.forward(inner, state0, q.get("u", u), {k: q.get(k, w0[k]) for k in w0})
        return float(-final[0][:, 0, 0].sum() + (final[1] ** 2).sum())

    _, final, tape = adjoint.forward(inner, state0, u, w0)
    g_final = [np.zeros_like(final[0]), 2 * final[1], None]
    g_final[0][:, 0, 0] = -1.0
    _, gu, gp = adjoint.backward(inner, tape, None, g_final)
    inputs = {**w0, "u": u}
    grads = {**{k: gp[k] for k in w0}, "u": gu}
    assert gradcheck.directional_check(loss, inputs, grads) < 1e-6


def test_walker_env_trains_the_in_kernel_controller():
    """Through make_diff, the controller's weights get gradients from the episode's return."""
    env = make_diff("diffsuite/MassSpringWalker-v0", num_envs=2, max_steps=4, substeps=5,
                    controller=dict(hidden=8, sines=4))
    w = env.params["ctrl_w2"].clone().requires_grad_()
    env.params["ctrl_w2"] = w
    env.reset(seed=0)
    total = 0
    for _ in range(4):
        _, r, *_ = env.step(torch.zeros(2, env.task.action_dim, dtype=torch.float64))
        total = total + r.sum()
    (g,) = torch.autograd.grad(total, w)
    assert torch.isfinite(g).all() and g.abs().max() > 0


def test_bad_controller_keys_are_named(load_design):
    with pytest.raises(ValueError, match="unknown controller key"):
        MassSpring(load_design("walker_a"), controller={"hiden": 3})
    with pytest.raises(ValueError, match="'goal' must have 2"):
        MassSpring(load_design("walker_a"), controller={"goal": [1.0]})
