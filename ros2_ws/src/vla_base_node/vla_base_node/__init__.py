"""ROS 2 node: base policy backends (sim BC policy, openpi, OpenVLA) and the chunk broker emitting one base
action per control step."""
