"""Tests run Taichi on the CPU in float64 so gradients can be checked by finite differences."""
import os

os.environ.setdefault("DIFFSUITE_ARCH", "cpu")
os.environ.setdefault("DIFFSUITE_FP", "f64")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see sims/__init__.py
# pytest-xdist workers each get their own Taichi offline cache (beside the usual one):
# two processes compiling into one cache can collide
if os.environ.get("PYTEST_XDIST_WORKER"):
    _cache = os.environ.get("TI_OFFLINE_CACHE_FILE_PATH", os.path.expanduser("~/.cache/taichi/ticache"))
    os.environ["TI_OFFLINE_CACHE_FILE_PATH"] = f"{_cache}-{os.environ['PYTEST_XDIST_WORKER']}"

from importlib.resources import files  # noqa: E402

import pytest  # noqa: E402
import yaml  # noqa: E402


@pytest.fixture(scope="session")
def load_design():
    from diffsuite.sims import designs

    def load(name):
        return designs.build(yaml.safe_load(files("diffsuite.configs.robots").joinpath(f"{name}.yaml").read_text()))
    return load
