"""The residual policy node's decision, without ROS: latest inputs + base action of step t -> residual of step t.

:class:`ResidualComputer` holds a loaded :class:`residual_core.residual_policy.ResidualPolicy` (refused unless it was
trained for the configured task with that task's observation layout), the latest proprioception (arm joints and
finger joints from JointState, TCP pose) and the latest pose of each task object, with their times. Its
:meth:`~ResidualComputer.compute` builds the observation with ``residual_core.observation.build_observation`` (the
builder the trainer uses) and runs the policy:

* an object is present unless its latest pose is older than ``pose_timeout`` (age from the earlier of its
  measurement time and its arrival, so a pose is never fresher than when it arrived), has confidence below
  ``min_confidence``, is not finite (or has a zero quaternion), or never arrived: then it is a dropout
  (``present`` 0), exactly as the residual saw dropouts in training. The rule is
  ``residual_core.observation.absent_reasons``, the one definition the base node and training use too, applied to the
  received poses by :class:`ObjectPoseInputs` (which ``residual-eval --pose-source camera`` runs as well);
* with ``occlusion_tracking`` on, an object the latest estimate missed (or whose pose went stale or unconfident) keeps
  a pose for ``tracking_max_age`` s after its last confident estimate: that estimate carried with the hand since its
  image's time (the TCP's rigid motion) while the object is held (:class:`OcclusionTracking`), else where it was; it
  counts as present;
* proprioception that never arrived -> status ``no_proprio``; older than ``proprio_timeout`` -> ``stale_proprio``:
  no residual for that step (the node publishes nothing; the arbiter then sends the base action alone);
* a non-finite (or degenerate) base action or proprioception, or a non-finite network output -> zeros and status
  ``rejected_nan``: NaN never leaves this module;
* otherwise ``ok`` and the scaled residual (7,).

Inputs that are not usable (residual_ros.validate's value checks: lengths, finiteness, magnitudes, unit quaternions,
confidence in [0, 1]) are refused by the ``update_*`` methods, which say why; the previous value stands (a refused
object is not seen in that message: its previous pose ages out). NaN can still only come with the base action.

Times are seconds on the node's clock (sim time in simulation). An age below zero means the clock went back (a new
simulated episode): such inputs count as stale.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from residual_core.action import ACTION_DIM
from residual_core.observation import (
    PoseFreshness,
    Proprio,
    absent_reasons,
    build_observation,
    layout_for_task,
)
from residual_core.residual_policy import ResidualPolicy
from residual_core.rotations import carry_rigidly
from residual_core.tasks import TASK_OBJECTS, check_task
from residual_ros.validate import joint_values_reason, object_values_reason, pose_values_reason

FR3_ARM_JOINTS: tuple[str, ...] = tuple(f"fr3_joint{i}" for i in range(1, 8))
FR3_FINGER_JOINTS: tuple[str, ...] = ("fr3_finger_joint1", "fr3_finger_joint2")
STATUSES: tuple[str, ...] = ("ok", "no_proprio", "stale_proprio", "rejected_nan")
"""What :meth:`ResidualComputer.compute` can report; only "ok" and "rejected_nan" come with a residual to send."""


@dataclass(frozen=True)
class OcclusionTracking:
    """A pose for an object the camera stops seeing, from its last confident estimate and the hand.

    The hand hides a grasped object from the cameras for whole phases (docs/RESULTS.md, the camera path). While an
    object is missed, it is where it was last estimated, unless it is held: it was within ``hold_radius`` of the TCP
    at that estimate and the gripper is now closed on something (width within ``held_width``); then it moved with the
    TCP since (rigidly: the estimate's pose in the TCP frame then, in the TCP frame now)."""

    max_age_s: float = 2.0
    """A tracked pose is given for this long after the last confident estimate (s); then the object drops out."""
    hold_radius: float = 0.05
    """Distance from the TCP (m) within which an estimated object counts as in the hand."""
    held_width: tuple[float, float] = (0.01, 0.07)
    """Gripper widths (m) of a hand closed on an object: above ``[0]`` (not shut on nothing), below ``[1]`` (not
    open; the FR3 hand opens to 0.08)."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_age_s) and self.max_age_s > 0):
            raise ValueError(f"max_age_s must be finite and > 0, got {self.max_age_s}")
        if not self.hold_radius > 0 or not 0 <= self.held_width[0] < self.held_width[1]:
            raise ValueError(f"hold_radius must be > 0 and held_width an increasing pair, got {self.hold_radius}, "
                             f"{self.held_width}")

    def predict(self, obj_pos, obj_quat, tcp_pos_then, tcp_quat_then, tcp_pos, tcp_quat, gripper_width):
        """The object's pose now (position (3,), quaternion x y z w (4,)) from its estimate and the TCP pose then."""
        held = (np.linalg.norm(obj_pos - tcp_pos_then) < self.hold_radius
                and self.held_width[0] < gripper_width < self.held_width[1])
        if not held:
            return obj_pos, obj_quat
        return carry_rigidly(obj_pos, obj_quat, tcp_pos_then, tcp_quat_then, tcp_pos, tcp_quat)


@dataclass(frozen=True)
class ResidualComputerConfig:
    """How inputs are judged."""

    task: str = "cube_lift"
    """Task name (residual_core.tasks); the checkpoint must have been trained for it."""
    pose_timeout: float = 0.25
    """An object pose older than this (s) is a dropout."""
    min_confidence: float = 0.5
    """An object pose with a lower confidence is a dropout."""
    proprio_timeout: float = 0.25
    """Joint states or TCP pose older than this (s): no residual."""
    occlusion_tracking: bool = False
    """Keep a pose for an object the camera stops seeing (hidden by the hand): its last confident estimate, carried
    with the hand while held (:class:`OcclusionTracking`)."""
    tracking_max_age: float = OcclusionTracking.max_age_s
    """occlusion_tracking: how long after its last confident estimate an object keeps a tracked pose (s)."""
    arm_joints: tuple[str, ...] = FR3_ARM_JOINTS
    """Names of the 7 arm joints in the JointState messages, in order."""
    finger_joints: tuple[str, ...] = FR3_FINGER_JOINTS
    """Finger joints whose positions sum to the gripper width (m)."""

    def __post_init__(self) -> None:
        check_task(self.task)
        for name in ("pose_timeout", "proprio_timeout", "tracking_max_age"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be finite and > 0, got {v}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {self.min_confidence}")
        if len(self.arm_joints) != 7 or len(set(self.arm_joints)) != 7:
            raise ValueError(f"arm_joints must name 7 distinct joints, got {self.arm_joints}")
        if not self.finger_joints:
            raise ValueError("finger_joints must name at least one joint")


@dataclass(frozen=True)
class ObjectInput:
    """One object pose as received."""

    name: str
    """Object name."""
    pos: Sequence[float]
    """(3,) position, base frame (m)."""
    quat_xyzw: Sequence[float]
    """(4,) orientation."""
    confidence: float
    """Detection confidence in [0, 1]."""
    measured_s: float
    """Time of the measurement (s); <= 0: unknown (the arrival time is used)."""


@dataclass
class _Stamped:
    value: object
    received_s: float
    measured_s: float = 0.0

    def reference_s(self) -> float:
        """The earlier of measurement and arrival (arrival when the measurement time is unknown)."""
        return min(self.measured_s, self.received_s) if self.measured_s > 0 else self.received_s


@dataclass(frozen=True)
class ObjectView:
    """Which task objects the residual sees at one instant, and why not the others."""

    poses: dict[str, tuple[np.ndarray, np.ndarray]]
    """Present objects: name -> (position (3,), quaternion x y z w (4,)), base frame."""
    present: dict[str, bool]
    """Per task object: in the observation (True) or dropped out."""
    reasons: dict[str, str]
    """Per dropped-out object: one of residual_core.observation.ABSENT_REASONS."""
    ages: dict[str, float | None]
    """Per task object: age of its latest pose (s), None if none arrived."""
    tracked: dict[str, bool] = field(default_factory=dict)
    """Per present object: its pose is tracked through a miss (:class:`OcclusionTracking`), not estimated."""


class ObjectPoseInputs:
    """The latest pose of each task object as received (an ObjectPoseArray's entries, checked by
    residual_ros.validate), and which objects count as present at a given time (residual_core.observation's rule).

    The one place that turns received object poses into the residual's view of them: :class:`ResidualComputer` (the
    node) and ``residual-eval --pose-source camera`` (which feeds it the pose estimator's published entries, one
    instance per env) both use it."""

    def __init__(self, object_names: Sequence[str], freshness: PoseFreshness,
                 tracking: OcclusionTracking | None = None):
        self.object_names = tuple(object_names)
        self.freshness = freshness
        self.tracking = tracking
        """Occlusion tracking (None: off): :meth:`view` with the hand gives missed objects a tracked pose."""
        self.reset()

    HAND_HISTORY = 64
    """Hand poses kept (one per :meth:`view` with a hand: 3.2 s at 20 Hz) to find the TCP at an estimate's time."""

    def reset(self) -> None:
        """Forget every pose."""
        self._objects: dict[str, _Stamped] = {}
        self._missed: dict[str, bool] = {}
        self.forget_tracking()

    def forget_tracking(self) -> None:
        """Forget the estimates occlusion tracking would carry (a new episode: its objects are not the last one's; the
        latest received poses stay, they may already be the new episode's) and the hand poses seen."""
        self._anchor: dict[str, tuple] = {}
        self._hands: deque[tuple[float, np.ndarray, np.ndarray]] = deque(maxlen=self.HAND_HISTORY)

    def _hand_at(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """The TCP pose (position, quaternion) of the view nearest in time to ``t_s`` (an estimate's measurement time:
        a camera image is older than the view that first sees its estimate, by the camera's and the estimator's
        latency, and the hand moved meanwhile)."""
        _, pos, quat = min(self._hands, key=lambda h: abs(h[0] - t_s))
        return pos, quat

    def update(self, objects: Iterable[ObjectInput], now_s: float) -> dict[str, str]:
        """Store the latest pose of each task object; returns the objects not stored, name -> why: "unknown_object"
        (not a task object) or residual_ros.validate's reason (not usable: not seen in this message)."""
        ignored = {}
        for o in objects:
            if o.name not in self.object_names:
                ignored[str(o.name)] = "unknown_object"
                continue
            reason = object_values_reason(o.name, o.pos, o.quat_xyzw, o.confidence)
            self._missed[o.name] = bool(reason) or float(o.confidence) < self.freshness.min_confidence
            if reason:
                ignored[o.name] = reason
                continue
            value = (np.asarray(o.pos, dtype=np.float64).reshape(3),
                     np.asarray(o.quat_xyzw, dtype=np.float64).reshape(4), float(o.confidence))
            self._objects[o.name] = _Stamped(value, now_s, float(o.measured_s))
        return ignored

    def view(self, now_s: float, hand: tuple[np.ndarray, np.ndarray, float] | None = None) -> ObjectView:
        """The objects present at ``now_s``. A pose's age is rounded to the nanosecond (the stamps' resolution), so
        whether it is stale does not depend on the clock's offset (a continuous sim clock or an episode's own).

        ``hand``: the TCP pose and gripper width now (position, quaternion x y z w, width), for occlusion tracking
        (without it, or with tracking off, a missed object is absent once its pose is stale): a confident estimate
        seen here for the first time is remembered with the hand at its measurement time (the hand of the view
        nearest to it; in lockstep the estimate and the view share the step's time); an object the latest message
        missed, or whose pose is stale or unconfident, gets :meth:`OcclusionTracking.predict` from it for
        ``max_age_s``."""
        poses, present, reasons, ages, tracked = {}, {}, {}, {}, {}
        if self.tracking is not None and hand is not None:
            hand = (np.asarray(hand[0], dtype=np.float64), np.asarray(hand[1], dtype=np.float64), float(hand[2]))
            if self._hands and now_s < self._hands[-1][0]:  # the clock went back (a new simulated episode)
                self._hands.clear()
            if not self._hands or now_s > self._hands[-1][0]:
                self._hands.append((now_s, hand[0], hand[1]))
        else:
            hand = None
        for name in self.object_names:
            entry = self._objects.get(name)
            if entry is None:
                present[name], reasons[name], ages[name] = False, "missing", None
                continue
            pos, quat, conf = entry.value
            age = round(now_s - entry.reference_s(), 9)
            ages[name] = age
            reason = str(absent_reasons(pos, quat, True, conf, age, self.freshness))
            if hand is not None:
                if not reason and not self._missed.get(name, False):
                    if self._anchor.get(name, (None,))[0] != entry.reference_s():
                        self._anchor[name] = (entry.reference_s(), pos, quat, *self._hand_at(entry.reference_s()))
                elif name in self._anchor:
                    since, a_pos, a_quat, tcp_pos, tcp_quat = self._anchor[name]
                    if 0.0 <= round(now_s - since, 9) <= self.tracking.max_age_s:
                        poses[name] = self.tracking.predict(a_pos, a_quat, tcp_pos, tcp_quat, *hand)
                        tracked[name] = True
                        reason = ""
            if reason:
                reasons[name] = reason
            elif name not in poses:
                poses[name] = (pos, quat)
            present[name] = name in poses
        return ObjectView(poses, present, reasons, ages, tracked)


@dataclass(frozen=True)
class ComputeInfo:
    """Details of one :meth:`ResidualComputer.compute` call."""

    step: int
    """Control step."""
    detail: str
    """Human-readable reason for the status ("" when ok)."""
    present: dict[str, bool]
    """Per task object: in the observation (True) or dropped out."""
    absent_reason: dict[str, str]
    """Per dropped-out object: one of ABSENT_REASONS."""
    pose_age_s: dict[str, float | None]
    """Per task object: age of its latest pose (s), None if none arrived."""
    proprio_age_s: float | None
    """Age of the oldest proprioception input (s), None if one never arrived."""
    compute_s: float
    """Time spent in compute (s): observation building and the forward pass."""
    observation: np.ndarray | None = field(default=None, repr=False)
    """The observation fed to the policy (None when none was built)."""


class ResidualOutput(NamedTuple):
    residual: np.ndarray
    """(7,) scaled residual (action units); zeros unless status is "ok"."""
    status: str
    """One of STATUSES."""
    info: ComputeInfo
    """Details."""


class ResidualComputer:
    """Latest inputs -> residual per base action; see the module docstring."""

    def __init__(self, policy: ResidualPolicy, config: ResidualComputerConfig = ResidualComputerConfig()):
        expected = layout_for_task(config.task)
        if policy.task != config.task:
            raise ValueError(f"the residual checkpoint was trained for task {policy.task!r}, but this node runs "
                             f"task {config.task!r}")
        mismatch = expected.describe_mismatch(policy.layout)
        if mismatch:
            raise ValueError(f"the residual checkpoint's observation layout ({policy.layout.size} values) is not "
                             f"{config.task}'s ({expected.size} values): {mismatch}")
        self.policy = policy
        self.config = config
        self.layout = expected
        self.object_names: tuple[str, ...] = TASK_OBJECTS[config.task]
        self.freshness = PoseFreshness(timeout_s=config.pose_timeout, min_confidence=config.min_confidence)
        self.objects = ObjectPoseInputs(self.object_names, self.freshness,
                                        OcclusionTracking(max_age_s=config.tracking_max_age)
                                        if config.occlusion_tracking else None)
        self.reset()

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, config: ResidualComputerConfig = ResidualComputerConfig()
                        ) -> ResidualComputer:
        """Load and validate (task, layout) a residual checkpoint; raises residual_core.checkpoint's errors."""
        policy = ResidualPolicy.from_checkpoint(path, expected_task=config.task,
                                                expected_layout=layout_for_task(config.task))
        return cls(policy, config)

    def reset(self) -> None:
        """Forget every input (e.g. when a new episode starts)."""
        self._arm: _Stamped | None = None
        self._fingers: _Stamped | None = None
        self._tcp: _Stamped | None = None
        self.objects.reset()

    # --- inputs ------------------------------------------------------------------------------------------------
    def update_joint_state(self, names: Sequence[str], position: Sequence[float], velocity: Sequence[float],
                           now_s: float) -> tuple[bool, bool]:
        """Take the arm joints and/or the finger joints from a JointState; returns (arm taken, fingers taken): neither
        when the values are not usable (residual_ros.validate.joint_values_reason) or the names lack both sets.

        Velocities missing from the message (empty list) are taken as zeros.
        """
        if len(position) != len(names) or joint_values_reason(names, position, velocity, min_joints=1):
            return False, False
        index = {n: i for i, n in enumerate(names)}
        pos = np.asarray(position, dtype=np.float64)
        vel = np.asarray(velocity, dtype=np.float64)
        has_vel = len(vel) == len(pos)
        arm = all(n in index for n in self.config.arm_joints)
        if arm:
            idx = [index[n] for n in self.config.arm_joints]
            self._arm = _Stamped((pos[idx], vel[idx] if has_vel else np.zeros(7)), now_s)
        fingers = all(n in index for n in self.config.finger_joints)
        if fingers:
            width = float(np.sum(pos[[index[n] for n in self.config.finger_joints]]))
            self._fingers = _Stamped(width, now_s)
        return arm, fingers

    def update_tcp_pose(self, pos: Sequence[float], quat_xyzw: Sequence[float], now_s: float) -> str:
        """Store the TCP pose; returns "" or why it was not stored."""
        reason = pose_values_reason(pos, quat_xyzw)
        if reason:
            return reason
        self._tcp = _Stamped((np.asarray(pos, dtype=np.float64).reshape(3),
                              np.asarray(quat_xyzw, dtype=np.float64).reshape(4)), now_s)
        return ""

    def update_objects(self, objects: Iterable[ObjectInput], now_s: float) -> dict[str, str]:
        """Store the latest pose of each task object (:meth:`ObjectPoseInputs.update`); returns the objects not
        stored, name -> why."""
        return self.objects.update(objects, now_s)

    # --- deciding ----------------------------------------------------------------------------------------------
    def compute(self, step: int, base_action: Sequence[float], now_s: float) -> ResidualOutput:
        """The residual for ``step`` given the base action of that step (see the module docstring)."""
        t0 = time.perf_counter()
        hand = None if self._tcp is None or self._fingers is None else (*self._tcp.value, self._fingers.value)
        view = self.objects.view(now_s, hand)
        poses, present, reasons, ages = view.poses, view.present, view.reasons, view.ages
        inputs = {"joint_states (arm)": self._arm, "joint_states (fingers)": self._fingers, "tcp_pose": self._tcp}
        missing = [k for k, v in inputs.items() if v is None]
        proprio_age = None if missing else max(now_s - v.received_s for v in inputs.values())

        def out(status: str, detail: str, obs: np.ndarray | None = None, residual: np.ndarray | None = None):
            info = ComputeInfo(int(step), detail, present, reasons, ages, proprio_age, time.perf_counter() - t0, obs)
            return ResidualOutput(np.zeros(ACTION_DIM) if residual is None else residual, status, info)

        if missing:
            return out("no_proprio", f"no {', '.join(missing)} received yet")
        stale = [k for k, v in inputs.items() if not 0.0 <= now_s - v.received_s <= self.config.proprio_timeout]
        if stale:
            return out("stale_proprio", f"{', '.join(stale)} older than {self.config.proprio_timeout} s "
                                        f"(or from before a clock jump)")
        base = np.asarray(base_action, dtype=np.float64).reshape(-1)
        if base.shape != (ACTION_DIM,):
            raise ValueError(f"base_action must have {ACTION_DIM} values, got {base.shape}")
        (joint_pos, joint_vel), width, (tcp_pos, tcp_quat) = self._arm.value, self._fingers.value, self._tcp.value
        finite = {"base action": base, "joint positions": joint_pos, "joint velocities": joint_vel,
                  "gripper width": np.array([width]), "TCP position": tcp_pos, "TCP orientation": tcp_quat}
        bad = [k for k, v in finite.items() if not np.all(np.isfinite(v))]
        if not bad and np.linalg.norm(tcp_quat) < 1e-9:
            bad = ["TCP orientation (zero quaternion)"]
        if bad:
            return out("rejected_nan", f"not finite: {', '.join(bad)}")
        proprio = Proprio(joint_pos=joint_pos, joint_vel=joint_vel, gripper_width=width, tcp_pos=tcp_pos,
                          tcp_quat=tcp_quat)
        obs = build_observation(self.layout, poses, proprio, base)
        residual = np.asarray(self.policy(obs), dtype=np.float64)
        if not np.all(np.isfinite(residual)):
            return out("rejected_nan", "the policy output is not finite", obs)
        return out("ok", "", obs, residual)


@dataclass
class ComputeStats:
    """Counts and compute times of compute calls (for diagnostics); constant memory however long it runs."""

    by_status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    """Calls per status."""
    absent: dict[str, int] = field(default_factory=dict)
    """Object name -> calls in which it was a dropout."""
    calls: int = 0
    """Compute calls."""
    total_s: float = 0.0
    """Sum of the compute times (s)."""
    max_s: float = 0.0
    """Longest compute time (s)."""
    recent_s: deque = field(default_factory=lambda: deque(maxlen=1000))
    """The last 1000 compute times (s), for the median."""

    def add(self, result: ResidualOutput) -> None:
        self.by_status[result.status] += 1
        self.calls += 1
        self.total_s += result.info.compute_s
        self.max_s = max(self.max_s, result.info.compute_s)
        self.recent_s.append(result.info.compute_s)
        for name, present in result.info.present.items():
            if not present:
                self.absent[name] = self.absent.get(name, 0) + 1

    def summary(self) -> dict[str, float | int]:
        """Plain numbers: calls, compute time mean / p50 (last 1000) / max (ms), calls per status, dropouts per
        object."""
        out: dict[str, float | int] = {"calls": self.calls}
        if self.calls:
            out.update(compute_ms_mean=round(1e3 * self.total_s / self.calls, 4),
                       compute_ms_p50=round(1e3 * float(np.median(self.recent_s)), 4),
                       compute_ms_max=round(1e3 * self.max_s, 4))
        out.update({f"status_{k}": v for k, v in self.by_status.items()})
        out.update({f"absent_{k}": v for k, v in sorted(self.absent.items())})
        return out
