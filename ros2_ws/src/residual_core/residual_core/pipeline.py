"""The one action pipeline: base + residual -> composition -> action bounds -> safety envelope -> command.

Training (``residual-train``), evaluation (``residual-eval``) and the arbiter node all call this module, so what
was trained is what runs, envelope included (docs/CONTRACTS.md, "The action pipeline"):

1. the residual (action units) is clamped to +-``residual_scale`` per component: the bound the residual was trained
   with, read from its checkpoint's manifest (``action_scale``); configuration may only tighten it
   (:func:`tighten_scale`);
2. composition with the base action (translation and gripper add, rotations compose) and clipping to the
   :class:`~residual_core.action.ActionSpec` bounds (``residual_core.action``);
3. the safety envelope at the measured TCP pose (``residual_core.safety``): NaN rejected (hold), the step limited
   in norm and angle, the target kept in the workspace box, the gripper bounded.

Every function returns what it applied and why (reasons in the order applied: ``action_bounds`` for step 2, then
the envelope's reasons). A row whose base action is not finite is not composed (composition would only spread the
NaN); the envelope rejects it and holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from residual_core.action import (
    ACTION_DIM,
    ACTION_NAMES,
    DEFAULT_RESIDUAL_SCALE,
    ActionSpec,
    as_residual_scale,
    compose_scaled_actions_batch,
)
from residual_core.rotations import quat_angle
from residual_core.safety import EnvelopeConfig, apply_envelope_batch


def tighten_scale(trained, fraction=(1.0,) * ACTION_DIM) -> np.ndarray:
    """The residual bound to apply: the checkpoint's ``trained`` residual_scale (7,) times ``fraction`` (7,) in
    [0, 1] per component (ValueError naming the component otherwise). Configuration can only tighten the bound a
    residual was trained with, never loosen it."""
    t = as_residual_scale("the checkpoint's residual_scale (manifest action_scale)", trained)
    f = np.asarray(fraction, dtype=np.float64).reshape(-1)
    if f.shape != (ACTION_DIM,):
        raise ValueError(f"residual_scale_fraction must have {ACTION_DIM} values, got {list(f)}")
    bad = [f"{ACTION_NAMES[i]} {float(f[i]):g}" for i in range(ACTION_DIM) if not 0.0 <= f[i] <= 1.0]
    if bad:
        raise ValueError("residual_scale_fraction must be in [0, 1] per component (configuration may only tighten "
                         f"the bound the residual was trained with): {', '.join(bad)}")
    return t * f


@dataclass(frozen=True)
class PipelineResult:
    """One step through the pipeline."""

    action: np.ndarray
    """(7,) the action actually commanded: the delta from the measured TCP to the target, and the gripper."""
    residual: np.ndarray
    """(7,) the residual actually added (after clamping); zeros when none was given."""
    composed: np.ndarray
    """(7,) base + residual after the action bounds, before the envelope."""
    target_pos: np.ndarray | None
    """(3,) target TCP position; None only when the measured TCP pose is invalid (no command)."""
    target_quat: np.ndarray | None
    """(4,) target orientation x, y, z, w; None with target_pos."""
    clipped: bool
    """The action bounds or the envelope changed the action."""
    rejected: bool
    """The action (or the TCP pose) was not finite: the pose is held."""
    reasons: tuple[str, ...]
    """Every change, in order: "action_bounds", then the envelope's reasons."""

    @property
    def gripper(self) -> float:
        return float(self.action[6])


@dataclass(frozen=True)
class BatchPipelineResult:
    """N steps through the pipeline (the batched :class:`PipelineResult`)."""

    actions: np.ndarray
    """(N, 7) actions commanded."""
    residuals: np.ndarray
    """(N, 7) residuals added."""
    composed: np.ndarray
    """(N, 7) composed actions before the envelope."""
    target_pos: np.ndarray
    """(N, 3) targets; NaN rows where ``has_target`` is False."""
    target_quat: np.ndarray
    """(N, 4) target orientations; NaN rows where ``has_target`` is False."""
    has_target: np.ndarray
    """(N,) bool."""
    clipped: np.ndarray
    """(N,) bool."""
    rejected: np.ndarray
    """(N,) bool."""
    reasons: list[tuple[str, ...]] = field(repr=False)
    """Per row, as PipelineResult.reasons."""

    def row(self, i: int) -> PipelineResult:
        has = bool(self.has_target[i])
        return PipelineResult(self.actions[i], self.residuals[i], self.composed[i],
                              self.target_pos[i] if has else None, self.target_quat[i] if has else None,
                              bool(self.clipped[i]), bool(self.rejected[i]), self.reasons[i])


