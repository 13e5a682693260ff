"""Compare an adjoint gradient with central finite differences (run in float64)."""
import numpy as np


def directional_check(loss, params, grads, eps=1e-6, n_dirs=3, seed=0, separately=True):
    """Relative error of adjoint vs central differences along random directions.

    loss(params) -> float; params, grads: dicts name -> array. Each direction perturbs
    all parameters at once, scaled per array so every entry moves relative to its size;
    with `separately`, one more direction per parameter moves that parameter alone (an
    error in one input cannot hide behind a larger gradient of another).
    Returns the worst relative error; NaN/Inf anywhere returns inf.
    """
    rng = np.random.default_rng(seed)
    worst = 0.0
    masks = [None] * n_dirs + (list(params) if separately and len(params) > 1 else [])
    for only in masks:
        dirs = {k: rng.standard_normal(np.shape(v)) * (np.abs(v).mean() + 1.0 if np.size(v) else 1.0)
                * (only is None or k == only) for k, v in params.items()}
        shifted = lambda s: {k: np.asarray(v, dtype=np.float64) + s * eps * dirs[k] for k, v in params.items()}
        fd = (loss(shifted(1.0)) - loss(shifted(-1.0))) / (2 * eps)
        ad = sum(float(np.sum(np.asarray(grads[k]) * dirs[k])) for k in params)
        if not (np.isfinite(fd) and np.isfinite(ad)):
            return float("inf")
        worst = max(worst, abs(fd - ad) / max(abs(fd), abs(ad), 1e-12))
    return worst


def assert_close(loss, params, grads, rtol=1e-5, **kw):
    """Raise AssertionError naming the error when the adjoint disagrees with finite differences."""
    err = directional_check(loss, params, grads, **kw)
    if not err <= rtol:
        raise AssertionError(f"adjoint vs finite differences: relative error {err:.3e} > {rtol:.1e}")
    return err
