"""Sweeps on Ray: seeds x configs x methods as Ray tasks, gathered into one table and one plot.

Each task is one library call in a Ray worker (its own process, so its own Taichi), with
`threads` CPU threads for Taichi and torch, so that tasks share the cores instead of
oversubscribing them:
- trajopt methods (adam, policy, cem, hybrid): trajopt.experiment on the task's config
  (the config, the grid entry's overrides and the task's seed, written to the task's folder);
- train methods (bptt, shac, ppo): train.run(config, method, seed, out, resume,
  **overrides).
A task writes <out>/<config>/<method>/seed<k>/summary.json; with resume, a task whose
summary exists is read back instead of run, and train methods continue from their last
saved state. The sweep writes results.md (markdown), results.csv, results.json (with the
curves) and curves.png under <out>.
"""
import csv
import json
import math
import os

import numpy as np
from tqdm import tqdm
import yaml

from .. import config
from . import plots

TRAJOPT = ("adam", "policy", "cem", "hybrid")
TRAIN = ("bptt", "shac", "ppo")
GRID_KEYS = ("configs", "methods", "overrides")
COLUMNS = ("config", "method", "seed", "final_return", "best_return", "steps", "unit", "seconds", "status")

DEFAULTS = config.read_yaml("sweep_walker")


def load(cfg_path):
    """A sweep config (configs/sweep_*.yaml), every key checked."""
    cfg = config.merge(DEFAULTS, config.read_yaml(cfg_path))
    if not isinstance(cfg["grid"], list) or not cfg["grid"]:
        raise ValueError(f"config key 'grid' must be a non-empty list of entries, got {cfg['grid']!r}")
    for i, entry in enumerate(cfg["grid"]):
        where = f"grid[{i}]"
        if not isinstance(entry, dict) or set(entry) - set(GRID_KEYS) or not {"configs", "methods"} <= set(entry):
            raise ValueError(f"config key {where!r} must have keys configs, methods (and optionally overrides), "
                             f"got {entry!r}")
        for key in ("configs", "methods"):
            if not isinstance(entry[key], list) or not entry[key]:
                raise ValueError(f"config key '{where}.{key}' must be a non-empty list, got {entry[key]!r}")
        for m in entry["methods"]:
            if m not in TRAJOPT + TRAIN:
                raise ValueError(f"config key '{where}.methods': unknown method {m!r}; known: {TRAJOPT + TRAIN}")
        if not isinstance(entry.get("overrides", {}), dict):
            raise ValueError(f"config key '{where}.overrides' must be a mapping, got {entry['overrides']!r}")
    seeds = cfg["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                          for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"config key 'seeds' must be a non-empty list of distinct integers, got {seeds!r}")
    config.positive(cfg, "num_cpus", "threads", kind=int)
    return cfg


def tasks(cfg, out):
    """The sweep's tasks: one dict (config, label, method, seed, overrides, out) per
    grid entry x config x method x seed."""
    specs = []
    for entry in cfg["grid"]:
        for c in entry["configs"]:
            label = os.path.splitext(os.path.basename(str(c)))[0]
            for m in entry["methods"]:
                for s in cfg["seeds"]:
                    specs.append({"config": c, "label": label, "method": m, "seed": s,
                                  "overrides": entry.get("overrides", {}),
                                  "out": os.path.join(out, label, m, f"seed{s}")})
    folders = [t["out"] for t in specs]
    if len(set(folders)) != len(folders):
        raise ValueError("config key 'grid': two tasks share an output folder (the same config name and method "
                         "listed twice)")
    return specs


def run_task(spec, resume=False):
    """One task, in a Ray worker or in this process: a finished one (its summary.json
    exists) is read back when resuming; otherwise its library call runs. Returns its row."""
    path = os.path.join(spec["out"], "summary.json")
    if resume and os.path.exists(path):
        with open(path) as fh:
            return row(spec, json.load(fh), "skipped")
    os.makedirs(spec["out"], exist_ok=True)
    if spec["method"] in TRAIN:
        from . import train  # written beside this module; only train methods need it
        summary = train.run(spec["config"], spec["method"], seed=spec["seed"], out=spec["out"], resume=resume,
                            progress=False, **spec["overrides"])
    else:
        from . import trajopt
        summary = trajopt.experiment(_trajopt_config(spec), methods=[spec["method"]], out=spec["out"],
                                     progress=False)
    return row(spec, summary, "done")


def _trajopt_config(spec):
    """The task's trajopt config, keys checked, written into its folder; returns the path."""
    from . import trajopt
    cfg = config.merge({**trajopt.DEFAULTS, "env_config": {}}, config.read_yaml(spec["config"]))
    cfg = config.merge(cfg, spec["overrides"])
    cfg.update(seed=spec["seed"], out=spec["out"], methods=[spec["method"]])
    path = os.path.join(spec["out"], "config.yaml")
    with open(path, "w") as fh:
        yaml.safe_dump(cfg, fh, sort_keys=False)
    return path


def row(spec, summary, status):
    """A table row from a task's summary: trajopt's (per method, substeps) or train's (env steps)."""
    r = summary["methods"][spec["method"]] if "methods" in summary else summary
    steps, unit = (r["simulated_substeps"], "substeps") if "simulated_substeps" in r else (r["env_steps"], "env steps")
    return {"config": spec["label"], "method": spec["method"], "seed": spec["seed"],
            "final_return": float(r["final_return"]), "best_return": float(r["best_return"]), "steps": int(steps),
            "unit": unit, "seconds": float(r["seconds"]), "status": status, "out": spec["out"],
            "curve": [list(p) for p in _points(r.get("curve", []))]}


def _points(curve):
    """(steps, return) pairs of a curve: lists [steps, ..., return] (trajopt: steps, return;
    train: env steps, seconds, return), or dicts with env_steps and return."""
    return [(c["env_steps"], c["return"]) if isinstance(c, dict) else (c[0], c[-1]) for c in curve]


def _failed(spec, err):
    msg = str(err).strip().splitlines()
    return {"config": spec["label"], "method": spec["method"], "seed": spec["seed"], "final_return": math.nan,
            "best_return": math.nan, "steps": 0, "unit": "", "seconds": 0.0, "status": "failed", "out": spec["out"],
            "curve": [], "error": msg[-1] if msg else type(err).__name__}


def sweep(cfg_path, out=None, address=None, resume=False, local=False, progress=True):
    """Run a sweep config on Ray: a local Ray with the config's num_cpus unless `address`
    names a cluster (or Ray is already running in this process, which is reused and left
    running); local=True runs the tasks one after another in this process instead (no Ray).
    A failed task becomes a row with status 'failed' and its error. Returns a dict: rows,
    markdown (the table), out, failed (how many)."""
    cfg = load(cfg_path)
    out = out or cfg["out"]
    specs = tasks(cfg, out)
    os.makedirs(out, exist_ok=True)
    if local:
        rows = []
        for s in tqdm(specs, desc="sweep", disable=not progress):
            try:
                rows.append(run_task(s, resume))
            except Exception as err:  # one task's failure is a row, not the sweep's end
                rows.append(_failed(s, err))
    else:
        rows = _on_ray(specs, cfg, address, resume, progress)
    md = markdown(rows)
    write(rows, md, out)
    return {"rows": rows, "markdown": md, "out": out, "failed": sum(r["status"] == "failed" for r in rows)}


def _on_ray(specs, cfg, address, resume, progress):
    import ray
    threads = str(cfg["threads"])
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "TI_CPU_MAX_NUM_THREADS": threads}
    env.update({k: os.environ[k] for k in ("DIFFSUITE_ARCH", "DIFFSUITE_FP", "TI_OFFLINE_CACHE_FILE_PATH")
                if k in os.environ})
    started = not ray.is_initialized()
    if started:
        kw = {"address": address} if address else {"num_cpus": cfg["num_cpus"]}
        ray.init(include_dashboard=False, log_to_driver=False, **kw)
    try:
        task = ray.remote(num_cpus=cfg["threads"], max_retries=0)(run_task).options(runtime_env={"env_vars": env})
        refs = {task.remote(s, resume): i for i, s in enumerate(specs)}
        rows, pending = [None] * len(specs), list(refs)
        with tqdm(total=len(specs), desc="sweep", disable=not progress) as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                i = refs[done[0]]
                try:
                    rows[i] = ray.get(done[0])
                except Exception as err:  # RayTaskError wraps the task's own exception
                    rows[i] = _failed(specs[i], err)
                bar.update()
        return rows
    finally:
        if started:
            ray.shutdown()


