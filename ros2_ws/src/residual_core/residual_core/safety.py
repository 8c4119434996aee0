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
    ``target_pos``/``target_quat`` None, and the caller must keep its previous command. This is
    :func:`apply_envelope_batch` for one row (one implementation for the arbiter, training and evaluation).
    """
    a = np.asarray(action, dtype=np.float64)
    if a.shape != (ACTION_DIM,):
        raise ValueError(f"action must have shape ({ACTION_DIM},), got {a.shape}")
    p = np.asarray(tcp_pos, dtype=np.float64)
    q = np.asarray(tcp_quat, dtype=np.float64)
    if p.shape != (3,) or q.shape != (4,):
        raise ValueError(f"tcp_pos must be (3,) and tcp_quat (4,), got {p.shape} and {q.shape}")
    b = apply_envelope_batch(a[None], p[None], q[None], np.array([float(last_gripper)]), cfg)
    has_target = bool(b.has_target[0])
    return EnvelopeResult(b.actions[0], b.target_pos[0] if has_target else None,
                          b.target_quat[0] if has_target else None, clipped=bool(b.clipped[0]),
                          rejected=bool(b.rejected[0]), reasons=b.reasons[0])


@dataclass(frozen=True)
class BatchEnvelopeResult:
    """The batched form of :class:`EnvelopeResult` (N rows)."""

    actions: np.ndarray
    """(N, 7) actions actually applied."""
    target_pos: np.ndarray
    """(N, 3) target TCP positions; NaN in rows without a target (``has_target`` False)."""
    target_quat: np.ndarray
    """(N, 4) target orientations x, y, z, w; NaN in rows without a target."""
    has_target: np.ndarray
    """(N,) bool: False only where the measured TCP pose was invalid."""
    clipped: np.ndarray
    """(N,) bool, as EnvelopeResult.clipped."""
    rejected: np.ndarray
    """(N,) bool, as EnvelopeResult.rejected."""
    reasons: list[tuple[str, ...]]
    """Per row, every change made, in the order applied."""


def _unit_quats(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(valid (N,), unit quaternions (N, 4)): a quaternion is valid when finite and not (near) zero; it is scaled by
    its largest component first, so that finite but huge values cannot overflow the norm."""
    finite = np.all(np.isfinite(q), axis=-1)
    big = np.where(finite, np.max(np.abs(np.where(finite[:, None], q, 0.0)), axis=-1), 0.0)
    scaled = np.divide(q, big[:, None], out=np.zeros_like(q), where=(big > 0)[:, None] & finite[:, None])
    norm = np.linalg.norm(scaled, axis=-1) * big
    valid = finite & (norm >= 1e-9)
    unit = np.tile([0.0, 0.0, 0.0, 1.0], (len(q), 1))
    unit[valid] = scaled[valid] / np.linalg.norm(scaled[valid], axis=-1, keepdims=True)
    return valid, unit


