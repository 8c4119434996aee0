"""The 7-D end-effector action: layout, bounds, applying it to a TCP pose, composing base + residual.

Layout (see docs/CONTRACTS.md): [dx, dy, dz] metres, [drx, dry, drz] rotation vector in radians (base
frame, applied on the left), gripper in [0, 1] (0 open, 1 closed). Control at 20 Hz.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from residual_core.rotations import compose_rotvecs

ACTION_DIM = 7
CONTROL_HZ = 20.0
CONTROL_DT = 1.0 / CONTROL_HZ
ACTION_NAMES: tuple[str, ...] = ("dx", "dy", "dz", "drx", "dry", "drz", "gripper")

# Residual bound per component: 1 cm, 0.05 rad (~2.9 deg) per step; the gripper correction may flip it.
DEFAULT_RESIDUAL_SCALE = np.array([0.01, 0.01, 0.01, 0.05, 0.05, 0.05, 1.0])


@dataclass(frozen=True)
class ActionSpec:
    """Bounds of a (base, residual or composed) action."""

    max_translation: float = 0.05
    """Largest |dx|, |dy|, |dz| per step (m)."""
    max_rotation: float = 0.25
    """Largest |drx|, |dry|, |drz| per step (rad)."""

    @property
    def low(self) -> np.ndarray:
        t, r = self.max_translation, self.max_rotation
        return np.array([-t, -t, -t, -r, -r, -r, 0.0])

    @property
    def high(self) -> np.ndarray:
        t, r = self.max_translation, self.max_rotation
        return np.array([t, t, t, r, r, r, 1.0])


def clip_action(action: np.ndarray, spec: ActionSpec = ActionSpec()) -> np.ndarray:
    """Clip an action (7,) or batch (..., 7) to the spec's bounds."""
    return np.clip(np.asarray(action, dtype=np.float64), spec.low, spec.high)


