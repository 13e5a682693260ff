"""The framed-state base every simulator builds on (DESIGN section 3).

A simulator declares its state components (name, items per world, per-item shape) and its
parameters (name, per-world shape) once, in `_fields`. From that declaration come the
adjoint engine's frame I/O (save, load, frames, seed_grads, frame_grad, shift, one kernel
launch each), the per-substep controls, and the parameter API (set, get, zero, grads) with
name, shape and value checks.

Every write to the primal fields (load, shift, set_controls, set_params) bumps `writes`,
so the engine can tell whether the frames a forward left behind are still its own.
"""
from types import SimpleNamespace

import numpy as np
import taichi as ti

from . import adjoint


SERIAL_WIDTH = 1024  # B x state numbers up to which kernels run their loops on the calling thread


def _torch():
    import torch  # only the torch faces pass tensors; sims itself does not need torch
    return torch


def _torch_dtype(np_dtype):
    return _torch().float64 if np_dtype == np.float64 else _torch().float32


def _make_field(shape, dtype):
    if len(shape) == 0:
        return ti.field(dtype, needs_grad=True)
    if len(shape) == 1:
        return ti.Vector.field(shape[0], dtype, needs_grad=True)
    return ti.Matrix.field(shape[0], shape[1], dtype, needs_grad=True)


