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



def object_in_camera(r_cam_marker: Rotation, t_cam_marker: np.ndarray, spec: MarkerSpec) -> tuple[Rotation, np.ndarray]:
    """The object's pose in the optical frame (rotation, translation (3,)) from one of its markers' pose there."""
    r_cam_obj = r_cam_marker * Rotation.from_quat(spec.quat_xyzw).inv()
    return r_cam_obj, np.asarray(t_cam_marker, dtype=np.float64) - r_cam_obj.apply(np.asarray(spec.pos))


def refine_object_pose(
    object_points: np.ndarray, image_points: np.ndarray, K: np.ndarray, r_cam_obj: Rotation, t_cam_obj: np.ndarray
) -> tuple[Rotation, np.ndarray, float]:
    """One pose for all of an object's marker corners: Levenberg-Marquardt (``cv2.solvePnPRefineLM``) from the given
    object pose in the optical frame over ``object_points`` (N, 3) in the object frame and their undistorted pixels
    ``image_points`` (N, 2). Returns (rotation, translation (3,), RMS reprojection error px). Corners of markers on
    differently oriented faces fix the pose without the two-fold ambiguity of a single small square."""
    obj = np.asarray(object_points, dtype=np.float64).reshape(-1, 1, 3)
    img = np.asarray(image_points, dtype=np.float64).reshape(-1, 1, 2)
    rvec = r_cam_obj.as_rotvec().reshape(3, 1).copy()
    tvec = np.asarray(t_cam_obj, dtype=np.float64).reshape(3, 1).copy()
    rvec, tvec = cv2.solvePnPRefineLM(obj, img, K, None, rvec, tvec)
    proj, _ = cv2.projectPoints(obj, rvec, tvec, K, None)
    err = float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - img.reshape(-1, 2)) ** 2, axis=1))))
    return Rotation.from_rotvec(rvec.ravel()), tvec.ravel(), err


def camera_to_base(r_cam_obj: Rotation, t_cam_obj: np.ndarray, extrinsic: Extrinsic) -> tuple[np.ndarray, Rotation]:
    """An object pose in the optical frame -> (position, rotation) in the base frame."""
    return extrinsic.rotation.apply(t_cam_obj) + extrinsic.pos, extrinsic.rotation * r_cam_obj
