"""envs/learn: BPTT, SHAC and PPO through train.run, exact resume, replay, the goal walker."""
import gymnasium as gym
import imageio.v3 as iio
import numpy as np
import pytest
import torch
import yaml
from gymnasium.utils.env_checker import check_env

from diffsuite.envs import GoalWalkerTask, WalkerTask, make_diff
from diffsuite.envs.learn import ppo, train, trajopt

ENV = {"max_steps": 12, "substeps": 4, "init_noise": 0.01}
TINY = {
    "env_config": ENV, "eval": {"worlds": 2, "seed": 7},
    "bptt": {"worlds": 3, "iterations": 6, "lr": 0.03, "hidden": 16, "eval_every": 1, "checkpoint_every": 2},
    # horizon 5 against 12-step episodes: windows straddle the automatic reset
    "shac": {"worlds": 4, "iterations": 8, "horizon": 5, "actor_lr": 0.01, "hidden": 16, "critic_hidden": 16,
             "critic_iterations": 2, "minibatches": 2, "eval_every": 1, "checkpoint_every": 2},
    "ppo": {"worlds": 4, "steps": 320, "n_steps": 16, "batch_size": 32, "n_epochs": 2, "net": [16, 16],
            "eval_every": 1, "checkpoint_every": 2},
}


class Killed(Exception):
    """Stands for a kill in the middle of training."""


@pytest.fixture(scope="module")
def cfg_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return str(path)


@pytest.fixture(scope="module")
def full(cfg_path, tmp_path_factory):
    """One uninterrupted run per method: {method: (summary, its output folder)}."""
    root = tmp_path_factory.mktemp("runs")
    return {m: (train.run(cfg_path, m, seed=1, out=str(root / m), progress=False), root / m) for m in train.METHODS}


def _returns(summary):
    return [c[2] for c in summary["curve"]]


@pytest.mark.parametrize("method", ["bptt", "shac"])
def test_gradient_methods_improve_their_first_evaluation(full, method):
    rets = _returns(full[method][0])
    assert np.isfinite(rets).all() and len(rets) == TINY[method]["iterations"] + 1
    # the walker moves: the last evaluation gains more than a third of the best |return| seen
    assert rets[-1] - rets[0] > np.abs(rets).max() / 3
    assert full[method][0]["best_return"] == max(rets)


def test_curves_count_env_steps_summed_over_worlds(full):
    b, s, p = (full[m][0] for m in ("bptt", "shac", "ppo"))
    assert [c[0] for c in b["curve"]] == [i * 3 * ENV["max_steps"] for i in range(7)]
    assert [c[0] for c in s["curve"]] == [i * 4 * 5 for i in range(9)]
    assert [c[0] for c in p["curve"]] == [i * 4 * 16 for i in range(6)]
    for r in (b, s, p):
        secs = [c[1] for c in r["curve"]]
        assert secs[0] == 0 and all(np.diff(secs) > 0) and np.isfinite(_returns(r)).all()
    # the simulators' own count: a gradient step replays what its forward ran
    assert p["substeps_run"] == p["env_steps"] * ENV["substeps"]
    for r in (b, s):
        assert r["substeps_run"] >= 2 * r["env_steps"] * ENV["substeps"]


@pytest.mark.parametrize("method", train.METHODS)
def test_resume_after_a_kill_ends_bit_identical(full, cfg_path, tmp_path, monkeypatch, method):
    real, calls = train._point, []

    def point(*args):  # the 4th evaluation: after iteration 3, one past the checkpoint at 2
        calls.append(1)
        if len(calls) == 4:
            raise Killed
        return real(*args)
    monkeypatch.setattr(train, "_point", point)
    with pytest.raises(Killed):
        train.run(cfg_path, method, seed=1, out=str(tmp_path), progress=False)
    monkeypatch.setattr(train, "_point", real)
    resumed = train.run(cfg_path, method, seed=1, out=str(tmp_path), resume=True, progress=False)
    summary, out = full[method]
    assert _returns(resumed) == _returns(summary) and resumed["env_steps"] == summary["env_steps"]
    a, b = (torch.load(d / "checkpoint.pt", weights_only=False)["trainer"] for d in (out, tmp_path))
    nets = {"bptt": ["policy"], "shac": ["policy", "critic", "target"], "ppo": ["policy"]}[method]
    for net in nets:
        assert a[net].keys() == b[net].keys()
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), f"{net}.{k}"


