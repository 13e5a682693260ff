"""DiffTaichi's sine-feature MLP controller, evaluated inside a simulator's segment kernel.

Inputs per substep: n_sines features sin(omega * time + 2 pi j / n_sines), each mass's
position relative to the centre of mass and its velocity (times `scale`), and optionally a
goal's offset from the centre; one tanh hidden layer; tanh outputs, one per actuator, added
to that actuator's open-loop action. The weights are per-world simulator parameters
(ctrl_w1, ctrl_b1, ctrl_w2, ctrl_b2), so their gradients reach torch like any parameter's,
and closed-loop control costs about what open-loop control does: no launch per substep.
"""
import math

import numpy as np

DEFAULTS = dict(hidden=32, sines=10, omega=10.0, scale=0.05, goal=None, seed=0)


class SineMLP:
    """The controller's sizes and initial weights (the kernel code lives in the simulator)."""

    def __init__(self, spec, n_masses, dim, n_actuators):
        spec = dict(spec or {})
        unknown = sorted(set(spec) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"unknown controller key(s) {unknown}; allowed {sorted(DEFAULTS)}")
        c = {**DEFAULTS, **spec}
        self.hidden, self.sines = int(c["hidden"]), int(c["sines"])
        if self.hidden < 1 or self.sines < 0:
            raise ValueError(f"controller 'hidden' must be >= 1 and 'sines' >= 0, got {c['hidden']!r}, {c['sines']!r}")
        self.omega, self.scale, self.seed = float(c["omega"]), float(c["scale"]), int(c["seed"])
        self.goal = None if c["goal"] is None else [float(g) for g in c["goal"]]
        self.has_goal = self.goal is not None
        if self.goal is not None and len(self.goal) != dim:
            raise ValueError(f"controller 'goal' must have {dim} numbers, got {c['goal']!r}")
        self.N, self.dim, self.outputs = n_masses, dim, n_actuators
        self.inputs = self.sines + 2 * dim * n_masses + (dim if self.has_goal else 0)

    def params(self):
        """(name, per-world shape) of the weights."""
        return [("ctrl_w1", (self.hidden, self.inputs)), ("ctrl_b1", (self.hidden,)),
                ("ctrl_w2", (self.outputs, self.hidden)), ("ctrl_b2", (self.outputs,))]

    def initial_weights(self):
        """DiffTaichi's initialization: N(0, 1) * sqrt(2 / (fan_in + fan_out)) * 2 (hidden) or
        * 3 (outputs), zero biases, from this controller's seed."""
        rng = np.random.default_rng(self.seed)
        H, I, O = self.hidden, self.inputs, self.outputs
        return {"ctrl_w1": rng.standard_normal((H, I)) * math.sqrt(2.0 / (H + I)) * 2,
                "ctrl_b1": np.zeros(H),
                "ctrl_w2": rng.standard_normal((O, H)) * math.sqrt(2.0 / (H + O)) * 3,
                "ctrl_b2": np.zeros(O)}
