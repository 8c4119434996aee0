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

    Accepts (4,) or (..., 4); returns (6,) or (..., 6) as [c0x, c0y, c0z, c1x, c1y, c1z].
    """
    q = np.asarray(quat_xyzw, dtype=np.float64)
    flat = q.reshape(-1, 4)
    mats = Rotation.from_quat(flat).as_matrix()  # (n, 3, 3)
    six = np.concatenate([mats[:, :, 0], mats[:, :, 1]], axis=-1)
    return six.reshape(q.shape[:-1] + (6,))


def rot6d_to_matrix(six: np.ndarray) -> np.ndarray:
    """Inverse of :func:`quat_to_rot6d` (Gram-Schmidt), for (..., 6) -> (..., 3, 3)."""
    six = np.asarray(six, dtype=np.float64)
    a, b = six[..., 0:3], six[..., 3:6]
    c0 = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b - np.sum(c0 * b, axis=-1, keepdims=True) * c0
    c1 = b / np.linalg.norm(b, axis=-1, keepdims=True)
    c2 = np.cross(c0, c1)
    return np.stack([c0, c1, c2], axis=-1)
