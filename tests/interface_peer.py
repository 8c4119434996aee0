"""The other process of the interface exchange test: publishes known samples, echoes, serves ResetEpisode.

Run as a script (``python tests/interface_peer.py``); the test imports :func:`samples` to know what must
arrive. Topics: ``/exchange/<Type>`` (samples, transient-local so a late subscriber still gets them),
``/exchange/in/<Type>`` -> ``/exchange/echo/<Type>`` (what the test sends comes back), service
``/exchange/reset``.
"""

from __future__ import annotations

from geometry_msgs.msg import Point, Pose, Quaternion
from residual_interfaces.msg import ArbiterCommand, Correction, EefAction, EefActionChunk, ObjectPose, ObjectPoseArray
from residual_interfaces.srv import ResetEpisode
from std_msgs.msg import Header

FRAME = "fr3_link0"


def _header(sec: int, nanosec: int, frame_id: str = FRAME) -> Header:
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


def _pose(x: float, y: float, z: float, qx: float, qy: float, qz: float, qw: float) -> Pose:
    return Pose(position=Point(x=x, y=y, z=z), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))


def _object(name: str, pose: Pose, confidence: float, sec: int) -> ObjectPose:
    obj = ObjectPose(name=name, pose=pose, confidence=confidence)
    obj.measured.sec, obj.measured.nanosec = sec, 999_999_999
    return obj


def _action(step: int, values: list[float], source: str, sec: int = 7, episode: int = 2**32 - 1) -> EefAction:
    return EefAction(header=_header(sec, 250_000_000), episode=episode, step=step, action=values, source=source)


def samples() -> dict[str, object]:
    """One fully populated message per type (all fields non-default, extreme integers, nested poses, string[])."""
    cube = _object("cube", _pose(0.55, -0.125, 0.0251, 0.0, 0.0, 0.3826834323650898, 0.9238795325112867), 0.75, 41)
    base_cube = _object("base_cube", _pose(0.4, 0.2, 0.02, 0.5, -0.5, 0.5, 0.5), 0.0, 40)
    chunk_actions = [
        _action(2**40 + i, [0.001 * i, -0.002, 0.003, 0.01, -0.02 * i, 0.03, float(i % 2)], "openpi") for i in range(3)
    ]
    return {
        "ObjectPose": cube,
        "ObjectPoseArray": ObjectPoseArray(header=_header(42, 1), objects=[cube, base_cube]),
        "EefAction": _action(2**64 - 1, [0.05, -0.05, 1e-9, 0.25, -0.25, 3.0e-7, 1.0], "sim_bc \u00e9\u00e8"),
        "EefActionChunk": EefActionChunk(header=_header(43, 2), episode=2**32 - 1, start_step=2**40,
                                         actions=chunk_actions),
        "Correction": Correction(
            header=_header(44, 3),
            episode=77,
            step=123456789,
            base=[0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.0],
            residual=[-0.001, 0.002, -0.003, 0.004, -0.005, 0.006, 1.0],
            final=[0.009, 0.022, 0.027, 0.044, 0.045, 0.066, 1.0],
            residual_applied=True,
            residual_status="ok",
            clipped=True,
            clip_reasons=["translation_step", "workspace_z_min", ""],
            target=_pose(0.3, -0.2, 0.15, 1.0, 0.0, 0.0, 0.0),
        ),
        "ArbiterCommand": ArbiterCommand(header=_header(45, 4), episode=2**32 - 1, step=2**64 - 1,
                                         target=_pose(0.45, 0.1, 0.2, 0.0, 1.0, 0.0, 0.0), gripper=0.25, valid=True),
    }


def reset_response(request: ResetEpisode.Request) -> ResetEpisode.Response:
    """Deterministic response the test can predict from its request."""
    from residual_core.tasks import TASK_INSTRUCTIONS

    known = request.task in TASK_INSTRUCTIONS
    return ResetEpisode.Response(
        success=known,
        message=f"task={request.task} seed={request.seed}",
        instruction=TASK_INSTRUCTIONS.get(request.task, ""),
    )


def main() -> None:
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    # rclpy 7.1 (Jazzy): init() returns None, so no ``with rclpy.init():`` here.
    rclpy.init()
    try:
        node = rclpy.create_node("interface_peer")
        keep = []
        for name, msg in samples().items():
            pub = node.create_publisher(type(msg), f"/exchange/{name}", latched)
            pub.publish(msg)
            echo = node.create_publisher(type(msg), f"/exchange/echo/{name}", latched)
            keep += [pub, echo, node.create_subscription(type(msg), f"/exchange/in/{name}", echo.publish, 10)]
        node.create_service(ResetEpisode, "/exchange/reset", lambda req, resp: reset_response(req))
        node.get_logger().info("interface peer ready")
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        rclpy.try_shutdown()

if __name__ == "__main__":
    main()
