"""Gymnasium environments with three faces: gymnasium.make, gymnasium.make_vec, make_diff."""
from .. import sims  # noqa: F401  (first: it sets OMP_WAIT_POLICY before torch loads)

import gymnasium as gym  # noqa: E402

from .diff_env import DiffEnv  # noqa: E402
from .fluid import FluidTransportTask  # noqa: E402
from .goal_walker import GoalWalkerTask
from .gym_env import GymEnv, VecEnv
from .rope import RopeShapeTask
from .shaping import ShapingTask
from .soft_walker import SoftWalkerTask
from .tactile import TactileDoughTask, TactilePoseTask, TactilePressTask, TactileSlideTask
from .walker import WalkerTask



def _shaping(default):
    def make(config=None, **overrides):
        return ShapingTask(config or default, **overrides)
    make.__doc__ = f"ShapingTask with configs/{default}.yaml unless another config is given."
    return make


TASKS = {"diffsuite/MassSpringWalker-v0": WalkerTask, "diffsuite/SoftWalker-v0": SoftWalkerTask,
         "diffsuite/PlasticinePress-v0": ShapingTask, "diffsuite/PlasticinePinch-v0": _shaping("plasticine_pinch"),
         "diffsuite/SandPush-v0": _shaping("sand_push"),
         "diffsuite/FluidTransport-v0": FluidTransportTask,
         "diffsuite/RopeShape-v0": RopeShapeTask,
         "diffsuite/TactilePress-v0": TactilePressTask, "diffsuite/TactileSlide-v0": TactileSlideTask,
         "diffsuite/TactilePose-v0": TactilePoseTask, "diffsuite/TactileDough-v0": TactileDoughTask,
         "diffsuite/GoalWalker-v0": GoalWalkerTask}


def _env(task_cls):
    def make(render_mode=None, config=None, **overrides):
        return GymEnv(task_cls(config, **overrides), render_mode=render_mode)
    return make


def _vec(task_cls):
    def make(num_envs=1, render_mode=None, config=None, **overrides):
        return VecEnv(task_cls(config, **overrides), num_envs=num_envs, render_mode=render_mode)
    return make


def make_diff(env_id, num_envs=1, config=None, clip=None, device=None, **overrides):
    """The differentiable torch face of a registered environment, N worlds in one launch.
    clip: None raises on a NaN/Inf gradient; a number clips the adjoint (DiffEnv).
    device: where its tensors live (default the CPU; e.g. "cuda" with DIFFSUITE_ARCH=cuda)."""
    if env_id not in TASKS:
        raise ValueError(f"unknown environment {env_id!r}; known: {sorted(TASKS)}")
    return DiffEnv(TASKS[env_id](config, **overrides), num_envs=num_envs, clip=clip, device=device)


for _id, _task in TASKS.items():
    if _id not in gym.registry:
        gym.register(_id, entry_point=_env(_task), vector_entry_point=_vec(_task))

__all__ = ["DiffEnv", "GymEnv", "VecEnv", "WalkerTask", "SoftWalkerTask", "ShapingTask", "FluidTransportTask", "RopeShapeTask", "TactilePressTask", "TactileSlideTask", "TactilePoseTask", "TactileDoughTask", "GoalWalkerTask", "TASKS", "make_diff"]
