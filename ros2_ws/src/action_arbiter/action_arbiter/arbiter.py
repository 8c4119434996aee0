"""The arbiter's per-step decision: base (+ residual) -> composition -> safety envelope -> command.

Pure Python (no rclpy). For control step t the node hands :meth:`Arbiter.decide` the base action of t, the
residual of t if it arrived before the deadline (else None), whether object poses are stale, and the
measured TCP pose. The decision:

* residual status (first that applies): ``disabled`` (switched off), ``masked`` (object poses stale and
  ``stale_pose_policy = "mask"``; with ``"disable"`` the residual is switched off until re-enabled),
  ``late`` (no residual for t by the deadline), ``rejected_nan`` (residual not finite), else ``ok``. The default
  policy is ``"ignore"``: a stale object is a dropout in the residual's observation (decided by the residual node
  with ``residual_core.observation``'s one definition), exactly as in training;
* ``residual_core.pipeline.ActionPipeline.step``, the pipeline training and ``residual-eval`` run: composition
  with the residual's trained bound (the residual node publishes the residual in action units; a zero residual
  whenever it is not applied, so base-alone actions meet the same bounds), the action bounds, and the safety
  envelope at the measured TCP pose (NaN/inf rejected: hold pose, keep the last gripper; steps and workspace
  clipped);
* base stale (no base action for more than ``base_stale_periods`` control periods): hold the pose the
  TCP had when the base went stale (latched, so the hold does not drift with the measurement; put through the
  same envelope as every command, so a hold is inside the workspace box too; forgotten while the TCP pose is not
  usable, and latched again where the arm is when something moved it further than one envelope step from the
  pose held, so a hold target is never further than one step from the measured TCP) and the last gripper command;
* no usable TCP pose (invalid, stale, in another frame, or jumped: action_arbiter.tcp_gate): no command at all (the
  controller keeps its last target).

NaN in any input never reaches the command.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from residual_core.action import ACTION_DIM
from residual_core.observation import PoseFreshness
from residual_core.pipeline import COMPOSE_FROM, TRACK_TOLERANCE, ActionPipeline, composition_origin
from residual_core.rotations import quat_angle
from residual_ros.episode_status import foreign_episode

RESIDUAL_STATUSES = ("ok", "disabled", "late", "masked", "rejected_nan")
STALE_POSE_POLICIES = ("mask", "disable", "ignore")


@dataclass(frozen=True)
class ArbiterConfig:
    """How the arbiter treats late, stale and invalid inputs."""

    control_dt: float = 0.05
    """Control period (s)."""
    base_stale_periods: float = 1.5
    """The base is stale after this many control periods without a base action: hold the pose. With the node's
    watchdog ticking every half period, a missing base action is answered by a hold within one period of when it
    was due."""
    freshness: PoseFreshness = field(default_factory=PoseFreshness)
    """When object poses count as stale (no ObjectPoseArray newer than ``freshness.timeout_s``)."""
    stale_pose_policy: str = "ignore"
    """With stale poses: "ignore" (default: the residual was trained with pose dropout and the residual node encodes
    the stale objects as dropouts in its observation), "mask" the residual for that step (an explicit, more
    conservative option), or "disable" it until re-enabled."""
    pipeline: ActionPipeline = field(default_factory=ActionPipeline)
    """Composition (with the residual checkpoint's bound), action bounds and safety envelope."""
    compose_from: str = "measured"
    """Where a command is composed from: "measured" (the measured TCP pose; training and the lockstep sim) or
    "target" (the previous target while the measured TCP is within ``track_tolerance`` of it, else the measured pose:
    residual_core.pipeline.composition_origin; for an arm that lags its targets)."""
    track_tolerance: tuple[float, float] = TRACK_TOLERANCE
    """compose_from target: distance (m) and angle (rad) within which the arm counts as tracking the last target."""

    def __post_init__(self) -> None:
        if self.compose_from not in COMPOSE_FROM:
            raise ValueError(f"compose_from must be one of {COMPOSE_FROM}, got {self.compose_from!r}")
        if not all(math.isfinite(v) and v > 0 for v in self.track_tolerance) or len(self.track_tolerance) != 2:
            raise ValueError(f"track_tolerance must be two values > 0 (m, rad), got {self.track_tolerance}")
        if not (math.isfinite(self.control_dt) and self.control_dt > 0):
            raise ValueError(f"control_dt must be > 0, got {self.control_dt}")
        if not (math.isfinite(self.base_stale_periods) and self.base_stale_periods >= 1):
            raise ValueError(f"base_stale_periods must be >= 1, got {self.base_stale_periods}")
        if self.stale_pose_policy not in STALE_POSE_POLICIES:
            raise ValueError(f"stale_pose_policy must be one of {STALE_POSE_POLICIES}, got {self.stale_pose_policy!r}")


@dataclass(frozen=True)
class Decision:
    """Everything the arbiter decided for one step (what the Correction message records, and the command)."""

    step: int
    """Control step."""
    base: np.ndarray
    """Base action as received (7,) (zeros when holding for a stale base)."""
    residual: np.ndarray
    """Residual actually added (7,), after clamping; zeros when not applied."""
    final: np.ndarray
    """Action actually commanded (7,), after composition and the envelope."""
    residual_applied: bool
    """True when the residual was added."""
    residual_status: str
    """One of RESIDUAL_STATUSES."""
    clipped: bool
    """True when composition bounds or the envelope changed the action."""
    clip_reasons: tuple[str, ...]
    """Every change: "action_bounds" (composition clipping), the envelope's reasons, "base_stale_hold"."""
    target_pos: np.ndarray | None
    """Target TCP position (3,), robot base frame; None: no valid command this step."""
    target_quat: np.ndarray | None
    """Target TCP orientation (4,) x y z w; None with target_pos."""
    gripper: float
    """Gripper command sent (0 open .. 1 closed)."""
    holding: bool
    """True when the base was stale and the pose is held."""

    @property
    def has_command(self) -> bool:
        """False when the measured TCP pose was invalid: publish no target, the controller keeps its last one."""
        return self.target_pos is not None


def _finite(x: np.ndarray | None) -> bool:
    return x is not None and bool(np.all(np.isfinite(x)))


def base_is_stale(now_s: float, last_base_s: float | None, cfg: ArbiterConfig) -> bool:
    """No base action ever, or none for more than ``base_stale_periods`` control periods."""
    return last_base_s is None or now_s - last_base_s > cfg.base_stale_periods * cfg.control_dt


def poses_are_stale(now_s: float, last_pose_s: float | None, cfg: ArbiterConfig) -> bool:
    """No object poses ever, or none newer than ``cfg.freshness.timeout_s``."""
    return last_pose_s is None or now_s - last_pose_s > cfg.freshness.timeout_s


class Arbiter:
    """Holds what persists between steps (residual switch, last gripper, latched hold pose)."""

    def __init__(
        self, cfg: ArbiterConfig = ArbiterConfig(), residual_enabled: bool = True, initial_gripper: float = 0.0
    ):
        self.cfg = cfg
        self.residual_enabled = residual_enabled
        self.last_gripper = float(initial_gripper)
        self.hold_pose: tuple[np.ndarray, np.ndarray] | None = None
        self.last_target: tuple[np.ndarray, np.ndarray] | None = None
        """The last target commanded in this episode (compose_from target); None: compose from the measured pose."""

    def forget_target(self) -> None:
        """A new episode (the arm was reset) or a resync: the next command is composed from the measured pose."""
        self.last_target = None

    def _origin(self, tcp_pos: np.ndarray, tcp_quat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.cfg.compose_from == "measured" or self.last_target is None:
            return tcp_pos, tcp_quat
        pos, quat = composition_origin(np.reshape(tcp_pos, (1, 3)), np.reshape(tcp_quat, (1, 4)),
                                       self.last_target[0][None], self.last_target[1][None], self.cfg.track_tolerance)
        return pos[0], quat[0]

    def set_residual_enabled(self, enabled: bool) -> bool:
        """Switch the residual on/off; returns the previous state."""
        previous, self.residual_enabled = self.residual_enabled, bool(enabled)
        return previous

    def _residual_status(self, residual: np.ndarray | None, poses_stale: bool) -> str:
        if poses_stale and self.residual_enabled and self.cfg.stale_pose_policy == "disable":
            self.residual_enabled = False
        if not self.residual_enabled:
            return "disabled"
        if poses_stale and self.cfg.stale_pose_policy == "mask":
            return "masked"
        if residual is None:
            return "late"
        if not _finite(residual):
            return "rejected_nan"
        return "ok"

    def decide(
        self,
        step: int,
        base: np.ndarray | None,
        residual: np.ndarray | None,
        tcp_pos: np.ndarray,
        tcp_quat: np.ndarray,
        poses_stale: bool = False,
        base_stale: bool = False,
    ) -> Decision:
        """The command for ``step``; ``base`` None or ``base_stale`` means: hold the pose."""
        zeros = np.zeros(ACTION_DIM)
        if base is None or base_stale:
            return self._hold(step, tcp_pos, tcp_quat)
        self.hold_pose = None
        base = np.asarray(base, dtype=np.float64).reshape(ACTION_DIM)
        status = self._residual_status(residual, poses_stale)
        applied = status == "ok"
        r_in = np.asarray(residual, dtype=np.float64).reshape(ACTION_DIM) if applied else None
        out = self.cfg.pipeline.step(base, r_in, *self._origin(tcp_pos, tcp_quat), self.last_gripper)
        if out.target_pos is not None:
            self.last_gripper = out.gripper
        self.last_target = None if out.target_pos is None else (out.target_pos, out.target_quat)
        return Decision(
            step=int(step), base=base, residual=out.residual if applied else zeros, final=out.action,
            residual_applied=applied, residual_status=status, clipped=out.clipped, clip_reasons=out.reasons,
            target_pos=out.target_pos, target_quat=out.target_quat, gripper=out.gripper, holding=False,
        )

    def _moved_away(self, tcp_pos: np.ndarray, tcp_quat: np.ndarray) -> bool:
        """The measured TCP is further than one envelope step (translation or rotation) from the pose held."""
        env = self.cfg.pipeline.envelope
        pos, quat = self.hold_pose
        angle = float(quat_angle(quat, tcp_quat))
        return (float(np.linalg.norm(np.asarray(tcp_pos, dtype=np.float64) - pos)) > env.max_translation_step
                or angle > env.max_rotation_step)

    def _hold(self, step: int, tcp_pos: np.ndarray | None, tcp_quat: np.ndarray | None) -> Decision:
        zeros = np.zeros(ACTION_DIM)
        final = zeros.copy()
        final[6] = self.last_gripper
        reasons: tuple[str, ...] = ()
        if tcp_pos is None or tcp_quat is None or not (_finite(tcp_pos) and _finite(tcp_quat)):
            # Where the arm is is not known now (the node passes NaN for a TCP pose that jumped, is stale or is
            # awaited): the arm may have been moved (a simulator reset under a long hold was 0.53 m away), so the
            # pose latched before is forgotten; the next usable TCP pose is held.
            self.hold_pose = None
        elif self.hold_pose is not None and self._moved_away(tcp_pos, tcp_quat):
            # Something else moved the arm further than one step from the pose held (a simulator reset that took
            # long enough to look like motion, a controller of another kind, a person): the target would be outside
            # the envelope around the measured TCP (soak: 0.29-0.35 m, dragging the arm back). Hold where it is.
            self.hold_pose = None
        if self.hold_pose is None and tcp_pos is not None and tcp_quat is not None:
            # The pose the TCP has now, through the envelope (a TCP outside the workspace box is pulled in).
            out = self.cfg.pipeline.step(final, None, tcp_pos, tcp_quat, self.last_gripper)
            if out.target_pos is not None:
                self.hold_pose = (out.target_pos, out.target_quat)
                final, reasons = out.action, tuple(r for r in out.reasons if r != "action_bounds")
        status = "masked" if self.residual_enabled else "disabled"  # nothing to correct without a base action
        pos, quat = self.hold_pose if self.hold_pose is not None else (None, None)
        self.last_target = self.hold_pose
        if pos is None:
            reasons += ("tcp_pose_invalid",)
        return Decision(
            step=int(step), base=zeros, residual=zeros, final=final, residual_applied=False, residual_status=status,
            clipped=False, clip_reasons=("base_stale_hold",) + reasons, target_pos=pos, target_quat=quat,
            gripper=self.last_gripper, holding=True,
        )


@dataclass
class ArbiterStats:
    """Counts over decisions, for diagnostics."""

    steps: int = 0
    """Decisions made."""
    by_status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESIDUAL_STATUSES, 0))
    """Decisions per residual status."""
    clipped: int = 0
    """Decisions the bounds or envelope changed."""
    rejected: int = 0
    """Decisions whose action was rejected as non-finite."""
    holds: int = 0
    """Decisions holding the pose for a stale base."""
    no_command: int = 0
    """Decisions without a command (invalid TCP pose)."""

    def add(self, d: Decision) -> None:
        self.steps += 1
        self.by_status[d.residual_status] += 1
        self.clipped += int(d.clipped)
        self.rejected += int("nan_rejected" in d.clip_reasons)
        self.holds += int(d.holding)
        self.no_command += int(not d.has_command)