@ti.data_oriented
class FramedState:
    """Base of the simulators. Subclasses set B, K, A, dtype, np_dtype, then call `_fields`,
    place their own fields in the returned FieldsBuilder, and call `_finalize(fb)`.

    `_check_params(values)` (optional) refuses unstable parameter values with a ValueError
    naming the parameter; `_scratch` lists fields whose gradients the seed zeroes too."""

    writes = 0
    substeps_run = 0  # simulated substeps per world so far, replays included (adjoint.count)
    _scratch = ()

    def _fields(self, components, params):
        """components: (name, items, shape) with a frame axis (B, K+1, items);
        params: (name, shape) of per-world arrays (B, *shape). Creates self.<name> fields."""
        fb = ti.FieldsBuilder()
        self._comps, off = [], 0
        for name, items, shape in components:
            fld = _make_field(tuple(shape), self.dtype)
            fb.dense(ti.ijk, (self.B, self.K + 1, max(items, 1))).place(fld, fld.grad)
            size = int(np.prod(shape, dtype=int))
            self._comps.append(SimpleNamespace(name=name, field=fld, pair=(fld, fld.grad), items=int(items), shape=tuple(shape),
                                               size=size, offset=off))
            off += items * size
            setattr(self, name, fld)
        self._width = off
        self.state_names = tuple(c.name for c in self._comps)
        self._params = {}
        self._param_shapes = {name: tuple(int(s) for s in shape) for name, shape in params}
        self.param_names = tuple(self._param_shapes)
        self._pmeta, off = [], 0
        for name, shape in params:
            fld = ti.field(self.dtype, needs_grad=True)
            fb.dense(ti.axes(*range(len(shape) + 1)), (self.B,) + tuple(max(s, 1) for s in shape)).place(fld, fld.grad)
            setattr(self, name, fld)
            size = int(np.prod(shape, dtype=int))
            strides = tuple(int(np.prod(shape[k + 1:], dtype=int)) for k in range(len(shape)))
            self._pmeta.append(SimpleNamespace(name=name, field=fld, size=size, offset=off, strides=strides))
            off += size
        self._pwidth = off
        self.act = ti.field(self.dtype, needs_grad=True)  # per-substep controls
        fb.dense(ti.ijk, (self.B, self.K, max(self.A, 1))).place(self.act, self.act.grad)
        return fb

    def _finalize(self, fb):
        self._tree = fb.finalize()
        # small systems are launch-bound: a parallel loop's dispatch costs ~90 us here, a serial one ~5
        self._serial = self.B * self._width <= SERIAL_WIDTH
        # differentiable kernels serialize one world only: Taichi 1.7.4's reverse of a serialized
        # loop over several worlds crashed (segfault) on the mass-spring collider kernel in f32
        self._serial_ad = self._serial and self.B == 1
        self._grad_fields = tuple(c.field for c in self._comps) + tuple(self._scratch) + (self.act,)
        self._param_fields = tuple(p.field for p in self._pmeta)

    def free(self):
        """Release this simulator's fields."""
        self._tree.destroy()

    # ---------------------------------------------------------------- frame I/O
    @ti.kernel
    def _pull(self, grad: ti.template(), frames: ti.types.ndarray(), out: ti.types.ndarray()):
        for c in ti.static(self._comps):
            fld = ti.static(c.pair[grad])  # grad: 0 the values, 1 their adjoints
            ti.loop_config(serialize=self._serial)
            for b, k, i in ti.ndrange(self.B, frames.shape[0], c.items):
                for e in ti.static(range(c.size)):
                    j = c.offset + i * c.size + e
                    if ti.static(len(c.shape) == 0):
                        out[b, k, j] = fld[b, frames[k], i]
                    elif ti.static(len(c.shape) == 1):
                        out[b, k, j] = fld[b, frames[k], i][e]
                    else:
                        out[b, k, j] = fld[b, frames[k], i][e // c.shape[1], e % c.shape[1]]

    @ti.kernel
    def _push(self, frames: ti.types.ndarray(), data: ti.types.ndarray()):
        for c in ti.static(self._comps):
            ti.loop_config(serialize=self._serial)
            for b, k, i in ti.ndrange(self.B, frames.shape[0], c.items):
                for e in ti.static(range(c.size)):
                    self._put(c, c.field, b, frames[k], i, e, data[b, k, c.offset + i * c.size + e])

    @ti.kernel
    def _seed(self, frames: ti.types.ndarray(), data: ti.types.ndarray()):
        for fld in ti.static(self._grad_fields):
            self._zero_grad(fld)
        for c in ti.static(self._comps):
            ti.loop_config(serialize=self._serial)
            for b, k, i in ti.ndrange(self.B, frames.shape[0], c.items):
                for e in ti.static(range(c.size)):
                    self._put(c, c.field.grad, b, frames[k], i, e, data[b, k, c.offset + i * c.size + e])

    @ti.func
    def _zero_grad(self, fld: ti.template()):
        # a range-for over the shape, not a struct-for: only range-fors can run serially
        ti.loop_config(serialize=self._serial)
        for I in ti.grouped(ti.ndrange(*fld.shape)):
            fld.grad[I] = fld.grad[I] * 0

    @ti.func
    def _put(self, c: ti.template(), fld: ti.template(), b, f, i, e: ti.template(), value):
        if ti.static(len(c.shape) == 0):
            fld[b, f, i] = value
        elif ti.static(len(c.shape) == 1):
            fld[b, f, i][e] = value
        else:
            fld[b, f, i][e // c.shape[1], e % c.shape[1]] = value

    @ti.kernel
    def _shift(self, n: ti.i32):
        for c in ti.static(self._comps):
            ti.loop_config(serialize=self._serial)
            for b, i in ti.ndrange(self.B, c.items):
                c.field[b, 0, i] = c.field[b, n, i]

    def _read(self, local, grad=False):
        idx = np.asarray(local, dtype=np.int32)
        flat = np.empty((self.B, len(idx), self._width), dtype=self.np_dtype)
        self._pull(int(grad), idx, flat)
        return tuple(flat[:, :, c.offset:c.offset + c.items * c.size].reshape((self.B, len(idx), c.items) + c.shape)
                     for c in self._comps)

    def _flatten(self, arrays, frames=None):
        """Per-component arrays, (B, items, *shape) or with frames (B, frames, items, *shape),
        or broadcastable to it, as one flat (B, frames or 1, width) array."""
        if len(arrays) != len(self._comps):
            raise ValueError(f"{type(self).__name__} state needs {len(self._comps)} components "
                             f"{self.state_names}, got {len(arrays)}")
        lead = (self.B,) if frames is None else (self.B, frames)
        flat = np.empty((self.B, frames or 1, self._width), dtype=self.np_dtype)
        for c, a in zip(self._comps, arrays):
            want = lead + (c.items,) + c.shape
            try:
                a = np.broadcast_to(a, want)
            except ValueError:
                raise ValueError(f"{type(self).__name__} state {c.name!r} must broadcast to {want}, "
                                 f"got shape {np.shape(a)}") from None
            flat[:, :, c.offset:c.offset + c.items * c.size] = a.reshape(self.B, frames or 1, -1)
        return flat

    def frames(self, local):
        """States at the segment's local frames: one array (B, len(local), items, *shape) per component."""
        return self._read(local)

    def save(self, f):
        return tuple(a[:, 0] for a in self._read([f]))

    def load(self, f, state):
        """Write a state (per component (B, items, *shape), or broadcastable) into frame f."""
        flat = self._flatten(state)
        self.writes += 1
        self._push(np.array([f], dtype=np.int32), flat)

    def shift(self, n):
        """Make frame n the next segment's frame 0."""
        self.writes += 1
        self._shift(n)

    def seed_grads(self, local, grads):
        """Zero every gradient of the segment, then set the state adjoints at local frames."""
        self._seed(np.asarray(local, dtype=np.int32), self._flatten(grads, len(local)))

    def frame_grad(self, f):
        return tuple(a[:, 0] for a in self._read([f], grad=True))

    # ---------------------------------------------------------------- controls
    def set_controls(self, u):
        """Per-substep actions u of shape (B, n, A), n <= K."""
        self.writes += 1
        self._upload(self._ctrl(u), 0, u.shape[1], 1)

    def _ctrl(self, u):
        """Controls as a C-contiguous array of this simulator's dtype (numpy, or torch on the CPU)."""
        if hasattr(u, "detach"):
            return u.detach().to(dtype=_torch_dtype(self.np_dtype)).contiguous()
        return np.ascontiguousarray(u, dtype=self.np_dtype)

    @ti.kernel
    def _upload(self, u: ti.types.ndarray(), t0: ti.i32, n: ti.i32, hold: ti.i32):
        ti.loop_config(serialize=self._serial)
        for b in range(self.B):
            self._upload_world(b, u, t0, n, hold)

    @ti.func
    def _upload_world(self, b, u: ti.template(), t0, n, hold):
        """Substeps t0 .. t0 + n of controls u (B, steps, A), each held `hold` substeps, into act."""
        for f, a in ti.ndrange(n, self.A):
            self.act[b, f, a] = u[b, (t0 + f) // hold, a]

    def control_grad(self, n):
        return self.act.grad.to_numpy()[:, :n, :self.A].astype(np.float64)

    # ------------------------------------------------------------- lean steps
    # DESIGN 4: with no gradient wanted, a step keeps no tape; the state stays in frame 0 and
    # only a flat copy of it leaves. One segment is upload, substeps, emit: subclasses may fuse
    # them into one launch (`_lean_segment`).
    def advance(self, u, hold, out):
        """Run u.shape[1] * hold substeps from the state in frame 0 with no tape.

        u: controls (B, steps, A), numpy or torch on the CPU, each held `hold` substeps;
        out: a flat (B, width) buffer of this simulator's dtype that receives the final state
        (`split` views it per component). The final state is left in frame 0."""
        u = self._ctrl(u)
        T = u.shape[1] * hold
        self.writes += 1
        for t0 in range(0, T, self.K):
            self._lean_segment(u, t0, min(self.K, T - t0), hold, out)
        self.substeps_run += T

    def _lean_segment(self, u, t0, n, hold, out):
        self._upload(u, t0, n, hold)
        adjoint.run(self.units(n))
        self._emit(n, out)

    def flat_buffer(self, like=None):
        """An empty flat state buffer (B, width): numpy, or torch when `like` is a torch tensor."""
        if like is not None and hasattr(like, "new_empty"):
            return like.new_empty((self.B, self._width), dtype=_torch_dtype(self.np_dtype))
        return np.empty((self.B, self._width), dtype=self.np_dtype)

    def split(self, flat):
        """Per-component views (B, items, *shape) of a flat (B, width) state (numpy or torch)."""
        return tuple(flat[:, c.offset:c.offset + c.items * c.size].reshape((self.B, c.items) + c.shape)
                     for c in self._comps)

    @ti.kernel
    def _emit(self, n: ti.i32, out: ti.types.ndarray()):
        ti.loop_config(serialize=self._serial)
        for b in range(self.B):
            self._emit_world(b, n, out)

    @ti.func
    def _emit_world(self, b, n, out: ti.template()):
        """Frame n of world b into out[b] (flat) and into frame 0."""
        for c in ti.static(self._comps):
            for i in range(c.items):
                for e in ti.static(range(c.size)):
                    out[b, c.offset + i * c.size + e] = self._get(c, c.field, b, n, i, e)
                c.field[b, 0, i] = c.field[b, n, i]

    @ti.func
    def _get(self, c: ti.template(), fld: ti.template(), b, f, i, e: ti.template()):
        value = ti.cast(0, self.dtype)
        if ti.static(len(c.shape) == 0):
            value = fld[b, f, i]
        elif ti.static(len(c.shape) == 1):
            value = fld[b, f, i][e]
        else:
            value = fld[b, f, i][e // c.shape[1], e % c.shape[1]]
        return value

    # ------------------------------------------------- one segment's gradient, fused
    def segment_grad(self, state, u, hold, seed):
        """Adjoints of one segment of n = u.shape[1] * hold <= K substeps, in four launches.

        state, seed: flat (B, width) start state and the final state's adjoint (torch or numpy);
        u: controls (B, steps, A). Parameters must already be set. Returns arrays like `seed`:
        the start state's adjoint (B, width), the controls' (B, steps, A) and the parameters'
        (B, param width; `param_dict` names them)."""
        u = self._ctrl(u)
        steps, n = u.shape[1], u.shape[1] * hold
        if n > self.K:
            raise ValueError(f"segment_grad runs one segment: {n} substeps > K={self.K}")
        # one packed buffer each way: every ndarray argument costs ~20 us of Python in Taichi
        parts = (self._ctrl(state), self._ctrl(seed), u.reshape(self.B, -1))
        torch_in = hasattr(parts[0], "new_zeros")
        packed = _torch().cat(parts, 1) if torch_in else np.concatenate(parts, 1)
        self.writes += 1
        self._restore(packed, n, hold)
        self.substeps_run += n
        units = self.units(n)
        adjoint.run(units)
        adjoint.reverse(units)
        width = self._width + steps * self.A + self._pwidth
        out = packed.new_zeros((self.B, width)) if torch_in else np.zeros((self.B, width), self.np_dtype)
        self._grads_out(n, hold, out)
        w, a = self._width, self._width + steps * self.A
        return out[:, :w], out[:, w:a].reshape(self.B, steps, self.A), out[:, a:]

    def param_dict(self, flat):
        """Per-parameter arrays (B, *shape) of a flat (B, param width) array."""
        return {p.name: flat[:, p.offset:p.offset + p.size].reshape((self.B,) + self._param_shapes[p.name])
                for p in self._pmeta}

    @ti.kernel
    def _restore(self, packed: ti.types.ndarray(), n: ti.i32, hold: ti.i32):
        """packed[b] = start state, the final state's adjoint, the controls (steps x A)."""
        for fld in ti.static(self._grad_fields + self._param_fields):
            self._zero_grad(fld)
        ti.loop_config(serialize=self._serial)
        for b in range(self.B):
            for f, a in ti.ndrange(n, self.A):
                self.act[b, f, a] = packed[b, 2 * self._width + (f // hold) * self.A + a]
            for c in ti.static(self._comps):
                for i in range(c.items):
                    for e in ti.static(range(c.size)):
                        j = c.offset + i * c.size + e
                        self._put(c, c.field, b, 0, i, e, packed[b, j])
                        self._put(c, c.field.grad, b, n, i, e, packed[b, self._width + j])

    @ti.kernel
    def _grads_out(self, n: ti.i32, hold: ti.i32, out: ti.types.ndarray()):
        """out[b] = the start state's adjoint, the controls' (steps x A), the parameters'."""
        ti.loop_config(serialize=self._serial)
        for b in range(self.B):
            for c in ti.static(self._comps):
                for i in range(c.items):
                    for e in ti.static(range(c.size)):
                        out[b, c.offset + i * c.size + e] = self._get(c, c.field.grad, b, 0, i, e)
            for f, a in ti.ndrange(n, self.A):
                out[b, self._width + (f // hold) * self.A + a] += self.act.grad[b, f, a]
        steps = (n + hold - 1) // hold
        for p in ti.static(self._pmeta):
            if ti.static(p.size > 0):
                ti.loop_config(serialize=self._serial)
                for I in ti.grouped(ti.ndrange(*p.field.shape)):
                    j = 0
                    for k in ti.static(range(len(p.strides))):
                        j += I[k + 1] * p.strides[k]
                    out[I[0], self._width + steps * self.A + p.offset + j] = p.field.grad[I]

    # ---------------------------------------------------------------- parameters
    def set_params(self, params):
        """Set parameters by name: arrays broadcastable to (B, *shape). All are checked before
        any is written, so a refused call changes nothing."""
        name = type(self).__name__
        unknown = sorted(set(params) - set(self.param_names))
        if unknown:
            raise ValueError(f"{name}: unknown parameter(s) {unknown}; allowed {list(self.param_names)}")
        new = {}
        for k, v in params.items():
            want = (self.B,) + self._param_shapes[k]
            try:
                a = np.array(np.broadcast_to(np.asarray(v, dtype=np.float64), want))
            except ValueError:
                raise ValueError(f"{name}: parameter {k!r} must broadcast to {want}, got shape {np.shape(v)}") from None
            if not np.isfinite(a).all():
                raise ValueError(f"{name}: parameter {k!r} has non-finite values")
            if k not in self._params or not np.array_equal(self._params[k], a):
                new[k] = a
        if not new:
            return
        self._check_params({**self._params, **new})
        for k, a in new.items():
            self._params[k] = a
            if a.size:
                fld = getattr(self, k)
                buf = np.zeros(fld.shape, dtype=self.np_dtype)
                buf[tuple(slice(0, s) for s in a.shape)] = a
                fld.from_numpy(buf)
        self.writes += 1

    def _check_params(self, values):
        """Refuse unstable or unphysical values (a ValueError naming the parameter)."""

    def get_params(self):
        return {k: v.copy() for k, v in self._params.items()}

    def zero_param_grads(self):
        for k in self.param_names:
            getattr(self, k).grad.fill(0)

    def param_grads(self):
        out = {}
        for k in self.param_names:
            g = getattr(self, k).grad.to_numpy().astype(np.float64)
            out[k] = g[(slice(None),) + tuple(slice(0, s) for s in self._param_shapes[k])]
        return out
