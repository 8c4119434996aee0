"""The 7-D end-effector action: layout, bounds, applying it to a TCP pose, composing base + residual.

Layout (see docs/CONTRACTS.md): [dx, dy, dz] metres, [drx, dry, drz] rotation vector in radians (base
frame, applied on the left), gripper in [0, 1] (0 open, 1 closed). Control at 20 Hz.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

ACTION_DIM = 7
CONTROL_HZ = 20.0
CONTROL_DT = 1.0 / CONTROL_HZ
ACTION_NAMES: tuple[str, ...] = ("dx", "dy", "dz", "drx", "dry", "drz", "gripper")

# Residual bound per component: 1 cm, 0.05 rad (~2.9 deg) per step; the gripper correction may flip it.
DEFAULT_RESIDUAL_SCALE = np.array([0.01, 0.01, 0.01, 0.05, 0.05, 0.05, 1.0])


@dataclass(frozen=True)
class ActionSpec:
    """Bounds of a (base, residual or composed) action."""

    max_translation: float = 0.05
    """Largest |dx|, |dy|, |dz| per step (m)."""
    max_rotation: float = 0.25
    """Largest |drx|, |dry|, |drz| per step (rad)."""

    @property
    def low(self) -> np.ndarray:
        t, r = self.max_translation, self.max_rotation
        return np.array([-t, -t, -t, -r, -r, -r, 0.0])

    @property
    def high(self) -> np.ndarray:
        t, r = self.max_translation, self.max_rotation
        return np.array([t, t, t, r, r, r, 1.0])


def clip_action(action: np.ndarray, spec: ActionSpec = ActionSpec()) -> np.ndarray:
    """Clip an action (7,) or batch (..., 7) to the spec's bounds."""
    return np.clip(np.asarray(action, dtype=np.float64), spec.low, spec.high)


def apply_delta(tcp_pos: np.ndarray, tcp_quat: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Target TCP pose from the current TCP pose and an action.

    ``tcp_quat`` is x, y, z, w. Returns (target_pos (3,), target_quat (4,) xyzw). The rotation is applied
    on the left in the base frame: R_target = R(action[3:6]) * R_current.
    """
    action = np.asarray(action, dtype=np.float64)
    target_pos = np.asarray(tcp_pos, dtype=np.float64) + action[0:3]
    target_rot = Rotation.from_rotvec(action[3:6]) * Rotation.from_quat(tcp_quat)
    return target_pos, target_rot.as_quat()


def pose_delta(from_pos, from_quat, to_pos, to_quat) -> np.ndarray:
    """The 6-D delta [dpos, rotvec] that :func:`apply_delta` turns ``from`` into ``to`` with."""
    dpos = np.asarray(to_pos, dtype=np.float64) - np.asarray(from_pos, dtype=np.float64)
    drot = Rotation.from_quat(to_quat) * Rotation.from_quat(from_quat).inv()
    return np.concatenate([dpos, drot.as_rotvec()])
