import numpy as np
import pytest

from diffsuite.sims import designs


@pytest.mark.parametrize("name, objects, springs, actuators", [
    ("walker_a", 6, 11, 11), ("walker_b", 14, 30, 4), ("walker_c", 20, 46, 8)])
def test_walkers_match_difftaichi_counts(load_design, name, objects, springs, actuators):
    d = load_design(name)
    assert (len(d.positions), len(d.springs), d.n_actuators) == (objects, springs, actuators)


def test_rest_lengths_are_initial_distances(load_design):
    d = load_design("walker_b")
    assert np.allclose(d.rest, np.linalg.norm(d.positions[d.springs[:, 0]] - d.positions[d.springs[:, 1]], axis=1))


def test_3d_cloth_rope_designs(load_design):
    w3, cloth, rope = load_design("walker_3d"), load_design("cloth"), load_design("rope")
    assert w3.dim == 3 and w3.n_actuators > 0
    assert cloth.dim == 3 and (cloth.masses == 0).sum() == 2 and cloth.n_actuators == 0
    assert rope.dim == 2 and rope.masses[0] == 0


def test_unknown_kind_is_named():
    with pytest.raises(ValueError, match="'kind'.*'blob'"):
        designs.build({"kind": "blob"})
