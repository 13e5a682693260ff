"""Simulators and the checkpointed adjoint engine."""
import ctypes.util
import os

# torch's OpenMP threads spin while idle and take the cores Taichi's kernels need (renders ran
# up to 10x slower on 2 cores): let them sleep, unless the user chose. This holds only if it
# runs before torch loads, so envs/ and render/ import this package first.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import taichi as ti  # noqa: E402

_ARCHS = {"cpu": "cpu", "cuda": "cuda", "vulkan": "vulkan", "metal": "metal", "gpu": "gpu"}
_FPS = {"f32": ti.f32, "f64": ti.f64}
_state = {}


def init(arch=None, fp=None):
    """Start Taichi once per process; later calls must agree with the first.

    arch: cpu / cuda / vulkan / metal / gpu (env DIFFSUITE_ARCH, default: best available).
    fp: f32 / f64 (env DIFFSUITE_FP, default f32).
    """
    if _state and arch is None and fp is None:  # a plain call accepts the running settings
        return _state["arch"]
    arch = arch or os.environ.get("DIFFSUITE_ARCH") or "best"
    fp = fp or os.environ.get("DIFFSUITE_FP") or "f32"
    if fp not in _FPS:
        raise ValueError(f"DIFFSUITE_FP / fp must be one of {sorted(_FPS)}, got {fp!r}")
    if arch != "best" and arch not in _ARCHS:
        raise ValueError(f"DIFFSUITE_ARCH / arch must be one of {sorted(_ARCHS)}, got {arch!r}")
    if _state:
        if _state["fp"] != fp:
            raise RuntimeError(f"Taichi already started with fp={_state['fp']}, cannot switch to {fp}")
        return _state["arch"]
    if arch == "best":  # ti.gpu probes Vulkan and can crash on machines without a GPU
        arch = "cuda" if ctypes.util.find_library("cuda") else "cpu"
    ti_arch = getattr(ti, _ARCHS[arch])
    ti.init(arch=ti_arch, default_fp=_FPS[fp], offline_cache=True, random_seed=0,
            log_level=ti.WARN)
    _state.update(arch=ti.lang.impl.current_cfg().arch.name, fp=fp)
    return _state["arch"]


def float_dtype():
    """The Taichi float type of this process (after init)."""
    init()
    return _FPS[_state["fp"]]