@dataclass(frozen=True)
class ActionPipeline:
    """Compose with the residual's trained bound, clip to the action spec, apply the envelope (module docstring)."""

    residual_scale: tuple[float, ...] = tuple(float(v) for v in DEFAULT_RESIDUAL_SCALE)
    """Largest residual per component (m, m, m, rad, rad, rad, gripper): the checkpoint's, or tighter."""
    spec: ActionSpec = field(default_factory=ActionSpec)
    """Bounds of the composed action (per component)."""
    envelope: EnvelopeConfig = field(default_factory=EnvelopeConfig)
    """Safety envelope on the target pose and the per-step motion."""

    def __post_init__(self) -> None:
        scale = as_residual_scale("residual_scale", self.residual_scale)
        object.__setattr__(self, "residual_scale", tuple(float(v) for v in scale))

    def step_batch(self, base, residual, tcp_pos, tcp_quat, last_gripper) -> BatchPipelineResult:
        """N rows: base (N, 7), residual (N, 7) in action units or None (base alone, through the same bounds),
        measured TCP (N, 3) and (N, 4) x, y, z, w, the previous gripper commands (N,)."""
        b = np.asarray(base, dtype=np.float64)
        if b.ndim != 2 or b.shape[1] != ACTION_DIM:
            raise ValueError(f"base must have shape (N, {ACTION_DIM}), got {b.shape}")
        r_in = np.zeros_like(b) if residual is None else np.asarray(residual, dtype=np.float64)
        if r_in.shape != b.shape:
            raise ValueError(f"residual must have shape {b.shape}, got {r_in.shape}")
        comp = compose_scaled_actions_batch(b, r_in, np.asarray(self.residual_scale), self.spec)
        composed, used, comp_clipped = comp.actions, comp.residuals, comp.clipped
        bad_base = ~np.all(np.isfinite(b), axis=-1)
        if bad_base.any():  # the envelope rejects these rows; composition would only spread the NaN
            composed[bad_base], used[bad_base], comp_clipped[bad_base] = b[bad_base], r_in[bad_base], False
        env = apply_envelope_batch(composed, tcp_pos, tcp_quat, last_gripper, self.envelope)
        reasons = [(("action_bounds",) if c else ()) + r for c, r in zip(comp_clipped, env.reasons, strict=True)]
        return BatchPipelineResult(actions=env.actions, residuals=used, composed=composed, target_pos=env.target_pos,
                                   target_quat=env.target_quat, has_target=env.has_target,
                                   clipped=comp_clipped | env.clipped, rejected=env.rejected, reasons=reasons)

    def step(self, base, residual, tcp_pos, tcp_quat, last_gripper: float) -> PipelineResult:
        """One row: base (7,), residual (7,) or None, TCP (3,) + (4,), the previous gripper command."""
        b = np.asarray(base, dtype=np.float64)
        if b.shape != (ACTION_DIM,):
            raise ValueError(f"base must have shape ({ACTION_DIM},), got {b.shape}")
        r = None if residual is None else np.asarray(residual, dtype=np.float64).reshape(1, ACTION_DIM)
        p = np.asarray(tcp_pos, dtype=np.float64).reshape(1, 3)
        q = np.asarray(tcp_quat, dtype=np.float64).reshape(1, 4)
        return self.step_batch(b[None], r, p, q, np.array([float(last_gripper)])).row(0)


COMPOSE_FROM = ("measured", "target")
"""Where a command is composed from: the TCP pose measured at the step, or the previous target while the arm tracks
it (:func:`composition_origin`)."""

TRACK_TOLERANCE = (0.15, 0.5)
"""compose_from target: the previous target is the origin while the measured TCP is within this distance (m) and
angle (rad) of it (an arm lagging its targets by two 5 cm steps is still tracking; one blocked or moved by a reflex
is not)."""


def composition_origin(tcp_pos, tcp_quat, last_pos, last_quat, tolerance=TRACK_TOLERANCE
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3), (N, 4): where compose_from "target" composes each row's command from: the previous target
    (``last_pos``, ``last_quat``) where the measured TCP is within ``tolerance`` of it, else the measured pose.

    Why: an arm that lags its targets (action latency, a compliant controller) is measured behind the last command;
    a target composed from the measured pose then moves the arm only part of each step the policy asks for (1/(L+1)
    with L steps of latency: measured in residual-eval, the base's success 8.6 -> 1.0/20 with one step). Composed from
    the tracked target, the commanded path is the policy's, delayed. A row with a non-finite measured pose keeps it
    (the envelope then rejects the step)."""
    p, q = np.asarray(tcp_pos, dtype=np.float64), np.asarray(tcp_quat, dtype=np.float64)
    lp, lq = np.asarray(last_pos, dtype=np.float64), np.asarray(last_quat, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        tracking = (np.linalg.norm(lp - p, axis=-1) <= tolerance[0]) & (quat_angle(q, lq) <= tolerance[1])
    tracking &= np.all(np.isfinite(p), axis=-1) & np.all(np.isfinite(q), axis=-1)
    return np.where(tracking[:, None], lp, p), np.where(tracking[:, None], lq, q)


class GripperMemory:
    """The previous gripper command per env (what the envelope holds on a rejected step); starts open (0)."""

    def __init__(self, num_envs: int, initial: float = 0.0):
        self.initial = float(initial)
        self.value = np.full(int(num_envs), self.initial)

    def reset(self, env_ids=None) -> None:
        self.value[slice(None) if env_ids is None else np.asarray(env_ids)] = self.initial

    def update(self, result: BatchPipelineResult) -> None:
        """Remember the gripper of every row that produced a command."""
        self.value[result.has_target] = result.actions[result.has_target, 6]
