"""ROS 2 node: task object poses on /objects/poses, from ArUco markers in the camera image or the sim's ground truth.

``source: aruco``: /camera/image_raw + /camera/camera_info -> :class:`~pose_estimator_node.estimator.ArucoPoseEstimator`
(camera extrinsic from the ``camera_pos`` / ``camera_quat_xyzw`` parameters: the optical frame in the base frame;
defaults: franka_sim's fixed scene camera). With ``front_camera`` (the sim graph sets it) also
/camera_front/image_raw + /camera_front/camera_info (``front_camera_pos`` / ``front_camera_quat_xyzw``; default
franka_sim's front camera): the two images of a stamp are joined (:mod:`pose_estimator_node.views`) and estimated
together (``ArucoPoseEstimator.estimate_views``: per object the more confident view). ``source: gt``:
/sim/object_poses_gt -> noise and dropout (:class:`~pose_estimator_node.noisy_ground_truth.NoisyGroundTruth`,
residual_core.augment's maths).

Outputs: ``/objects/poses`` (ObjectPoseArray, frame fr3_link0, header stamp and every ``measured`` = the image's
(or ground truth's) stamp; one entry per task object (:func:`~pose_estimator_node.estimator.published_poses`),
confidence 0 when not seen), ``/objects/pose_array`` (geometry_msgs/PoseArray of the seen objects, for rviz2) and
``/diagnostics``.

Episodes (``aruco`` with ``episode_topic``, the simulator's /sim/episode): each image is estimated once its episode is
known, and the estimator's tracking is reset when the episode changes; an image re-published with the stamp of the
previous one is answered with the same poses (:mod:`pose_estimator_node.episodes`), so the poses of an episode depend on
its seed alone.

Inputs are checked before use (:mod:`residual_ros.validate`): camera info (size, intrinsics, a distortion OpenCV
takes), image (encoding, size = the camera info's, row step, data; stamp), ground truth (frame ``frame_id``, size,
unique names, stamp; each object: a bad one is not seen). An unusable message is dropped, counted per topic and
reason, logged (throttled) and reported on ``/diagnostics``, never fatal; a dropped camera info keeps the previous
one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import Pose, PoseArray
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from residual_core.tasks import TASK_OBJECTS, check_task
from residual_interfaces.msg import ObjectPose, ObjectPoseArray
from residual_ros import validate as v
from residual_ros.diagnostics import diagnostic_array, node_status
from residual_ros.node_main import run_node
from residual_ros.params import declare_config
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from pose_estimator_node.camera import (
    CameraModel,
    Extrinsic,
    image_to_gray,
    sim_camera_extrinsic,
    sim_front_camera_extrinsic,
)
from pose_estimator_node.episodes import ImageEpisodes, Release, parse_status
from pose_estimator_node.estimator import ArucoConfig, ArucoPoseEstimator, published_poses
from pose_estimator_node.noisy_ground_truth import NoisyGroundTruth, NoisyGroundTruthConfig
from pose_estimator_node.views import ImageSets

SOURCES = ("aruco", "gt")


def _sim_pos() -> tuple[float, ...]:
    return tuple(float(v) for v in sim_camera_extrinsic().pos)


def _sim_quat() -> tuple[float, ...]:
    return tuple(float(v) for v in sim_camera_extrinsic().quat_xyzw)


def _front_pos() -> tuple[float, ...]:
    return tuple(float(v) for v in sim_front_camera_extrinsic().pos)


def _front_quat() -> tuple[float, ...]:
    return tuple(float(v) for v in sim_front_camera_extrinsic().quat_xyzw)


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
    front_camera: bool = False
    """aruco: also estimate from a second camera's images (/camera_front/image_raw + /camera_front/camera_info, the
    sim's front camera), joined with the first camera's by stamp; the sim graph sets it."""
    front_camera_pos: tuple[float, ...] = field(default_factory=_front_pos)
    """Second camera's optical frame position in the base frame (m); default: franka_sim's front camera."""
    front_camera_quat_xyzw: tuple[float, ...] = field(default_factory=_front_quat)
    """Second camera's optical frame orientation in the base frame (x y z w); default: franka_sim's front camera."""
    image_reliable: bool = False
    """Subscribe to the image with reliable QoS (only with reliable publishers); else best effort, latest only."""
    episode_topic: str = "none"
    """aruco: the simulator's episode status (std_msgs/String JSON with episode and stamp_ns, e.g. /sim/episode): each
    image waits for the status of its stamp, and a new episode resets the tracking; none: no episodes (real robot)."""
    episode_wait_s: float = 0.5
    """aruco with episode_topic: estimate an image anyway (as part of the current episode, with a warning) when its
    status has not arrived after this long (steady s)."""
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
        if not self.episode_wait_s > 0:
            raise ValueError(f"episode_wait_s must be > 0, got {self.episode_wait_s}")
        cameras = ((self.camera_pos, self.camera_quat_xyzw), (self.front_camera_pos, self.front_camera_quat_xyzw))
        for pos, quat in cameras:
            if len(pos) != 3 or len(quat) != 4:
                raise ValueError(f"a camera position needs 3 values, its quaternion 4; got {pos}, {quat}")
        self.extrinsic = Extrinsic(np.array(self.camera_pos), np.array(self.camera_quat_xyzw))
        self.front_extrinsic = Extrinsic(np.array(self.front_camera_pos), np.array(self.front_camera_quat_xyzw))


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
        self.front_camera: CameraModel | None = None
        self.frames = 0
        self.seen = dict.fromkeys(self.objects, 0)
        self.times: list[float] = []
        self.poses_pub = self.create_publisher(ObjectPoseArray, "/objects/poses", 10)
        self.array_pub = self.create_publisher(PoseArray, "/objects/pose_array", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.drops = v.DropCounter()
        self.pose_frames = v.same_frames(cfg.frame_id)  # what pose inputs may be in
        self.topics: dict[str, str] = {}  # as resolved (remappings applied): the keys of the drop counts
        self.episodes = ImageEpisodes(enabled=cfg.source == "aruco" and cfg.episode_topic not in ("", "none"))
        self._answered: tuple[object, dict, list] | None = None  # (stamp, measured, entries) published last (aruco)
        if self.episodes.enabled:  # before the image: when both are ready, rclpy serves subscriptions in creation order
            self.topics["status"] = self.create_subscription(
                String, cfg.episode_topic, self._on_status,
                QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)).topic_name
            self._episode_timer = self.create_timer(cfg.episode_wait_s, self._episode_deadline, clock=self.steady)
            self._episode_timer.cancel()
        if cfg.source == "aruco":
            self.estimator = ArucoPoseEstimator(self.objects, cfg.aruco)
            reliability = ReliabilityPolicy.RELIABLE if cfg.image_reliable else ReliabilityPolicy.BEST_EFFORT
            self.topics["info"] = self.create_subscription(CameraInfo, "/camera/camera_info", self._on_info,
                                                           qos_profile_sensor_data).topic_name
            self.topics["image"] = self.create_subscription(Image, "/camera/image_raw", self._on_image,
                                                            QoSProfile(depth=1, reliability=reliability)).topic_name
            self.image_sets = ImageSets(2 if cfg.front_camera else 1)
            if cfg.front_camera:
                self.topics["front_info"] = self.create_subscription(
                    CameraInfo, "/camera_front/camera_info", self._on_front_info, qos_profile_sensor_data).topic_name
                self.topics["front_image"] = self.create_subscription(
                    Image, "/camera_front/image_raw", self._on_front_image,
                    QoSProfile(depth=1, reliability=reliability)).topic_name
        else:
            self.noisy_ground_truth = NoisyGroundTruth(self.objects, cfg.gt)
            self.topics["gt"] = self.create_subscription(ObjectPoseArray, "/sim/object_poses_gt", self._on_gt,
                                                         qos_profile_sensor_data).topic_name
        self.create_timer(cfg.diagnostics_period_s, self._publish_diagnostics, clock=self.steady)
        self.get_logger().info(f"pose estimator: task={cfg.task} source={cfg.source} objects={list(self.objects)}")

    def _now_ns(self) -> int | None:
        """The clock stamps are judged against (None before the first /clock under sim time)."""
        return v.judged_now(self.get_clock().now().nanoseconds)

    def _refused(self, kind: str, reason: str, detail: str = "", part: str = "") -> bool:
        """True (dropped, counted, logged now and then) when ``reason`` says the message of input ``kind`` (``part``
        of it, e.g. "[object]") is unusable."""
        return self.drops.refuse(self.topics[kind] + part, reason, self.get_logger().warn, detail)

    def _camera_model(self, kind: str, msg: CameraInfo) -> CameraModel | None:
        if self._refused(kind, v.camera_info_reason(msg)):
            return None
        try:
            return CameraModel.from_camera_info(msg.k, msg.d, msg.width, msg.height)
        except ValueError as exc:  # not expected after the check; still never fatal
            self._refused(kind, "bad_intrinsics", str(exc))
            return None

    def _on_info(self, msg: CameraInfo) -> None:
        self.camera = self._camera_model("info", msg) or self.camera

    def _on_front_info(self, msg: CameraInfo) -> None:
        self.front_camera = self._camera_model("front_info", msg) or self.front_camera

    def _on_image(self, msg: Image) -> None:
        self._on_view(0, "image", self.camera, msg)

    def _on_front_image(self, msg: Image) -> None:
        self._on_view(1, "front_image", self.front_camera, msg)

    def _on_view(self, index: int, kind: str, camera: CameraModel | None, msg: Image) -> None:
        """Camera ``index``'s image: checked, joined with the other camera's of its stamp, then released by episode."""
        if camera is None:
            self.get_logger().warn(f"{self.topics[kind]} received before its camera_info: skipped",
                                   throttle_duration_sec=5.0)
            return
        size = (camera.width, camera.height)
        if self._refused(kind, v.image_reason(msg, size=size) or v.stamp_reason(msg.header.stamp, self._now_ns())):
            return
        views = self.image_sets.add(index, v.stamp_ns(msg.header.stamp), (msg, camera))
        if views is None:  # waiting for the other camera's image of this stamp
            return
        release = self.episodes.image(views, v.stamp_ns(msg.header.stamp))
        if release is None:  # waiting for the status of its stamp
            self._episode_timer.reset()
            return
        self._answer(release)

    def _on_status(self, msg: String) -> None:
        try:
            episode, stamp = parse_status(msg.data)
        except ValueError as exc:
            self._refused("status", "bad_status", str(exc))
            return
        release = self.episodes.status(episode, stamp)
        if release is not None:
            self._episode_timer.cancel()
            self._answer(release)

    def _episode_deadline(self) -> None:
        self._episode_timer.cancel()
        release = self.episodes.expire()
        if release is not None:
            self.get_logger().warn(f"no status on {self.cfg.episode_topic} for the image of stamp {release.stamp_ns} "
                                   f"within {self.cfg.episode_wait_s} s: estimated as part of the current episode",
                                   throttle_duration_sec=5.0)
            self._answer(release)

    def _answer(self, release: Release) -> None:
        """Estimate a released image (resetting the tracking at a new episode) and publish its poses; a repeat gets
        the poses published for its stamp again."""
        if release.repeat:
            if self._answered is not None:
                self._publish(*self._answered)
            return
        views = release.item
        msg = views[0][0]
        if release.new_episode:
            self.estimator.reset()
        try:
            extrinsics = (self.cfg.extrinsic, self.cfg.front_extrinsic)
            result = self.estimator.estimate_views(
                [(image_to_gray(bytes(m.data), m.height, m.width, m.encoding, m.step), camera, extrinsic)
                 for (m, camera), extrinsic in zip(views, extrinsics, strict=False)], release.stamp_ns * 1e-9)
        except ValueError as exc:  # not expected after the check; still never fatal
            self._refused("image", "bad_size", str(exc))
            return
        self.times.append(result.total_s)
        self._answered = (msg.header.stamp, dict.fromkeys(self.objects, msg.header.stamp),
                          published_poses(result, self.objects))
        self._publish(*self._answered)

    def _on_gt(self, msg: ObjectPoseArray) -> None:
        if self._refused("gt", v.object_pose_array_reason(msg, self.pose_frames, self._now_ns())):
            return
        inputs = {}
        for o in msg.objects:
            if not self._refused("gt", v.object_pose_reason(o), f"object {o.name[:40]!r}", part="[object]"):
                inputs[o.name] = ((o.pose.position.x, o.pose.position.y, o.pose.position.z),
                                  (o.pose.orientation.x, o.pose.orientation.y, o.pose.orientation.z,
                                   o.pose.orientation.w), float(o.confidence))
        # Each object's own measurement time when the simulator set one, else the message's stamp.
        measured = {o: msg.header.stamp for o in self.objects}
        measured.update({o.name: o.measured for o in msg.objects
                         if o.name in inputs and (o.measured.sec or o.measured.nanosec)})
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
        status = node_status("pose_estimator", text, values, self.drops, level)
        self.diag_pub.publish(diagnostic_array(status, self.get_clock().now().to_msg()))
        self.frames, self.seen, self.times = 0, dict.fromkeys(self.objects, 0), []


def main(args: list[str] | None = None) -> None:
    run_node("pose-estimator-node", PoseEstimatorNode, args, config_errors=(ValueError,))


if __name__ == "__main__":
    main()
