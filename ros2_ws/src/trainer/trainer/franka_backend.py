"""The franka_sim implementation of the trainer's SimBackend interface."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from franka_sim.camera import CameraIntrinsics, SceneRenderer
from franka_sim.dynamics import Shift
from franka_sim.sim import SimBackendName, SimConfig
from franka_sim.tasks import make_task
from franka_sim.vector_env import VectorEnvConfig, VectorFrankaEnv

from trainer.sim_backend import BatchState, StepResult


class FrankaSimBackend:
    """N MuJoCo envs of one task (physics on ``nthread`` threads; 0: all cores); no auto-reset: the trainer decides
    episode ends. ``backend``/``device``: the physics backend (franka_sim.sim.SimConfig: mujoco, the default, or warp
    on a Warp device).

    ``shift``: the dynamics drawn per episode and the placement widening (franka_sim.dynamics); None is the nominal
    model. Each episode's draw depends only on its seed."""

    def __init__(self, task: str, num_envs: int, seed: int = 0, shift: Shift | None = None, nthread: int = 0,
                 backend: SimBackendName = "mujoco", device: str = "cpu"):
        shift = shift or Shift()
        self.shift = shift
        self.env = VectorFrankaEnv(task, num_envs, seed=seed,
                                   config=VectorEnvConfig(sim=SimConfig(dynamics=shift.dynamics, nthread=nthread,
                                                                         backend=backend, device=device),
                                                          terminate_on_success=False, autoreset=False,
                                                          placement_scale=shift.placement_scale))
        self.task = self.env.task
        self.num_envs = int(num_envs)
        self.horizon = self.env.horizon
        self.object_names = tuple(self.env.objects)
        self.instruction = self.env.instruction
        self.max_reward = make_task(task).max_reward()  # from the terms' declared bounds (tested in franka_sim)
        self._renderers: dict[tuple[int, int, str], SceneRenderer] = {}
        self._render_data = None

    def reset(self, seeds: Sequence[int], env_ids: Sequence[int] | None = None) -> None:
        ids = np.arange(self.num_envs) if env_ids is None else np.asarray(env_ids, dtype=np.int64)
        self.env.reset(ids=ids, seeds=[int(s) for s in seeds])

    def step(self, actions: np.ndarray) -> StepResult:
        _, reward, _, _, info = self.env.step(np.asarray(actions, dtype=np.float64))
        return StepResult(reward=np.asarray(reward, dtype=np.float64), success=np.asarray(info["success"], bool),
                          terms=info["reward_terms_weighted"])

    def step_targets(self, target_pos: np.ndarray, target_quat: np.ndarray, gripper: np.ndarray,
                     commanded: np.ndarray) -> StepResult:
        _, reward, _, _, info = self.env.step_targets(target_pos, target_quat, gripper, commanded)
        return StepResult(reward=np.asarray(reward, dtype=np.float64), success=np.asarray(info["success"], bool),
                          terms=info["reward_terms_weighted"])

    def state(self) -> BatchState:
        o = self.env.observations()
        return BatchState(obj_pos=o["object_pos"], obj_quat=o["object_quat"], joint_pos=o["joint_pos"],
                          joint_vel=o["joint_vel"], gripper_width=o["gripper_width"].reshape(-1),
                          tcp_pos=o["tcp_pos"], tcp_quat=o["tcp_quat"])

    def elapsed_steps(self) -> np.ndarray:
        """(N,) control steps since each env's reset."""
        return self.env.elapsed.copy()

    def _renderer(self, width: int, height: int, camera: str | None = None) -> SceneRenderer:
        scene = self.env.config.sim.scene
        name = scene.front_camera.name if camera == "front" else scene.camera.name
        key = (int(width), int(height), name)
        if key not in self._renderers:
            self._renderers[key] = SceneRenderer(self.env.sim.model, width=key[0], height=key[1], camera=name)
        return self._renderers[key]

    def render_camera(self, env_id: int, width: int, height: int, camera: str | None = None) -> np.ndarray:
        """(H, W, 3) uint8 image of env ``env_id``'s scene camera (``camera="front"``: the front camera), rendered as
        the sim node renders it (one franka_sim.camera.SceneRenderer per image size and camera, reused for every
        env)."""
        self._render_data = self.env.sim.get_data(int(env_id), self._render_data)
        return self._renderer(width, height, camera).render(self._render_data)

    def camera_intrinsics(self, width: int, height: int, camera: str | None = None) -> CameraIntrinsics:
        """Intrinsics of the scene (or front) camera at ``width`` x ``height`` (what the sim node publishes as
        CameraInfo)."""
        return self._renderer(width, height, camera).intrinsics()

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
        self.env.close()
