"""The graph's camera path, offline: what the residual sees of the object poses when they come from the ArUco pose
estimator on the rendered sim cameras (``residual-eval --pose-source camera``).

Per env and control step it runs the pieces the lockstep ROS graph runs, in the graph's order (DESIGN.md "Data flow"):

1. the sim node renders the scene camera (and, with ``front_camera``, the front camera) of the state a step starts
   from, at every camera step (``franka_sim.sim_bridge.camera_every`` of ``camera_rate_hz``; every step by default),
   and publishes their intrinsics as CameraInfo (``sim_bridge.camera_info_fields``): here the env's state through
   ``franka_sim.camera.SceneRenderer`` (:meth:`~trainer.franka_backend.FrankaSimBackend.render_camera`; one renderer
   per camera for all envs);
2. the pose estimator node turns the rgb8 images into grey (``pose_estimator_node.camera.image_to_gray``), estimates
   with :class:`~pose_estimator_node.estimator.ArucoPoseEstimator` (the node's ``ArucoConfig``, the sim cameras'
   extrinsics, the images' stamp; ``estimate_views`` over the scene then the front image; its tracking reset at every
   new episode, as the node resets it at a new ``/sim/episode``) and publishes one entry per task object
   (``estimator.published_poses``; the confidence travels as the message's float32);
3. the residual node stores the entries and judges which objects are present at the step's time
   (:class:`residual_policy_node.core.ObjectPoseInputs`: the node's validation and presence rule, with its
   ``pose_timeout`` and ``min_confidence``).

Timing: the sim holds /sim/step t until the estimator has answered state t's image (its pose barrier) and the residual
node waits for those poses, so the residual of step t sees the estimate from image t; with a camera slower than the
control rate, the estimate of the last camera step before t, aged accordingly. Stamps are the state's time since the
episode's reset (the graph's sim clock runs on over episodes; only differences matter, and they are compared at the
stamps' nanosecond resolution on both sides).

:class:`CameraPerception` is a perception model for :class:`trainer.closed_loop.ClosedLoop` (``view`` instead of
``PoseAugmenter.apply``); its per-env state advances when the env's step count does, so a repeated view of the same step
is answered alike, as the estimator answers a re-published image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from franka_sim.sim_bridge import SimNodeConfig, camera_every, camera_info_fields
from pose_estimator_node.camera import (
    CameraModel,
    Extrinsic,
    image_to_gray,
    sim_camera_extrinsic,
    sim_front_camera_extrinsic,
)
from pose_estimator_node.estimator import ArucoConfig, ArucoPoseEstimator, published_poses
from residual_core.action import CONTROL_DT
from residual_core.observation import PoseFreshness
from residual_policy_node.core import ObjectInput, ObjectPoseInputs, OcclusionTracking

from trainer.sim_backend import BatchState, CameraBackend


@dataclass(frozen=True)
class CameraPathConfig:
    """The camera path's configuration; every default is the graph's (the nodes' defaults and config/sim.yaml's
    values: tests/test_camera_path.py checks that the graph's parameters equal these)."""

    image_width: int = SimNodeConfig.image_width
    """Rendered image width (px): the sim node's ``image_width``."""
    image_height: int = SimNodeConfig.image_height
    """Rendered image height (px): the sim node's ``image_height``."""
    camera_rate_hz: float = SimNodeConfig.camera_rate_hz
    """Camera rate in simulated time: the sim node's ``camera_rate_hz``."""
    aruco: ArucoConfig = field(default_factory=ArucoConfig)
    """Detection, pose choice and confidence: the pose estimator node's ``aruco.*`` parameters."""
    extrinsic: Extrinsic = field(default_factory=sim_camera_extrinsic)
    """Camera optical frame in the base frame: the estimator node's default ``camera_pos`` / ``camera_quat_xyzw``."""
    front_camera: bool = SimNodeConfig.front_camera
    """Also the front camera's image (the sim node's ``front_camera``; the estimator node's ``front_camera``, which
    the sim graph sets)."""
    front_extrinsic: Extrinsic = field(default_factory=sim_front_camera_extrinsic)
    """Front camera optical frame in the base frame: the estimator node's default ``front_camera_pos`` /
    ``front_camera_quat_xyzw``."""
    freshness: PoseFreshness = field(default_factory=PoseFreshness)
    """When a received pose is present: the residual node's ``pose_timeout`` and ``min_confidence``."""
    tracking: OcclusionTracking | None = field(default_factory=OcclusionTracking)
    """Occlusion tracking (the residual node's ``occlusion_tracking`` and ``tracking_max_age``; on in the camera
    graphs, config/sim.yaml and config/real.yaml); None: off."""

    def __post_init__(self) -> None:
        if self.image_width < 1 or self.image_height < 1:
            raise ValueError(f"image size must be positive, got {self.image_width}x{self.image_height}")
        if not self.camera_rate_hz > 0:
            raise ValueError(f"camera_rate_hz must be > 0, got {self.camera_rate_hz}")


def stamp_ns(step: int, control_dt: float = CONTROL_DT) -> int:
    """The stamp (ns since the episode's reset) of the state after ``step`` control steps."""
    return round(int(step) * control_dt * 1e9)


def message_seconds(t_ns: int) -> float:
    """A stamp as the nodes read a builtin_interfaces/Time (``sec + nanosec * 1e-9``)."""
    return t_ns // 1_000_000_000 + (t_ns % 1_000_000_000) * 1e-9


class CameraPerception:
    """Per env: one pose estimator (tracking) and one residual-node pose store, fed from the env's rendered camera;
    see the module docstring."""

    def __init__(self, backend: CameraBackend, config: CameraPathConfig = CameraPathConfig()):
        if not isinstance(backend, CameraBackend):
            raise TypeError(f"the camera path needs a backend that renders its camera, got {type(backend).__name__}")
        self.backend = backend
        self.config = config
        self.object_names = tuple(backend.object_names)
        self.every = camera_every(config.camera_rate_hz, CONTROL_DT)
        intr = backend.camera_intrinsics(config.image_width, config.image_height)
        info = camera_info_fields(intr.fx, intr.fy, intr.cx, intr.cy)  # the sim node's CameraInfo, as the node reads it
        self.camera = CameraModel.from_camera_info(info["k"], info["d"], intr.width, intr.height)
        self._estimators: list[ArucoPoseEstimator] = []
        self._inputs: list[ObjectPoseInputs] = []
        self._step = np.zeros(0, dtype=np.int64)
        self._view: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = []
        self.frames = 0
        """Images rendered and estimated since construction."""
        self.detected = dict.fromkeys(self.object_names, 0)
        """Per object: images in which its marker was detected (confidence > 0)."""
        self.on_image = None
        """Called as ``on_image(env, step, entries)`` with what the estimator published for each image (one
        ``ObjectInput`` per object; a missed one has confidence 0): ``residual-perception record`` logs it."""

    @property
    def num_envs(self) -> int:
        return len(self._estimators)

    def reset(self, num_envs: int) -> None:
        """New episodes in every env (``num_envs`` of them)."""
        if int(num_envs) != num_envs or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        self._estimators = [ArucoPoseEstimator(self.object_names, self.config.aruco) for _ in range(int(num_envs))]
        self._inputs = [ObjectPoseInputs(self.object_names, self.config.freshness, self.config.tracking)
                        for _ in range(int(num_envs))]
        self._step = np.full(int(num_envs), -1, dtype=np.int64)
        self._view = [None] * int(num_envs)

    def reset_env(self, env_ids: int | Sequence[int] | np.ndarray) -> None:
        """New episodes in these envs: the estimator's tracking and the received poses are forgotten."""
        for i in np.atleast_1d(np.asarray(env_ids, dtype=np.int64)):
            self._estimators[i].reset()
            self._inputs[i].reset()
            self._step[i] = -1
            self._view[i] = None

    def _receive(self, i: int, step: int) -> None:
        """Env ``i``'s camera image of this step through the estimator node into the residual node's pose store."""
        t_ns = stamp_ns(step)
        cameras = [(None, self.config.extrinsic)] + ([("front", self.config.front_extrinsic)]
                                                     if self.config.front_camera else [])
        views = []
        for camera, extrinsic in cameras:
            rgb = self.backend.render_camera(i, self.config.image_width, self.config.image_height, camera)
            h, w = rgb.shape[:2]
            gray = image_to_gray(rgb.tobytes(), h, w, "rgb8", w * 3)  # the sim publishes rgb8, the node decodes it
            views.append((gray, self.camera, extrinsic))
        result = self._estimators[i].estimate_views(views, t_ns * 1e-9)
        self.frames += 1
        entries = []
        for name, pos, quat, conf in published_poses(result, self.object_names):
            self.detected[name] += conf > 0.0
            entries.append(ObjectInput(name, tuple(float(v) for v in pos), tuple(float(v) for v in quat),
                                       float(np.float32(conf)), message_seconds(t_ns)))
        self._inputs[i].update(entries, t_ns * 1e-9)
        if self.on_image is not None:
            self.on_image(i, step, entries)

    def view(self, s: BatchState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """What the residual sees now in every env: positions (N, K, 3), quaternions (N, K, 4) and present (N, K);
        an absent object's pose is zero. ``s`` is the backend's current state (its object poses are not used: the
        residual sees only what the camera gave; its TCP pose and gripper width are the residual node's, for occlusion
        tracking)."""
        n, k = s.obj_pos.shape[:2]
        if n != self.num_envs:
            raise RuntimeError(f"CameraPerception has {self.num_envs} envs, the state {n}: call reset first")
        steps = self.backend.elapsed_steps()
        pos, quat, present = np.zeros((n, k, 3)), np.zeros((n, k, 4)), np.zeros((n, k), dtype=bool)
        for i in range(n):
            step = int(steps[i])
            if step != self._step[i]:  # a new step of this env (a repeated view of a step gets the same answer)
                if step % self.every == 0:
                    self._receive(i, step)
                hand = (s.tcp_pos[i], s.tcp_quat[i], float(s.gripper_width[i]))  # (the residual node's TCP, width)
                view = self._inputs[i].view(stamp_ns(step) * 1e-9, hand)
                rows = (np.array([view.poses[o][0] if view.present[o] else np.zeros(3) for o in self.object_names]),
                        np.array([view.poses[o][1] if view.present[o] else np.zeros(4) for o in self.object_names]),
                        np.array([view.present[o] for o in self.object_names]))
                self._step[i], self._view[i] = step, rows
            pos[i], quat[i], present[i] = self._view[i]
        return pos, quat, present