def apply_envelope_batch(
    actions: np.ndarray,
    tcp_pos: np.ndarray,
    tcp_quat: np.ndarray,
    last_gripper: np.ndarray,
    cfg: EnvelopeConfig = EnvelopeConfig(),
) -> BatchEnvelopeResult:
    """:func:`apply_envelope` for N rows at once: actions (N, 7), tcp_pos (N, 3), tcp_quat (N, 4), last_gripper (N,)."""
    a = np.array(actions, dtype=np.float64)
    n = a.shape[0] if a.ndim == 2 else -1
    p = np.asarray(tcp_pos, dtype=np.float64)
    q = np.asarray(tcp_quat, dtype=np.float64)
    g_last = np.asarray(last_gripper, dtype=np.float64).reshape(-1)
    if a.shape != (n, ACTION_DIM) or p.shape != (n, 3) or q.shape != (n, 4) or g_last.shape != (n,):
        raise ValueError(f"need actions (N, {ACTION_DIM}), tcp_pos (N, 3), tcp_quat (N, 4), last_gripper (N,); got "
                         f"{a.shape}, {p.shape}, {q.shape}, {g_last.shape}")
    if not np.all(np.isfinite(g_last)):
        raise ValueError(f"last_gripper must be finite (it is the previous applied command), got {g_last}")
    held_gripper = np.clip(g_last, cfg.gripper_min, cfg.gripper_max)
    hold = np.zeros((n, ACTION_DIM))
    hold[:, 6] = held_gripper

    quat_ok, unit_q = _unit_quats(q)
    tcp_ok = np.all(np.isfinite(p), axis=-1) & quat_ok
    safe_p = np.where(tcp_ok[:, None], p, 0.0)
    # Canonical rotation vector (angle in [0, pi]) so that scaling it keeps the direction of rotation. scipy gives
    # NaN for rotation vectors so large (~1e300) that their angle overflows: rejected like NaN.
    rotvec = a[:, 3:6].copy()
    rot_finite = np.all(np.isfinite(rotvec), axis=-1)
    if rot_finite.any():
        rotvec[rot_finite] = Rotation.from_rotvec(rotvec[rot_finite]).as_rotvec()
    rejected = ~(np.all(np.isfinite(a), axis=-1) & np.all(np.isfinite(rotvec), axis=-1))
    a[rejected] = hold[rejected]
    rotvec[rejected] = 0.0
    lo, hi = np.asarray(cfg.workspace_min), np.asarray(cfg.workspace_max)
    outside = np.any(safe_p < lo, axis=-1) | np.any(safe_p > hi, axis=-1)

    step = a[:, 0:3].copy()
    biggest = np.max(np.abs(step), axis=-1)
    # scaled by the largest component first, so that the norm cannot overflow for huge steps
    direction = np.divide(step, biggest[:, None], out=np.zeros_like(step), where=(biggest > 0)[:, None])
    dir_norm = np.linalg.norm(direction, axis=-1)
    too_far = (biggest > 0) & (biggest * dir_norm > cfg.max_translation_step)
    step[too_far] = direction[too_far] * (cfg.max_translation_step / dir_norm[too_far])[:, None]

    angle = np.linalg.norm(rotvec, axis=-1)
    too_much = angle > cfg.max_rotation_step
    rotvec[too_much] *= (cfg.max_rotation_step / angle[too_much])[:, None]

    raw_target = safe_p + step
    below, above = raw_target < lo, raw_target > hi
    target_pos = np.clip(raw_target, lo, hi)

    gripper = a[:, 6].copy()
    grip_out = (gripper < cfg.gripper_min) | (gripper > cfg.gripper_max)
    gripper = np.clip(gripper, cfg.gripper_min, cfg.gripper_max)

    target_quat = (Rotation.from_rotvec(rotvec) * Rotation.from_quat(unit_q)).as_quat()
    applied = np.concatenate([target_pos - safe_p, rotvec, gripper[:, None]], axis=-1)

    reasons: list[tuple[str, ...]] = []
    clipped = np.zeros(n, dtype=bool)
    for i in range(n):
        if not tcp_ok[i]:
            reasons.append(("tcp_pose_invalid",))
            continue
        r = []
        if rejected[i]:
            r.append("nan_rejected")
        if outside[i]:
            r.append("tcp_outside_workspace")
        if too_far[i]:
            r.append("translation_step")
        if too_much[i]:
            r.append("rotation_step")
        for k, axis in enumerate(_AXES):
            if below[i, k]:
                r.append(f"workspace_{axis}_min")
            elif above[i, k]:
                r.append(f"workspace_{axis}_max")
        if grip_out[i]:
            r.append("gripper_bounds")
        reasons.append(tuple(r))
        clipped[i] = any(x not in ("nan_rejected", "tcp_outside_workspace") for x in r)
    applied[~tcp_ok] = hold[~tcp_ok]
    target_pos[~tcp_ok] = np.nan
    target_quat[~tcp_ok] = np.nan
    return BatchEnvelopeResult(actions=applied, target_pos=target_pos, target_quat=target_quat, has_target=tcp_ok,
                               clipped=clipped, rejected=rejected | ~tcp_ok, reasons=reasons)
