"""PyTorch faces of a simulator: a checkpointed rollout and a single env step.

Both are torch.autograd.Functions over the adjoint engine. Nothing is aliased between
torch and Taichi: tensors are copied in and out, and Taichi gradients are zeroed by the
engine before every backward. Actions are held for `substeps` substeps each.
"""
import numpy as np
import torch

from . import adjoint


def _np(t):
    return t.detach().cpu().numpy().astype(np.float64)


def _check_actions(sim, actions):
    if actions.shape[0] != sim.B or actions.shape[-1] != sim.A:
        raise ValueError(f"actions must have shape (B={sim.B}, ..., A={sim.A}), got {tuple(actions.shape)}")
    if not torch.isfinite(actions).all():
        bad = torch.nonzero(~torch.isfinite(actions))[0].tolist()
        raise ValueError(f"actions contain NaN/Inf (first at index {bad})")


def check_clip(clip):
    if clip is not None and not (isinstance(clip, (int, float)) and not isinstance(clip, bool) and clip > 0):
        raise ValueError(f"clip must be None or a positive number (the adjoint's largest norm), got {clip!r}")


def _split(sim, flat):
    n = len(sim.state_names)
    return flat[:n], flat[n], flat[n + 1:]


class _Rollout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, sim, substeps, store, clip, *flat):
        state, actions, params = _split(sim, flat)
        p = {k: _np(v) for k, v in zip(sim.param_names, params)}
        outs, final, tape = adjoint.forward(sim, [_np(s) for s in state], _np(actions), p, every=substeps,
                                            store=store, hold=substeps)
        ctx.sim, ctx.tape, ctx.clip = sim, tape, clip
        like = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=actions.dtype, device=actions.device)
        return tuple(like(o) for o in outs) + tuple(like(f) for f in final)

    @staticmethod
    def backward(ctx, *grads):
        sim, n = ctx.sim, len(ctx.sim.state_names)
        g_out = [None if g is None else _np(g) for g in grads[:n]]
        g_fin = [None if g is None else _np(g) for g in grads[n:]]
        g_state, g_act, g_p = adjoint.backward(sim, ctx.tape, g_out, g_fin, clip=ctx.clip)
        ref = grads[0] if grads[0] is not None else grads[n]
        like = lambda a: torch.as_tensor(a, dtype=ref.dtype, device=ref.device)
        return (None, None, None, None, *[like(g) for g in g_state], like(g_act),
                *[like(g_p[k]) for k in sim.param_names])


def rollout(sim, state, params, actions, substeps=1, store="memory", clip=None):
    """Simulate actions of shape (B, steps, A), each held for `substeps` substeps.

    state: tuple of tensors (one per sim.state_names); params: dict name -> tensor, or
    None for the simulator's current values. Returns (observations, final_state): tuples of
    tensors, observations stacking the state after every action, shape (B, steps, ...).
    Gradients flow to state, actions and params through the checkpointed engine; clip
    (a number) clips the adjoint state's norm per world at each checkpoint instead of
    raising on NaN/Inf (adjoint.backward).
    """
    _check_actions(sim, actions)
    check_clip(clip)
    params = params if params is not None else _current_params(sim, actions)
    flat = _Rollout.apply(sim, substeps, store, clip, *state, actions, *[params[k] for k in sim.param_names])
    n = len(sim.state_names)
    return flat[:n], flat[n:]


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, sim, substeps, clip, *flat):
        state, action, params = _split(sim, flat)
        p = {k: _np(v) for k, v in zip(sim.param_names, params)}
        _, final, tape = adjoint.forward(sim, [_np(s) for s in state], _np(action)[:, None], p,
                                         every=substeps, hold=substeps)
        ctx.sim, ctx.tape, ctx.clip = sim, tape, clip
        return tuple(torch.as_tensor(np.asarray(f, dtype=np.float64), dtype=action.dtype, device=action.device)
                     for f in final)

    @staticmethod
    def backward(ctx, *grads):
        sim = ctx.sim
        g_state, g_u, g_p = adjoint.backward(sim, ctx.tape, None, [None if g is None else _np(g) for g in grads],
                                             clip=ctx.clip)
        ref = next(g for g in grads if g is not None)
        like = lambda a: torch.as_tensor(a, dtype=ref.dtype, device=ref.device)
        return (None, None, None, *[like(g) for g in g_state], like(g_u[:, 0]),
                *[like(g_p[k]) for k in sim.param_names])


def step(sim, state, action, params=None, substeps=1, clip=None):
    """One env step: action (B, A) held for `substeps` substeps. Returns the next state tuple.

    Forward keeps only the input state; backward reloads it, recomputes the step and
    reverses it, so torch holds one state per step. clip: as in rollout.
    """
    _check_actions(sim, action)
    check_clip(clip)
    params = params if params is not None else _current_params(sim, action)
    return _Step.apply(sim, substeps, clip, *state, action, *[params[k] for k in sim.param_names])


def _current_params(sim, like):
    return {k: torch.as_tensor(v, dtype=like.dtype, device=like.device) for k, v in sim.get_params().items()}
