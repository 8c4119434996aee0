"""Rotation helpers. All rotation maths goes through scipy.spatial.transform.Rotation.

Quaternions in this project are x, y, z, w (scipy and ROS order). MuJoCo stores w, x, y, z: convert at
the simulator boundary with :func:`wxyz_to_xyzw` / :func:`xyzw_to_wxyz`.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def wxyz_to_xyzw(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q)
    return np.concatenate([q[..., 1:4], q[..., 0:1]], axis=-1)


def xyzw_to_wxyz(q: np.ndarray) -> np.ndarray:
    q = np.asarray(q)
    return np.concatenate([q[..., 3:4], q[..., 0:3]], axis=-1)


def quat_to_rot6d(quat_xyzw: np.ndarray) -> np.ndarray:
    """Continuous 6-D rotation representation: the first two columns of the rotation matrix.

    Accepts (4,) or (..., 4); returns (6,) or (..., 6) as [c0x, c0y, c0z, c1x, c1y, c1z]. A non-finite
    quaternion gives NaN (see :func:`quat_to_matrix`).
    """
    return matrix_to_rot6d(quat_to_matrix(quat_xyzw))


def rot6d_to_matrix(six: np.ndarray) -> np.ndarray:
    """Inverse of :func:`quat_to_rot6d` (Gram-Schmidt), for (..., 6) -> (..., 3, 3)."""
    six = np.asarray(six, dtype=np.float64)
    a, b = six[..., 0:3], six[..., 3:6]
    c0 = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b - np.sum(c0 * b, axis=-1, keepdims=True) * c0
    c1 = b / np.linalg.norm(b, axis=-1, keepdims=True)
    c2 = np.cross(c0, c1)
    return np.stack([c0, c1, c2], axis=-1)


# --- NaN-tolerant batched helpers -------------------------------------------------------------------
# scipy raises on NaN quaternions ("zero norm") and rotation vectors. Sensor data and network outputs can
# hold NaN; the observation builder and action composition must pass it through (the safety envelope is
# what rejects it), so these helpers replace non-finite rows by the identity for scipy and write NaN back.

_IDENTITY_QUAT = np.array([0.0, 0.0, 0.0, 1.0])


def _finite_rows(x: np.ndarray) -> np.ndarray:
    """(n, k) -> (n,) bool: True where every entry of the row is finite."""
    return np.all(np.isfinite(x), axis=-1)


def quat_to_matrix(quat_xyzw: np.ndarray) -> np.ndarray:
    """Rotation matrices of quaternions (..., 4) x, y, z, w -> (..., 3, 3), NaN where a quaternion is not finite.

    Quaternions need not be unit (scipy normalises them); a finite zero-norm quaternion is a bug and raises
    scipy's ValueError.
    """
    q = np.asarray(quat_xyzw, dtype=np.float64)
    if q.shape[-1:] != (4,):
        raise ValueError(f"quaternions must have a last axis of size 4 (x, y, z, w), got shape {q.shape}")
    flat = q.reshape(-1, 4)
    ok = _finite_rows(flat)
    if ok.all():
        mats = Rotation.from_quat(flat).as_matrix() if len(flat) else np.zeros((0, 3, 3))
    else:
        mats = Rotation.from_quat(np.where(ok[:, None], flat, _IDENTITY_QUAT)).as_matrix()
        mats[~ok] = np.nan
    return mats.reshape(q.shape[:-1] + (3, 3))


def matrix_to_rot6d(mats: np.ndarray) -> np.ndarray:
    """First two columns of rotation matrices (..., 3, 3) -> (..., 6), the layout of :func:`quat_to_rot6d`."""
    m = np.asarray(mats)
    return np.concatenate([m[..., :, 0], m[..., :, 1]], axis=-1)


def compose_rotvecs(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Rotation vector of ``Rotation.from_rotvec(left) * Rotation.from_rotvec(right)`` for (3,) or (n, 3).

    Rows where either input is not finite come out as NaN (instead of scipy's ValueError). The result's
    angle is in [0, pi].
    """
    a = np.asarray(left, dtype=np.float64)
    b = np.asarray(right, dtype=np.float64)
    if a.shape != b.shape or a.shape[-1:] != (3,) or a.ndim > 2:
        raise ValueError(f"rotation vectors must both be (3,) or (n, 3) of equal shape, got {a.shape} and {b.shape}")
    a2, b2 = a.reshape(-1, 3), b.reshape(-1, 3)
    if len(a2) == 0:
        return a.copy()
    ok = _finite_rows(a2) & _finite_rows(b2)
    if not ok.all():
        a2 = np.where(ok[:, None], a2, 0.0)
        b2 = np.where(ok[:, None], b2, 0.0)
    out = (Rotation.from_rotvec(a2) * Rotation.from_rotvec(b2)).as_rotvec()
    out[~ok] = np.nan
    return out.reshape(a.shape)


def carry_rigidly(pos, quat_xyzw, frame_pos_then, frame_quat_then, frame_pos_now, frame_quat_now
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The pose of a body rigidly attached to a frame that moved from ``then`` to ``now`` (all in one base frame):
    its pose in the frame then, expressed in the frame now. Returns (position (3,), quaternion x y z w (4,))."""
    delta = Rotation.from_quat(frame_quat_now) * Rotation.from_quat(frame_quat_then).inv()
    offset = np.asarray(pos, dtype=np.float64) - np.asarray(frame_pos_then, dtype=np.float64)
    return (np.asarray(frame_pos_now, dtype=np.float64) + delta.apply(offset),
            (delta * Rotation.from_quat(quat_xyzw)).as_quat())


def quat_angle(q1, q2) -> np.ndarray:
    """Rotation angle (rad, in [0, pi]) between quaternions x y z w, row-wise ((..., 4) -> (...)); not necessarily
    unit (each is normalised), either sign. NaN where a quaternion is non-finite or zero."""
    a, b = np.asarray(q1, dtype=np.float64), np.asarray(q2, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos_half = np.abs(np.sum(a * b, axis=-1)) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
        return 2.0 * np.arccos(np.minimum(cos_half, 1.0))
