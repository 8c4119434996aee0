"""``FrankaTaskEnv``: one simulated task as a ``gymnasium.Env`` (7-D end-effector actions at 20 Hz).

The action layout and its meaning are ``residual_core.action``'s (see docs/CONTRACTS.md). Observations are
privileged state (see :mod:`franka_sim.observations`) plus an optional camera image. Besides the gym API the
env offers plain accessors (numpy, base frame, quaternions x, y, z, w) for the trainer and the ROS sim node,
and :meth:`FrankaTaskEnv.set_target_pose` for absolute TCP targets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces
from scipy.spatial.transform import Rotation

from franka_sim import camera as cam
from franka_sim.observations import batched_observations, observation_space
from franka_sim.sim import BatchSim, SimConfig
from franka_sim.tasks import make_task


@dataclass(frozen=True)
class EnvConfig:
    """Options of the environments beyond the task."""

    sim: SimConfig = field(default_factory=lambda: SimConfig(nthread=1))
    """Simulation core configuration (scene, controller, reset noise, threads)."""
    terminate_on_success: bool = True
    """End the episode (terminated=True) at the first step whose state is a success."""


def _state_dict_item(batched: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    return {k: v[i] for k, v in batched.items()}


class FrankaTaskEnv(gym.Env):
    """A single simulated Franka task. ``image_size`` is (height, width)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        task: str,
        seed: int | None = None,
        render_camera: bool = False,
        image_size: tuple[int, int] = (224, 224),
        config: EnvConfig | None = None,
    ) -> None:
        super().__init__()
        self.config = config or EnvConfig()
        self._task = make_task(task)
        self.sim = BatchSim(self._task, 1, self.config.sim)
        self.render_mode = "rgb_array"
        self.render_camera = render_camera
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.observation_space = observation_space(len(self._task.objects), self.image_size if render_camera else None)
        spec = self.config.sim.action_spec
        self.action_space = spaces.Box(spec.low, spec.high, dtype=np.float64)
        self._renderers: dict[str, cam.SceneRenderer] = {}
        self._render_data: mujoco.MjData | None = None
        self._elapsed = 0
        self._success = False
        self._seed = seed
        self._needs_reset = True

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is None and self._seed is not None and self._np_random is None:
            seed = self._seed
        super().reset(seed=seed)
        sample = self._task.sample_reset(self.np_random)
        self.sim.reset(np.zeros(1, dtype=np.int64), [sample], [self.np_random])
        self._elapsed = 0
        state = self.sim.task_state(with_action=False)
        self._success = bool(self._task.success(state)[0])
        self._needs_reset = False
        return self._observation(), {"success": self._success}

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("call reset() before step() (and after an episode ended)")
        action = np.asarray(action, dtype=np.float64).reshape(1, 7)
        applied = self.sim.step(action)
        return self._after_step(applied[0])

    def _after_step(self, applied: np.ndarray):
        self._elapsed += 1
        state = self.sim.task_state()
        total, raw, weighted = self._task.rewards(state)
        self._success = bool(self._task.success(state)[0])
        terminated = self._success and self.config.terminate_on_success
        truncated = self._elapsed >= self._task.horizon and not terminated
        self._needs_reset = terminated or truncated
        ik = self.sim.last_ik
        info = {
            "success": self._success,
            "reward_terms": {k: float(v[0]) for k, v in raw.items()},
            "reward_terms_weighted": {k: float(v[0]) for k, v in weighted.items()},
            "applied_action": applied.copy(),
            "ik_joint_limited": bool(ik.limited[0]) if ik is not None else False,
            "elapsed_steps": self._elapsed,
        }
        return self._observation(), float(total[0]), terminated, truncated, info

    def camera_name(self, camera: str | None = None) -> str:
        """The model's name of ``camera``: None or "scene" -> the scene camera, "front" -> the front camera, else as
        given."""
        scene = self.config.sim.scene
        return {None: scene.camera.name, "scene": scene.camera.name, "front": scene.front_camera.name}.get(
            camera, camera)

    def render(self, camera: str | None = None) -> np.ndarray:
        """(H, W, 3) uint8 image of the scene camera (or ``camera``, see :meth:`camera_name`) at ``image_size``."""
        name = self.camera_name(camera)
        if name not in self._renderers:
            h, w = self.image_size
            self._renderers[name] = cam.SceneRenderer(self.sim.model, width=w, height=h, camera=name)
        return self._renderers[name].render(self.get_data())

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()

    def _observation(self) -> dict[str, np.ndarray]:
        obs = _state_dict_item(batched_observations(self.sim), 0)
        if self.render_camera:
            obs["image"] = self.render()
        return obs

    # ------------------------------------------------------------------ ROS-node style control
    def set_target_pose(self, pos, quat_xyzw, gripper: float) -> dict[str, Any]:
        """Run one control step towards an absolute TCP target (base frame) with a gripper command in [0, 1].

        Returns what was done: the pose error [dpos, rotvec] at the start of the step, whether the IK clamped
        a joint, and the success flag after the step. Does not count towards the episode horizon.
        """
        pos = np.asarray(pos, dtype=np.float64).reshape(3)
        quat = np.asarray(quat_xyzw, dtype=np.float64).reshape(4)
        if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(quat)) and np.isfinite(gripper)):
            raise ValueError(f"non-finite target: pos={pos}, quat={quat}, gripper={gripper}")
        if not 0.5 < np.linalg.norm(quat) < 1.5:
            raise ValueError(f"target quaternion {quat} is not (close to) unit length")
        err = self.sim.step_to_pose(pos[None], quat[None], np.array([float(gripper)]))  # normalised there
        state = self.sim.task_state(with_action=False)
        self._success = bool(self._task.success(state)[0])
        return {"pose_error": err[0], "ik_joint_limited": bool(self.sim.last_ik.limited[0]), "success": self._success}

    # ------------------------------------------------------------------ accessors (numpy, base frame, xyzw)
    @property
    def task(self) -> str:
        return self._task.name

    @property
    def instruction(self) -> str:
        return self._task.instruction

    @property
    def horizon(self) -> int:
        return self._task.horizon

    @property
    def objects(self) -> tuple[str, ...]:
        return self._task.objects

    @property
    def elapsed_steps(self) -> int:
        return self._elapsed

    @property
    def sim_time(self) -> float:
        """Simulated time since the last reset (s)."""
        return float(self.sim.time[0])

    @property
    def model(self) -> mujoco.MjModel:
        return self.sim.model

    def get_data(self) -> mujoco.MjData:
        """The current state as an MjData with kinematics computed (reused buffer: copy it to keep it)."""
        self._render_data = self.sim.get_data(0, self._render_data)
        return self._render_data

    def object_poses(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        pos, mat = self.sim.object_pos_mat()
        return {k: (pos[k][0], Rotation.from_matrix(mat[k][0]).as_quat(canonical=True)) for k in self._task.objects}

    def tcp_pose(self) -> tuple[np.ndarray, np.ndarray]:
        return self.sim.tcp_pos()[0], Rotation.from_matrix(self.sim.tcp_mat()[0]).as_quat(canonical=True)

    def joint_positions(self) -> np.ndarray:
        return self.sim.joint_positions()[0]

    def joint_velocities(self) -> np.ndarray:
        return self.sim.joint_velocities()[0]

    def finger_positions(self) -> np.ndarray:
        """(2,) the two finger joints (m, 0..0.04 each)."""
        return self.sim.finger_positions()[0]

    def gripper_width(self) -> float:
        return float(self.sim.gripper_width()[0])

    def is_success(self) -> bool:
        return self._success

    def success_now(self) -> bool:
        """The task's success on the current state (also after the state was advanced outside :meth:`step` and
        :meth:`set_target_pose`, e.g. by a real-time loop stepping ``sim.batch`` itself)."""
        return bool(self._task.success(self.sim.task_state(with_action=False))[0])

    def task_state(self):
        """The batched (N = 1) TaskState that rewards, success and the scripted experts read."""
        return self.sim.task_state()

    def camera_intrinsics(self, camera: str | None = None) -> cam.CameraIntrinsics:
        h, w = self.image_size
        return cam.intrinsics(self.sim.model, self.camera_name(camera), w, h)

    def camera_extrinsics(self, camera: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Pose of the camera's optical frame (OpenCV: z forward, y down) in the base frame: (pos, quat_xyzw)."""
        return cam.extrinsics(self.sim.model, self.get_data(), self.camera_name(camera))
