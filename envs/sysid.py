"""System identification: fit material parameters to an observed particle trajectory."""
import numpy as np
import torch
from tqdm import tqdm

from ..sims import torch_ops


def fit(task, observed, actions, guess, iterations=60, lr=0.05, progress=True):
    """Fit log-parameters so that simulated positions match `observed` (B, steps, P, dim).

    Adam with light momentum and a decaying step: few parameters and a narrow valley, where
    full momentum overshoots and L-BFGS's long trial steps leave the stable range of dt.
    guess: dict name -> initial value (one material). Returns the history of
    (loss, {name: value}) per iteration and the final estimate.
    """
    sim = task.make_sim(1)
    dtype = torch.float64 if sim.np_dtype == np.float64 else torch.float32
    state0 = tuple(torch.as_tensor(s, dtype=dtype) for s in task.initial_state(sim, np.random.default_rng(0)))
    base = {k: torch.as_tensor(v, dtype=dtype) for k, v in sim.get_params().items()}
    logs = {k: torch.tensor(np.log(v), dtype=dtype, requires_grad=True) for k, v in guess.items()}
    opt = torch.optim.Adam(list(logs.values()), lr=lr, betas=(0.5, 0.99))
    decay = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.05 ** (1 / iterations))
    obs = torch.as_tensor(observed, dtype=dtype)
    acts = task.to_sim(torch.as_tensor(actions, dtype=dtype))
    scale = obs.var().clamp_min(1e-12)
    history = []
    for _ in tqdm(range(iterations), desc="sysid", disable=not progress):
        params = {k: (torch.exp(logs[k]) * torch.ones_like(v) if k in logs else v) for k, v in base.items()}
        states, _ = torch_ops.rollout(sim, state0, params, acts, substeps=task.substeps)
        loss = ((states[0] - obs) ** 2).mean() / scale
        history.append((loss.item(), {k: float(torch.exp(v.detach())) for k, v in logs.items()}))
        opt.zero_grad()
        loss.backward()
        opt.step()
        decay.step()
    sim.free()
    return history, {k: float(torch.exp(v)) for k, v in logs.items()}


def observe(task, actions):
    """The true trajectory: particle positions after every env step, (1, steps, P, dim)."""
    sim = task.make_sim(1)
    dtype = torch.float64 if sim.np_dtype == np.float64 else torch.float32
    state0 = tuple(torch.as_tensor(s, dtype=dtype) for s in task.initial_state(sim, np.random.default_rng(0)))
    with torch.no_grad():
        states, _ = torch_ops.rollout(sim, state0, None, task.to_sim(torch.as_tensor(actions, dtype=dtype)),
                                      substeps=task.substeps)
    sim.free()
    return states[0].numpy()
