"""rclpy helpers shared by every node of the stack: the node runner (:mod:`residual_ros.node_main`) and typed
configuration <-> ROS parameters (:mod:`residual_ros.params`). Imports only rclpy and residual_core."""

__version__ = "0.1.0"
