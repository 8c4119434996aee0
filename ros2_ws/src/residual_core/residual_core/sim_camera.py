"""Where the simulator's fixed scene camera is: one set of numbers read by both ``franka_sim.scene.CameraConfig``
(which places the MuJoCo camera) and the pose estimator (its default extrinsic in sim), so the two cannot drift.
numpy only: the pose estimator gets the sim camera without importing the simulator or MuJoCo.

Intrinsics are not here: the estimator reads them from the camera's CameraInfo, which the sim node publishes from
the compiled camera (fovy, image size).
"""

from __future__ import annotations

import numpy as np

SIM_CAMERA_POS: tuple[float, float, float] = (0.3, -0.6, 0.85)
"""Optical centre of the sim scene camera in the base frame ``fr3_link0`` (m)."""
SIM_CAMERA_LOOKAT: tuple[float, float, float] = (0.5, 0.0, 0.08)
"""Point the sim camera's optical axis passes through, in the base frame (m)."""
SIM_CAMERA_FOVY: float = 45.0
"""Vertical field of view of the sim camera (degrees)."""


def look_at_xyaxes(pos, lookat) -> list[float]:
    """MuJoCo camera x (image right) and y (image up) axes of a camera at ``pos`` looking at ``lookat`` with the
    world z up; the camera looks along its -z."""
    forward = np.asarray(lookat, float) - np.asarray(pos, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    if np.linalg.norm(right) < 1e-6:
        raise ValueError(f"camera looks straight up or down ({pos} -> {lookat}); pick another lookat")
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return [*right.tolist(), *up.tolist()]