def apply_delta(tcp_pos: np.ndarray, tcp_quat: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Target TCP pose from the current TCP pose and an action.

    ``tcp_quat`` is x, y, z, w. Returns (target_pos (3,), target_quat (4,) xyzw). The rotation is applied
    on the left in the base frame: R_target = R(action[3:6]) * R_current. Also batched: (N, 3), (N, 4),
    (N, 7) -> (N, 3), (N, 4).
    """
    action = np.asarray(action, dtype=np.float64)
    target_pos = np.asarray(tcp_pos, dtype=np.float64) + action[..., 0:3]
    target_rot = Rotation.from_rotvec(action[..., 3:6]) * Rotation.from_quat(tcp_quat)
    return target_pos, target_rot.as_quat()


def pose_delta(from_pos, from_quat, to_pos, to_quat) -> np.ndarray:
    """The 6-D delta [dpos, rotvec] that :func:`apply_delta` turns ``from`` into ``to`` with ((6,) or (N, 6))."""
    dpos = np.asarray(to_pos, dtype=np.float64) - np.asarray(from_pos, dtype=np.float64)
    drot = Rotation.from_quat(to_quat) * Rotation.from_quat(from_quat).inv()
    return np.concatenate([dpos, drot.as_rotvec()], axis=-1)


# --- Composition of base and residual (docs/CONTRACTS.md, "Composition of base and residual") -------------


@dataclass(frozen=True)
class ComposeResult:
    """One composed action and what composition did to it."""

    action: np.ndarray
    """The composed action (7,), within the ActionSpec bounds (NaN passes through: the safety envelope rejects it)."""
    residual: np.ndarray
    """The scaled residual (7,) actually added: the residual after clamping to +-residual_scale."""
    clipped: bool
    """True when the residual was clamped, or the composed action was clipped to the bounds (gripper included)."""


@dataclass(frozen=True)
class BatchComposeResult:
    """A batch of composed actions, the batched form of :class:`ComposeResult`."""

    actions: np.ndarray
    """Composed actions (N, 7)."""
    residuals: np.ndarray
    """Scaled residuals (N, 7) actually added."""
    clipped: np.ndarray
    """(N,) bool, as ComposeResult.clipped per row."""


def _as_batch(name: str, x, n: int | None = None) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != ACTION_DIM or (n is not None and a.shape[0] != n):
        want = f"({n}, {ACTION_DIM})" if n is not None else f"(N, {ACTION_DIM})"
        raise ValueError(f"{name} must have shape {want}, got {a.shape}")
    return a


def as_residual_scale(name: str, scale) -> np.ndarray:
    """``scale`` as a (7,) array (a scalar is broadcast); ValueError naming ``name`` unless finite and >= 0."""
    s = np.asarray(scale, dtype=np.float64)
    if s.ndim == 0:
        s = np.full(ACTION_DIM, float(s))
    if s.shape != (ACTION_DIM,) or not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError(f"{name} must be a scalar or ({ACTION_DIM},) of finite values >= 0, got {np.asarray(scale)!r}")
    return s


def residual_bound_problems(scale, spec: ActionSpec = ActionSpec()) -> list[str]:
    """Why ``scale`` cannot be a residual's bound (a checkpoint's ``action_scale``) under ``spec``: one phrase per
    problem, [] when it can. A bound is ACTION_DIM finite values, each in [0, ``spec.high``] of its component
    (``max_translation``, ``max_rotation``, 1 for the gripper): a residual allowed more than the whole action's
    bound is a corrupted or mislabelled checkpoint, not a policy."""
    s = np.asarray(scale, dtype=np.float64)
    if s.shape != (ACTION_DIM,):
        return [f"{ACTION_DIM} values are needed, got shape {s.shape}"]
    limits = ("ActionSpec.max_translation",) * 3 + ("ActionSpec.max_rotation",) * 3 + ("the gripper range",)
    problems = []
    for name, value, high, limit in zip(ACTION_NAMES, s, spec.high, limits, strict=True):
        if not np.isfinite(value):
            problems.append(f"{name} is {value}")
        elif value < 0.0:
            problems.append(f"{name} {value:g} < 0")
        elif value > high:
            problems.append(f"{name} {value:g} > {high:g} ({limit})")
    return problems


def compose_scaled_actions_batch(
    base: np.ndarray,
    residual: np.ndarray,
    residual_scale: np.ndarray = DEFAULT_RESIDUAL_SCALE,
    spec: ActionSpec = ActionSpec(),
) -> BatchComposeResult:
    """Compose base actions (N, 7) with residuals already in action units (N, 7) (as the residual node publishes).

    The residual is first clamped to +-residual_scale per component, then (CONTRACTS.md): translation
    ``base + r``, rotation ``Rotation.from_rotvec(r) * Rotation.from_rotvec(base)`` as a rotation vector,
    gripper ``base + r``; the result is clipped to the spec's bounds (which clips the gripper to [0, 1]).
    NaN in a row gives NaN in the affected components of that row and is not counted as clipping.
    """
    b = _as_batch("base", base)
    r_in = _as_batch("residual", residual, b.shape[0])
    bound = as_residual_scale("residual_scale", residual_scale)
    r = np.clip(r_in, -bound, bound)
    raw = np.empty_like(b)
    raw[:, 0:3] = b[:, 0:3] + r[:, 0:3]
    raw[:, 3:6] = compose_rotvecs(r[:, 3:6], b[:, 3:6])
    raw[:, 6] = b[:, 6] + r[:, 6]
    out = np.clip(raw, spec.low, spec.high)
    # NaN compares False both ways, so it is never counted as clipped.
    clipped = np.any((r != r_in) & np.isfinite(r_in), axis=1) | np.any((out != raw) & np.isfinite(raw), axis=1)
    return BatchComposeResult(actions=out, residuals=r, clipped=clipped)


def compose_actions_batch(
    base: np.ndarray,
    residual_raw: np.ndarray,
    residual_scale: np.ndarray = DEFAULT_RESIDUAL_SCALE,
    spec: ActionSpec = ActionSpec(),
) -> BatchComposeResult:
    """Compose base actions (N, 7) with raw residual network outputs ``u`` (N, 7) in [-1, 1].

    ``r = clip(u, -1, 1) * residual_scale`` (equal to clamping ``u * residual_scale`` to +-residual_scale),
    then as :func:`compose_scaled_actions_batch`.
    """
    scale = as_residual_scale("residual_scale", residual_scale)
    b = _as_batch("base", base)
    u = _as_batch("residual_raw", residual_raw, b.shape[0])
    return compose_scaled_actions_batch(b, u * scale, scale, spec)


def compose_action(
    base: np.ndarray,
    residual_raw: np.ndarray,
    residual_scale: np.ndarray = DEFAULT_RESIDUAL_SCALE,
    spec: ActionSpec = ActionSpec(),
) -> ComposeResult:
    """Compose one base action (7,) with one raw residual output ``u`` (7,): :func:`compose_actions_batch` for N = 1."""
    b, u = _as_single("base", base), _as_single("residual_raw", residual_raw)
    res = compose_actions_batch(b, u, residual_scale, spec)
    return ComposeResult(action=res.actions[0], residual=res.residuals[0], clipped=bool(res.clipped[0]))


def compose_scaled_action(
    base: np.ndarray,
    residual: np.ndarray,
    residual_scale: np.ndarray = DEFAULT_RESIDUAL_SCALE,
    spec: ActionSpec = ActionSpec(),
) -> ComposeResult:
    """Compose one base action (7,) with one residual (7,) in action units: :func:`compose_scaled_actions_batch`."""
    b, r = _as_single("base", base), _as_single("residual", residual)
    res = compose_scaled_actions_batch(b, r, residual_scale, spec)
    return ComposeResult(action=res.actions[0], residual=res.residuals[0], clipped=bool(res.clipped[0]))


def _as_single(name: str, x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.shape != (ACTION_DIM,):
        raise ValueError(f"{name} must have shape ({ACTION_DIM},), got {a.shape}")
    return a[None, :]
