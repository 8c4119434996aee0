"""Reward-term functions and geometric predicates shared by the tasks (batched over N environments).

Every function takes a :class:`~franka_sim.tasks.base.TaskState` plus keyword parameters and returns (N,)
floats (or bools for predicates); they are referenced by :class:`~franka_sim.tasks.base.RewardTerm`.
"""

from __future__ import annotations

import numpy as np
from residual_core.action import ActionSpec

from franka_sim.tasks.base import TaskState

UNIT_BOUNDS = (0.0, 1.0)
"""Bounds of every term below that returns a value in [0, 1] (reach, grasp, lift, xy_approach, joint_progress,
axis_alignment) and of a task's success indicator."""


def action_l2_bounds(spec: ActionSpec | None = None) -> tuple[float, float]:
    """Bounds of :func:`action_l2` for actions clipped to ``spec`` (default: residual_core's ActionSpec).

    The upper bound is computed as :func:`action_l2` computes the value, so an action at the clip limits meets it
    exactly. A simulator run with a wider ActionSpec needs a task reward config with wider bounds.
    """
    high = (spec or ActionSpec()).high
    return 0.0, float(np.sum(np.square(high[None, :6]), axis=-1)[0])


ACTION_L2_BOUNDS = action_l2_bounds()
"""Bounds of :func:`action_l2` under the default ActionSpec (the sim's default)."""


def in_tcp_frame(state: TaskState, point: np.ndarray) -> np.ndarray:
    """(N, 3) world points expressed in the TCP frame."""
    return np.einsum("nji,nj->ni", state.tcp_mat, point - state.tcp_pos)


def is_grasped(state: TaskState, obj: str, width: float, offset: tuple[float, float, float] = (0.0, 0.0, 0.0)):
    """(N,) bool: the point ``offset`` (object frame) of ``obj`` sits between the closed pads.

    The point must lie in the pad region of the TCP frame (|x| < 2 cm, |y| < 2 cm, z within [-3, +1.5] cm) and
    the gripper must have closed onto an object of about ``width`` (m) across the fingers.
    """
    p = state.obj_pos[obj] + np.einsum("nij,j->ni", state.obj_mat[obj], np.asarray(offset, dtype=np.float64))
    local = in_tcp_frame(state, p)
    inside = (np.abs(local[:, 0]) < 0.02) & (np.abs(local[:, 1]) < 0.02) & (local[:, 2] > -0.03) & (local[:, 2] < 0.015)
    closed = (state.gripper_width < width + 0.004) & (state.gripper_width > width - 0.015)
    return inside & closed


def is_released(state: TaskState, obj: str, width: float, far: float = 0.1) -> np.ndarray:
    """(N,) bool: the gripper is open wider than ``width`` + 4 mm, or the TCP is ``far`` (m) from ``obj``."""
    dist = np.linalg.norm(state.tcp_pos - state.obj_pos[obj], axis=-1)
    return (state.gripper_width > width + 0.004) | (dist > far)


def reach(state: TaskState, obj: str, scale: float = 10.0, offset: tuple[float, float, float] = (0.0, 0.0, 0.0)):
    """1 - tanh(scale * distance from the TCP to the point ``offset`` (object frame) of ``obj``)."""
    p = state.obj_pos[obj] + np.einsum("nij,j->ni", state.obj_mat[obj], np.asarray(offset, dtype=np.float64))
    return 1.0 - np.tanh(scale * np.linalg.norm(state.tcp_pos - p, axis=-1))


def grasp(state: TaskState, obj: str, width: float, offset: tuple[float, float, float] = (0.0, 0.0, 0.0)):
    """1 while ``obj`` is grasped (see :func:`is_grasped`), else 0."""
    return is_grasped(state, obj, width, offset).astype(np.float64)


def lift(state: TaskState, obj: str, rest_z: float, height: float) -> np.ndarray:
    """Height of ``obj`` above its resting height, as a fraction of ``height``, clipped to [0, 1]."""
    return np.clip((state.obj_pos[obj][:, 2] - rest_z) / height, 0.0, 1.0)


def xy_approach(state: TaskState, obj: str, goal: str, scale: float, rest_z: float, min_lift: float,
                goal_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """1 - tanh(scale * horizontal distance from ``obj`` to ``goal``), counted once ``obj`` is lifted ``min_lift``."""
    g = state.obj_pos[goal] + np.asarray(goal_offset, dtype=np.float64)
    d = np.linalg.norm(state.obj_pos[obj][:, :2] - g[:, :2], axis=-1)
    lifted = state.obj_pos[obj][:, 2] > rest_z + min_lift
    return (1.0 - np.tanh(scale * d)) * (lifted | (d < 0.02))


def joint_progress(state: TaskState, joint: str, initial_key: str) -> np.ndarray:
    """Fraction of the initial joint position removed: 1 - q / q0, clipped to [0, 1] (e.g. a drawer closing)."""
    q0 = np.maximum(state.episode[initial_key], 1e-6)
    return np.clip(1.0 - state.joints[joint] / q0, 0.0, 1.0)


def axis_alignment(state: TaskState, obj: str, axis: int = 2) -> np.ndarray:
    """(1 + cos(angle between the object's ``axis`` and world z)) / 2, in [0, 1]."""
    return 0.5 * (1.0 + state.obj_mat[obj][:, 2, axis])


def action_l2(state: TaskState) -> np.ndarray:
    """Squared norm of the translation (m) and rotation (rad) parts of the step's action (0 after reset)."""
    if state.action is None:
        return np.zeros(state.num_envs)
    return np.sum(np.square(state.action[:, :6]), axis=-1)
