"""scripts/trajopt.py and the optimizers behind it, on a short episode."""
import json

import numpy as np
import pytest
import torch
import yaml

from diffsuite.envs import DiffEnv, WalkerTask
from diffsuite.envs.learn import trajopt


SHORT = {"max_steps": 15, "substeps": 8}
T = SHORT["max_steps"] * SHORT["substeps"]


def test_gradient_methods_improve_the_return():
    task = WalkerTask(**SHORT)
    adam = trajopt.adam_open_loop(task, iterations=12, lr=0.05, progress=False)
    policy = trajopt.adam_policy(task, iterations=6, lr=0.02, progress=False)
    for r in (adam, policy):
        rets = [c[1] for c in r["curve"]]
        assert np.isfinite(rets).all() and r["best_return"] > rets[0] + 0.1


def test_gradient_substeps_counts_the_backward_replays():
    # segments of K: the backward replays all but the last one, which the forward left resident
    for T_, K in ((10, 4), (12, 4), (7, 7), (5, 9), (1, 1)):
        segments = [min(K, T_ - t0) for t0 in range(0, T_, K)]
        assert trajopt.gradient_substeps(T_, K) == T_ + sum(segments[:-1])
        assert trajopt.gradient_substeps(T_, K, resident=False) == 2 * T_
    with pytest.raises(ValueError, match="K"):
        trajopt.gradient_substeps(10, 0)


def test_adam_curve_counts_what_the_simulator_ran():
    task = WalkerTask(segment=50, **SHORT)  # 120 substeps in segments 50, 50, 20: 100 replayed
    r = trajopt.adam_open_loop(task, iterations=3, lr=0.05, progress=False)
    per_iteration = trajopt.gradient_substeps(T, 50)
    assert per_iteration == T + 100
    assert [c[0] for c in r["curve"]] == [per_iteration * (i + 1) for i in range(3)]
    assert trajopt.adam_budget(task, 3) == r["curve"][-1][0]


def test_cem_spends_its_budget_in_batched_rollouts():
    task = WalkerTask(**SHORT)
    r = trajopt.cem(task, budget=4 * 8 * T, population=8, progress=False)
    assert [c[0] for c in r["curve"]] == [8 * T * (i + 1) for i in range(4)]
    assert r["best_actions"].shape == (1, SHORT["max_steps"], task.action_dim)


def test_hybrid_refines_proposals_and_counts_its_substeps():
    task = WalkerTask(segment=50, **SHORT)
    population, refine = 4, 2
    cost = population * (refine * trajopt.gradient_substeps(T, 50) + T)
    r = trajopt.hybrid(task, budget=3 * cost + cost // 2, population=population, elite_frac=0.5, refine_steps=refine,
                       lr=0.05, progress=False)
    assert [c[0] for c in r["curve"]] == [cost * (i + 1) for i in range(3)]
    rets = [c[1] for c in r["curve"]]
    assert np.isfinite(rets).all() and rets[-1] > rets[0]
    # the best actions earn the best return when replayed
    sim = task.make_sim(1)
    with torch.no_grad():
        again = trajopt.episode_return(task, sim, trajopt.start_state(task, sim, 0, torch.float64), r["best_actions"])
    assert abs(again.item() - r["best_return"]) <= 1e-9 * max(1.0, abs(r["best_return"]))
    assert r["best_actions"].abs().max() <= 1


def test_noop_return_matches_stepping_with_zero_actions():
    task = WalkerTask(**SHORT)
    env = DiffEnv(task, num_envs=1, autoreset=False)
    env.reset(seed=0)
    total = sum(env.step(torch.zeros(1, task.action_dim, dtype=env.dtype))[1].item() for _ in range(task.max_steps))
    assert np.isfinite(total) and abs(trajopt.noop_return(task) - total) < 1e-9 * max(1.0, abs(total))


def test_script_writes_plot_gif_actions_and_summary(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"env_config": SHORT, "adam": {"iterations": 5, "lr": 0.05},
                                   "policy": {"iterations": 2, "lr": 0.01, "hidden": 8},
                                   "cem": {"population": 4, "elite_frac": 0.25, "init_std": 0.5},
                                   "hybrid": {"population": 2, "elite_frac": 0.5, "init_std": 0.5, "refine_steps": 1,
                                              "lr": 0.05, "keep_elites": True}}))
    s = trajopt.experiment(str(cfg), out=str(tmp_path / "out"), progress=False)
    for name in ("curves.png", "best.gif", "summary.json", "best_actions.pt"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["noop_return"] == s["noop_return"] and np.isfinite(s["noop_return"])
    assert set(saved["methods"]) == {"adam", "policy", "cem", "hybrid"} == set(s["methods"])
    budget = saved["methods"]["adam"]["simulated_substeps"]
    assert budget == trajopt.adam_budget(WalkerTask(**SHORT), 5)  # measured == the rule's prediction
    assert saved["budget"] == budget
    for m in ("cem", "hybrid"):
        r = saved["methods"][m]
        assert r["simulated_substeps"] <= budget
        assert r["simulated_substeps"] == r["worlds"] * r["simulated_substeps_per_world"]
    # the saved actions, replayed from the saved seed, earn the best method's return
    blob = torch.load(tmp_path / "out" / "best_actions.pt", weights_only=True)
    assert blob["env"] == "diffsuite/MassSpringWalker-v0" and blob["env_config"] == SHORT and blob["seed"] == 0
    task = WalkerTask(**blob["env_config"])
    assert blob["actions"].shape == (1, SHORT["max_steps"], task.action_dim)
    sim = task.make_sim(1)
    with torch.no_grad():
        start = trajopt.start_state(task, sim, blob["seed"], torch.float64)
        ret = trajopt.episode_return(task, sim, start, blob["actions"])
    best = saved["methods"][saved["best_method"]]["best_return"]
    assert abs(ret.item() - best) <= 1e-9 * max(1.0, abs(best))
