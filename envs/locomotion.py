"""What the walking tasks share: a clock for the policy and the forward-progress reward."""
import functools
import math

import torch


def phase_features(t, env_dt, omega, n, like):
    """sin(omega * time + 2 pi j / n), j < n, broadcast to like's batch shape (like: (..., P, dim))."""
    offsets = _offsets(int(n), like.dtype, like.device)
    time = torch.as_tensor(t, dtype=like.dtype, device=like.device) * (omega * env_dt)
    return torch.sin(time[..., None] + offsets).expand(*like.shape[:-2], len(offsets))


@functools.lru_cache(maxsize=None)
def _offsets(n, dtype, device):
    return 2 * math.pi * torch.arange(n, dtype=dtype, device=device) / max(n, 1)


def forward_reward(prev_x, x, action, env_dt, weights):
    """forward * (centre-of-mass x velocity) - ctrl * mean(action^2)."""
    forward = (x[..., 0].mean(-1) - prev_x[..., 0].mean(-1)) / env_dt
    return weights["forward"] * forward - weights["ctrl"] * (action ** 2).mean(-1)
