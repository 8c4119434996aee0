"""The gripper bridge (action_arbiter.gripper_bridge) under hostile inputs: a command outside [0, 1] is no request, an
unusable finger joint state is dropped and counted (its other tests: action_arbiter/test/test_arbiter_logic.py,
test_gripper_core.py, tests/test_gripper_bridge_twin.py)."""

from __future__ import annotations

import math

import pytest
from action_arbiter.gripper_bridge import GripperBridge, GripperBridgeConfig


def test_a_gripper_command_outside_zero_one_is_never_a_request():
    bridge = GripperBridge(GripperBridgeConfig(min_interval_s=0.5))
    assert bridge.update(7.0, 0.0) is None and bridge.state == "unknown"  # was a grasp
    assert bridge.update(-3.0, 1.0) is None and bridge.update(math.inf, 2.0) is None  # -3 was an open move
    assert bridge.update(1e300, 3.0) is None and bridge.update(math.nan, 3.0) is None
    assert bridge.update(1.0, 4.0).kind == "grasp" and bridge.state == "closed"


class _Recorder:
    def __init__(self, node, cfg):
        self.sent = []

    def send(self, request) -> bool:
        self.sent.append(request)
        return True


@pytest.mark.ros
def test_unusable_finger_joint_states_are_dropped_and_counted(ros_probe):
    from action_arbiter.gripper_bridge import GripperBridgeNode
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from residual_ros import franka_interfaces as fi
    from sensor_msgs.msg import JointState

    bridge = GripperBridgeNode(make_sender=_Recorder, context=ros_probe.context)
    ros_probe.executor.add_node(bridge)
    try:
        pub = ros_probe.node.create_publisher(JointState, fi.GRIPPER_JOINT_STATES.name,
                                              QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        ros_probe.wait_for_subscribers(pub, timeout=10.0)
        topic = fi.GRIPPER_JOINT_STATES.name
        bad = {"not_finite": (fi.FINGER_JOINTS, [0.02, math.nan]), "length_mismatch": (fi.FINGER_JOINTS, [0.02]),
               "too_few_joints": (fi.FINGER_JOINTS[:1], [0.02])}
        for reason, (names, position) in bad.items():
            msg = JointState(name=list(names), position=position)
            msg.header.stamp = ros_probe.node.get_clock().now().to_msg()
            pub.publish(msg)
            ros_probe.spin_until(lambda r=reason: bridge.drops.counts[f"{topic}/{r}"] == 1, 10.0, f"a {reason} drop")
        assert bridge.width is None
        good = JointState(name=list(fi.FINGER_JOINTS), position=[0.015, 0.015])
        good.header.stamp = ros_probe.node.get_clock().now().to_msg()
        pub.publish(good)
        ros_probe.spin_until(lambda: bridge.width is not None, 10.0, "the measured width")
        assert bridge.width == pytest.approx(0.03) and bridge.drops.total == 3
    finally:
        ros_probe.executor.remove_node(bridge)
        bridge.destroy_node()
