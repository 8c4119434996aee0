"""QoS of the nodes' state inputs: the one rule for "only the newest message matters" subscriptions."""

from __future__ import annotations

from rclpy.qos import QoSProfile, ReliabilityPolicy

RELIABLE_INPUT_DEPTH = 100
"""Queue of a reliable (lockstep) state input. A lockstep node waits for the state of its step's stamp and reads its
inputs in order, so it never computes on a queued older state; a deep queue keeps the real state from being pushed
out by a burst of other messages on the topic before it is read (measured: 500 forged TCP poses in one second on a
loaded machine overran depth-1 and depth-10 queues, the step's state was lost and the graph waited 1.1-1.7 s for the
simulator to re-publish it)."""


def latest_input_qos(reliable: bool, depth: int | None = None) -> QoSProfile:
    """QoS of a state input (joint states, TCP pose, object poses).

    Best effort by default, newest message only (``depth`` 1 unless given): franka_ros2's state broadcaster publishes
    best effort, which a reliable reader would not match (it would receive nothing), and in real time a lost state is
    replaced by the next one a control period later.

    Reliable (the nodes' ``reliable_inputs``, which the graph sets in lockstep simulation, where every publisher is
    reliable), :data:`RELIABLE_INPUT_DEPTH` deep unless given: in lockstep a lost state is never replaced, so the step
    would be computed on the previous step's state, or after a wall-clock deadline, and the run would depend on the
    machine's load rather than on its seed (measured on the camera path, 0.9 MB images in flight: two runs of the same
    seeds diverged where a best-effort reader had lost a TCP pose or a joint state).
    """
    if reliable:
        return QoSProfile(depth=depth or RELIABLE_INPUT_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
    return QoSProfile(depth=depth or 1, reliability=ReliabilityPolicy.BEST_EFFORT)
