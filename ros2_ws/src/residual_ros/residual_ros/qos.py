"""QoS of the nodes' state inputs: the one rule for "only the newest message matters" subscriptions."""

from __future__ import annotations

from rclpy.qos import QoSProfile, ReliabilityPolicy


def latest_input_qos(reliable: bool, depth: int = 1) -> QoSProfile:
    """QoS of a state input (joint states, TCP pose, object poses) of which only the newest ``depth`` messages are kept.

    Best effort by default: franka_ros2's state broadcaster publishes best effort, which a reliable reader would not
    match (it would receive nothing), and in real time a lost state is replaced by the next one a control period later.

    Reliable (the nodes' ``reliable_inputs``, which the graph sets in lockstep simulation, where every publisher is
    reliable): in lockstep a lost state is never replaced, so the step would be computed on the previous step's state,
    or after a wall-clock deadline, and the run would depend on the machine's load rather than on its seed (measured on
    the camera path, 0.9 MB images in flight: two runs of the same seeds diverged where a best-effort reader had lost
    a TCP pose or a joint state).
    """
    reliability = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(depth=depth, reliability=reliability)
