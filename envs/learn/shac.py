"""Short-Horizon Actor-Critic (Xu et al., ICLR 2022): first-order policy learning over many worlds.

Every iteration rolls all worlds `horizon` env steps on from where the last window stopped
(episodes carry across windows, reset automatically at their end) and steps the actor on

    -(sum_t gamma^t r_t + gamma^h V'(s_h)) / (horizon * worlds),

backpropagated through the simulator; V' is a target copy of the critic. A world whose
episode ends inside the window closes its sum there (bootstrapped from the observation
before the reset when truncated, 0 when terminated) and starts a new one. The critic then
fits TD(lambda) targets on the window's detached observations and the target follows it
by Polyak averaging. env.detach() cuts the graph between windows. With obs_norm the actor
and critic see observations normalized by running statistics (fixed within a window).
"""
import copy

import numpy as np
import torch

from .. import make_diff
from .bptt import actor_for, clipped_step, decayed, set_lr


class Critic(torch.nn.Module):
    """V(observation): an ELU MLP with a linear output, as SHAC's critic."""

    def __init__(self, obs_dim, hidden=64, layers=2):
        super().__init__()
        mods, width = [], obs_dim
        for _ in range(layers):
            mods += [torch.nn.Linear(width, hidden), torch.nn.ELU()]
            width = hidden
        self.net = torch.nn.Sequential(*mods, torch.nn.Linear(width, 1))

    def forward(self, obs):
        return self.net(obs)[..., 0]


def lambda_returns(rewards, next_values, dones, gamma, lam):
    """TD(lambda) targets G_t = r_t + gamma ((1 - lam) V(s_t+1) + lam G_t+1) over a window of
    shape (h, N); the recursion stops at the window's end and where an episode ended
    (next_values there already hold the bootstrap: V of the final observation, or 0)."""
    h = rewards.shape[0]
    out = torch.empty_like(rewards)
    out[-1] = g = rewards[-1] + gamma * next_values[-1]
    for t in reversed(range(h - 1)):
        lam_t = torch.where(dones[t], torch.zeros_like(g), torch.full_like(g, lam))
        out[t] = g = rewards[t] + gamma * ((1 - lam_t) * next_values[t] + lam_t * g)
    return out


