"""Offscreen rendering of the fixed scene camera, and its intrinsics / extrinsics.

Backend: MuJoCo picks its OpenGL backend from ``MUJOCO_GL`` when ``mujoco`` is first imported.
``franka_sim/__init__.py`` sets it (when unset) to ``egl`` if an EGL library is present, else to ``osmesa``
(Debian: ``libosmesa6``), before it imports mujoco; :func:`gl_backend` says which one is in use. Shadows,
reflections, skybox and multisampling are off for speed.

Conventions: intrinsics are OpenCV's (pixel (0, 0) is the centre of the top-left pixel). The extrinsic is the
pose of the camera's *optical* frame (OpenCV: x right, y down, z forward along the optical axis) in the
robot base frame, which is the world frame of the scene (``fr3_link0`` sits at the origin).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import mujoco
import numpy as np
from scipy.spatial.transform import Rotation

# MuJoCo cameras look along -z with y up; OpenCV's optical frame looks along +z with y down.
_MJ_TO_OPTICAL = np.diag([1.0, -1.0, -1.0])


def gl_backend() -> str:
    """The OpenGL backend MuJoCo renders with (the value of MUJOCO_GL when mujoco was imported)."""
    return os.environ.get("MUJOCO_GL", "")


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics (OpenCV convention, no distortion)."""

    width: int
    """Image width (px)."""
    height: int
    """Image height (px)."""
    fx: float
    """Focal length along x (px)."""
    fy: float
    """Focal length along y (px)."""
    cx: float
    """Principal point x (px)."""
    cy: float
    """Principal point y (px)."""

    def matrix(self) -> np.ndarray:
        """3x3 camera matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


def intrinsics(model: mujoco.MjModel, camera: str | int, width: int, height: int) -> CameraIntrinsics:
    """Intrinsics of ``camera`` rendered at ``width`` x ``height`` (MuJoCo's fovy is vertical; pixels square)."""
    cam_id = model.camera(camera).id
    fovy = np.deg2rad(model.cam_fovy[cam_id])
    f = 0.5 * height / np.tan(0.5 * fovy)
    return CameraIntrinsics(width, height, f, f, (width - 1) / 2.0, (height - 1) / 2.0)


def extrinsics(model: mujoco.MjModel, data: mujoco.MjData, camera: str | int) -> tuple[np.ndarray, np.ndarray]:
    """Pose of the camera's optical frame in the base frame: (pos (3,), quat_xyzw (4,)).

    Needs the kinematics of ``data`` computed (mj_forward / mj_kinematics). A point p_cam in the optical
    frame is at ``R @ p_cam + pos`` in the base frame.
    """
    cam_id = model.camera(camera).id
    mat = data.cam_xmat[cam_id].reshape(3, 3) @ _MJ_TO_OPTICAL
    return data.cam_xpos[cam_id].copy(), Rotation.from_matrix(mat).as_quat()


def place_camera(model: mujoco.MjModel, camera: str | int, pos, quat_xyzw) -> None:
    """Put ``camera``'s optical frame at ``pos`` with orientation ``quat_xyzw`` (x y z w) in the base frame, in
    ``model`` (a camera fixed to the world body: its pose is its model pose). A batch running its own copy of the
    model needs it handed over again (``BatchSim.batch.set_models``)."""
    cam_id = model.camera(camera).id
    mat = Rotation.from_quat(quat_xyzw).as_matrix() @ _MJ_TO_OPTICAL  # optical -> MuJoCo camera axes (self-inverse)
    model.cam_pos[cam_id] = np.asarray(pos, dtype=np.float64)
    model.cam_quat[cam_id] = np.roll(Rotation.from_matrix(mat).as_quat(), 1)  # xyzw -> MuJoCo's wxyz


def project(points: np.ndarray, intr: CameraIntrinsics, cam_pos: np.ndarray, cam_quat: np.ndarray) -> np.ndarray:
    """Pixel coordinates (M, 2) of base-frame points (M, 3) (OpenCV convention)."""
    R = Rotation.from_quat(cam_quat).as_matrix()
    p_cam = (np.asarray(points, dtype=np.float64) - cam_pos) @ R  # R^T (p - t), row-wise
    uv = p_cam[:, :2] / p_cam[:, 2:3]
    return np.stack([intr.fx * uv[:, 0] + intr.cx, intr.fy * uv[:, 1] + intr.cy], axis=-1)


class SceneRenderer:
    """Offscreen RGB renderer of one camera with the fast settings (no shadows, reflections, multisampling)."""

    def __init__(self, model: mujoco.MjModel, width: int = 224, height: int = 224, camera: str = "scene_camera"):
        if width < 1 or height < 1:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        if width > model.vis.global_.offwidth or height > model.vis.global_.offheight:
            raise ValueError(
                f"image {width}x{height} exceeds the model's offscreen buffer "
                f"{model.vis.global_.offwidth}x{model.vis.global_.offheight}"
            )
        self.model = model
        self.camera = camera
        self.width, self.height = width, height
        model.vis.quality.offsamples = 0
        self._renderer = mujoco.Renderer(model, height=height, width=width)
        flags = self._renderer.scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = False
        self._option = mujoco.MjvOption()
        for group in range(len(self._option.geomgroup)):
            self._option.geomgroup[group] = 1 if group < 3 else 0
        self._option.sitegroup[:] = 0

    def intrinsics(self) -> CameraIntrinsics:
        return intrinsics(self.model, self.camera, self.width, self.height)

    def render(self, data: mujoco.MjData) -> np.ndarray:
        """(H, W, 3) uint8 image of ``data`` (its kinematics must be current)."""
        self._renderer.update_scene(data, camera=self.camera, scene_option=self._option)
        return self._renderer.render()

    def close(self) -> None:
        self._renderer.close()