def test_sb3_adapter_maps_same_step_autoreset(cfg_path):
    venv = ppo.make_vec_env("diffsuite/MassSpringWalker-v0", 3, ENV)
    venv.seed(5)
    obs = venv.reset()
    assert obs.shape == (3,) + venv.observation_space.shape and obs.dtype == np.float32
    assert venv.observation_space.contains(obs[0]) and venv.get_attr("render_mode") == [None] * 3
    phases = WalkerTask(**ENV).cfg["phases"]
    first = obs[:, -phases:]
    actions = np.zeros((3,) + venv.action_space.shape, np.float32)
    for t in range(ENV["max_steps"]):
        obs, rew, dones, infos = venv.step(actions)
        assert obs.shape == (3,) + venv.observation_space.shape and rew.shape == dones.shape == (3,)
        assert rew.dtype == np.float32 and np.isfinite(rew).all()
        assert dones.all() == (t == ENV["max_steps"] - 1) and (dones.any() == dones.all())
    for i in range(3):
        term = infos[i]["terminal_observation"]
        assert infos[i]["TimeLimit.truncated"] and infos[i]["episode"]["l"] == ENV["max_steps"]
        # the time features: the returned observation starts the next episode, the terminal one ends this
        np.testing.assert_allclose(obs[i, -phases:], first[i], atol=1e-6)
        assert np.abs(term[-phases:] - first[i]).max() > 1e-3 and np.isfinite(term).all()
        assert not np.allclose(term, obs[i])
    venv.close()


def test_replay_writes_a_gif_for_policies_and_actions(full, tmp_path):
    frames = ENV["max_steps"] + 1
    for m in ("bptt", "ppo"):
        gif = train.replay(str(full[m][1] / "policy.pt"), str(tmp_path / f"{m}.gif"))
        assert iio.imread(gif).shape[0] == frames
    # open-loop actions, as trajopt saves its best ones
    actions = torch.rand(1, ENV["max_steps"], WalkerTask(**ENV).action_dim, dtype=torch.float64) * 2 - 1
    torch.save({"env": "diffsuite/MassSpringWalker-v0", "env_config": ENV, "seed": 3, "actions": actions},
               tmp_path / "a.pt")
    assert iio.imread(train.replay(str(tmp_path / "a.pt"))).shape[0] == frames
    # a bare trajopt.SinePolicy, as imitate.py saves its policies
    task = WalkerTask(**ENV)
    bare = trajopt.SinePolicy(task.obs_dim, task.action_dim, 8).double()
    torch.save({"kind": "sine_mlp", "hidden": 8, "obs_dim": task.obs_dim, "action_dim": task.action_dim,
                "state_dict": bare.state_dict(), "env": "diffsuite/MassSpringWalker-v0", "env_config": ENV},
               tmp_path / "c.pt")
    assert iio.imread(train.replay(str(tmp_path / "c.pt"), str(tmp_path / "c.gif"))).shape[0] == frames
    torch.save({"env": "diffsuite/MassSpringWalker-v0", "env_config": ENV, "kind": "nope"}, tmp_path / "b.pt")
    with pytest.raises(ValueError, match="'nope'"):
        train.replay(str(tmp_path / "b.pt"))


def test_figure_and_reach(full, tmp_path):
    runs = [full[m][0] for m in train.METHODS]
    path = train.figure(str(tmp_path / "f.png"), runs, "tiny")
    assert iio.imread(path).ndim == 3
    r = train.reach(runs)
    assert r["target_return"] == full["ppo"][0]["final_return"]
    for m, hits in r["methods"].items():
        curve = full[m][0]["curve"]
        first = next((c for c in curve if c[2] >= r["target_return"]), None)
        assert hits[0]["env_steps"] == (first and first[0])


