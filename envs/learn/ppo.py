"""stable-baselines3 PPO, unchanged, on the vector face: one diffsuite VecEnv (N worlds in one
launch) behind SB3's VecEnv API, and a trainer that records and checkpoints through a callback."""
import copy
import time

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecNormalize


class SB3VecEnv(VecEnv):
    """SB3's VecEnv over a Gymnasium 1.x vector env with same-step autoreset.

    A finished world's last observation (info["final_obs"] where info["_final_obs"]) goes
    to infos[i]["terminal_observation"], with infos[i]["TimeLimit.truncated"] set when it
    was truncated rather than terminated (PPO bootstraps those), and infos[i]["episode"]
    holds its return and length as SB3's VecMonitor writes them."""

    def __init__(self, venv):
        self.venv = venv
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._ret = np.zeros(self.num_envs)
        self._len = np.zeros(self.num_envs, dtype=np.int64)
        self._t0 = time.perf_counter()

    def reset(self):
        obs, _ = self.venv.reset(seed=self._seeds[0])  # one seed: the worlds share one generator
        self._reset_seeds()
        self._ret[:], self._len[:] = 0.0, 0
        return obs

    def step_async(self, actions):
        self._actions = actions

    def step_wait(self):
        obs, rew, term, trunc, info = self.venv.step(self._actions)
        dones = term | trunc
        self._ret += rew
        self._len += 1
        infos = [{} for _ in range(self.num_envs)]
        final = info.get("_final_obs", np.zeros(self.num_envs, bool))
        for i in np.flatnonzero(dones):
            if not final[i]:
                raise RuntimeError(f"world {i} ended without info['final_obs']: expected same-step autoreset")
            infos[i] = {"terminal_observation": np.asarray(info["final_obs"][i]),
                        "TimeLimit.truncated": bool(trunc[i] and not term[i]),
                        "episode": {"r": float(self._ret[i]), "l": int(self._len[i]),
                                    "t": round(time.perf_counter() - self._t0, 6)}}
        self._ret[dones], self._len[dones] = 0.0, 0
        return obs, rew.astype(np.float32), dones, infos

    def close(self):
        self.venv.close()

    def get_attr(self, attr_name, indices=None):
        return [getattr(self.venv, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name, value, indices=None):
        setattr(self.venv, attr_name, value)

    def env_method(self, method_name, *method_args, indices=None, **method_kwargs):
        """The worlds share one env object: the method runs once, its result is repeated."""
        out = getattr(self.venv, method_name)(*method_args, **method_kwargs)
        return [out] * len(self._indices(indices))

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False] * len(self._indices(indices))

    def get_images(self):
        return self.venv.render()

    def _indices(self, indices):
        if indices is None:
            return range(self.num_envs)
        return [indices] if isinstance(indices, int) else list(indices)

    def get_state(self):
        """Worlds' state, clock, reset generator and episode counters (for exact resume).
        Reaches into the diffsuite VecEnv's differentiable face."""
        diff = self.venv.unwrapped.diff
        snap = diff.get_state()
        return {"state": tuple(s.clone() for s in snap["state"]), "t": snap["t"],
                "rng": diff.rng.bit_generator.state, "ret": self._ret.copy(), "len": self._len.copy(),
                "task": {k: getattr(diff.task, k).clone() for k in getattr(diff.task, "episode_keys", ())}}

    def set_state(self, s):
        diff = self.venv.unwrapped.diff
        diff.set_state(s)
        diff.rng.bit_generator.state = s["rng"]
        self._ret, self._len = s["ret"].copy(), s["len"].copy()
        for k, v in s["task"].items():
            setattr(diff.task, k, v)


def make_vec_env(env_id, num_envs, env_config):
    """SB3's view of gymnasium.make_vec(env_id, N) on its vector entry point (one launch)."""
    return SB3VecEnv(gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **env_config))


