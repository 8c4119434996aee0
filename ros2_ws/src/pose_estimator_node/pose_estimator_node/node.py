"""ROS 2 node: task object poses on /objects/poses, from ArUco markers in the camera image or the sim's ground truth.

``source: aruco``: /camera/image_raw + /camera/camera_info -> :class:`~pose_estimator_node.estimator.ArucoPoseEstimator`
(camera extrinsic from the ``camera_pos`` / ``camera_quat_xyzw`` parameters: the optical frame in the base frame;
defaults: franka_sim's fixed scene camera). ``source: gt``: /sim/object_poses_gt -> noise and dropout
(:class:`~pose_estimator_node.noisy_ground_truth.NoisyGroundTruth`, residual_core.augment's maths).

Outputs: ``/objects/poses`` (ObjectPoseArray, frame fr3_link0, header stamp and every ``measured`` = the image's
(or ground truth's) stamp; one entry per task object, confidence 0 when not seen), ``/objects/pose_array``
(geometry_msgs/PoseArray of the seen objects, for rviz2) and ``/diagnostics``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Pose, PoseArray
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from residual_core.tasks import TASK_OBJECTS, check_task
from residual_interfaces.msg import ObjectPose, ObjectPoseArray
from residual_ros.node_main import run_node
from residual_ros.params import declare_config
from sensor_msgs.msg import CameraInfo, Image

from pose_estimator_node.camera import CameraModel, Extrinsic, image_to_gray, sim_camera_extrinsic
from pose_estimator_node.estimator import ArucoConfig, ArucoPoseEstimator
from pose_estimator_node.noisy_ground_truth import NoisyGroundTruth, NoisyGroundTruthConfig

SOURCES = ("aruco", "gt")


def _sim_pos() -> tuple[float, ...]:
    return tuple(float(v) for v in sim_camera_extrinsic().pos)


def _sim_quat() -> tuple[float, ...]:
    return tuple(float(v) for v in sim_camera_extrinsic().quat_xyzw)


@dataclass
class PoseEstimatorNodeConfig:
    """Parameters of the pose estimator node (each is a ROS parameter of the same name; those of the nested configs
    are dotted: ``aruco.min_side_px``, ``gt.noise_pos_m``)."""

    task: str = "cube_lift"
    """Task name (residual_core.tasks): which objects to report."""
    source: str = "aruco"
    """aruco (markers in the camera image) or gt (the simulator's ground truth with noise and dropout)."""
    frame_id: str = "fr3_link0"
    """Robot base frame of the output poses."""
    camera_pos: tuple[float, ...] = field(default_factory=_sim_pos)
    """Camera optical frame (z forward, y down) position in the base frame (m); default: franka_sim's camera."""
    camera_quat_xyzw: tuple[float, ...] = field(default_factory=_sim_quat)
    """Camera optical frame orientation in the base frame (x y z w); default: franka_sim's camera."""
    image_reliable: bool = False
    """Subscribe to the image with reliable QoS (only with reliable publishers); else best effort, latest only."""
    aruco: ArucoConfig = field(default_factory=ArucoConfig)
    """aruco: detection, pose choice and confidence (parameters aruco.min_side_px, aruco.normal_prior,
    aruco.refine.samples_per_edge, ...)."""
    gt: NoisyGroundTruthConfig = field(default_factory=NoisyGroundTruthConfig)
    """gt: noise and dropout added to the ground truth (parameters gt.noise_pos_m, gt.noise_rot_rad, gt.dropout_p,
    gt.seed)."""
    diagnostics_period_s: float = 1.0
    """Period of /diagnostics (s)."""

    def __post_init__(self) -> None:
        check_task(self.task)
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {self.source!r}")
        if len(self.camera_pos) != 3 or len(self.camera_quat_xyzw) != 4:
            raise ValueError(f"camera_pos needs 3 values, camera_quat_xyzw 4; got {self.camera_pos}, "
                             f"{self.camera_quat_xyzw}")
        self.extrinsic = Extrinsic(np.array(self.camera_pos), np.array(self.camera_quat_xyzw))


def _pose(pos, quat) -> Pose:
    p = Pose()
    p.position.x, p.position.y, p.position.z = (float(v) for v in pos)
    p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = (float(v) for v in quat)
    return p


class PoseEstimatorNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("pose_estimator", **node_kwargs)
        self.cfg = cfg = declare_config(self, PoseEstimatorNodeConfig)
        self.objects = TASK_OBJECTS[cfg.task]
        self.steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.camera: CameraModel | None = None
        self.frames = 0
        self.seen = dict.fromkeys(self.objects, 0)
        self.times: list[float] = []
        self.poses_pub = self.create_publisher(ObjectPoseArray, "/objects/poses", 10)
        self.array_pub = self.create_publisher(PoseArray, "/objects/pose_array", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        if cfg.source == "aruco":
            self.estimator = ArucoPoseEstimator(self.objects, cfg.aruco)
            reliability = ReliabilityPolicy.RELIABLE if cfg.image_reliable else ReliabilityPolicy.BEST_EFFORT
            self.create_subscription(CameraInfo, "/camera/camera_info", self._on_info, qos_profile_sensor_data)
            self.create_subscription(Image, "/camera/image_raw", self._on_image,
                                     QoSProfile(depth=1, reliability=reliability))
        else:
            self.noisy_ground_truth = NoisyGroundTruth(self.objects, cfg.gt)
            self.create_subscription(ObjectPoseArray, "/sim/object_poses_gt", self._on_gt, qos_profile_sensor_data)
        self.create_timer(cfg.diagnostics_period_s, self._publish_diagnostics, clock=self.steady)
        self.get_logger().info(f"pose estimator: task={cfg.task} source={cfg.source} objects={list(self.objects)}")

    def _on_info(self, msg: CameraInfo) -> None:
        try:
            self.camera = CameraModel.from_camera_info(msg.k, msg.d, msg.width, msg.height)
        except ValueError as exc:
            self.get_logger().error(f"camera_info rejected: {exc}", throttle_duration_sec=5.0)

    def _on_image(self, msg: Image) -> None:
        if self.camera is None:
            self.get_logger().warn("image received before camera_info: skipped", throttle_duration_sec=5.0)
            return
        stamp_s = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        try:
            gray = image_to_gray(bytes(msg.data), msg.height, msg.width, msg.encoding, msg.step)
            result = self.estimator.estimate(gray, self.camera, self.cfg.extrinsic, stamp_s)
        except ValueError as exc:
            self.get_logger().error(f"image skipped: {exc}", throttle_duration_sec=5.0)
            return
        self.times.append(result.total_s)
        entries = []
        for name in self.objects:
            est = result.objects.get(name)
            if est is None:
                entries.append((name, np.zeros(3), np.zeros(4), 0.0))
            else:
                entries.append((name, est.pos, est.quat_xyzw, est.confidence))
        self._publish(msg.header.stamp, dict.fromkeys(self.objects, msg.header.stamp), entries)

    def _on_gt(self, msg: ObjectPoseArray) -> None:
        inputs = {o.name: ((o.pose.position.x, o.pose.position.y, o.pose.position.z),
                           (o.pose.orientation.x, o.pose.orientation.y, o.pose.orientation.z, o.pose.orientation.w),
                           float(o.confidence)) for o in msg.objects}
        # Each object's own measurement time when the simulator set one, else the message's stamp.
        measured = {o: msg.header.stamp for o in self.objects}
        measured.update({o.name: o.measured for o in msg.objects if o.measured.sec or o.measured.nanosec})
        out = self.noisy_ground_truth.apply(inputs)
        self._publish(msg.header.stamp, measured, [(p.name, p.pos, p.quat_xyzw, p.confidence) for p in out])

    def _publish(self, stamp, measured: dict, entries: list) -> None:
        """``entries``: (name, pos, quat, confidence) per task object; ``measured``: name -> Time."""
        out = ObjectPoseArray()
        out.header.stamp, out.header.frame_id = stamp, self.cfg.frame_id
        array = PoseArray()
        array.header = out.header
        for name, pos, quat, conf in entries:
            out.objects.append(ObjectPose(name=name, pose=_pose(pos, quat), confidence=float(conf),
                                          measured=measured[name]))
            if conf > 0.0:
                array.poses.append(_pose(pos, quat))
                self.seen[name] += 1
        self.frames += 1
        self.poses_pub.publish(out)
        self.array_pub.publish(array)

    def _publish_diagnostics(self) -> None:
        values = {"source": self.cfg.source, "frames": self.frames,
                  **{f"seen_ratio_{o}": round(n / max(self.frames, 1), 3) for o, n in self.seen.items()}}
        if self.times:
            values.update(process_ms_mean=round(1e3 * float(np.mean(self.times)), 2),
                          process_ms_max=round(1e3 * float(np.max(self.times)), 2))
        waiting = self.cfg.source == "aruco" and self.camera is None
        level = DiagnosticStatus.WARN if waiting or self.frames == 0 else DiagnosticStatus.OK
        text = "no camera_info yet" if waiting else ("no input yet" if self.frames == 0 else "ok")
        status = DiagnosticStatus(level=level, name="pose_estimator", message=text, hardware_id="residual_vla",
                                  values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
        arr = DiagnosticArray(status=[status])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(arr)
        self.frames, self.seen, self.times = 0, dict.fromkeys(self.objects, 0), []


def main(args: list[str] | None = None) -> None:
    run_node("pose-estimator-node", PoseEstimatorNode, args, config_errors=(ValueError,))


if __name__ == "__main__":
    main()
