"""envs/learn/gradstats.py: per-world gradient statistics against horizon, on tiny horizons."""
import json

import numpy as np
import pytest
import yaml

from diffsuite.envs.learn import gradstats

ENV = {"controller": {"hidden": 4, "sines": 2}, "init_noise": 0.01, "segment": 4, "substeps": 4}
CLIP = 1e-4
VARIANTS = {"plain": {}, "smooth": {"env_config": {"ground": {"softness": 1e-2, "slip": 1e-1}}},
            "clipped": {"clip": CLIP}}


@pytest.fixture(scope="module")
def stats():
    return gradstats.gradient_stats(env_config=ENV, variants=VARIANTS, horizons=[1, 3], worlds=3, progress=False)


def test_statistics_have_the_documented_shape_and_are_finite(stats):
    assert stats["variants"] == list(VARIANTS) and stats["horizons"] == [1, 3]
    for k in gradstats.STATS:
        assert stats[k].shape == (3, 2) and np.isfinite(stats[k]).all()
    for k in ("norm", "mean_norm", "state_norm", "state_norm_max"):
        assert (stats[k] > 0).all()
    assert (stats["variance"] >= 0).all() and stats["variance"].max() > 0  # the worlds' starts differ
    assert not stats["exploded"].any() and not stats["diverged"].any()
    assert stats["knobs"]["smooth"] == {"softness": 1e-2, "slip": 1e-1, "damping": 15.0, "clip": None}
    # the mean of the worlds' gradients is no longer than their mean length
    assert (stats["mean_norm"] <= stats["norm"] * (1 + 1e-12)).all()


def test_clipping_bounds_the_start_states_adjoint(stats):
    plain, clipped = stats["state_norm_max"][0], stats["state_norm_max"][2]
    assert (plain > 10 * CLIP).all()  # so the clip had something to do
    assert (clipped <= CLIP * (1 + 1e-9)).all()
    assert np.allclose(stats["return"][0], stats["return"][2])  # clipping changes gradients, not the physics


def test_gradients_wrt_open_loop_actions_and_bad_input():
    s = gradstats.gradient_stats(env_config={"substeps": 4}, horizons=[2], worlds=2, wrt="actions", progress=False)
    assert s["norm"].shape == (1, 1) and np.isfinite(s["norm"]).all() and s["norm"][0, 0] > 0
    with pytest.raises(ValueError, match="wrt"):
        gradstats.gradient_stats(wrt="weights", progress=False)
    with pytest.raises(ValueError, match="worlds"):
        gradstats.gradient_stats(worlds=1, progress=False)
    with pytest.raises(ValueError, match="cliip"):
        gradstats.gradient_stats(env_config=ENV, variants={"x": {"cliip": 1.0}}, horizons=[1], worlds=2, progress=False)


def test_growth_and_table():
    assert abs(gradstats.growth([1, 2, 4], [3.0, 12.0, 48.0]) - 2.0) < 1e-12
    assert np.isnan(gradstats.growth([1, 2], [np.nan, 1.0]))
    fake = {"horizons": [1, 10, 100], "variants": ["a"], "knobs": {"a": {"softness": 1e-3, "slip": 1e-2, "damping": 2.0,
                                                                           "clip": None}},
            "norm": np.array([[1.0, 5.0, 1e6]]), "variance": np.array([[0.0, 1.0, 2.0]]),
            "exploded": np.zeros((1, 3), bool), "diverged": np.array([[False, False, True]])}
    row = gradstats.table(fake)[0]
    assert row["explodes_at"] == 100 and row["diverges_at"] == 100 and row["norm_last"] == 1e6


def test_experiment_writes_figure_and_summary(tmp_path):
    cfg = tmp_path / "g.yaml"
    cfg.write_text(yaml.safe_dump({"env_config": ENV, "horizons": [1, 2], "worlds": 2,
                                   "variants": {"plain": {}, "clipped": {"clip": CLIP}}}, sort_keys=False))
    r = gradstats.experiment(str(cfg), out=str(tmp_path / "out"), progress=False)
    assert (tmp_path / "out" / "gradstats.png").stat().st_size > 0
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [row["variant"] for row in saved["table"]] == ["plain", "clipped"] == [row["variant"] for row in r["table"]]
    assert np.allclose(saved["stats"]["norm"], r["stats"]["norm"])
