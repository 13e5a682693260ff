"""The sysid experiment behind scripts/sysid.py: material parameters recovered from a trajectory (coarse soft walker, coarse press)."""
import json

import pytest
import yaml

from diffsuite.envs.learn import sysid

COARSE = {"n_grid": 32, "particle_spacing": 1 / 32, "offset": [0.1, 0.1], "max_steps": 6, "substeps": 8}


def test_recovers_youngs_modulus(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"env_config": COARSE, "guess": {"E": 18.0}, "iterations": 25, "lr": 0.1}))
    s = sysid.experiment(str(cfg), out=str(tmp_path / "out"), progress=False)
    assert s["relative_error"]["E"] < 0.05 < abs(18.0 - 25.0) / 25.0
    assert s["history"][-1]["loss"] < 1e-3 * s["history"][0]["loss"]
    assert (tmp_path / "out" / "fit.png").stat().st_size > 0
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["estimate"]["E"] == s["estimate"]["E"]


def test_recovers_youngs_modulus_and_yield_stress_from_a_press(tmp_path):
    tool = {"shape": "box", "half": [0.12, 0.02], "position": [0.5, 0.22], "friction": 1.0}  # on the top row
    env = {"particle_spacing": 0.025, "max_steps": 16, "substeps": 10, "tools": [tool]}
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"env": "diffsuite/PlasticinePress-v0", "env_config": env, "actions": [0.0, -1.0, 0.0],
                                   "guess": {"E": 180.0, "yield_stress": 12.0}, "iterations": 15, "lr": 0.2}))
    s = sysid.experiment(str(cfg), out=str(tmp_path / "out"), progress=False)
    assert s["truth"] == {"E": 300.0, "yield_stress": 8.0}
    assert max(s["relative_error"].values()) < 0.05
    assert s["history"][-1]["loss"] < 1e-3 * s["history"][0]["loss"]


def test_bad_actions_are_named(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"env_config": COARSE, "guess": {"E": 18.0}, "actions": [0.0, 2.0]}))
    with pytest.raises(ValueError, match="'actions' must be 'random' or 4 numbers"):
        sysid.experiment(str(cfg), out=str(tmp_path / "out"), progress=False)


def test_unknown_parameter_is_named(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"env_config": COARSE, "guess": {"stiffness": 1.0}}))
    with pytest.raises(ValueError, match=r"'guess': \['stiffness'\]"):
        sysid.experiment(str(cfg), out=str(tmp_path / "out"), progress=False)


def test_tactile_fit_recovers_modulus_and_pose(tmp_path):
    """A coarse flat gel, one probe (press, then rub and twist), noise-free markers and force: E comes back
    from 33% off; the pin's pose stays within 0.5 mm (the fit is local: its yaw is weakly seen)."""
    env = {"sensor": {"gel": {"cells": [8, 2, 8]}, "markers": {"rows": 5, "cols": 5, "pitch": 0.003}},
           "object": {"position": [0.0, -0.0071, 0.0]}, "max_steps": 12, "substeps": 25}
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"env": "diffsuite/TactilePose-v0", "env_config": env, "noise_px": [0.0],
                                   "guess": {"E": 2.0e5, "x": 0.0005, "z": -0.0003, "yaw": 6.0},
                                   "truth": {"E": 3.0e5, "x": 0.0008, "z": -0.0006, "yaw": 10.0},
                                   "probe": [[0.5, 0.0, -0.3, 0.0, 0.0], [1.0, 0.15, 0.0, 0.1, 300.0]],
                                   "iterations": 35}))
    s = sysid.experiment(str(cfg), out=str(tmp_path / "out"), progress=False)
    (r,) = s["runs"]
    assert r["error"]["E_rel"] < 0.05
    assert r["error"]["position_mm"] < 0.5  # the tolerance (from a guess 0.42 mm off)
    assert r["history"][-1]["loss"] < 0.01 * r["history"][0]["loss"]
    assert (tmp_path / "out" / "fit.png").stat().st_size > 0
