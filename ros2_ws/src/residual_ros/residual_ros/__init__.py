"""rclpy helpers shared by every node of the stack: the node runner (:mod:`residual_ros.node_main`), typed
configuration <-> ROS parameters (:mod:`residual_ros.params`), sensor_msgs/Image fields -> numpy
(:mod:`residual_ros.conversions`), input validation (:mod:`residual_ros.validate`, pure) and the node's /diagnostics
status with its drop counts (:mod:`residual_ros.diagnostics`), and the table of franka_ros2 / RealSense names, types,
QoS and frames that real mode meets (:mod:`residual_ros.franka_interfaces`, pure data). Imports only rclpy, message
packages, numpy and residual_core."""

__version__ = "0.1.0"
