"""Observation dictionaries of the environments (privileged state, base frame, quaternions x, y, z, w).

Keys (single env shapes; the vector env adds a leading N):
  ``joint_pos`` (7,), ``joint_vel`` (7,), ``gripper_width`` (1,), ``tcp_pos`` (3,), ``tcp_quat`` (4,),
  ``object_pos`` (K, 3), ``object_quat`` (K, 4) for the task's K objects in ``TASK_OBJECTS`` order,
  and ``image`` (H, W, 3) uint8 when the env renders its camera.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from scipy.spatial.transform import Rotation

from franka_sim import robot
from franka_sim.sim import BatchSim

STATE_KEYS: tuple[str, ...] = (
    "joint_pos", "joint_vel", "gripper_width", "tcp_pos", "tcp_quat", "object_pos", "object_quat"
)


def observation_space(num_objects: int, image_size: tuple[int, int] | None) -> spaces.Dict:
    """The Dict space of one environment's observation (``image_size`` = (height, width) or None)."""
    inf = np.inf
    d = {
        "joint_pos": spaces.Box(robot.Q_MIN, robot.Q_MAX, dtype=np.float64),
        "joint_vel": spaces.Box(-inf, inf, (7,), np.float64),
        "gripper_width": spaces.Box(0.0, 2 * robot.FINGER_MAX + 1e-3, (1,), np.float64),
        "tcp_pos": spaces.Box(-inf, inf, (3,), np.float64),
        "tcp_quat": spaces.Box(-1.0, 1.0, (4,), np.float64),
        "object_pos": spaces.Box(-inf, inf, (num_objects, 3), np.float64),
        "object_quat": spaces.Box(-1.0, 1.0, (num_objects, 4), np.float64),
    }
    if image_size is not None:
        d["image"] = spaces.Box(0, 255, (image_size[0], image_size[1], 3), np.uint8)
    return spaces.Dict(d)


def mats_to_quats(mats: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 4) x, y, z, w quaternions with w >= 0."""
    flat = mats.reshape(-1, 3, 3)
    q = Rotation.from_matrix(flat).as_quat(canonical=True)
    return q.reshape(mats.shape[:-2] + (4,))


def batched_observations(sim: BatchSim) -> dict[str, np.ndarray]:
    """State observations of every simulation of ``sim``, (N, ...) arrays."""
    n = sim.num_envs
    names = sim.task.objects
    obj_pos, obj_mat = sim.object_pos_mat()
    tcp_mat = sim.tcp_mat()
    mats = np.concatenate([tcp_mat[:, None], np.stack([obj_mat[k] for k in names], axis=1)], axis=1)
    quats = mats_to_quats(mats)  # (N, K+1, 4)
    return {
        "joint_pos": sim.joint_positions(),
        "joint_vel": sim.joint_velocities(),
        "gripper_width": sim.gripper_width().reshape(n, 1),
        "tcp_pos": sim.tcp_pos(),
        "tcp_quat": quats[:, 0],
        "object_pos": np.stack([obj_pos[k] for k in names], axis=1),
        "object_quat": quats[:, 1:],
    }
