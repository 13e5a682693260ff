"""What the walking tasks share: a clock for the policy and the forward-progress reward."""
import math

import torch


def phase_features(t, env_dt, omega, n, like):
    """sin(omega * time + 2 pi j / n), j < n, broadcast to like's batch shape (like: (..., P, dim))."""
    j = torch.arange(int(n), dtype=like.dtype)
    time = torch.as_tensor(t, dtype=like.dtype) * env_dt
    phase = torch.sin(omega * time[..., None] + 2 * math.pi * j / max(len(j), 1))
    return phase.expand(*like.shape[:-2], len(j))


def forward_reward(prev_x, x, action, env_dt, weights):
    """forward * (centre-of-mass x velocity) - ctrl * mean(action^2)."""
    forward = (x[..., 0].mean(-1) - prev_x[..., 0].mean(-1)) / env_dt
    return weights["forward"] * forward - weights["ctrl"] * (action ** 2).mean(-1)
