"""scripts/trajopt.py and the optimizers behind it, on a short episode."""
import json

import numpy as np
import torch
import yaml

from diffsuite.envs import DiffEnv, WalkerTask
from diffsuite.envs.learn import trajopt


SHORT = {"max_steps": 15, "substeps": 8}


def test_gradient_methods_improve_the_return():
    task = WalkerTask(**SHORT)
    adam = trajopt.adam_open_loop(task, iterations=12, lr=0.05, progress=False)
    policy = trajopt.adam_policy(task, iterations=6, lr=0.02, progress=False)
    for r in (adam, policy):
        rets = [c[1] for c in r["curve"]]
        assert np.isfinite(rets).all() and r["best_return"] > rets[0] + 0.1


def test_cem_spends_its_budget_in_batched_rollouts():
    task = WalkerTask(**SHORT)
    T = SHORT["max_steps"] * SHORT["substeps"]
    r = trajopt.cem(task, budget=4 * 8 * T, population=8, progress=False)
    assert [c[0] for c in r["curve"]] == [8 * T * (i + 1) for i in range(4)]
    assert r["best_actions"].shape == (1, SHORT["max_steps"], task.action_dim)


def test_noop_return_matches_stepping_with_zero_actions():
    task = WalkerTask(**SHORT)
    env = DiffEnv(task, num_envs=1, autoreset=False)
    env.reset(seed=0)
    total = sum(env.step(torch.zeros(1, task.action_dim, dtype=env.dtype))[1].item() for _ in range(task.max_steps))
    assert np.isfinite(total) and abs(trajopt.noop_return(task) - total) < 1e-9 * max(1.0, abs(total))


def test_script_writes_plot_gif_and_summary(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"env_config": SHORT, "adam": {"iterations": 3, "lr": 0.05},
                                   "policy": {"iterations": 2, "lr": 0.01, "hidden": 8},
                                   "cem": {"population": 4, "elite_frac": 0.25, "init_std": 0.5}}))
    s = trajopt.experiment(str(cfg), out=str(tmp_path / "out"), progress=False)
    for name in ("curves.png", "best.gif", "summary.json"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["noop_return"] == s["noop_return"] and np.isfinite(s["noop_return"])
    assert set(saved["methods"]) == {"adam", "policy", "cem"} == set(s["methods"])
    assert saved["methods"]["cem"]["simulated_substeps"] <= saved["methods"]["adam"]["simulated_substeps"]