def markdown(rows):
    """Every task's row, then per config and method the mean and spread over seeds."""
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in COLUMNS) + " |" for r in rows]
    lines += ["", "| config | method | seeds | final return (mean ± std) | best return (mean ± std) |",
              "|---|---|---|---|---|"]
    for (c, m), group in _groups(rows).items():
        f, b = (np.array([r[k] for r in group]) for k in ("final_return", "best_return"))
        lines.append(f"| {c} | {m} | {len(group)} | {f.mean():.4g} ± {f.std():.2g} "
                     f"| {b.mean():.4g} ± {b.std():.2g} |")
    return "\n".join(lines) + "\n"


def _groups(rows):
    groups = {}
    for r in rows:
        if r["status"] != "failed":
            groups.setdefault((r["config"], r["method"]), []).append(r)
    return groups


def write(rows, md, out):
    """results.md, results.csv, results.json and curves.png (return against steps, one
    panel per config and step unit, one line per method and seed) under out."""
    with open(os.path.join(out, "results.md"), "w") as fh:
        fh.write(md)
    with open(os.path.join(out, "results.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS + ("out", "error"), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    with open(os.path.join(out, "results.json"), "w") as fh:
        json.dump(rows, fh, indent=1)
    panels = {}
    for r in rows:
        if r["curve"]:
            panels.setdefault((r["config"], r["unit"]), {})[f"{r['method']} seed {r['seed']}"] = r["curve"]
    if panels:
        plots.curves(os.path.join(out, "curves.png"),
                     [(f"{unit} ({c})", "episode return", series) for (c, unit), series in panels.items()],
                     "sweep: return per method and seed")
