"""franka_twin: a real-time MuJoCo stand-in for franka_ros2 (franka_bringup + franka_gripper), the tracking
controller and the RealSense node, serving the names, types and QoS of ``residual_ros.franka_interfaces``."""
