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

    state: tuple of tensors (one per sim.state_names); params: dict name -> tensor; the
    names it lacks (or all, for None) take the simulator's current values. Returns (observations, final_state): tuples of
    tensors, observations stacking the state after every action, shape (B, steps, ...).
    Gradients flow to state, actions and params through the checkpointed engine; clip
    (a number) clips the adjoint state's norm per world at each checkpoint instead of
    raising on NaN/Inf (adjoint.backward).
    """
    _check_actions(sim, actions)
    check_clip(clip)
    params = _complete(sim, params, actions)
    flat = _Rollout.apply(sim, substeps, store, clip, *state, actions, *[params[k] for k in sim.param_names])
    n = len(sim.state_names)
    return flat[:n], flat[n:]


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, sim, substeps, clip, *flat):
        state, action, params = _split(sim, flat)
        ctx.sim, ctx.substeps, ctx.clip = sim, substeps, clip
        ctx.save_for_backward(*flat)  # torch refuses the backward if any of them changes in place
        _set_params(sim, params)
        if _fused(sim, substeps):  # no tape: the backward replays the step from the saved state
            return _lean(sim, state, action[:, None].to("cpu"), substeps, action.device)
        _, final, ctx.tape = adjoint.forward(sim, [_np(s) for s in state], _np(action)[:, None], every=substeps,
                                             hold=substeps)
        return tuple(torch.as_tensor(np.asarray(f), dtype=action.dtype, device=action.device) for f in final)

    @staticmethod
    def backward(ctx, *grads):
        sim, substeps, clip = ctx.sim, ctx.substeps, ctx.clip
        flat = ctx.saved_tensors
        state, action, params = _split(sim, flat)
        ref = next(g for g in grads if g is not None)
        if _fused(sim, substeps):
            _set_params(sim, params)
            g_state, g_u, g_p = _segment_grad(sim, state, action, substeps, grads, clip)
        else:
            g_state, g_u, g_p = adjoint.backward(sim, ctx.tape, None, [None if g is None else _np(g) for g in grads],
                                                 clip=clip)
            g_u = g_u[:, 0]
        like = lambda a, shape: _sum_to(torch.as_tensor(a, dtype=ref.dtype).to(ref.device), shape)
        return (None, None, None, *[like(g, s.shape) for g, s in zip(g_state, state)], like(g_u, action.shape),
                *[like(g_p[k], p.shape) for k, p in zip(sim.param_names, params)])


def _fused(sim, substeps):
    """Whether a step runs lean forward and reverses through the simulator's fused one-segment
    path (a framed-state simulator and a step within one segment); else the engine's tape."""
    return hasattr(sim, "segment_grad") and substeps <= sim.K


def _lean(sim, state, u, hold, device):
    """The step's forward with no tape: the state stays resident in the simulator's frame 0."""
    held = getattr(sim, "_held", None)
    if not (held is not None and held[1] == sim.writes and len(held[0]) == len(state)
            and all(a is b and a._version == v for a, b, v in zip(state, held[0], held[2]))):
        sim.load(0, [_np(s) for s in state])
    sim._held = None
    out = sim.flat_buffer(u)
    sim.advance(u, hold, out)
    if not torch.isfinite(out.sum()):  # one reduction: a NaN/Inf anywhere shows in the sum
        raise FloatingPointError(f"{type(sim).__name__} diverged: the state is non-finite after this step "
                                 "(dt too large for the material, or actions or parameters out of the stable range)")
    final = sim.split(out) if device.type == "cpu" else tuple(c.to(device) for c in sim.split(out))
    sim._held = (final, sim.writes, tuple(c._version for c in final))
    return final


def _segment_grad(sim, state, action, substeps, grads, clip):
    """One step's adjoints through the simulator's fused single-segment reverse."""
    seed = torch.cat([(torch.zeros_like(s) if g is None else g).detach().to("cpu", s.dtype).reshape(sim.B, -1)
                      for s, g in zip(state, grads)], 1)
    flat0 = torch.cat([s.detach().to("cpu").reshape(sim.B, -1) for s in state], 1)
    g_state, g_u, g_p = sim.segment_grad(flat0, action.detach().to("cpu")[:, None], substeps, seed)
    if clip is not None:  # the engine's rule: per world at this (the only) checkpoint
        g_state = torch.from_numpy(adjoint._clip([g_state.numpy()], clip)[0])
        g_u, g_p = (torch.from_numpy(adjoint._zero_nonfinite(g.numpy())) for g in (g_u, g_p))
    elif not torch.isfinite(g_state.sum() + g_u.sum() + g_p.sum()):  # one reduction: a NaN/Inf shows in the sum
        raise FloatingPointError(f"non-finite gradient in {type(sim).__name__} reverse of substeps 0..{substeps}")
    return sim.split(g_state), g_u[:, 0], sim.param_dict(g_p)


def _sum_to(g, shape):
    """A gradient summed down to the shape its input had (parameters may be broadcast)."""
    if tuple(g.shape) == tuple(shape):
        return g
    lead = g.dim() - len(shape)
    g = g.sum(tuple(range(lead))) if lead > 0 else g
    keep = [i for i, (a, b) in enumerate(zip(g.shape, shape)) if b == 1 and a != 1]
    return (g.sum(keep, keepdim=True) if keep else g).reshape(shape)


def step(sim, state, action, params=None, substeps=1, clip=None):
    """One env step: action (B, A) held for `substeps` substeps. Returns the next state tuple.

    Forward keeps no tape: the state stays resident in the simulator, so a chain of steps
    loads it only once. Backward reloads the step's input state, recomputes the step and
    reverses it, so torch holds one state per step. With no gradient wanted (torch.no_grad(),
    or no input that requires one) the autograd machinery is skipped. clip: as in rollout.
    """
    _check_actions(sim, action)
    check_clip(clip)
    params = _complete(sim, params, action)
    plist = [params[k] for k in sim.param_names]
    if hasattr(sim, "advance") and not (torch.is_grad_enabled() and any(
            t.requires_grad for t in (*state, action, *plist))):
        _set_params(sim, plist)
        return _lean(sim, state, action[:, None].to("cpu"), substeps, action.device)
    return _Step.apply(sim, substeps, clip, *state, action, *plist)


def _set_params(sim, tensors):
    """Upload parameters unless the values last uploaded are these (compared by value: an
    in-place change through .data keeps a tensor's version counter)."""
    last, current = getattr(sim, "_param_src", None), getattr(sim, "_params", None)
    if last is not None and current is not None and all(current.get(k) is a for k, a in zip(sim.param_names, last[1])) \
            and all(torch.equal(a.detach(), b) for a, b in zip(tensors, last[0])):
        return
    sim.set_params({k: _np(v) for k, v in zip(sim.param_names, tensors)})
    if current is not None:
        sim._param_src = (tuple(t.detach().clone() for t in tensors), tuple(current[k] for k in sim.param_names))


def _complete(sim, params, like):
    """params (a dict, maybe partial, or None) with the simulator's current values for the
    names it lacks; unknown names are refused."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(sim.param_names))
    if unknown:
        raise ValueError(f"{type(sim).__name__}: unknown parameter(s) {unknown}; allowed {list(sim.param_names)}")
    missing = [k for k in sim.param_names if k not in params]
    if missing:
        current = sim.get_params()
        params.update({k: torch.as_tensor(current[k], dtype=like.dtype, device=like.device) for k in missing})
    return params
