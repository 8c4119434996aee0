"""Real mode: the arbiter's continuous gripper command (0 open .. 1 closed) -> franka_gripper actions.

:class:`GripperBridge` (pure) turns the 20 Hz command stream into rare discrete requests: a *grasp* when the
command rises above ``close_above``, a *move* to the open width when it falls below ``open_below`` (hysteresis, so
a command hovering around 0.5 does not chatter), never more often than ``min_interval_s``. The node sends them
as ``franka_msgs/action/Grasp`` and ``Move`` goals to franka_gripper (needs franka_ros2, imported only when the
node starts).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass


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
    grasp_action: str = "/franka_gripper/grasp"
    """franka_gripper Grasp action name."""
    move_action: str = "/franka_gripper/move"
    """franka_gripper Move action name."""
    command_topic: str = "/arbiter/gripper"
    """std_msgs/Float64 gripper command of the arbiter."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.open_below < self.close_above <= 1.0:
            raise ValueError(f"need 0 <= open_below < close_above <= 1, got {self.open_below}, {self.close_above}")
        for name in ("open_width", "speed", "force", "min_interval_s"):
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
        """The request to send for this command, or None (no change, inside the hysteresis band, too soon, NaN)."""
        if not math.isfinite(command):
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


def main(args: list[str] | None = None) -> None:
    import rclpy
    from rclpy.action import ActionClient
    from rclpy.executors import ExternalShutdownException
    from rclpy.node import Node
    from residual_ros.params import declare_config
    from std_msgs.msg import Float64

    try:
        from franka_msgs.action import Grasp, Move
    except ImportError:
        print("franka-gripper-bridge: franka_msgs is not installed (it comes with franka_ros2; real mode only)",
              file=sys.stderr)
        raise SystemExit(2) from None

    class GripperBridgeNode(Node):
        def __init__(self):
            super().__init__("gripper_bridge")
            self.cfg = cfg = declare_config(self, GripperBridgeConfig)
            self.bridge = GripperBridge(cfg)
            self.grasp = ActionClient(self, Grasp, cfg.grasp_action)
            self.move = ActionClient(self, Move, cfg.move_action)
            self.create_subscription(Float64, cfg.command_topic, self._on_command, 10)

        def _on_command(self, msg: Float64) -> None:
            req = self.bridge.update(msg.data, self.get_clock().now().nanoseconds * 1e-9)
            if req is None:
                return
            if req.kind == "grasp":
                goal = Grasp.Goal(width=req.width, speed=self.cfg.speed, force=self.cfg.force)
                goal.epsilon.inner, goal.epsilon.outer = self.cfg.epsilon_inner, self.cfg.epsilon_outer
                client = self.grasp
            else:
                goal, client = Move.Goal(width=req.width, speed=self.cfg.speed), self.move
            if not client.server_is_ready():
                self.get_logger().error(f"gripper action server for {req.kind} not available", throttle_duration_sec=2)
                self.bridge.state = "unknown"  # retry on the next command
                return
            client.send_goal_async(goal)
            self.get_logger().info(f"gripper {req.kind} to {req.width:.3f} m")

    rclpy.init(args=args)
    node = None
    try:
        node = GripperBridgeNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
