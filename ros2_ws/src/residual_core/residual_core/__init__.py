"""Pure-Python contracts shared by training and deployment (no rclpy).

Action and observation specs, rotations, pose noise/dropout, safety envelope, checkpoint format and policy
networks; see README.md and docs/CONTRACTS.md. Submodules are imported explicitly
(``from residual_core.action import compose_action``) so that importing one does not pull in torch.
"""

__version__ = "0.1.0"
