"""Cartesian control of the simulated FR3: a target TCP pose -> joint position targets (batched numpy).

Per control step (20 Hz) the environment computes the target pose from the *current measured* TCP pose and
the 7-D action (``residual_core.action.apply_delta``), takes one damped-least-squares differential-IK step on
the TCP site Jacobian with a nullspace pull towards the home posture, clamps the result inside the joint
limits, and hands the joint targets to the joint-space position actuators (joint impedance; gravity is
compensated by MuJoCo's body ``gravcomp``). Physics sub-steps then run in C.

Everything here is pure numpy over a leading batch dimension N; no MuJoCo calls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from franka_sim import robot


@dataclass(frozen=True)
class ControllerConfig:
    """Differential-IK parameters."""

    damping: float = 0.03
    """DLS damping lambda (same units as the task error: m and rad)."""
    nullspace_gain: float = 0.05
    """Fraction of the distance to the home posture removed per step, within the task nullspace."""
    limit_margin: float = 0.03
    """Joint targets stay this far inside the joint limits (rad)."""
    max_joint_step: float = 0.4
    """Largest joint-target change per control step (rad); larger IK steps are scaled down as a whole."""
    rotation_weight: float = 1.0
    """Weight of the orientation error (rad) against the position error (m) in the least-squares problem."""

    def __post_init__(self) -> None:
        if self.damping <= 0 or not 0 <= self.nullspace_gain <= 1 or self.limit_margin < 0 or self.max_joint_step <= 0:
            raise ValueError(
                f"need damping > 0, 0 <= nullspace_gain <= 1, limit_margin >= 0, max_joint_step > 0; got "
                f"{self.damping}, {self.nullspace_gain}, {self.limit_margin}, {self.max_joint_step}"
            )


@dataclass
class IKResult:
    """What one IK step did (batched)."""

    q_target: np.ndarray
    """(N, 7) joint position targets sent to the actuators."""
    scaled: np.ndarray
    """(N,) bool: the step was scaled down to max_joint_step."""
    limited: np.ndarray
    """(N,) bool: at least one joint target was clamped to the limits."""


def batched_apply_delta(tcp_pos: np.ndarray, tcp_quat: np.ndarray, actions: np.ndarray):
    """Batched ``residual_core.action.apply_delta``: (N,3), (N,4) xyzw, (N,7) -> target (N,3), (N,4) xyzw."""
    actions = np.asarray(actions, dtype=np.float64)
    target_pos = tcp_pos + actions[:, 0:3]
    target = Rotation.from_rotvec(actions[:, 3:6]) * Rotation.from_quat(tcp_quat)
    return target_pos, target.as_quat()


def pose_error(tcp_pos: np.ndarray, tcp_mat: np.ndarray, target_pos: np.ndarray, target_mat: np.ndarray) -> np.ndarray:
    """(N, 6) error [target - current position, rotation vector of R_target R_current^T] (base frame)."""
    rot = Rotation.from_matrix(np.einsum("nij,nkj->nik", target_mat, tcp_mat))
    return np.concatenate([target_pos - tcp_pos, rot.as_rotvec()], axis=-1)


def site_jacobian(site_pos: np.ndarray, joint_anchor: np.ndarray, joint_axis: np.ndarray) -> np.ndarray:
    """(N, 6, 7) geometric Jacobian of a point on the last link for 7 hinge joints.

    site_pos (N, 3); joint_anchor, joint_axis (N, 7, 3): the joints' world anchors and unit axes (MuJoCo's
    ``xanchor`` / ``xaxis``). Rows 0-2 linear velocity, rows 3-5 angular velocity.
    """
    lin = np.cross(joint_axis, site_pos[:, None, :] - joint_anchor)  # (N, 7, 3)
    return np.concatenate([lin.transpose(0, 2, 1), joint_axis.transpose(0, 2, 1)], axis=1)


def dls_step(q: np.ndarray, jac: np.ndarray, err: np.ndarray, cfg: ControllerConfig,
             q_home: np.ndarray = robot.HOME_Q) -> IKResult:
    """One damped-least-squares IK step with a nullspace pull to ``q_home`` and joint-limit clamping.

    q (N, 7) measured joints, jac (N, 6, 7), err (N, 6) task-space error. Returns the joint targets.
    """
    w = np.array([1.0, 1.0, 1.0, cfg.rotation_weight, cfg.rotation_weight, cfg.rotation_weight])
    J = jac * w[None, :, None]
    e = err * w[None, :]
    A = J @ J.transpose(0, 2, 1) + (cfg.damping**2) * np.eye(6)[None]
    # J_pinv = J^T A^-1, computed once as A^-1 J then transposed (A symmetric).
    AinvJ = np.linalg.solve(A, J)  # (N, 6, 7)
    J_pinv = AinvJ.transpose(0, 2, 1)  # (N, 7, 6)
    dq = np.einsum("nij,nj->ni", J_pinv, e)
    if cfg.nullspace_gain > 0:
        null = np.eye(7)[None] - J_pinv @ J
        dq += cfg.nullspace_gain * np.einsum("nij,nj->ni", null, q_home[None, :] - q)
    step = np.max(np.abs(dq), axis=-1)
    scaled = step > cfg.max_joint_step
    dq[scaled] *= (cfg.max_joint_step / step[scaled])[:, None]
    raw = q + dq
    lo, hi = robot.Q_MIN + cfg.limit_margin, robot.Q_MAX - cfg.limit_margin
    q_target = np.clip(raw, lo, hi)
    limited = np.any(q_target != raw, axis=-1)
    return IKResult(q_target=q_target, scaled=scaled, limited=limited)


def gripper_command_to_ctrl(command: np.ndarray) -> np.ndarray:
    """Gripper command in [0, 1] (0 open, 1 closed) -> tendon target (mean finger opening, m)."""
    return robot.FINGER_MAX * (1.0 - np.clip(command, 0.0, 1.0))
