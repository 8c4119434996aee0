"""The calibration board's pose in the camera's optical frame from one image (pure: cv2 + numpy, no rclpy), with the
pose estimator's own pieces: its ArUco detector (``ArucoPoseEstimator.detect``), its corner refinement
(:mod:`pose_estimator_node.corners`) and its Levenberg-Marquardt fit (``ippe.refine_object_pose``).

All the board's markers are coplanar: the corners of every detected marker are fitted together (a planar PnP,
``cv2.SOLVEPNP_IPPE``, over all of them, then the LM refinement), which leaves no per-marker ambiguity once two or more
markers are seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from residual_core.markers import CALIBRATION_BOARD, MARKER_CELLS, MarkerSpec
from scipy.spatial.transform import Rotation

from pose_estimator_node.camera import CameraModel
from pose_estimator_node.corners import refine_corners
from pose_estimator_node.estimator import ArucoPoseEstimator
from pose_estimator_node.ippe import refine_object_pose


@dataclass(frozen=True)
class BoardPose:
    """The board seen in one image."""

    T_cam_board: np.ndarray
    """(4, 4) board frame in the camera's optical frame."""
    marker_ids: tuple[int, ...]
    """Markers used."""
    reproj_err_px: float
    """RMS reprojection error over their corners (px)."""
    refined: int
    """How many of them had their corners refined."""


class BoardDetector:
    """Finds ``board`` (markers of ``residual_core.markers.calibration_board``) in grey images."""

    def __init__(self, board: Sequence[MarkerSpec] = CALIBRATION_BOARD, min_markers: int = 2,
                 max_reproj_err_px: float = 1.0, marker_outlier_px: float = 0.3):
        self.board = {m.marker_id: m for m in board}
        self.min_markers = min_markers
        self.max_reproj_err_px = max_reproj_err_px
        self.marker_outlier_px = marker_outlier_px
        """A marker whose corners are off the joint fit by more than this (px RMS, and 3x the median marker) is
        dropped and the fit repeated."""
        self._estimator = ArucoPoseEstimator(["calibration_board"], markers={"calibration_board": tuple(board)})

    @staticmethod
    def _fit(obj: np.ndarray, img: np.ndarray, K: np.ndarray):
        n, rvecs, tvecs, errs = cv2.solvePnPGeneric(obj.reshape(-1, 1, 3), img.reshape(-1, 1, 2), K, None,
                                                    flags=cv2.SOLVEPNP_IPPE)
        if not n:
            return None, None, np.inf
        best = int(np.argmin(np.asarray(errs).ravel()))
        return refine_object_pose(obj, img, K, Rotation.from_rotvec(np.asarray(rvecs[best]).ravel()),
                                  np.asarray(tvecs[best]).ravel())

    def detect(self, gray: np.ndarray, camera: CameraModel) -> tuple[BoardPose | None, str]:
        """(pose, "") or (None, why not)."""
        found = {i: c for i, c in self._estimator.detect(gray).items() if i in self.board and len(c) == 1}
        if len(found) < self.min_markers:
            return None, f"{len(found)} board marker(s) seen (ids {sorted(found)}), need {self.min_markers}"
        obj, img, refined = [], [], 0
        undistort = camera.undistort if camera.has_distortion else None
        for marker_id in sorted(found):
            spec = self.board[marker_id]
            quiet = 0.5 * (spec.plate_size - spec.size) / spec.size
            ref = refine_corners(gray, found[marker_id][0], 1.0 / MARKER_CELLS, quiet, undistort)
            refined += int(ref.refined)
            obj.append(spec.corners_in_object())
            img.append(ref.corners)
        ids = sorted(found)
        while True:
            r, t, err = self._fit(np.concatenate(obj), np.concatenate(img), camera.K)
            if r is None:
                return None, "planar PnP found no solution"
            # a marker partly hidden (by the hand) or cut by the image border has wrong corners: drop the worst one
            # while it is clearly off the others' fit
            per = [_reproj_rms(o, i, r, t, camera.K) for o, i in zip(obj, img, strict=True)]
            worst = int(np.argmax(per))
            if len(ids) <= self.min_markers or per[worst] <= max(self.marker_outlier_px, 3.0 * float(np.median(per))):
                break
            del ids[worst], obj[worst], img[worst]
        if err > self.max_reproj_err_px:
            return None, f"board reprojection error {err:.2f} px > {self.max_reproj_err_px} px"
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = r.as_matrix(), t
        return BoardPose(T, tuple(ids), err, refined), ""


def _reproj_rms(obj: np.ndarray, img: np.ndarray, r: Rotation, t: np.ndarray, K: np.ndarray) -> float:
    proj, _ = cv2.projectPoints(obj.reshape(-1, 1, 3), r.as_rotvec(), np.asarray(t, dtype=np.float64), K, None)
    return float(np.sqrt(np.mean(np.sum((proj.reshape(-1, 2) - img.reshape(-1, 2)) ** 2, axis=1))))
