"""Environment configs: YAML defaults from configs/, overridden by keyword, every key checked."""
from importlib.resources import files
import copy
import math
import os

import yaml


def read_yaml(name_or_path, package="diffsuite.configs"):
    """A YAML file by path, or by name (without .yaml) from the shipped configs."""
    if os.path.exists(str(name_or_path)):
        with open(name_or_path) as fh:
            return yaml.safe_load(fh) or {}
    res = files(package).joinpath(f"{name_or_path}.yaml")
    if not res.is_file():
        raise ValueError(f"no config named {name_or_path!r} in {package} and no such file")
    return yaml.safe_load(res.read_text()) or {}


def merge(defaults, overrides, where=""):
    """Deep-merge overrides into defaults; a key the defaults lack is an error naming it."""
    out = copy.deepcopy(defaults)
    for key, value in (overrides or {}).items():
        path = f"{where}{key}"
        if key not in defaults:
            raise ValueError(f"unknown config key {path!r}; allowed: {sorted(defaults)}")
        if isinstance(defaults[key], dict) and defaults[key] and isinstance(value, dict):
            out[key] = merge(defaults[key], value, where=f"{path}.")
        else:
            out[key] = value
    return out


def load(name, config=None, **overrides):
    """Defaults of env config `name`, then an optional YAML file `config`, then keywords."""
    cfg = read_yaml(name)
    if config is not None:
        cfg = merge(cfg, read_yaml(config))
    return merge(cfg, overrides)


def positive(cfg, *keys, kind=float):
    """Check that cfg[key] is a positive number of the given kind, naming the key if not."""
    for key in keys:
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0 \
                or (kind is int and int(value) != value):
            raise ValueError(f"config key {key!r} must be a positive {kind.__name__}, got {value!r}")
