"""Contact mechanics: a rigid sphere pressed into a thick gel block follows Hertz (sims/indentation.py).
A coarse block here (scripts/hertz.py runs the fine one): the exponent within 0.2 of 1.5."""
import numpy as np
import pytest

from diffsuite.envs import config
from diffsuite.sims import indentation

HERTZ = {k: v for k, v in config.read_yaml("hertz").items() if k in indentation.KEYS}


def test_sphere_indentation_follows_hertz():
    r = indentation.run(**{**HERTZ, "cells": [8, 5, 8], "dt": 5e-6, "steps": 3000, "every": 60})
    d, F = r["depth"], r["force"]
    touching = d > 0
    assert np.all(np.diff(F[touching]) > 0)  # monotone
    n, _ = indentation.fit(d, F)
    assert 1.3 < n < 1.7  # Hertz: 1.5 (a linear spring gives 1, a flat punch 1 too)
    ratio = F[d > 0.2 * d.max()] / r["hertz"][d > 0.2 * d.max()]
    assert (0.7 < ratio).all() and (ratio < 2.0).all()  # the prefactor, stiffened by the finite block
    assert r["penetration"].max() < 0.02 * d.max()  # the penalty keeps the sphere out


def test_bad_keys_are_named():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['radus'\]"):
        indentation.run(**HERTZ, radus=0.01)
    with pytest.raises(ValueError, match=r"missing \['radius'\]"):
        indentation.run(**{k: v for k, v in HERTZ.items() if k != "radius"})
