"""Real mode: the arbiter's continuous gripper command (0 open .. 1 closed) -> franka_gripper actions.

:class:`GripperBridge` (pure, :mod:`action_arbiter.gripper_core`) turns the 20 Hz command stream into rare discrete
requests: a *grasp* when the command rises above ``close_above``, a *move* to the open width when it falls below
``open_below`` (hysteresis, so a command hovering around 0.5 does not chatter), never more often than
``min_interval_s``. :class:`FrankaGripperClient` (:mod:`action_arbiter.gripper_client`) sends them as
``franka_msgs/action/Grasp`` and ``Move`` goals to franka_gripper (needs franka_ros2's franka_msgs, imported only when
the node starts: franka_ros2's package on the robot, the set-up's wire-compatible stand-in from ros2_ws/compat
elsewhere), one goal at a time: a request while a goal runs cancels that goal, waits for its end (at most
``cancel_timeout_s``, then calls the stop service) and only then sends the new goal. Action names:
residual_ros.franka_interfaces.

Start-up (``home_on_start``): the homing action, then the max width read from /franka_gripper/joint_states (the
fingers are fully open after homing); commands that arrive meanwhile wait (the newest is sent when homing ends);
widths are clamped to that max width (before it is known: as configured). Every goal's result (success, error) is
logged, counted and shown on ``/diagnostics``; a grasp that ends with success false is reported as "grasp failed".
While no goal runs, fingers that something else moved (an episode reset, a person) and that show the other state
for ``resync_after_s`` make it the bridge's state (:meth:`GripperBridge.observe`), so the next command asking for the
other state is sent.

A command that is not a number in [0, 1] (:func:`residual_ros.validate.gripper_reason`) is dropped, counted, logged
(throttled) and reported on ``/diagnostics``; :class:`GripperBridge` itself ignores it too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from residual_ros import franka_interfaces as fi
from residual_ros import validate as v
from residual_ros.diagnostics import diagnostic_array, node_status
from residual_ros.node_main import run_node
from residual_ros.params import declare_config
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64

from action_arbiter.gripper_client import FrankaGripperClient, GripperBridgeError
from action_arbiter.gripper_core import (
    HOMING,
    GoalResult,
    GripperBridge,
    GripperBridgeConfig,
    GripperRequest,
    HomingSequence,
    ResultBook,
    finger_width,
)

__all__ = ["FrankaGripperClient", "GripperBridge", "GripperBridgeConfig", "GripperBridgeError", "GripperBridgeNode",
           "GripperRequest", "main"]


class GripperBridgeNode(Node):
    """``command_topic`` (Float64) -> :class:`GripperBridge` -> a sender (default: :class:`FrankaGripperClient`).

    ``make_sender(node, cfg)`` builds what sends the requests: an object with ``send(request) -> bool``; one with an
    ``on_result`` attribute also reports results (the node sets it), and only such a sender is asked to home. Tests
    pass a recorder, so the node runs without franka_ros2. ``requests`` lists every request sent.
    """

    def __init__(self, make_sender: Callable[[Node, GripperBridgeConfig], Any] = FrankaGripperClient,
                 **node_kwargs):
        super().__init__("gripper_bridge", **node_kwargs)
        self.cfg = cfg = declare_config(self, GripperBridgeConfig)
        self.bridge = GripperBridge(cfg)
        self.sender = make_sender(self, cfg)
        self.reports = reports = hasattr(self.sender, "on_result")
        if reports:
            self.sender.on_result = self._on_result
        self.homing = HomingSequence(cfg.home_on_start and reports, cfg.width_timeout_s)
        self.results = ResultBook()
        self.requests: list[GripperRequest] = []
        self.pending: str | None = None  # the newest request kind that arrived during homing
        self.width: float | None = None  # the last measured opening
        self.drops = v.DropCounter()
        self.topic = self.create_subscription(Float64, cfg.command_topic, self._on_command, 10).topic_name
        # best effort reads franka_gripper's joint states whether it publishes them reliably or best effort
        self.joints_topic = self.create_subscription(
            JointState, cfg.joint_states_topic, self._on_joint_state,
            QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)).topic_name
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(cfg.diagnostics_period_s, self._publish_diagnostics, clock=steady)
        self.create_timer(0.1, self._homing_tick, clock=steady)

    def _on_command(self, msg: Float64) -> None:
        if self.drops.refuse(self.topic, v.gripper_reason(msg.data), self.get_logger().warn):
            return
        req = self.bridge.update(msg.data, self.get_clock().now().nanoseconds * 1e-9)
        if req is None:
            return
        if self.homing.busy:
            self.pending = req.kind
            self.get_logger().info(f"gripper {req.kind} waits for the homing to end")
            return
        self._send(req)

    def _send(self, req: GripperRequest) -> bool:
        if not self.sender.send(req):
            self.get_logger().error(f"gripper action server for {req.kind} not available", throttle_duration_sec=2)
            self.bridge.state = "unknown"  # retry on the next command
            return False
        self.requests.append(req)
        self.get_logger().info(f"gripper {req.kind} to {req.width:.4f} m" + (f" ({req.note})" if req.note else ""))
        return True

    def _homing_tick(self) -> None:
        if self.homing.state == "waiting":
            if self.sender.send(GripperRequest(HOMING, 0.0)):
                self.homing.sent()
                self.requests.append(GripperRequest(HOMING, 0.0))
                self.get_logger().info("gripper homing")
            else:
                self.get_logger().info(f"gripper: waiting for {self.cfg.homing_action} to home",
                                       throttle_duration_sec=5)
        elif self.homing.timed_out(time.monotonic()):
            self.get_logger().warn(f"{self.homing.error}; open width {self.cfg.open_width:.4f} m as configured")
            self._after_homing()

    def _on_result(self, result: GoalResult) -> None:
        message, level = self.results.add(result, self.width)
        self.bridge.goal_ended(result.kind, result.outcome, self.width)  # a failed goal: the state the fingers show
        log = self.get_logger()
        if level == "info":  # (one call site per severity: rclpy refuses a severity change at one site)
            log.info(f"gripper {message}")
        elif level == "warn":
            log.warn(f"gripper {message}")
        else:
            log.error(f"gripper {message}")
        if result.kind == HOMING:
            self.homing.result(result.outcome == "succeeded", result.error, time.monotonic(),
                               retry=result.status == "unanswered")
            if self.homing.state == "failed":
                self.get_logger().error(f"gripper homing failed ({self.homing.error}): max width unknown, open "
                                        f"width {self.cfg.open_width:.4f} m as configured")
                self._after_homing()

    def _on_joint_state(self, msg: JointState) -> None:
        reason = v.joint_state_reason(msg, required=fi.FINGER_JOINTS, min_joints=len(fi.FINGER_JOINTS),
                                      now_ns=self.get_clock().now().nanoseconds)
        if self.drops.refuse(self.joints_topic, reason, self.get_logger().warn):
            return
        width = finger_width(msg.name, msg.position)
        if self.drops.refuse(self.joints_topic, "" if width is not None else "too_few_joints",
                             self.get_logger().warn):
            return
        self.width = width
        # the fingers as something else left them (a reset, a person): only known while the sender reports results
        idle = self.reports and getattr(self.sender, "running", None) is None and not self.homing.busy
        changed = self.bridge.observe(width, time.monotonic(), idle)
        if changed is not None:
            self.get_logger().info(f"gripper: the fingers show {changed} ({width:.4f} m) with no goal running: "
                                   f"state {changed}")
        max_width = self.homing.joint_width(width)
        if max_width is not None:
            self.bridge.max_width = max_width
            self.get_logger().info(f"gripper homed: max width {max_width:.4f} m (open width "
                                   f"{min(self.cfg.open_width, max_width):.4f} m)")
            self._after_homing()

    def _after_homing(self) -> None:
        if self.pending is not None:
            kind, self.pending = self.pending, None
            self._send(self.bridge.request(kind))

    def _publish_diagnostics(self) -> None:
        values = {"state": self.bridge.state, "homing": self.homing.state,
                  "max width": "unknown" if self.bridge.max_width is None else f"{self.bridge.max_width:.4f}",
                  "width": "unknown" if self.width is None else f"{self.width:.4f}",
                  "requests": len(self.requests), **self.results.key_values()}
        level, message = DiagnosticStatus.OK, "ok"
        new_failures = self.results.take_new_failures()
        if self.homing.state == "failed":
            level, message = DiagnosticStatus.ERROR, f"homing failed: {self.homing.error}"
        elif new_failures:
            level, message = DiagnosticStatus.WARN, f"{new_failures} goal(s) failed; last: {self.results.last}"
        status = node_status("gripper_bridge", message, values, self.drops, level=level)
        self.diag_pub.publish(diagnostic_array(status, self.get_clock().now().to_msg()))


def main(args: list[str] | None = None) -> None:
    run_node("franka-gripper-bridge", GripperBridgeNode, args, config_errors=(ValueError, GripperBridgeError))


if __name__ == "__main__":
    main()
