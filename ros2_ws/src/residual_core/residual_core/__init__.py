"""Pure-Python contracts shared by training and deployment: action and observation specs, rotations, pose noise/dropout, safety envelope, checkpoint format, policy networks. No rclpy."""
