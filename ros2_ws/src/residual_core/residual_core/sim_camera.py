"""Where the simulator's fixed cameras are (the scene camera and a second, front one): one set of numbers read by
both ``franka_sim.scene.CameraConfig`` (which places the MuJoCo cameras) and the pose estimator (its default
extrinsics in sim), so the two cannot drift. numpy only: the pose estimator gets the sim cameras without importing the
simulator or MuJoCo.

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
SIM_FRONT_CAMERA_POS: tuple[float, float, float] = (1.3, 0.0, 0.8)
"""Optical centre of the sim's second, front camera (m): it looks back at the robot past the workspace, towards
``SIM_CAMERA_LOOKAT`` with the same field of view. From the scene camera (from -y, ~50 deg above the table) the hand
hides a grasped cube entirely; from the front its side faces stay in view (docs/BENCHMARKS.md "Pose estimator")."""


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
