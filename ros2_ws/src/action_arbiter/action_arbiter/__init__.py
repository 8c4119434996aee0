"""ROS 2 node: base + residual -> safety envelope -> controller command, correction records, rviz2 markers."""
