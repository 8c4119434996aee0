"""Fake robot inputs for node tests: joint states, TCP pose and object poses published from a RosProbe."""

from __future__ import annotations

from collections.abc import Sequence

from geometry_msgs.msg import PoseStamped
from rclpy.qos import qos_profile_sensor_data
from residual_interfaces.msg import ObjectPose, ObjectPoseArray
from sensor_msgs.msg import JointState

ARM = [f"fr3_joint{i}" for i in range(1, 8)]
FINGERS = ["fr3_finger_joint1", "fr3_finger_joint2"]
DOWN_QUAT = (1.0, 0.0, 0.0, 0.0)  # TCP z pointing down (180 deg about x), x y z w


class FakeRobot:
    """Publishes /joint_states, /tcp_pose and /objects/poses at ``rate_hz`` from ``probe``'s node."""

    def __init__(self, probe, tcp_pos: Sequence[float] = (0.45, 0.0, 0.25), objects: bool = True,
                 rate_hz: float = 50.0):
        node = probe.node
        self.node, self.tcp_pos, self.objects_enabled = node, list(tcp_pos), objects
        self.joint_pub = node.create_publisher(JointState, "/joint_states", qos_profile_sensor_data)
        self.tcp_pub = node.create_publisher(PoseStamped, "/tcp_pose", qos_profile_sensor_data)
        self.obj_pub = node.create_publisher(ObjectPoseArray, "/objects/poses", qos_profile_sensor_data)
        self.published = 0
        self.timer = node.create_timer(1.0 / rate_hz, self.publish)

    def publish(self) -> None:
        stamp = self.node.get_clock().now().to_msg()
        js = JointState(name=ARM + FINGERS, position=[0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.8, 0.02, 0.02],
                        velocity=[0.0] * 9)
        js.header.stamp = stamp
        self.joint_pub.publish(js)
        tcp = PoseStamped()
        tcp.header.stamp, tcp.header.frame_id = stamp, "fr3_link0"
        tcp.pose.position.x, tcp.pose.position.y, tcp.pose.position.z = self.tcp_pos
        o = tcp.pose.orientation
        o.x, o.y, o.z, o.w = DOWN_QUAT
        self.tcp_pub.publish(tcp)
        if self.objects_enabled:
            cube = ObjectPose(name="cube", confidence=1.0)
            cube.pose.position.x, cube.pose.position.y, cube.pose.position.z = 0.5, 0.05, 0.02
            cube.pose.orientation.w = 1.0
            cube.measured = stamp
            arr = ObjectPoseArray(objects=[cube])
            arr.header.stamp, arr.header.frame_id = stamp, "fr3_link0"
            self.obj_pub.publish(arr)
        self.published += 1
