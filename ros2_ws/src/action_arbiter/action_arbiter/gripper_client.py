"""franka_gripper's action client for the gripper bridge (:mod:`action_arbiter.gripper_bridge`): Homing / Grasp / Move
goals one at a time, a running goal cancelled (and, if it does not end, the stop service called) before the next is
sent, every goal's end reported as a :class:`action_arbiter.gripper_core.GoalResult`. Needs franka_msgs (franka_ros2's,
or the set-up's stand-in from ros2_ws/compat), imported when the client is built."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from action_msgs.msg import GoalStatus
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from std_srvs.srv import Trigger

from action_arbiter.gripper_core import GRASP, HOMING, MOVE, GoalResult, GripperBridgeConfig, GripperRequest

STATUS_NAMES = {GoalStatus.STATUS_SUCCEEDED: "succeeded", GoalStatus.STATUS_CANCELED: "canceled",
                GoalStatus.STATUS_ABORTED: "aborted"}


EVENTS_KEPT = 1000
"""Entries of :attr:`FrankaGripperClient.events` kept (a lab session sends thousands of goals)."""


class GripperBridgeError(RuntimeError):
    """The gripper bridge cannot run here (franka_msgs missing)."""


def franka_gripper_actions() -> tuple[type, type, type]:
    """franka_msgs' (Grasp, Move, Homing) action types (franka_ros2's, or the set-up's stand-in from ros2_ws/compat);
    GripperBridgeError when franka_msgs is not installed."""
    try:
        from franka_msgs.action import Grasp, Homing, Move
    except ImportError:
        raise GripperBridgeError("franka_msgs is not installed (it comes with franka_ros2; make setup builds a "
                                 "stand-in from ros2_ws/compat)") from None
    return Grasp, Move, Homing


class _Goal:
    """A goal of :class:`FrankaGripperClient` from sending to its end."""

    def __init__(self, req: GripperRequest):
        self.req = req
        self.sent_s = time.monotonic()
        self.handle = None  # ClientGoalHandle once accepted
        self.cancel_s: float | None = None  # monotonic time the cancel was decided
        self.ended = False


class FrankaGripperClient:
    """Sends :class:`GripperRequest` s as franka_gripper Homing / Grasp / Move goals, one at a time.

    ``send`` while a goal runs queues the request (the newest wins) and cancels the running goal; the queued one is
    sent when the running one has ended (result received), or ``cancel_timeout_s`` after the cancel (then the stop
    service is called first). A goal the server has neither accepted nor rejected within ``answer_timeout_s`` ends
    "unanswered" (right after discovery a request or its response can be lost; a late acceptance is then cancelled).
    Each goal's end goes to ``on_result`` (:class:`GoalResult`; the node sets it).
    ``events`` records what was done, in order (the last :data:`EVENTS_KEPT`): ("sent" | "cancel" | "ended" |
    "stop", kind, detail).
    """

    def __init__(self, node: Node, cfg: GripperBridgeConfig):
        from rclpy.action import ActionClient

        self.grasp_type, self.move_type, self.homing_type = franka_gripper_actions()
        self.cfg, self.node = cfg, node
        self.clients = {GRASP: ActionClient(node, self.grasp_type, cfg.grasp_action),
                        MOVE: ActionClient(node, self.move_type, cfg.move_action),
                        HOMING: ActionClient(node, self.homing_type, cfg.homing_action)}
        self.stop_client = node.create_client(Trigger, cfg.stop_service)
        self.on_result: Callable[[GoalResult], None] = lambda result: None
        self.running: _Goal | None = None
        self.queued: GripperRequest | None = None
        self.events: deque[tuple[str, str, str]] = deque(maxlen=EVENTS_KEPT)
        node.create_timer(0.05, self._check_timeouts, clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _goal(self, req: GripperRequest):
        if req.kind == GRASP:
            goal = self.grasp_type.Goal(width=req.width, speed=self.cfg.speed, force=self.cfg.force)
            goal.epsilon.inner, goal.epsilon.outer = self.cfg.epsilon_inner, self.cfg.epsilon_outer
            return goal
        if req.kind == MOVE:
            return self.move_type.Goal(width=req.width, speed=self.cfg.speed)
        return self.homing_type.Goal()

    def send(self, req: GripperRequest) -> bool:
        """Send (or queue behind the running goal, which is cancelled); False when the action server is not
        available (nothing sent or queued)."""
        if not self.clients[req.kind].server_is_ready():
            return False
        if self.running is None:
            self._send_now(req)
            return True
        self.queued = req
        g = self.running
        if g.cancel_s is None:
            g.cancel_s = time.monotonic()
            self.events.append(("cancel", g.req.kind, f"for {req.kind}"))
            if g.handle is not None:
                g.handle.cancel_goal_async()
        return True

    def _send_now(self, req: GripperRequest) -> None:
        g = self.running = _Goal(req)
        self.events.append(("sent", req.kind, f"{req.width:.4f}"))
        self.clients[req.kind].send_goal_async(self._goal(req)).add_done_callback(
            lambda future: self._on_response(g, future))

    def _on_response(self, g: _Goal, future) -> None:
        handle = future.result()
        if g.ended:  # answered after it was given up: it must not run beside the next goal
            if handle.accepted:
                handle.cancel_goal_async()
            return
        if not handle.accepted:
            self._end(g, GoalResult(g.req.kind, g.req.width, "rejected", False, "goal rejected"))
            return
        g.handle = handle
        if g.cancel_s is not None:  # cancelled before the server answered
            handle.cancel_goal_async()
        handle.get_result_async().add_done_callback(lambda f: self._on_result(g, f))

    def _on_result(self, g: _Goal, future) -> None:
        response = future.result()
        status = STATUS_NAMES.get(response.status, f"status {response.status}")
        self._end(g, GoalResult(g.req.kind, g.req.width, status, bool(response.result.success),
                                str(response.result.error)))

    def _end(self, g: _Goal, result: GoalResult) -> None:
        if g.ended:  # a late result of an abandoned goal
            return
        g.ended = True
        self.events.append(("ended", g.req.kind, result.status))
        if self.running is g:
            self.running = None
        self.on_result(result)
        if self.running is None and self.queued is not None:
            req, self.queued = self.queued, None
            self._send_now(req)

    def _check_timeouts(self) -> None:
        g = self.running
        if g is None:
            return
        if g.handle is None and time.monotonic() - g.sent_s > self.cfg.answer_timeout_s:
            self._end(g, GoalResult(g.req.kind, g.req.width, "unanswered", False,
                                    f"no answer from the action server within {self.cfg.answer_timeout_s:g} s"))
            return
        if g.cancel_s is None or time.monotonic() - g.cancel_s < self.cfg.cancel_timeout_s:
            return
        if self.stop_client.service_is_ready():
            self.stop_client.call_async(Trigger.Request())
        self.events.append(("stop", g.req.kind, f"not ended {self.cfg.cancel_timeout_s:g} s after the cancel"))
        self._end(g, GoalResult(g.req.kind, g.req.width, "abandoned", False,
                                f"did not end within {self.cfg.cancel_timeout_s:g} s of the cancel: stop called"))
