"""Pure-Python contracts shared by training and deployment (no rclpy).

Action and observation specs, rotations, pose noise/dropout, safety envelope, checkpoint format and location, the
numpy residual policy, the marker table and the sim camera placement; see README.md and docs/CONTRACTS.md. numpy,
scipy and safetensors only: no rclpy, torch, MuJoCo or OpenCV (a test checks it); the torch networks are in
residual_learning.
"""

__version__ = "0.1.0"
