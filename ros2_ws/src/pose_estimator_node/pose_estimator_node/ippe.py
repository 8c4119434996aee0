"""A square marker's pose from its four corners (pure maths, no state): the two IPPE solutions in the camera's optical
frame (``cv2.solvePnPGeneric`` with ``SOLVEPNP_IPPE_SQUARE``), and the object's pose in the base frame from the
marker's, through the camera extrinsic and the marker's place on the object (``residual_core.markers.MarkerSpec``).
"""

from __future__ import annotations

import cv2
import numpy as np
from residual_core.markers import MarkerSpec
from scipy.spatial.transform import Rotation

from pose_estimator_node.camera import Extrinsic


def square_object_points(size: float) -> np.ndarray:
    """(4, 3) corners of a square marker of side ``size`` in its own frame, in ArUco (and IPPE_SQUARE) order."""
    h = size / 2.0
    return np.array([[-h, h, 0.0], [h, h, 0.0], [h, -h, 0.0], [-h, -h, 0.0]])


def marker_pose_solutions(corners: np.ndarray, size: float, K: np.ndarray) -> list[tuple[Rotation, np.ndarray, float]]:
    """IPPE solutions (rotation, translation (3,), RMS reprojection error px) of a square marker in the optical
    frame, best first. ``corners`` (4, 2) are undistorted pixels in detection order."""
    n, rvecs, tvecs, errs = cv2.solvePnPGeneric(
        square_object_points(size), np.asarray(corners, dtype=np.float64).reshape(4, 1, 2), K, None,
        flags=cv2.SOLVEPNP_IPPE_SQUARE)
    errs = np.asarray(errs, dtype=np.float64).ravel()
    out = [(Rotation.from_rotvec(np.asarray(rvecs[i]).ravel()), np.asarray(tvecs[i], dtype=np.float64).ravel(),
            float(errs[i])) for i in range(int(n))]
    return sorted(out, key=lambda s: s[2])


def object_pose_from_marker(
    r_cam_marker: Rotation, t_cam_marker: np.ndarray, extrinsic: Extrinsic, spec: MarkerSpec
) -> tuple[np.ndarray, Rotation]:
    """Object pose (position, rotation) in the base frame from the marker's pose in the optical frame."""
    r_base_marker = extrinsic.rotation * r_cam_marker
    p_base_marker = extrinsic.rotation.apply(t_cam_marker) + extrinsic.pos
    r_obj_marker = Rotation.from_quat(spec.quat_xyzw)
    r_base_obj = r_base_marker * r_obj_marker.inv()
    return p_base_marker - r_base_obj.apply(np.asarray(spec.pos)), r_base_obj

