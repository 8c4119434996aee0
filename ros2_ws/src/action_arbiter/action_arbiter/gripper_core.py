"""Pure logic of the gripper bridge (no rclpy): its configuration, the command stream -> request decision, the width
clamp, the homing sequence and the book of goal results. The node and the action client are in
:mod:`action_arbiter.gripper_bridge`.

Facts from franka_ros2 (franka_gripper ``gripper_action_server``): the gripper learns its maximum width from the
homing action (empty goal; result ``success, error``) and aborts goals beyond it; it publishes the opening on
``/franka_gripper/joint_states`` as two finger joints of half the width each; a goal whose command returns false
(a grasp that stopped outside ``[width - epsilon.inner, width + epsilon.outer]``) is aborted with ``success`` false
and an empty ``error`` (the error string is set only when libfranka throws); a cancelled goal stops the gripper and
ends CANCELED. Every goal runs in its own thread there, so a second goal while one runs would command the gripper
concurrently: the bridge cancels the running goal and waits for its end first.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from residual_ros import franka_interfaces as fi
from residual_ros import validate as v

GRASP, MOVE, HOMING = "grasp", "move", "homing"


@dataclass(frozen=True)
class GripperBridgeConfig:
    """Thresholds, the franka_gripper goal values and the interface names."""

    close_above: float = 0.6
    """Send a grasp when the command rises above this."""
    open_below: float = 0.4
    """Send an open move when the command falls below this."""
    open_width: float = 0.08
    """Opening width of a move (m); the Franka Hand's stroke is 80 mm (Franka Hand product data). Clamped to the max
    width measured after homing."""
    grasp_width: float = 0.04
    """Nominal grasp width (m). franka_gripper's grasp closes until the fingers stop and succeeds when they stopped
    within [grasp_width - epsilon_inner, grasp_width + epsilon_outer]: the defaults accept anything 5-80 mm wide (the
    tasks' 40-50 mm cubes, a 12 mm handle) and report a close on nothing (fingers near 0) as a failed grasp."""
    epsilon_inner: float = 0.035
    """Allowed width below grasp_width (m)."""
    epsilon_outer: float = 0.04
    """Allowed width above grasp_width (m)."""
    speed: float = 0.05
    """Finger speed (m/s)."""
    force: float = 20.0
    """Grasp force (N)."""
    min_interval_s: float = 0.5
    """Smallest time between two requests (s)."""
    home_on_start: bool = True
    """Run franka_gripper's homing action when the node starts (the gripper needs it once after power-up to know its
    max width), then take the max width from /franka_gripper/joint_states; commands wait until that is done. Homing
    moves the fingers through their whole stroke: an object in the hand is released (restart the bridge with false
    while holding one). false: no homing, widths as configured."""
    width_timeout_s: float = 3.0
    """After a successful homing, how long to wait for /franka_gripper/joint_states before going on without a measured
    max width (s)."""
    answer_timeout_s: float = 2.0
    """A goal the action server has neither accepted nor rejected after this long (s) is given up ("unanswered");
    an unanswered homing is sent again."""
    cancel_timeout_s: float = 2.0
    """A cancelled goal that has not ended after this long (s): the stop service is called and the next goal sent."""
    homing_action: str = fi.GRIPPER_HOMING.name
    """franka_gripper Homing action name (residual_ros.franka_interfaces)."""
    grasp_action: str = fi.GRIPPER_GRASP.name
    """franka_gripper Grasp action name (residual_ros.franka_interfaces)."""
    move_action: str = fi.GRIPPER_MOVE.name
    """franka_gripper Move action name (residual_ros.franka_interfaces)."""
    stop_service: str = fi.GRIPPER_STOP.name
    """franka_gripper stop service (std_srvs/Trigger), called when a cancelled goal does not end."""
    joint_states_topic: str = fi.GRIPPER_JOINT_STATES.name
    """franka_gripper's finger joint states (each finger joint is half the width)."""
    command_topic: str = "/arbiter/gripper"
    """std_msgs/Float64 gripper command of the arbiter."""
    diagnostics_period_s: float = 1.0
    """Period of /diagnostics (steady s): state, requests sent, goal results, commands dropped."""
    resync_after_s: float = 0.3
    """While no goal runs, fingers that show the other state than the bridge's for this long (s) make it the bridge's
    (GripperBridge.observe: something else moved them, e.g. an episode reset opened them)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.open_below < self.close_above <= 1.0:
            raise ValueError(f"need 0 <= open_below < close_above <= 1, got {self.open_below}, {self.close_above}")
        for name in ("open_width", "speed", "force", "min_interval_s", "width_timeout_s", "answer_timeout_s",
                     "cancel_timeout_s", "diagnostics_period_s", "resync_after_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("grasp_width", "epsilon_inner", "epsilon_outer"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class Width:
    """A goal width as applied, and why it differs from the one asked for."""

    value: float
    """Width sent (m)."""
    asked: float
    """Width configured (m)."""
    why: str = ""
    """"" or why ``value`` differs from ``asked``."""


def clamp_width(width: float, max_width: float | None) -> Width:
    """``width`` limited to the measured ``max_width`` (None: not known yet, ``width`` as it is)."""
    if max_width is None or width <= max_width:
        return Width(width, width)
    return Width(max_width, width, f"{width:.4f} m clamped to the measured max width {max_width:.4f} m")


def finger_width(names: Sequence[str], positions: Sequence[float], joints: Sequence[str] = fi.FINGER_JOINTS
                 ) -> float | None:
    """The opening (m) from franka_gripper's joint state (each finger joint is half of it); None when a finger joint
    is missing or not a finite number, or the names and positions differ in length."""
    if len(names) != len(positions):
        return None
    by_name = dict(zip(names, positions, strict=True))
    values = [by_name.get(j) for j in joints]
    if any(p is None or not math.isfinite(p) for p in values):
        return None
    return float(sum(values))


@dataclass(frozen=True)
class GripperRequest:
    """One request to franka_gripper."""

    kind: str
    """"grasp", "move" or "homing"."""
    width: float
    """Target width (m); 0 for homing."""
    note: str = ""
    """Why the width differs from the configured one ("" when it does not)."""


class GripperBridge:
    """Hysteresis + rate limit from the command stream to discrete requests, widths clamped to ``max_width``."""

    def __init__(self, cfg: GripperBridgeConfig = GripperBridgeConfig()):
        self.cfg = cfg
        self.state = "unknown"  # "open" | "closed" | "unknown"
        self.max_width: float | None = None
        """Measured after homing (m); None until then."""
        self._last_request_s: float | None = None
        self._differs_since: float | None = None

    def request(self, kind: str) -> GripperRequest:
        """The request for ``kind`` ("grasp" or "move") with the width in effect now."""
        w = clamp_width(self.cfg.grasp_width if kind == GRASP else self.cfg.open_width, self.max_width)
        return GripperRequest(kind, w.value, w.why)

    def update(self, command: float, now_s: float) -> GripperRequest | None:
        """The request to send for this command, or None (no change, inside the hysteresis band, too soon, not a
        number in [0, 1])."""
        if v.gripper_reason(command):
            return None
        if command > self.cfg.close_above:
            want = "closed"
        elif command < self.cfg.open_below:
            want = "open"
        else:
            return None
        if want == self.state:
            return None
        if self._last_request_s is not None and now_s - self._last_request_s < self.cfg.min_interval_s:
            return None
        self.state, self._last_request_s = want, now_s
        return self.request(GRASP if want == "closed" else MOVE)

    def goal_ended(self, kind: str, outcome: str, width_now: float | None) -> None:
        """A grasp or move goal ended (``GoalResult.outcome``). When it failed, the state is what the fingers show, so
        the command stream can ask again: a grasp aborted with the fingers open (a reset, a stop; measured on the twin:
        an episode reset 3 ms after the first grasp left the gripper open for the whole graph, and close_drawer failed
        every episode) is "open", and the next closing command grasps again; a grasp that closed on nothing (fingers
        near 0) stays "closed" (no retry loop on an empty hand). Fingers not measured yet: nothing changes."""
        if outcome != "failed" or kind not in (GRASP, MOVE) or width_now is None:
            return
        self.state = self.shown(width_now)

    def shown(self, width: float) -> str:
        """The state fingers at ``width`` (m) show: "open" within OPEN_TOLERANCE_M of the open width, else "closed"."""
        open_width = clamp_width(self.cfg.open_width, self.max_width).value
        return "open" if width >= open_width - OPEN_TOLERANCE_M else "closed"

    def observe(self, width: float, now_s: float, idle: bool) -> str | None:
        """A measured opening (m) at ``now_s``; ``idle``: no goal of the bridge runs or waits. Fingers that something
        else moved (an episode reset or a person opening them, another tool closing them) show the other state than
        the bridge's: after ``resync_after_s`` of that while idle, theirs becomes the bridge's, so the next command
        that asks for the other state is sent (measured on the twin: a close on nothing left the state "closed", the
        next episode's reset opened the fingers, and no later episode's closing command was ever sent: close_drawer's
        base alone 2 of 62 episodes on two graphs, each a graph's first). Returns the new state when it changed, else
        None. An unknown state stays unknown (the next command is sent anyway)."""
        shown = self.shown(width)
        if not idle or self.state not in ("open", "closed") or shown == self.state:
            self._differs_since = None
            return None
        if self._differs_since is None:
            self._differs_since = now_s
        if now_s - self._differs_since < self.cfg.resync_after_s:
            return None
        self.state, self._differs_since = shown, None
        return shown


OPEN_TOLERANCE_M = 0.005
"""Fingers within this of the open width count as open (GripperBridge.goal_ended)."""

MAX_WIDTH_RESOLUTION_M = 1e-4
"""The measured max width is rounded down to this, so a reading a hair above the gripper's own max width (what its
homing stored) cannot get a goal aborted."""


class HomingSequence:
    """Homing at start-up, then the max width from the finger joint states.

    ``off`` (disabled) or ``waiting`` (for the action server) -> ``running`` (goal sent) -> ``measuring`` (succeeded:
    take the ``settle_messages``-th joint state after the result, so none published before the result counts)
    -> ``done``; a failed homing or no joint state within the timeout -> ``failed`` / ``done`` without a max width.
    """

    def __init__(self, enabled: bool, width_timeout_s: float, settle_messages: int = 2):
        self.state = "waiting" if enabled else "off"
        self.width_timeout_s = width_timeout_s
        self.settle_messages = settle_messages
        self.max_width: float | None = None
        self.error = ""
        self._seen = 0
        self._result_s = 0.0

    @property
    def busy(self) -> bool:
        """Requests must wait (homing not finished)."""
        return self.state in ("waiting", "running", "measuring")

    def sent(self) -> None:
        self.state = "running"

    def result(self, success: bool, error: str, now_s: float, retry: bool = False) -> None:
        """The homing goal ended; ``retry``: it was never answered, send it again."""
        if self.state != "running":
            return
        if retry:
            self.state = "waiting"
        elif success:
            self.state, self._result_s, self._seen = "measuring", now_s, 0
        else:
            self.state, self.error = "failed", error or "homing failed (no error given)"

    def joint_width(self, width: float) -> float | None:
        """Feed a measured width; returns the max width when this one completes the homing."""
        if self.state != "measuring":
            return None
        self._seen += 1
        if self._seen < self.settle_messages:
            return None
        self.max_width = math.floor(width / MAX_WIDTH_RESOLUTION_M + 1e-6) * MAX_WIDTH_RESOLUTION_M
        self.state = "done"
        return self.max_width

    def timed_out(self, now_s: float) -> bool:
        """True (once) when no joint state came within the timeout after the result: done, no max width."""
        if self.state == "measuring" and now_s - self._result_s > self.width_timeout_s:
            self.state, self.error = "done", f"no {fi.GRIPPER_JOINT_STATES.name} after homing: max width unknown"
            return True
        return False


@dataclass(frozen=True)
class GoalResult:
    """How one franka_gripper goal ended."""

    kind: str
    """"grasp", "move" or "homing"."""
    width: float
    """Goal width (m)."""
    status: str
    """"succeeded", "aborted", "canceled" (action status), "rejected" (goal not accepted), "unanswered" (neither
    accepted nor rejected within answer_timeout_s), "abandoned" (cancelled, not ended within cancel_timeout_s: stop
    called)."""
    success: bool
    """The result's ``success`` (False for a rejected / abandoned goal)."""
    error: str = ""
    """The result's ``error`` (franka_gripper leaves it empty when a grasp just missed)."""

    @property
    def outcome(self) -> str:
        """"succeeded", "canceled" (on purpose, not a failure) or "failed"."""
        if self.status == "canceled":
            return "canceled"
        return "succeeded" if self.success and self.status == "succeeded" else "failed"


class ResultBook:
    """Every goal result counted per kind and outcome, the last one described (for logs and /diagnostics)."""

    def __init__(self):
        self.counts: Counter[str] = Counter()
        self.last = ""
        self.failures = 0
        self._reported_failures = 0

    def add(self, r: GoalResult, width_now: float | None = None) -> tuple[str, str]:
        """Count ``r``; returns (message, level "info" | "warn" | "error")."""
        self.counts[f"{r.kind} {r.outcome}"] += 1
        at = "" if width_now is None else f" (fingers at {width_now:.4f} m)"
        if r.outcome == "succeeded":
            msg, level = f"{r.kind} to {r.width:.4f} m succeeded{at}", "info"
        elif r.outcome == "canceled":
            msg, level = f"{r.kind} cancelled for the next command{at}", "info"
        elif r.kind == GRASP and r.status == "aborted":
            self.failures += 1
            msg = f"grasp failed: {r.error or 'nothing grasped within the epsilon'}{at}"
            level = "warn"
        else:
            self.failures += 1
            msg, level = f"{r.kind} failed ({r.status}): {r.error or 'no error given'}{at}", "error"
        self.last = msg
        return msg, level

    def take_new_failures(self) -> int:
        """Failures since the previous call (for a diagnostics level per period)."""
        new, self._reported_failures = self.failures - self._reported_failures, self.failures
        return new

    def key_values(self) -> dict[str, str]:
        return {"last result": self.last or "none", "failures total": str(self.failures),
                **{f"results {k}": str(n) for k, n in sorted(self.counts.items())}}
