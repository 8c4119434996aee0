"""The safety envelope applied to every composed action before it reaches the controller (docs/CONTRACTS.md).

Given the action and the current measured TCP pose, :func:`apply_envelope`

1. rejects an action or TCP pose holding NaN/inf: hold the current pose (zero delta) and the last gripper
   command (reason ``nan_rejected`` for the action, ``tcp_pose_invalid`` for the pose); a held pose outside
   the workspace box is still moved into it (step 4);
2. scales the translation step down to ``max_translation_step`` (Euclidean norm, ``translation_step``);
3. scales the rotation step down to ``max_rotation_step`` (rotation angle, ``rotation_step``);
4. clips the target TCP position into the workspace box (``workspace_x_min``, ..., ``workspace_z_max``);
5. clips the gripper command into [gripper_min, gripper_max] (``gripper_bounds``).

The target position is always inside the box. If the measured TCP is already outside it (reason
``tcp_outside_workspace``), the target is pulled back into the box even if that step exceeds
``max_translation_step``; while the TCP is inside, the step never exceeds it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from residual_core.action import ACTION_DIM

_AXES = ("x", "y", "z")


@dataclass(frozen=True)
class EnvelopeConfig:
    """Limits on the target TCP pose and the per-step motion (robot base frame, fr3_link0)."""

    workspace_min: tuple[float, float, float] = (0.25, -0.40, -0.005)
    """Lower corner of the box the target TCP position must stay in (m). z = 0 is the table top; grasps of a
    table-level 4 cm cube put the TCP at ~0.02 m, so z_min sits just below the table surface."""
    workspace_max: tuple[float, float, float] = (0.80, 0.40, 0.60)
    """Upper corner of the box (m): in front of the robot, within the FR3's comfortable reach."""
    max_translation_step: float = 0.05
    """Largest TCP translation per control step (m, Euclidean norm): 1 m/s at 20 Hz."""
    max_rotation_step: float = 0.25
    """Largest TCP rotation per control step (rad, rotation angle): ~5 rad/s at 20 Hz."""
    gripper_min: float = 0.0
    """Smallest gripper command (0 = open)."""
    gripper_max: float = 1.0
    """Largest gripper command (1 = closed)."""

    def __post_init__(self) -> None:
        lo = np.asarray(self.workspace_min, dtype=np.float64)
        hi = np.asarray(self.workspace_max, dtype=np.float64)
        if lo.shape != (3,) or hi.shape != (3,) or not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ValueError(
                f"workspace_min/max must be 3 finite numbers each, got {self.workspace_min}, {self.workspace_max}"
            )
        if np.any(lo >= hi):
            raise ValueError(f"workspace_min {tuple(lo)} must be below workspace_max {tuple(hi)} on every axis")
        for name in ("max_translation_step", "max_rotation_step"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be finite and > 0, got {v}")
        if not self.gripper_min < self.gripper_max:
            raise ValueError(f"gripper_min {self.gripper_min} must be below gripper_max {self.gripper_max}")
        object.__setattr__(self, "workspace_min", tuple(float(v) for v in lo))
        object.__setattr__(self, "workspace_max", tuple(float(v) for v in hi))


@dataclass(frozen=True)
class EnvelopeResult:
    """What the envelope let through and why."""

    action: np.ndarray
    """The action actually applied (7,): delta from the measured TCP pose to the target, and the gripper command."""
    target_pos: np.ndarray | None
    """Target TCP position (3,), inside the workspace box; None only when the measured TCP pose is invalid."""
    target_quat: np.ndarray | None
    """Target TCP orientation (4,) x, y, z, w; None only when the measured TCP pose is invalid."""
    clipped: bool
    """True when some component was limited (step size, workspace or gripper bounds); a rejection alone is not."""
    rejected: bool
    """True when the action (or the TCP pose) was not finite and the pose is held instead."""
    reasons: tuple[str, ...]
    """Every change made, in the order applied (empty when the action passed unchanged)."""


def apply_envelope(
    action: np.ndarray,
    tcp_pos: np.ndarray,
    tcp_quat: np.ndarray,
    last_gripper: float,
    cfg: EnvelopeConfig = EnvelopeConfig(),
) -> EnvelopeResult:
    """Make ``action`` (7,) safe to apply at the measured TCP pose (tcp_pos (3,), tcp_quat (4,) x, y, z, w).

    ``last_gripper`` is the gripper command applied at the previous step (it is held when the action is
    rejected). When the TCP pose itself is not finite no target can be formed: the result is rejected with
    ``target_pos``/``target_quat`` None, and the caller must keep its previous command.
    """
    a = np.asarray(action, dtype=np.float64)
    if a.shape != (ACTION_DIM,):
        raise ValueError(f"action must have shape ({ACTION_DIM},), got {a.shape}")
    p = np.asarray(tcp_pos, dtype=np.float64)
    q = np.asarray(tcp_quat, dtype=np.float64)
    if p.shape != (3,) or q.shape != (4,):
        raise ValueError(f"tcp_pos must be (3,) and tcp_quat (4,), got {p.shape} and {q.shape}")
    if not np.isfinite(last_gripper):
        raise ValueError(f"last_gripper must be finite (it is the previous applied command), got {last_gripper}")
    held_gripper = float(np.clip(last_gripper, cfg.gripper_min, cfg.gripper_max))
    hold = np.zeros(ACTION_DIM)
    hold[6] = held_gripper

    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q))) or np.linalg.norm(q) < 1e-9:
        return EnvelopeResult(hold, None, None, clipped=False, rejected=True, reasons=("tcp_pose_invalid",))
    tcp_rot = Rotation.from_quat(q)
    reasons: list[str] = []
    # Canonical rotation vector (angle in [0, pi]) so that scaling it keeps the direction of rotation. scipy
    # gives NaN for rotation vectors so large (~1e300) that their angle overflows: rejected like NaN.
    rotvec = Rotation.from_rotvec(a[3:6]).as_rotvec() if np.all(np.isfinite(a[3:6])) else a[3:6]
    rejected = not (np.all(np.isfinite(a)) and np.all(np.isfinite(rotvec)))
    if rejected:
        # Hold: a zero step with the last gripper command, through the same limits (so the target is inside the
        # box even when the measured TCP is not).
        a, rotvec = hold, np.zeros(3)
        reasons.append("nan_rejected")
    lo, hi = np.asarray(cfg.workspace_min), np.asarray(cfg.workspace_max)
    if np.any(p < lo) or np.any(p > hi):
        reasons.append("tcp_outside_workspace")

    step = a[0:3].copy()
    biggest = float(np.max(np.abs(step)))
    if biggest > 0.0:
        direction = step / biggest  # scaled first so that the norm cannot overflow for huge steps
        norm = biggest * float(np.linalg.norm(direction))
        if norm > cfg.max_translation_step:
            step = direction * (cfg.max_translation_step / float(np.linalg.norm(direction)))
            reasons.append("translation_step")

    angle = float(np.linalg.norm(rotvec))
    if angle > cfg.max_rotation_step:
        rotvec *= cfg.max_rotation_step / angle
        reasons.append("rotation_step")

    target_pos = p + step
    for i, axis in enumerate(_AXES):
        if target_pos[i] < lo[i]:
            reasons.append(f"workspace_{axis}_min")
        elif target_pos[i] > hi[i]:
            reasons.append(f"workspace_{axis}_max")
    target_pos = np.clip(target_pos, lo, hi)

    gripper = float(a[6])
    if gripper < cfg.gripper_min or gripper > cfg.gripper_max:
        gripper = float(np.clip(gripper, cfg.gripper_min, cfg.gripper_max))
        reasons.append("gripper_bounds")

    target_quat = (Rotation.from_rotvec(rotvec) * tcp_rot).as_quat()
    applied = np.concatenate([target_pos - p, rotvec, [gripper]])
    clipped = any(r not in ("nan_rejected", "tcp_outside_workspace") for r in reasons)
    return EnvelopeResult(applied, target_pos, target_quat, clipped=clipped, rejected=rejected, reasons=tuple(reasons))
