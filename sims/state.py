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
        for name, shape in params:
            fld = ti.field(self.dtype, needs_grad=True)
            fb.dense(ti.axes(*range(len(shape) + 1)), (self.B,) + tuple(max(s, 1) for s in shape)).place(fld, fld.grad)
            setattr(self, name, fld)
        self.act = ti.field(self.dtype, needs_grad=True)  # per-substep controls
        fb.dense(ti.ijk, (self.B, self.K, max(self.A, 1))).place(self.act, self.act.grad)
        return fb

    def _finalize(self, fb):
        self._tree = fb.finalize()

    def free(self):
        """Release this simulator's fields."""
        self._tree.destroy()

    # ---------------------------------------------------------------- frame I/O
    @ti.kernel
    def _pull(self, grad: ti.template(), frames: ti.types.ndarray(), out: ti.types.ndarray()):
        for c in ti.static(self._comps):
            fld = ti.static(c.pair[grad])  # grad: 0 the values, 1 their adjoints
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
            for b, k, i in ti.ndrange(self.B, frames.shape[0], c.items):
                for e in ti.static(range(c.size)):
                    self._put(c, c.field, b, frames[k], i, e, data[b, k, c.offset + i * c.size + e])

    @ti.kernel
    def _seed(self, frames: ti.types.ndarray(), data: ti.types.ndarray()):
        for c in ti.static(self._comps):
            for I in ti.grouped(c.field):
                c.field.grad[I] = c.field.grad[I] * 0
        for fld in ti.static(self._scratch + (self.act,)):
            for I in ti.grouped(fld):
                fld.grad[I] = fld.grad[I] * 0
        for c in ti.static(self._comps):
            for b, k, i in ti.ndrange(self.B, frames.shape[0], c.items):
                for e in ti.static(range(c.size)):
                    self._put(c, c.field.grad, b, frames[k], i, e, data[b, k, c.offset + i * c.size + e])

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
        buf = np.zeros((self.B, self.K, max(self.A, 1)), dtype=self.np_dtype)
        buf[:, :u.shape[1], :self.A] = u
        self.writes += 1
        self.act.from_numpy(buf)

    def control_grad(self, n):
        return self.act.grad.to_numpy()[:, :n, :self.A].astype(np.float64)

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
            new[k] = a
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