def model_for(venv, cfg, seed):
    """PPO with SB3's own MlpPolicy (tanh hidden layers of cfg["hidden"]) and cfg's hyperparameters."""
    net = list(cfg["net"])
    return PPO("MlpPolicy", venv, learning_rate=cfg["lr"], n_steps=cfg["n_steps"], batch_size=cfg["batch_size"],
               n_epochs=cfg["n_epochs"], gamma=cfg["gamma"], gae_lambda=cfg["gae_lambda"], clip_range=cfg["clip_range"],
               ent_coef=cfg["ent_coef"], max_grad_norm=cfg["max_grad_norm"], seed=seed, device="cpu", verbose=0,
               policy_kwargs={"net_arch": {"pi": net, "vf": net}, "activation_fn": torch.nn.Tanh})


def deterministic_actor(policy, normalize=None):
    """torch observations -> PPO's mean action clipped to [-1, 1] (how SB3 acts when
    deterministic); normalize: observations -> what the policy saw in training (numpy)."""
    def act(obs):
        o = obs.detach().cpu().numpy().astype(np.float32)
        a, _ = policy.predict(o if normalize is None else normalize(o), deterministic=True)
        return torch.as_tensor(a, dtype=obs.dtype, device=obs.device)
    return act


class Hooks(BaseCallback):
    """Calls on_rollout(model, final) before each rollout (after the first, the policy has just
    been updated) and once at the end of training."""

    def __init__(self, on_rollout):
        super().__init__()
        self.on_rollout = on_rollout

    def _on_rollout_start(self):
        self.on_rollout(self.model, final=False)

    def _on_step(self):
        return True

    def _on_training_end(self):
        self.on_rollout(self.model, final=True)


class PPOTrainer:
    """SB3 PPO and its vector env (behind SB3's VecNormalize if cfg["normalize"]), with the
    state an exact resume needs."""

    def __init__(self, env_id, env_config, cfg, seed):
        self.cfg = cfg
        self.venv = make_vec_env(env_id, cfg["worlds"], env_config)
        self.norm = VecNormalize(self.venv, gamma=cfg["gamma"]) if cfg["normalize"] else None
        self.model = model_for(self.norm or self.venv, cfg, seed)

    def learn(self, total_steps, on_rollout):
        """Train until total_steps env steps (summed over worlds); on_rollout(model, final) as Hooks."""
        remaining = total_steps - self.model.num_timesteps
        if remaining > 0:
            self.model.learn(remaining, callback=Hooks(on_rollout), reset_num_timesteps=self.model.num_timesteps == 0)

    def act(self, obs):
        return deterministic_actor(self.model.policy, self.norm and self.norm.normalize_obs)(obs)

    def obs_stats(self):
        """What replay needs to normalize observations as training did (None without VecNormalize)."""
        if self.norm is None:
            return None
        rms = self.norm.obs_rms
        return {"mean": torch.as_tensor(rms.mean), "var": torch.as_tensor(rms.var),
                "clip": float(self.norm.clip_obs), "epsilon": float(self.norm.epsilon)}

    def state_dict(self):
        m, n = self.model, self.norm
        return {"policy": m.policy.state_dict(), "opt": m.policy.optimizer.state_dict(),
                "num_timesteps": m.num_timesteps, "n_updates": m._n_updates, "last_obs": m._last_obs.copy(),
                "last_episode_starts": m._last_episode_starts.copy(), "env": self.venv.get_state(),
                "norm": n and {"obs_rms": copy.deepcopy(n.obs_rms), "ret_rms": copy.deepcopy(n.ret_rms),
                               "returns": n.returns.copy()}}

    def load_state_dict(self, s):
        m = self.model
        m.policy.load_state_dict(s["policy"])
        m.policy.optimizer.load_state_dict(s["opt"])
        m.num_timesteps, m._n_updates = s["num_timesteps"], s["n_updates"]
        m._last_obs, m._last_episode_starts = s["last_obs"].copy(), s["last_episode_starts"].copy()
        self.venv.set_state(s["env"])
        if s["norm"] is not None:
            n = copy.deepcopy(s["norm"])
            self.norm.obs_rms, self.norm.ret_rms, self.norm.returns = n["obs_rms"], n["ret_rms"], n["returns"]
