"""Backpropagation through time: a policy trained on whole episodes of N worlds at once.

The policy is trajopt's SinePolicy (observation -> tanh MLP), optionally behind a running
observation normalizer (Actor). Each iteration resets every
world, rolls the episode out through the differentiable face (make_diff), and takes one
Adam step on minus the mean return over worlds, its gradient norm clipped.
"""
import numpy as np
import torch

from .. import make_diff
from .trajopt import SinePolicy


class ObsNorm(torch.nn.Module):
    """Running mean and variance of observations, merged batch by batch (Chan et al.); maps
    each feature to zero mean and unit variance, clamped to [-5, 5] as SHAC does. A feature
    that has never varied maps to 0."""

    def __init__(self, obs_dim):
        super().__init__()
        self.register_buffer("mean", torch.zeros(obs_dim))
        self.register_buffer("var", torch.ones(obs_dim))
        self.register_buffer("count", torch.zeros(()))

    @torch.no_grad()
    def update(self, obs):
        x = obs.detach().reshape(-1, obs.shape[-1]).to(self.mean.dtype)
        n, m, v = x.shape[0], x.mean(0), x.var(0, unbiased=False)
        total, d = self.count + n, m - self.mean
        self.var.copy_((self.var * self.count + v * n + d ** 2 * self.count * n / total) / total)
        self.mean.add_(d * n / total)
        self.count.copy_(total)

    def forward(self, obs):
        if self.count == 0:
            return obs
        z = (obs - self.mean) * torch.rsqrt(self.var.clamp_min(torch.finfo(self.var.dtype).tiny))
        return torch.where(self.var > 0, z, torch.zeros_like(z)).clamp(-5.0, 5.0)


class Actor(torch.nn.Module):
    """What BPTT and SHAC train and save: trajopt's SinePolicy behind an optional ObsNorm."""

    def __init__(self, obs_dim, action_dim, hidden, obs_norm=False):
        super().__init__()
        self.norm = ObsNorm(obs_dim) if obs_norm else None
        self.mlp = SinePolicy(obs_dim, action_dim, hidden)

    def normalize(self, obs):
        return obs if self.norm is None else self.norm(obs)

    def forward(self, obs):
        return self.mlp(self.normalize(obs))

    def update_norm(self, obs):
        """Fold observations (any leading shape) into the running statistics."""
        if self.norm is not None:
            self.norm.update(obs)


def actor_for(env, cfg):
    """A fresh Actor sized for env's spaces, in the simulator's float type (cfg: hidden, obs_norm)."""
    obs_dim, act_dim = env.single_observation_space.shape[0], env.single_action_space.shape[0]
    return Actor(obs_dim, act_dim, cfg["hidden"], cfg["obs_norm"]).to(env.dtype)


def rollout_return(env, policy, steps, seed):
    """Per-world return of `steps` env steps from a reset, still attached to the graph, and
    the observations met (steps, N, obs). A world that terminates stops earning."""
    obs, _ = env.reset(seed=seed)
    total = torch.zeros(env.num_envs, dtype=env.dtype, device=obs.device)
    alive = torch.ones(env.num_envs, dtype=torch.bool, device=obs.device)
    seen = []
    for _ in range(steps):
        seen.append(obs.detach())
        obs, r, term, _, _ = env.step(policy(obs))
        total = total + torch.where(alive, r, torch.zeros_like(r))
        alive = alive & ~term
    return total, torch.stack(seen)


def set_lr(opt, lr):
    for group in opt.param_groups:
        group["lr"] = lr


def decayed(lr, cfg, it):
    """The step size of iteration it (from 0): lr, falling linearly towards 0 with cfg["lr_decay"]."""
    return lr * (1 - it / cfg["iterations"]) if cfg["lr_decay"] else lr


def clipped_step(opt, params, loss, max_norm, what):
    """One optimizer step on loss with the gradient norm clipped; a NaN/Inf loss or gradient
    raises instead of poisoning the parameters. Returns the gradient norm before clipping."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{what}: loss is {loss.item()}")
    opt.zero_grad()
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    if not torch.isfinite(norm):
        raise FloatingPointError(f"{what}: gradient norm is {norm.item()}")
    opt.step()
    return float(norm)


class BPTT:
    """Trainer state: env, policy, optimizer and the seed stream of the resets.

    cfg: worlds, iterations, lr, lr_decay, hidden, obs_norm, grad_clip, clip (adjoint clip of
    make_diff or null), plus the bookkeeping keys train.py reads (eval_every, checkpoint_every)."""

    def __init__(self, env_id, env_config, cfg, seed):
        torch.manual_seed(seed)
        self.env = make_diff(env_id, num_envs=cfg["worlds"], clip=cfg["clip"], **env_config)
        self.steps = self.env.task.max_steps
        self.policy = actor_for(self.env, cfg)
        self.opt = torch.optim.Adam(self.policy.parameters(), lr=cfg["lr"])
        self.cfg, self.rng, self.it = cfg, np.random.default_rng(seed), 0
        self.env_steps_per_iteration = self.env.num_envs * self.steps

    def iteration(self):
        """One gradient step on a fresh episode of every world (the observation statistics
        fixed during it, updated after). Returns its mean return."""
        ret, seen = rollout_return(self.env, self.policy, self.steps, int(self.rng.integers(2 ** 31)))
        set_lr(self.opt, decayed(self.cfg["lr"], self.cfg, self.it))
        clipped_step(self.opt, self.policy.parameters(), -ret.mean(), self.cfg["grad_clip"], "bptt")
        self.policy.update_norm(seen)
        self.it += 1
        return ret.mean().item()

    def act(self, obs):
        """The deterministic action for evaluation."""
        return self.policy(obs)

    def state_dict(self):
        return {"policy": self.policy.state_dict(), "opt": self.opt.state_dict(),
                "rng": self.rng.bit_generator.state, "it": self.it}

    def load_state_dict(self, s):
        self.policy.load_state_dict(s["policy"])
        self.opt.load_state_dict(s["opt"])
        self.rng.bit_generator.state, self.it = s["rng"], s["it"]
