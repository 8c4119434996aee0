"""The camera as the pose estimator sees it: pinhole model with distortion (from sensor_msgs/CameraInfo), the pose of
its optical frame in the robot base frame, the sim's scene camera as the default, and Image messages as grey arrays
(pure: no rclpy).

Frames: the extrinsic is the pose of the camera's *optical* frame (OpenCV: x right, y down, z forward) in the base
frame (``fr3_link0``); ``franka_sim.camera.extrinsics`` returns exactly that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from residual_core.sim_camera import SIM_CAMERA_LOOKAT, SIM_CAMERA_POS, SIM_FRONT_CAMERA_POS, look_at_xyaxes
from residual_ros.conversions import image_pixels
from residual_ros.validate import DISTORTION_LENGTHS
from scipy.spatial.transform import Rotation


@dataclass(frozen=True)
class CameraModel:
    """Pinhole camera with OpenCV distortion, as sensor_msgs/CameraInfo gives it (K, D, size)."""

    K: np.ndarray
    """(3, 3) camera matrix."""
    D: np.ndarray
    """Distortion coefficients (OpenCV order; plumb_bob: k1 k2 p1 p2 k3); may be empty."""
    width: int
    """Image width (px)."""
    height: int
    """Image height (px)."""

    def __post_init__(self) -> None:
        K = np.asarray(self.K, dtype=np.float64).reshape(3, 3)
        D = np.asarray(self.D, dtype=np.float64).ravel()
        if not (np.all(np.isfinite(K)) and K[0, 0] > 0 and K[1, 1] > 0):
            raise ValueError(f"camera matrix K must be finite with fx, fy > 0 (uncalibrated camera?), got {K.tolist()}")
        if not np.all(np.isfinite(D)) or D.size not in DISTORTION_LENGTHS:
            raise ValueError(f"distortion coefficients must be finite, {' / '.join(map(str, DISTORTION_LENGTHS))} of "
                             f"them (OpenCV), got {D.tolist()}")
        if self.width < 1 or self.height < 1:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "D", D)

    @classmethod
    def from_camera_info(cls, k: Sequence[float], d: Sequence[float], width: int, height: int) -> CameraModel:
        """From CameraInfo's ``k`` (9, row-major), ``d`` and size."""
        k = np.asarray(k, dtype=np.float64)
        if k.size != 9:
            raise ValueError(f"CameraInfo k must have 9 values, got {k.size}")
        return cls(k.reshape(3, 3), np.asarray(d, dtype=np.float64), int(width), int(height))

    @property
    def has_distortion(self) -> bool:
        return bool(np.any(self.D != 0.0))

    def undistort(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 2) distorted pixel coordinates -> undistorted pixel coordinates (same K)."""
        pts = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
        if not self.has_distortion:
            return pts.copy()
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-10)  # default 5 iterations: 1e-4 px off
        return cv2.undistortPoints(pts[:, None, :], self.K, self.D, None, None, self.K, criteria).reshape(-1, 2)


@dataclass(frozen=True)
class Extrinsic:
    """Pose of the camera's optical frame in the robot base frame."""

    pos: np.ndarray
    """(3,) position (m)."""
    quat_xyzw: np.ndarray
    """(4,) orientation, x y z w."""

    def __post_init__(self) -> None:
        pos = np.asarray(self.pos, dtype=np.float64).reshape(-1)
        quat = np.asarray(self.quat_xyzw, dtype=np.float64).reshape(-1)
        if pos.shape != (3,) or quat.shape != (4,) or not (np.all(np.isfinite(pos)) and np.all(np.isfinite(quat))):
            raise ValueError(f"camera extrinsic needs a finite position (3) and quaternion (4), got {pos}, {quat}")
        if not 0.5 < np.linalg.norm(quat) < 1.5:
            raise ValueError(f"camera quaternion {quat.tolist()} is not (close to) unit length")
        object.__setattr__(self, "pos", pos)
        object.__setattr__(self, "quat_xyzw", quat / np.linalg.norm(quat))

    @property
    def rotation(self) -> Rotation:
        return Rotation.from_quat(self.quat_xyzw)


def sim_camera_extrinsic(camera=None) -> Extrinsic:
    """The optical frame of the sim's fixed scene camera in the base frame, from its position and MuJoCo x / y axes
    (MuJoCo cameras look along -z with y up, the optical frame along +z with y down). ``camera``: anything with
    ``pos`` and ``xyaxes()`` (franka_sim's ``CameraConfig``); None: :mod:`residual_core.sim_camera`'s numbers, which
    franka_sim's default ``CameraConfig`` also reads. Equal to ``franka_sim.camera.extrinsics`` of a compiled scene,
    without compiling one (or importing the simulator)."""
    if camera is None:
        pos, xyaxes = SIM_CAMERA_POS, look_at_xyaxes(SIM_CAMERA_POS, SIM_CAMERA_LOOKAT)
    else:
        pos, xyaxes = camera.pos, camera.xyaxes()
    axes = np.asarray(xyaxes, dtype=np.float64)
    x, y = axes[:3], axes[3:]
    mj = np.stack([x, y, np.cross(x, y)], axis=1)
    optical = mj @ np.diag([1.0, -1.0, -1.0])
    return Extrinsic(np.asarray(pos, dtype=np.float64), Rotation.from_matrix(optical).as_quat(canonical=True))


class _FrontCamera:
    pos = SIM_FRONT_CAMERA_POS

    @staticmethod
    def xyaxes() -> list[float]:
        return look_at_xyaxes(SIM_FRONT_CAMERA_POS, SIM_CAMERA_LOOKAT)


def sim_front_camera_extrinsic() -> Extrinsic:
    """The optical frame of the sim's second, front camera in the base frame (residual_core.sim_camera's numbers, as
    franka_sim's default ``SceneConfig.front_camera``)."""
    return sim_camera_extrinsic(_FrontCamera)


_GRAY_CODES = {"rgb8": cv2.COLOR_RGB2GRAY, "bgr8": cv2.COLOR_BGR2GRAY, "rgba8": cv2.COLOR_RGBA2GRAY,
               "bgra8": cv2.COLOR_BGRA2GRAY}


def image_to_gray(data: bytes | np.ndarray, height: int, width: int, encoding: str, row_step: int) -> np.ndarray:
    """A sensor_msgs/Image buffer (8-bit rgb8, bgr8, rgba8, bgra8 or mono8, decoded by
    :func:`residual_ros.conversions.image_pixels`) as an (H, W) uint8 grey image."""
    img = image_pixels(data, height, width, encoding, row_step)
    if encoding == "mono8":
        return np.ascontiguousarray(img[:, :, 0])
    return cv2.cvtColor(np.ascontiguousarray(img), _GRAY_CODES[encoding])
