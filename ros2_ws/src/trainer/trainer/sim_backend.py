"""What a simulator must provide to the trainer (the sim backend interface).

The residual trainer, the base-policy trainer and the evaluator only talk to a :class:`SimBackend`: a
batch of ``num_envs`` environments of one task, stepped together with 7-D actions in the action
convention of docs/CONTRACTS.md, exposing *privileged, noise-free* state as batched arrays. Pose noise and
dropout are applied by the trainer (residual_core.augment), never by the backend.

``franka_sim`` implements it (:class:`FrankaSimBackend`); another simulator (e.g. Isaac Lab) plugs in by
implementing the same few methods, without touching the algorithm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass
class BatchState:
    """Privileged state of N environments (base frame, quaternions x, y, z, w)."""

    obj_pos: np.ndarray
    """(N, K, 3) positions of the task objects, in ``object_names`` order."""
    obj_quat: np.ndarray
    """(N, K, 4) orientations of the task objects."""
    joint_pos: np.ndarray
    """(N, 7) arm joint positions (rad)."""
    joint_vel: np.ndarray
    """(N, 7) arm joint velocities (rad/s)."""
    gripper_width: np.ndarray
    """(N,) distance between the fingers (m)."""
    tcp_pos: np.ndarray
    """(N, 3) TCP position."""
    tcp_quat: np.ndarray
    """(N, 4) TCP orientation."""


@dataclass
class StepResult:
    reward: np.ndarray
    """(N,) dense shaped reward of the step (the task's weighted terms summed)."""
    success: np.ndarray
    """(N,) bool: the task's success predicate holds after the step."""
    terms: dict[str, np.ndarray]
    """Weighted reward terms by name, each (N,)."""


@runtime_checkable
class SimBackend(Protocol):
    task: str
    num_envs: int
    horizon: int
    """Episode length in control steps (20 Hz)."""
    object_names: tuple[str, ...]
    instruction: str
    max_reward: float
    """Upper bound of the per-step dense reward (what a step of the best possible state earns)."""

    def reset(self, seeds: Sequence[int], env_ids: Sequence[int] | None = None) -> None:
        """Reset the given envs (default: all) to the initial states drawn from ``seeds`` (one per env)."""

    def step(self, actions: np.ndarray) -> StepResult:
        """Apply (N, 7) actions for one control step in every env."""

    def step_targets(self, target_pos: np.ndarray, target_quat: np.ndarray, gripper: np.ndarray,
                     commanded: np.ndarray) -> StepResult:
        """One control step towards absolute TCP targets (N, 3), (N, 4) x, y, z, w (normalised by the backend) with
        gripper commands (N,), exactly as the ROS sim node applies the arbiter's command; ``commanded`` (N, 7) is
        the action the targets were formed from (what the reward's action term sees). The closed loop uses this."""

    def state(self) -> BatchState:
        """Current privileged state of all envs."""

    def close(self) -> None:
        """Release worker threads/processes."""


@runtime_checkable
class CameraBackend(SimBackend, Protocol):
    """A SimBackend that can also render each env's scene camera (``residual-eval --pose-source camera``)."""

    def elapsed_steps(self) -> np.ndarray:
        """(N,) control steps since each env's reset."""

    def render_camera(self, env_id: int, width: int, height: int, camera: str | None = None) -> np.ndarray:
        """(H, W, 3) uint8 RGB image of env ``env_id``'s scene camera (``camera="front"``: the front camera), as the
        ROS sim node renders and publishes it."""

    def camera_intrinsics(self, width: int, height: int, camera: str | None = None):
        """Pinhole intrinsics at that image size (``franka_sim.camera.CameraIntrinsics``: fx, fy, cx, cy, width,
        height), as the sim node publishes them in its CameraInfo."""
