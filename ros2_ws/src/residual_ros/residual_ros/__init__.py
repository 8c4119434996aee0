"""rclpy helpers shared by every node of the stack: the node runner (:mod:`residual_ros.node_main`), typed
configuration <-> ROS parameters (:mod:`residual_ros.params`) and sensor_msgs/Image fields -> numpy
(:mod:`residual_ros.conversions`). Imports only rclpy, numpy and residual_core."""

__version__ = "0.1.0"