@dataclass
class StepInputs:
    """What has arrived for one control step; the stamps are kept as given (the node passes its Time messages)."""

    base: np.ndarray | None = None
    base_stamp: Any = None
    residual: np.ndarray | None = None
    residual_stamp: Any = None


@dataclass
class StepMatcher:
    """Pairs the base action and the residual of each control step by (episode, step), for the node to decide on.

    Episodes are explicit: every action carries its episode id, and a base action of another episode than the
    current one starts that episode (all undecided state of other episodes is dropped). Nothing is inferred from
    step indices. Within the episode:

    * a base step equal to the last decided one is a duplicate (the sender re-sent it: the node re-sends its
      command); a lower one is stale and ignored, unless the same stale step arrives again: then its sender is
      waiting for exactly that step (lockstep re-publication), so the matcher rewinds to it. A lockstep graph
      therefore never stalls on a decision made for a step the simulator is not at (e.g. after a forged action);
    * a base step more than ``max_step_gap`` ahead of the last decided one is impossible and dropped, unless it
      directly follows the previous dropped one (a sequence of steps: the episode really moved on, e.g. after this
      node was frozen);
    * a residual for an already decided step, of the episode that just ended, or more than ``max_step_gap`` ahead
      is late or impossible and counted; a residual of an episode not started yet is kept until its base action
      starts it.

    Where the simulator (or the twin) announces its episode (:meth:`announce`), an action of an episode that is
    neither the current one, the announced one nor the first steps of the one after it (whose first actions may
    arrive before its announcement: ``residual_ros.episode_status.foreign_episode``) is foreign and dropped,
    counted: a forged or leftover action cannot start an episode. In real time the node also says how many control
    periods passed since the last decision: a base step further ahead than those periods allow (plus
    ``early_slack``) is early, dropped and counted, so a forged action a few steps ahead cannot supersede the real
    steps (a base that really jumped, e.g. after a freeze, jumps by about the periods that passed).

    At most ``max_pending`` undecided steps are kept (the oldest go first), so a flood of inputs cannot grow the
    store. :meth:`take` hands over a step's inputs and supersedes every older undecided step. ``pending`` is the
    step (of the current episode) whose residual the node is waiting for (its deadline timer runs); taking that
    step or a newer one clears it.
    """

    max_step_gap: int = 20
    """Largest plausible step ahead of the last decided one (1 s at 20 Hz)."""
    max_pending: int = 64
    """Most undecided steps kept."""
    steps: dict[tuple[int, int], StepInputs] = field(default_factory=dict)
    """Undecided inputs by (episode, step)."""
    episode: int | None = None
    """The current episode (of the last base action taken in); None before the first."""
    previous_episode: int | None = None
    """The episode before the current one (its residuals are late)."""
    last_decided: int | None = None
    """Last decided step of the current episode."""
    pending: int | None = None
    late_residuals: int = 0
    """Residuals dropped because their step was decided or their episode was over."""
    stale_bases: int = 0
    """Base actions dropped because a newer step of their episode was decided already."""
    impossible: int = 0
    """Base actions and residuals dropped because their step was implausibly far ahead."""
    evicted: int = 0
    """Undecided steps dropped because more than ``max_pending`` were kept."""
    rewinds: int = 0
    """Times a re-sent older step was taken up again (see the class doc)."""
    announced: int | None = None
    """The episode the simulator last announced; None: no announcements (every episode id is taken)."""
    foreign: int = 0
    """Base actions and residuals dropped because their episode was not the current or announced one."""
    early_slack: int = 2
    """Real time: steps a base action may be ahead of the last decided one plus the periods since."""
    early: int = 0
    """Real-time base actions dropped because their step was further ahead than the time since allows."""
    _last_stale: tuple[int, int] | None = field(default=None, repr=False)
    _last_impossible: tuple[int, int] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.max_step_gap < 1 or self.max_pending < 2:
            raise ValueError(f"max_step_gap must be >= 1 and max_pending >= 2, got {self.max_step_gap}, "
                             f"{self.max_pending}")

    def _store(self, episode: int, step: int) -> StepInputs:
        key = (episode, step)
        if key not in self.steps:
            while len(self.steps) >= self.max_pending:
                del self.steps[next(iter(self.steps))]
                self.evicted += 1
        return self.steps.setdefault(key, StepInputs())

    def _too_far(self, step: int) -> bool:
        return self.last_decided is not None and step > self.last_decided + self.max_step_gap

    def announce(self, episode: int) -> None:
        """The simulator says its current episode is ``episode``."""
        self.announced = int(episode)

    def _foreign(self, episode: int, step: int) -> bool:
        if not foreign_episode(episode, step, self.episode, self.announced):
            return False
        self.foreign += 1
        return True

    def add_base(self, episode: int, step: int, action, stamp: Any = None, periods_since_decision: int | None = None
                 ) -> str:
        """Store a base action; returns "foreign" (an episode the simulator did not announce: ignored, counted),
        "early" (real time, ``periods_since_decision`` given: a step further ahead than the time since the last
        decision allows: ignored, counted),
        "new_episode" (another episode than the current one: it starts, the other episodes' undecided state is
        dropped), "added", "rewound" (added after a rewind), "duplicate" (its step
        was just decided: ignored), "stale" (an older step than the last decided one: ignored, counted) or
        "impossible" (too far ahead: ignored, counted)."""
        episode, step = int(episode), int(step)
        if self._foreign(episode, step):
            return "foreign"
        result = "added"
        if episode != self.episode:
            self.previous_episode, self.episode = self.episode, episode
            self.steps = {k: v for k, v in self.steps.items() if k[0] == episode}
            self.last_decided, self.pending, result = None, None, "new_episode"
            self._last_stale = self._last_impossible = None
        elif self.last_decided is not None and step <= self.last_decided:
            if step == self.last_decided:
                return "duplicate"
            if self._last_stale != (episode, step):
                self._last_stale = (episode, step)
                self.stale_bases += 1
                return "stale"
            self.rewinds += 1
            self.last_decided, self.pending, self._last_stale, result = step - 1, None, None, "rewound"
            self.steps = {k: v for k, v in self.steps.items() if k[0] == episode and k[1] >= step}
        elif self._too_far(step):
            follows = self._last_impossible == (episode, step - 1)
            self._last_impossible = (episode, step)
            if not follows:
                self.impossible += 1
                return "impossible"
        if (result == "added" and periods_since_decision is not None and self.last_decided is not None
                and step > self.last_decided + self.early_slack + max(int(periods_since_decision), 0)):
            self.early += 1
            return "early"
        inputs = self._store(episode, step)
        inputs.base, inputs.base_stamp = np.array(action, dtype=np.float64), stamp
        return result

    def add_residual(self, episode: int, step: int, action, stamp: Any = None) -> bool:
        """Store a residual; False (and counted) when its step was already decided, its episode is over or its step
        is implausibly far ahead."""
        episode, step = int(episode), int(step)
        if self._foreign(episode, step):
            return False
        current = episode == self.episode
        decided = current and self.last_decided is not None and step <= self.last_decided
        if decided or (not current and episode == self.previous_episode):
            self.late_residuals += 1
            return False
        if current and self._too_far(step) and not self.has_base(step):
            self.impossible += 1
            return False
        inputs = self._store(episode, step)
        inputs.residual, inputs.residual_stamp = np.array(action, dtype=np.float64), stamp
        return True

    def _get(self, step: int) -> StepInputs | None:
        return self.steps.get((self.episode, step)) if self.episode is not None else None

    def has_base(self, step: int) -> bool:
        """The current episode's ``step`` has its base action."""
        inputs = self._get(step)
        return inputs is not None and inputs.base is not None

    def has_residual(self, step: int) -> bool:
        """The current episode's ``step`` has its residual."""
        inputs = self._get(step)
        return inputs is not None and inputs.residual is not None

    def base_stamp(self, step: int) -> Any:
        inputs = self._get(step)
        return inputs.base_stamp if inputs is not None else None

    def take(self, step: int) -> StepInputs:
        """The inputs of ``step`` of the current episode (which must have its base); older undecided steps of the
        episode are dropped (superseded)."""
        ep = self.episode
        inputs = self.steps.pop((ep, step))
        self.steps = {k: v for k, v in self.steps.items() if k[0] != ep or k[1] > step}
        self.last_decided = step
        self._last_stale = self._last_impossible = None
        if self.pending is not None and self.pending <= step:
            self.pending = None
        return inputs
