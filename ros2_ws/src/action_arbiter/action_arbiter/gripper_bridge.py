"""Real mode: the arbiter's continuous gripper command (0 open .. 1 closed) -> franka_gripper actions.

:class:`GripperBridge` (pure) turns the 20 Hz command stream into rare discrete requests: a *grasp* when the
command rises above ``close_above``, a *move* to the open width when it falls below ``open_below`` (hysteresis, so
a command hovering around 0.5 does not chatter), never more often than ``min_interval_s``. The node sends them
as ``franka_msgs/action/Grasp`` and ``Move`` goals to franka_gripper (needs franka_ros2, imported only when the
node starts: franka_ros2's package on the robot, the set-up's wire-compatible stand-in from ros2_ws/compat elsewhere;
:class:`GripperBridgeNode` takes another sender for tests). Action names: residual_ros.franka_interfaces.

A command that is not a number in [0, 1] (:func:`residual_ros.validate.gripper_reason`) is dropped, counted, logged
(throttled) and reported on ``/diagnostics``; :class:`GripperBridge` itself ignores it too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from residual_ros import franka_interfaces as fi
from residual_ros import validate as v
from residual_ros.diagnostics import diagnostic_array, node_status
from residual_ros.node_main import run_node
from residual_ros.params import declare_config
from std_msgs.msg import Float64


@dataclass(frozen=True)
class GripperBridgeConfig:
    """Thresholds and the franka_gripper goal values."""

    close_above: float = 0.6
    """Send a grasp when the command rises above this."""
    open_below: float = 0.4
    """Send an open move when the command falls below this."""
    open_width: float = 0.08
    """Opening width of a move (m); the Franka Hand's stroke is 80 mm (Franka Hand product data)."""
    grasp_width: float = 0.0
    """Nominal grasp width (m); with the epsilons below any object up to ``epsilon_outer`` wide counts as grasped."""
    epsilon_inner: float = 0.0
    """Allowed width below grasp_width (m)."""
    epsilon_outer: float = 0.08
    """Allowed width above grasp_width (m)."""
    speed: float = 0.05
    """Finger speed (m/s)."""
    force: float = 20.0
    """Grasp force (N)."""
    min_interval_s: float = 0.5
    """Smallest time between two requests (s)."""
    grasp_action: str = fi.GRIPPER_GRASP.name
    """franka_gripper Grasp action name (residual_ros.franka_interfaces)."""
    move_action: str = fi.GRIPPER_MOVE.name
    """franka_gripper Move action name (residual_ros.franka_interfaces)."""
    command_topic: str = "/arbiter/gripper"
    """std_msgs/Float64 gripper command of the arbiter."""
    diagnostics_period_s: float = 1.0
    """Period of /diagnostics (steady s): state, requests sent, commands dropped."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.open_below < self.close_above <= 1.0:
            raise ValueError(f"need 0 <= open_below < close_above <= 1, got {self.open_below}, {self.close_above}")
        for name in ("open_width", "speed", "force", "min_interval_s", "diagnostics_period_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class GripperRequest:
    """One request to franka_gripper."""

    kind: str
    """"grasp" or "move"."""
    width: float
    """Target width (m)."""


class GripperBridge:
    """Hysteresis + rate limit from the command stream to discrete requests."""

    def __init__(self, cfg: GripperBridgeConfig = GripperBridgeConfig()):
        self.cfg = cfg
        self.state = "unknown"  # "open" | "closed" | "unknown"
        self._last_request_s: float | None = None

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
        if want == "closed":
            return GripperRequest("grasp", self.cfg.grasp_width)
        return GripperRequest("move", self.cfg.open_width)


class GripperBridgeError(RuntimeError):
    """The gripper bridge cannot run here (franka_msgs missing)."""


def franka_gripper_actions() -> tuple[type, type]:
    """franka_msgs' (Grasp, Move) action types (franka_ros2's, or the set-up's stand-in from ros2_ws/compat);
    GripperBridgeError when franka_msgs is not installed."""
    try:
        from franka_msgs.action import Grasp, Move
    except ImportError:
        raise GripperBridgeError("franka_msgs is not installed (it comes with franka_ros2; make setup builds a "
                                 "stand-in from ros2_ws/compat)") from None
    return Grasp, Move


class FrankaGripperClient:
    """Sends :class:`GripperRequest` s as franka_gripper Grasp / Move goals (needs franka_msgs)."""

    def __init__(self, node: Node, cfg: GripperBridgeConfig):
        from rclpy.action import ActionClient

        self.grasp_type, self.move_type = franka_gripper_actions()
        self.cfg = cfg
        self.grasp = ActionClient(node, self.grasp_type, cfg.grasp_action)
        self.move = ActionClient(node, self.move_type, cfg.move_action)

    def send(self, req: GripperRequest) -> bool:
        """Send the goal; False when the action server is not available (nothing sent)."""
        if req.kind == "grasp":
            goal = self.grasp_type.Goal(width=req.width, speed=self.cfg.speed, force=self.cfg.force)
            goal.epsilon.inner, goal.epsilon.outer = self.cfg.epsilon_inner, self.cfg.epsilon_outer
            client = self.grasp
        else:
            goal, client = self.move_type.Goal(width=req.width, speed=self.cfg.speed), self.move
        if not client.server_is_ready():
            return False
        client.send_goal_async(goal)
        return True


class GripperBridgeNode(Node):
    """``command_topic`` (Float64) -> :class:`GripperBridge` -> a sender (default: :class:`FrankaGripperClient`).

    ``make_sender(node, cfg)`` builds what sends the requests (an object with ``send(request) -> bool``); tests
    pass a recorder, so the node runs without franka_ros2. ``requests`` lists every request sent.
    """

    def __init__(self, make_sender: Callable[[Node, GripperBridgeConfig], Any] = FrankaGripperClient,
                 **node_kwargs):
        super().__init__("gripper_bridge", **node_kwargs)
        self.cfg = cfg = declare_config(self, GripperBridgeConfig)
        self.bridge = GripperBridge(cfg)
        self.sender = make_sender(self, cfg)
        self.requests: list[GripperRequest] = []
        self.drops = v.DropCounter()
        self.topic = self.create_subscription(Float64, cfg.command_topic, self._on_command, 10).topic_name
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(cfg.diagnostics_period_s, self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _on_command(self, msg: Float64) -> None:
        if self.drops.refuse(self.topic, v.gripper_reason(msg.data), self.get_logger().warn):
            return
        req = self.bridge.update(msg.data, self.get_clock().now().nanoseconds * 1e-9)
        if req is None:
            return
        if not self.sender.send(req):
            self.get_logger().error(f"gripper action server for {req.kind} not available", throttle_duration_sec=2)
            self.bridge.state = "unknown"  # retry on the next command
            return
        self.requests.append(req)
        self.get_logger().info(f"gripper {req.kind} to {req.width:.3f} m")

    def _publish_diagnostics(self) -> None:
        status = node_status("gripper_bridge", "ok", {"state": self.bridge.state, "requests": len(self.requests)},
                             self.drops)
        self.diag_pub.publish(diagnostic_array(status, self.get_clock().now().to_msg()))


def main(args: list[str] | None = None) -> None:
    run_node("franka-gripper-bridge", GripperBridgeNode, args, config_errors=(ValueError, GripperBridgeError))


if __name__ == "__main__":
    main()
