"""Checkpointed adjoint engine: gradients over T substeps in O(K + T/K) state memory.

Forward stores only the state at each segment start. Backward walks the segments in
reverse: restore the checkpoint, recompute the segment, seed the state adjoints (the
loss gradients at the segment's frames plus the adjoint carried from the next segment),
and run each stage's reverse. The carried adjoint is frame 0's gradient. The last segment is still in the simulator's
fields when backward follows its own forward directly, and is then not replayed.

A simulator provides: B, K, state_names, units(n), shift(n), save(f), load(f, state),
frames(local), seed_grads(local, grads), frame_grad(f), set_controls(u), control_grad(n),
set_params(p), get_params(), zero_param_grads(), param_grads().
"""
from dataclasses import dataclass, field
import math
import os
import tempfile

import numpy as np


@dataclass
class Stage:
    """One kernel launch of a substep. Its reverse is `fn.grad(*args)` unless `grad` is given.

    `recompute` marks scratch stages (grids, contact lists) that the reverse of their unit
    reruns first, since their outputs are not stored per frame.
    """
    fn: object
    args: tuple = ()
    grad: object = None
    recompute: bool = False

    def forward(self):
        self.fn(*self.args)

    def backward(self):
        (self.grad or self.fn.grad)(*self.args)


def default_segment(T, frame_bytes=None, budget=64 * 2 ** 20):
    """Substeps per segment: about sqrt(T), or more when `budget` bytes hold more frames.

    Small systems are launch-bound: each segment costs a dozen launches, so when the
    frames (state + adjoint, `frame_bytes` each) of a longer segment fit in the budget,
    fewer, longer segments are faster at no memory cost worth counting."""
    K = max(1, math.ceil(math.sqrt(T)))
    if frame_bytes:
        K = max(K, min(T, int(budget // frame_bytes)))
    return K


@dataclass
class Tape:
    """What a forward pass keeps: checkpoints at segment starts, controls and parameters."""
    T: int
    every: int
    hold: int
    controls: np.ndarray
    params: dict
    checkpoints: list = field(default_factory=list)
    tmpdir: object = None

    def put(self, state):
        if self.tmpdir is None:
            self.checkpoints.append(state)
        else:
            path = os.path.join(self.tmpdir.name, f"ckpt{len(self.checkpoints)}.npz")
            np.savez(path, *state)
            self.checkpoints.append(path)

    def get(self, i):
        c = self.checkpoints[i]
        if isinstance(c, str):
            with np.load(c) as z:
                return tuple(z[f"arr_{j}"] for j in range(len(z.files)))
        return c


def _segments(T, K):
    return [(t0, min(K, T - t0)) for t0 in range(0, T, K)]


def forward(sim, init_state, controls, params=None, every=1, store="memory", hold=1):
    """Run T = controls.shape[1] * hold substeps from init_state, each control held `hold` substeps.

    Returns (outputs, final_state, tape): outputs[k] stacks state component k at the
    global frames every, 2*every, ..., shape (B, T // every, ...).
    """
    controls = np.array(controls)  # a copy: the caller may change its array before backward
    T = controls.shape[1] * hold
    if T % every:
        raise ValueError(f"horizon T={T} must be a multiple of every={every}")
    if store not in ("memory", "disk"):
        raise ValueError(f"store must be 'memory' or 'disk', got {store!r}")
    if params is not None:
        sim.set_params(params)
    tape = Tape(T, every, hold, controls, sim.get_params(),  # copies of what the fields now hold
                tmpdir=tempfile.TemporaryDirectory(prefix="diffsuite-ckpt-") if store == "disk" else None)
    name = type(sim).__name__
    for k, s in zip(sim.state_names, init_state):
        if not np.isfinite(s).all():
            raise ValueError(f"{name} initial state {k!r} has non-finite values")
    sim.load(0, init_state)
    outs = [[] for _ in sim.state_names]
    segs = _segments(T, sim.K)
    for i, (t0, n) in enumerate(segs):
        state = sim.save(0)
        tape.put(_finite(state, name, t0) if i else state)  # the initial state was checked above
        sim.set_controls(controls[:, (t0 + np.arange(n)) // hold])
        run(sim.units(n))
        count(sim, n)
        local = _frames_with_outputs(t0, n, every)
        if local:
            for o, arr in zip(outs, sim.frames(local)):
                o.append(arr)
        if i + 1 < len(segs):
            sim.shift(n)
    final = _finite(sim.save(segs[-1][1]), name, T)
    sim._resident = (tape, sim.writes)  # the last segment's frames, valid while nothing writes the fields
    outputs = [np.concatenate(o, axis=1) if o else None for o in outs]
    return outputs, final, tape


def run(units):
    """Run a segment's stages forward, in order."""
    for unit in units:
        for st in unit:
            st.forward()


def reverse(units):
    """Reverse a segment's stages, last unit first; a unit's scratch stages are recomputed first."""
    for unit in reversed(units):
        for st in unit:
            if st.recompute:
                st.forward()
        for st in reversed(unit):
            st.backward()


def count(sim, n):
    """Add n simulated substeps (per world) to the simulator's running total, `substeps_run`:
    what budgets count, replays of the backward pass included (scratch recomputes are not substeps)."""
    sim.substeps_run = getattr(sim, "substeps_run", 0) + n


def _finite(state, name, t):
    """state, or a FloatingPointError if the simulation diverged before substep t."""
    if not all(np.isfinite(np.sum(c)) for c in state):  # one pass, no mask: a NaN or Inf anywhere shows in the sum
        raise FloatingPointError(f"{name} diverged: the state is non-finite by substep {t} (dt too large for "
                                 "the material, or actions or parameters out of the stable range)")
    return state


def _frames_with_outputs(t0, n, every):
    """Local frames f in 1..n whose global index t0 + f is a multiple of every."""
    first = (-t0) % every or every
    return list(range(first, n + 1, every))


def backward(sim, tape, grad_outputs=None, grad_final=None, name=None, clip=None):
    """Adjoints of a forward pass.

    grad_outputs: per state component, an array like the outputs (or None);
    grad_final: per state component, an array like the final state (or None).
    clip: None raises on a non-finite adjoint. A number instead zeroes non-finite entries
    and, at every checkpoint, scales each world's adjoint state down to at most that L2 norm
    (clipped backpropagation through time, for chaotic horizons: a biased gradient rather
    than none).
    Returns (grad_init_state, grad_controls like the controls, grad_params dict).
    """
    name = name or type(sim).__name__
    T, every, hold = tape.T, tape.every, tape.hold
    resident = getattr(sim, "_resident", None)
    reuse = resident is not None and resident[0] is tape and resident[1] == sim.writes
    sim._resident = None
    if not reuse:  # (when reused, the fields still hold the tape's parameters)
        sim.set_params(tape.params)
    sim.zero_param_grads()
    carry = [np.zeros_like(s, dtype=np.float64) for s in tape.get(0)]
    pad = lambda g: None if g is None else list(g) + [None] * (len(carry) - len(g))  # trailing Nones optional
    grad_final, grad_outputs = pad(grad_final), pad(grad_outputs)
    if grad_final is not None:
        carry = [c + (0 if g is None else np.asarray(g, dtype=np.float64)) for c, g in zip(carry, grad_final)]
    grad_u = np.zeros(tape.controls.shape, dtype=np.float64)
    segs = _segments(T, sim.K)
    for i in reversed(range(len(segs))):
        t0, n = segs[i]
        idx = (t0 + np.arange(n)) // hold
        units = sim.units(n)
        if not (reuse and i == len(segs) - 1):  # replay the segment from its checkpoint
            sim.load(0, tape.get(i))
            sim.set_controls(tape.controls[:, idx])
            run(units)
            count(sim, n)
        sim.seed_grads(*_seed(carry, grad_outputs, t0, n, every))
        reverse(units)
        carry = [g.astype(np.float64) for g in sim.frame_grad(0)]
        seg_u = sim.control_grad(n)
        if clip is not None:
            carry, seg_u = _clip(carry, clip), _zero_nonfinite(seg_u)
        np.add.at(grad_u, (slice(None), idx), seg_u)
        if not all(np.isfinite(c).all() for c in carry):
            raise FloatingPointError(f"non-finite gradient in {name} reverse of substeps {t0}..{t0 + n}")
    grads_p = sim.param_grads()
    if clip is not None:
        grads_p = {k: _zero_nonfinite(g) for k, g in grads_p.items()}
    if not all(np.isfinite(g).all() for g in grads_p.values()) or not np.isfinite(grad_u).all():
        raise FloatingPointError(f"non-finite parameter or control gradient in {name}")
    return carry, grad_u, grads_p


def _zero_nonfinite(a):
    return np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)


def _clip(carry, max_norm):
    """Adjoint state with non-finite entries zeroed and each world's norm at most max_norm."""
    carry = [_zero_nonfinite(c) for c in carry]
    norm = np.sqrt(sum((c.reshape(len(c), -1) ** 2).sum(1) for c in carry))
    scale = np.minimum(1.0, max_norm / np.maximum(norm, 1e-300))
    return [c * scale.reshape((-1,) + (1,) * (c.ndim - 1)) for c in carry]


def _seed(carry, grad_outputs, t0, n, every):
    """The segment's local frames that receive adjoints, and those adjoints (B, frames, ...)."""
    local = _frames_with_outputs(t0, n, every) if grad_outputs is not None else []
    if n not in local:
        local = local + [n]
    grads = []
    for k, c in enumerate(carry):
        g = np.zeros((c.shape[0], len(local)) + c.shape[1:])
        g[:, local.index(n)] += c
        if grad_outputs is not None and grad_outputs[k] is not None:
            out_local = _frames_with_outputs(t0, n, every)
            idx = [(t0 + f) // every - 1 for f in out_local]
            g[:, [local.index(f) for f in out_local]] += np.asarray(grad_outputs[k])[:, idx]
        grads.append(g)
    return local, grads
