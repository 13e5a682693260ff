"""A shared check of an environment's differentiable face (imported by the env tests)."""
import torch


def gradcheck_episode(env, mean_action, steps, param, nondet_tol=0.0, atol=1e-5, rtol=1e-4, seed=0):
    """torch.autograd.gradcheck of an episode's rewards + observations w.r.t. its actions
    (near mean_action) and one parameter of env.params, in float64."""
    g = torch.Generator().manual_seed(seed)
    acts = (torch.tensor(mean_action) + 0.2 * torch.rand(env.num_envs, steps, len(mean_action), generator=g))
    acts = acts.double().requires_grad_()
    value = env.params[param].clone().requires_grad_()

    def episode(a, p):
        env.params[param] = p
        env.reset()
        total = 0
        for t in range(steps):
            obs, r, *_ = env.step(a[:, t])
            total = total + r.sum() + obs.sum()
        return total
    return torch.autograd.gradcheck(episode, (acts, value), eps=1e-6, atol=atol, rtol=rtol, nondet_tol=nondet_tol)