class SHAC:
    """Trainer state: env (episodes carried across windows), actor, critic, target critic,
    their optimizers, and the generator of the critic's minibatches.

    cfg: worlds, iterations, horizon, gamma, lam, actor_lr, critic_lr, lr_decay, betas, hidden, obs_norm,
    critic_hidden, critic_iterations, minibatches, target_alpha, grad_clip, clip, plus the
    bookkeeping keys train.py reads (eval_every, checkpoint_every)."""

    def __init__(self, env_id, env_config, cfg, seed):
        torch.manual_seed(seed)
        self.cfg = cfg
        self.env = make_diff(env_id, num_envs=cfg["worlds"], clip=cfg["clip"], **env_config)
        self.policy = actor_for(self.env, cfg)
        self.critic = Critic(self.env.single_observation_space.shape[0], cfg["critic_hidden"]).to(self.env.dtype)
        self.target = copy.deepcopy(self.critic).requires_grad_(False)
        betas = tuple(cfg["betas"])
        self.actor_opt = torch.optim.Adam(self.policy.parameters(), lr=cfg["actor_lr"], betas=betas)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg["critic_lr"], betas=betas)
        self.gen, self.it = torch.Generator().manual_seed(seed), 0
        self.obs, _ = self.env.reset(seed=seed)
        self.env_steps_per_iteration = self.env.num_envs * cfg["horizon"]

    def iteration(self):
        """One window: an actor step through the simulator, then the critic's fit, then the
        observation statistics (fixed during the window, as the critic's inputs). Returns the
        window's mean reward per env step."""
        c = self.cfg
        set_lr(self.actor_opt, decayed(c["actor_lr"], c, self.it))
        set_lr(self.critic_opt, decayed(c["critic_lr"], c, self.it))
        raw, normed, rewards, next_values, dones, loss = self._window()
        clipped_step(self.actor_opt, self.policy.parameters(), loss, self.cfg["grad_clip"], "shac actor")
        self.env.detach()
        self.obs = self.obs.detach()
        self._fit_critic(torch.stack(normed), lambda_returns(torch.stack(rewards), torch.stack(next_values),
                                                             torch.stack(dones), self.cfg["gamma"], self.cfg["lam"]))
        self.policy.update_norm(torch.stack(raw))
        self.it += 1
        return torch.stack(rewards).mean().item()

    def _window(self):
        c, env, like = self.cfg, self.env, self.obs
        gamma, N, h = c["gamma"], env.num_envs, c["horizon"]
        disc = like.new_ones(N)    # gamma^(steps since the episode's start in this window)
        ret = like.new_zeros(N)    # discounted reward since then
        loss = like.new_zeros(())

        def value(o):
            return self.target(self.policy.normalize(o))
        obs, raw, normed, rewards, next_values, dones = self.obs.detach(), [], [], [], [], []
        for t in range(h):
            raw.append(obs.detach())
            normed.append(self.policy.normalize(obs).detach())
            obs, r, term, trunc, info = env.step(self.policy(obs))
            done = term | trunc
            v = value(obs)
            if done.any():  # the obs returned is the next episode's first: bootstrap from the final one
                v = torch.where(trunc & ~term, value(info["final_obs"]), torch.where(term, 0.0, v))
            ret = ret + disc * r
            close = done if t < h - 1 else torch.ones_like(done)
            loss = loss - torch.where(close, ret + gamma * disc * v, torch.zeros_like(ret)).sum()
            disc = torch.where(done, torch.ones_like(disc), disc * gamma)
            ret = torch.where(done, torch.zeros_like(ret), ret)
            rewards.append(r.detach())
            next_values.append(v.detach())
            dones.append(done)
        self.obs = obs
        return raw, normed, rewards, next_values, dones, loss / (h * N)

    def _fit_critic(self, obs, targets):
        """Minibatch regression of V (on normalized observations) on the TD(lambda) targets,
        then the Polyak update."""
        c = self.cfg
        obs, targets = obs.reshape(-1, obs.shape[-1]), targets.reshape(-1)
        for _ in range(c["critic_iterations"]):
            for idx in torch.randperm(len(obs), generator=self.gen).chunk(c["minibatches"]):
                loss = ((self.critic(obs[idx]) - targets[idx]) ** 2).mean()
                clipped_step(self.critic_opt, self.critic.parameters(), loss, c["grad_clip"], "shac critic")
        with torch.no_grad():
            for p_t, p in zip(self.target.parameters(), self.critic.parameters()):
                p_t.mul_(c["target_alpha"]).add_((1 - c["target_alpha"]) * p)

    def act(self, obs):
        """The deterministic action for evaluation."""
        return self.policy(obs)

    def state_dict(self):
        env = self.env.get_state()
        return {"policy": self.policy.state_dict(), "critic": self.critic.state_dict(),
                "target": self.target.state_dict(), "actor_opt": self.actor_opt.state_dict(),
                "critic_opt": self.critic_opt.state_dict(), "gen": self.gen.get_state(), "it": self.it,
                "env": {"state": tuple(s.detach().clone() for s in env["state"]), "t": env["t"]},
                "env_rng": _rng_state(self.env), "task": _task_state(self.env.task), "obs": self.obs.detach().clone()}

    def load_state_dict(self, s):
        self.policy.load_state_dict(s["policy"])
        self.critic.load_state_dict(s["critic"])
        self.target.load_state_dict(s["target"])
        self.actor_opt.load_state_dict(s["actor_opt"])
        self.critic_opt.load_state_dict(s["critic_opt"])
        self.gen.set_state(s["gen"])
        self.it = s["it"]
        self.env.set_state(s["env"])
        if s["env_rng"] is not None:
            self.env.rng.bit_generator.state = s["env_rng"]
        for k, v in s["task"].items():
            setattr(self.env.task, k, v)
        self.obs = s["obs"]


def _rng_state(env):
    """The numpy generator the env draws its automatic resets from (None if it has none)."""
    rng = getattr(env, "rng", None)
    return rng.bit_generator.state if isinstance(rng, np.random.Generator) else None


def _task_state(task):
    """Per-world episode data a task keeps outside the simulator state (GoalWalker's goal)."""
    return {k: getattr(task, k).clone() for k in getattr(task, "episode_keys", ())}
