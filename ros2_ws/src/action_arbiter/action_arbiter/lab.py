"""What stands between the arbiter and a real arm (pure, no rclpy): arming, the deadman, robot-state gating and the
speed scale (:class:`LabGuard`, configured by :class:`LabConfig`).

The arbiter publishes targets only while armed. Arming is refused, saying why, unless the robot is ready: a robot
state newer than ``robot_state_timeout_s`` in one of ``arm_modes`` with no current error, Desk's end effector set to
the Franka Hand (F_T_EE, :func:`residual_ros.franka_interfaces.desk_end_effector_reason`), a measured TCP pose that
is fresh and inside the workspace box, and (with a deadman topic) a heartbeat held. Once armed, any of these going
wrong disarms: a robot mode outside ``armed_modes`` (REFLEX, USER_STOPPED, ...), a current error, the robot state
or the TCP pose going stale, the heartbeat falling silent, a software stop. A disarm holds: the arbiter sends one
last target at the measured pose (when it has a fresh one) and then nothing until armed again.

Without ``require_arming`` (simulation) the guard is armed from the start and only the speed scale applies.

The speed scale, in (0, 1], multiplies the envelope's per-step translation and rotation limits
(:meth:`LabGuard.scaled_envelope`); it can be changed while running (the arbiter's ``lab.speed_scale`` parameter).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from residual_core.safety import EnvelopeConfig
from residual_ros import franka_interfaces as fi


@dataclass(frozen=True)
class LabConfig:
    """Arming, deadman and speed scale (arbiter parameters ``lab.*``)."""

    require_arming: bool = False
    """Start disarmed and publish targets only once armed (``~/arm``); real mode sets it. False: armed always."""
    robot_state_topic: str = "none"
    """franka_msgs/FrankaRobotState topic to gate on (real mode: franka's robot_state); none: no robot-state checks
    (then arming checks only the TCP pose and the heartbeat)."""
    robot_state_timeout_s: float = 0.5
    """A robot state older than this (s, steady clock of arrival) is stale: not armable, disarms when armed."""
    arm_modes: tuple[str, ...] = ("MOVE",)
    """Robot modes (franka_msgs ROBOT_MODE_ names) in which arming is allowed: MOVE (the tracking controller runs);
    add IDLE only for a controller that runs without franka's motion (it is not what the graph launches)."""
    armed_modes: tuple[str, ...] = ("MOVE",)
    """Robot modes that keep the arbiter armed; any other (REFLEX, USER_STOPPED, GUIDING, ...) disarms."""
    check_end_effector: bool = True
    """Refuse arming unless F_T_EE is the Franka Hand's TCP (Desk's end effector setting)."""
    tcp_max_age_s: float = 0.5
    """Newest measured TCP pose older than this (s, 10 control periods) while armed: the pose stream has stopped,
    disarm. (Targets stop much earlier: the arbiter never composes from a pose older than tcp.max_age_s, 0.15 s; a
    shorter disarm limit made a loaded twin disarm on a 0.19 s stall.) Arming needs a pose the gate accepts now."""
    heartbeat_topic: str = "none"
    """Deadman: a std_msgs/Bool topic (true while a person holds the button, e.g. a joystick bridge); none: off."""
    heartbeat_timeout_s: float = 0.3
    """No true heartbeat for this long (s) -> hold and disarm."""
    gripper_stop_service: str = "none"
    """std_srvs/Trigger service ``~/stop`` also calls (real mode: franka_gripper's /franka_gripper/stop, which aborts a
    running gripper goal); none: off."""
    speed_scale: float = 1.0
    """Scale in (0, 1] on the envelope's per-step translation and rotation limits (first runs on a robot: 0.25)."""

    def __post_init__(self) -> None:
        for name in ("robot_state_timeout_s", "tcp_max_age_s", "heartbeat_timeout_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"lab.{name} must be finite and > 0, got {value}")
        check_speed_scale(self.speed_scale)
        for name in ("arm_modes", "armed_modes"):
            unknown = [m for m in getattr(self, name) if m not in fi.ROBOT_MODES]
            if unknown:
                raise ValueError(f"lab.{name}: unknown robot modes {unknown} (known: {list(fi.ROBOT_MODES)})")

    @property
    def watches_robot_state(self) -> bool:
        return self.robot_state_topic not in ("", "none")

    @property
    def has_deadman(self) -> bool:
        return self.heartbeat_topic not in ("", "none")


def check_speed_scale(scale: float) -> float:
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and 0.0 < scale <= 1.0):
        raise ValueError(f"lab.speed_scale must be in (0, 1] (to stop, disarm), got {scale!r}")
    return float(scale)


def mode_name(mode: int) -> str:
    return next((k for k, v in fi.ROBOT_MODES.items() if v == mode), f"unknown ({mode})")


@dataclass(frozen=True)
class RobotState:
    """What the guard reads of franka_msgs/FrankaRobotState."""

    mode: int
    errors: tuple[str, ...]
    """Names of the current_errors fields that are set."""
    f_t_ee_pos: tuple[float, float, float]
    f_t_ee_quat: tuple[float, float, float, float]
    received_s: float
    """Steady clock (s) when it arrived."""


@dataclass(frozen=True)
class TcpView:
    """The arbiter's measured TCP pose as the guard judges it: position (None: none usable), the age (s) of the
    newest pose taken (None: none yet) and why it is not usable now ("" if it is)."""

    pos: np.ndarray | None
    age_s: float | None
    why: str = ""


class LabGuard:
    """Arming state machine (see the module docstring). Every change is recorded in :attr:`events` (time, what)."""

    def __init__(self, cfg: LabConfig, workspace_min, workspace_max):
        self.cfg = cfg
        self.workspace_min = np.asarray(workspace_min, dtype=np.float64)
        self.workspace_max = np.asarray(workspace_max, dtype=np.float64)
        self.armed = not cfg.require_arming
        self.disarm_reason = "" if self.armed else "not armed yet (call ~/arm)"
        self.robot: RobotState | None = None
        self.last_heartbeat_s: float | None = None
        self.speed_scale = cfg.speed_scale
        self.arms = 0
        self.disarms = 0
        self.refusals = 0
        self.events: list[tuple[float, str]] = []

    # --- inputs ---------------------------------------------------------------------------------------------------
    def on_robot_state(self, state: RobotState) -> str:
        """Take a robot state; returns the disarm reason it caused ("" if none)."""
        self.robot = state
        if not self.armed or not self.cfg.require_arming:
            return ""
        why = self._robot_reason(state.received_s, self.cfg.armed_modes)
        if why:
            self.disarm(why, state.received_s)
        return why

    def on_heartbeat(self, pressed: bool, now_s: float) -> str:
        """Take a deadman message; a released button disarms at once. Returns the disarm reason ("" if none)."""
        if pressed:
            self.last_heartbeat_s = now_s
            return ""
        self.last_heartbeat_s = None
        if self.armed and self.cfg.require_arming:
            self.disarm("deadman released", now_s)
            return "deadman released"
        return ""

    # --- checks ---------------------------------------------------------------------------------------------------
    def _robot_reason(self, now_s: float, modes: tuple[str, ...]) -> str:
        if not self.cfg.watches_robot_state:
            return ""
        r = self.robot
        if r is None:
            return f"no robot state received on {self.cfg.robot_state_topic}"
        age = now_s - r.received_s
        if age > self.cfg.robot_state_timeout_s:
            return f"robot state stale ({age:.2f} s old, limit {self.cfg.robot_state_timeout_s} s)"
        if mode_name(r.mode) not in modes:
            return f"robot_mode {mode_name(r.mode)} (needs {' or '.join(modes)})"
        if r.errors:
            return f"robot has current errors: {', '.join(r.errors)}"
        return ""

    def _tcp_reason(self, tcp: TcpView) -> str:
        if tcp.pos is None or tcp.why:
            return f"no usable measured TCP pose ({tcp.why or 'none received'})"
        if tcp.age_s is not None and tcp.age_s > self.cfg.tcp_max_age_s:
            return f"measured TCP pose stale ({tcp.age_s:.2f} s old, limit {self.cfg.tcp_max_age_s} s)"
        return ""

    def _tcp_stale_reason(self, tcp: TcpView) -> str:
        """While armed only freshness counts: a jumped or awaited pose (a reset) already gives no target."""
        if tcp.age_s is None:
            return "no measured TCP pose"
        if tcp.age_s > self.cfg.tcp_max_age_s:
            return f"measured TCP pose stale ({tcp.age_s:.2f} s old, limit {self.cfg.tcp_max_age_s} s)"
        return ""

    def _heartbeat_reason(self, now_s: float) -> str:
        if not self.cfg.has_deadman:
            return ""
        if self.last_heartbeat_s is None:
            return f"deadman not held (no true message on {self.cfg.heartbeat_topic})"
        silent = now_s - self.last_heartbeat_s
        if silent > self.cfg.heartbeat_timeout_s:
            return f"deadman silent for {silent:.2f} s (limit {self.cfg.heartbeat_timeout_s} s)"
        return ""

    def arm_refusal(self, now_s: float, tcp: TcpView) -> str:
        """"" when arming is allowed now, else every reason it is not (joined by "; ")."""
        reasons = [self._robot_reason(now_s, self.cfg.arm_modes)]
        r = self.robot
        if self.cfg.watches_robot_state and self.cfg.check_end_effector and r is not None:
            reasons.append(fi.desk_end_effector_reason(r.f_t_ee_pos, r.f_t_ee_quat))
        why_tcp = self._tcp_reason(tcp)
        reasons.append(why_tcp)
        if not why_tcp and not (np.all(tcp.pos >= self.workspace_min) and np.all(tcp.pos <= self.workspace_max)):
            reasons.append(f"measured TCP {np.round(tcp.pos, 3).tolist()} outside the workspace box "
                           f"{self.workspace_min.tolist()} .. {self.workspace_max.tolist()}")
        reasons.append(self._heartbeat_reason(now_s))
        return "; ".join(r for r in reasons if r)

    def tick(self, now_s: float, tcp: TcpView) -> str:
        """Periodic check while armed (the arbiter's watchdog): deadman, robot state, TCP freshness. Returns the
        disarm reason ("" if still armed or not armed)."""
        if not self.armed or not self.cfg.require_arming:
            return ""
        why = (self._heartbeat_reason(now_s) or self._robot_reason(now_s, self.cfg.armed_modes)
               or self._tcp_stale_reason(tcp))
        if why:
            self.disarm(why, now_s)
        return why

    # --- commands -------------------------------------------------------------------------------------------------
    def arm(self, now_s: float, tcp: TcpView) -> tuple[bool, str]:
        """Arm if ready: (True, message) or (False, every reason it is refused)."""
        if not self.cfg.require_arming:
            return True, "arming not required (lab.require_arming false): always armed"
        why = self.arm_refusal(now_s, tcp)
        if why:
            self.refusals += 1
            self.events.append((now_s, f"arming refused: {why}"))
            return False, f"arming refused: {why}"
        was = self.armed
        self.armed, self.disarm_reason = True, ""
        if not was:
            self.arms += 1
            self.events.append((now_s, "armed"))
        return True, "already armed" if was else f"armed (speed scale {self.speed_scale:g})"

    def disarm(self, reason: str, now_s: float) -> bool:
        """Disarm (no-op without require_arming); True if it was armed."""
        if not self.cfg.require_arming:
            return False
        was = self.armed
        self.armed, self.disarm_reason = False, reason
        if was:
            self.disarms += 1
            self.events.append((now_s, f"disarmed: {reason}"))
        return was

    def set_speed_scale(self, scale: float) -> None:
        self.speed_scale = check_speed_scale(scale)

    def scaled_envelope(self, envelope: EnvelopeConfig) -> EnvelopeConfig:
        """``envelope`` with its per-step translation and rotation limits times the speed scale."""
        s = self.speed_scale
        return replace(envelope, max_translation_step=envelope.max_translation_step * s,
                       max_rotation_step=envelope.max_rotation_step * s)

    @staticmethod
    def robot_state(msg, received_s: float) -> RobotState:
        """A :class:`RobotState` from a franka_msgs/FrankaRobotState message."""
        errors = tuple(name for name in msg.current_errors.get_fields_and_field_types()
                       if getattr(msg.current_errors, name) is True)
        p, q = msg.f_t_ee.pose.position, msg.f_t_ee.pose.orientation
        return RobotState(int(msg.robot_mode), errors, (p.x, p.y, p.z), (q.x, q.y, q.z, q.w), received_s)