def test_experiment_runs_seeds_and_draws_one_figure(cfg_path, tmp_path):
    res = train.experiment(cfg_path, methods=["bptt"], seeds=[0, 1], out=str(tmp_path), progress=False)
    assert [(r["method"], r["seed"]) for r in res["runs"]] == [("bptt", 0), ("bptt", 1)]
    assert res["runs"][0]["curve"] != res["runs"][1]["curve"]  # the seeds differ
    assert res["figure"] == str(tmp_path / "curves.png") and iio.imread(res["figure"]).ndim == 3
    assert res["reach"] == {}  # no PPO run to compare with
    for s in (0, 1):
        assert (tmp_path / "bptt" / f"seed{s}" / "policy.pt").stat().st_size > 0


def test_goal_walker_faces_and_reward_prefer_the_goal():
    env = gym.make("diffsuite/GoalWalker-v0", max_steps=6, substeps=4)
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=3)
    task = env.unwrapped.task
    assert obs[-1] == np.float32(task.goal[0, 0]) and abs(task.goal[0, 0]) <= task.goal_cfg["max_speed"]
    vec = gym.make_vec("diffsuite/GoalWalker-v0", num_envs=4, vectorization_mode="vector_entry_point",
                       max_steps=6, substeps=4)
    obs, _ = vec.reset(seed=3)
    goals = vec.unwrapped.task.goal[:, 0].numpy()
    assert np.unique(goals).size == 4 and np.allclose(obs[:, -1], goals, atol=1e-6)
    # the differentiable face: a masked reset redraws only the reset worlds' goals
    diff = make_diff("diffsuite/GoalWalker-v0", num_envs=3, max_steps=6, substeps=4)
    diff.reset(seed=1)
    before = diff.task.goal.clone()
    obs, _ = diff.reset(mask=torch.tensor([True, False, True]))
    after = diff.task.goal
    assert torch.equal(after[1], before[1]) and not torch.equal(after[0], before[0])
    assert torch.allclose(obs[:, -1], after[:, 0].to(obs.dtype))
    # a centre moving at the goal velocity earns more than one moving at any other
    task.goal = torch.tensor([[0.05]], dtype=torch.float64)
    x0 = torch.rand(1, task.N, 2, dtype=torch.float64)
    a = torch.zeros(1, task.action_dim, dtype=torch.float64)

    def reward(v):
        return task.reward((x0, None), (x0 + torch.tensor([v, 0.0], dtype=torch.float64) * task.env_dt, None), a)
    at_goal = reward(0.05)
    assert torch.isfinite(at_goal).all()
    for v in (-0.05, 0.0, 0.02, 0.08, 0.2):
        assert reward(v) < at_goal


def test_bad_method_and_keys_raise_naming_them(cfg_path):
    with pytest.raises(ValueError, match="'sac'"):
        train.run(cfg_path, "sac", progress=False)
    with pytest.raises(ValueError, match="bptt.lr_typo"):
        train.run(cfg_path, "bptt", progress=False, bptt={"lr_typo": 1.0})
    with pytest.raises(ValueError, match="'shac'.*'horizon'"):
        train.run(cfg_path, "shac", progress=False, shac={"horizon": 0})
    with pytest.raises(ValueError, match="'ppo'.*'lr'"):
        train.load_config(cfg_path, ppo={"lr": float("nan")})
    with pytest.raises(ValueError, match="'bptt'"):
        train.experiment(cfg_path, methods=["bptt", "bppt"], progress=False)
    with pytest.raises(ValueError, match="'speed'"):
        GoalWalkerTask(speed=1.0)
    with pytest.raises(ValueError, match="max_speed"):
        GoalWalkerTask(max_speed=-1.0)
