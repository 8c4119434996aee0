"""The ROS side of ``residual-handeye``: a node that reads the TCP pose, the colour image and its camera_info, and
(``--motion twin``) publishes the poses on the tracking controller's target topic; :func:`collect` visits the poses
and returns the (TCP pose, board pose) pairs. The maths: :mod:`pose_estimator_node.handeye`,
:mod:`pose_estimator_node.board`."""

from __future__ import annotations

import collections
import time

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from residual_ros import franka_interfaces as fi
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, Image

from pose_estimator_node import handeye as he
from pose_estimator_node.board import BoardDetector
from pose_estimator_node.camera import CameraModel, image_to_gray

PREFIX = "[residual-handeye]"


class HandEyeNode(Node):
    """Keeps the recent TCP poses, the newest images and the camera model."""

    def __init__(self, args):
        super().__init__("residual_handeye")
        self.args = args
        self.tcp: collections.deque[tuple[float, np.ndarray]] = collections.deque(maxlen=2000)
        """(receive time (monotonic s), (4, 4) TCP pose)."""
        self.images: collections.deque[tuple[float, Image]] = collections.deque(maxlen=5)
        self.camera: CameraModel | None = None
        tcp_qos = (fi.CURRENT_POSE.qos.profile() if args.tcp_topic == fi.CURRENT_POSE.name
                   else QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self.create_subscription(PoseStamped, args.tcp_topic, self._on_tcp, tcp_qos)
        self.create_subscription(Image, args.image_topic, lambda m: self.images.append((time.monotonic(), m)),
                                 fi.COLOR_IMAGE.qos.profile())
        self.create_subscription(CameraInfo, args.info_topic, self._on_info, fi.COLOR_INFO.qos.profile())
        self.target_pub = None
        if args.motion == "twin":
            target = fi.TRACKING_CONTROLLER.target
            self.target_pub = self.create_publisher(PoseStamped, args.target_topic, target.qos.profile())

    def _on_tcp(self, msg: PoseStamped) -> None:
        p, q = msg.pose.position, msg.pose.orientation
        self.tcp.append((time.monotonic(), he.pose_matrix([p.x, p.y, p.z], [q.x, q.y, q.z, q.w])))

    def _on_info(self, msg: CameraInfo) -> None:
        if self.camera is None:
            self.camera = CameraModel.from_camera_info(msg.k, msg.d, msg.width, msg.height)

    def publish_target(self, pos: np.ndarray, quat: np.ndarray) -> None:
        msg = PoseStamped()
        msg.header.frame_id = fi.TRACKING_CONTROLLER.target.frame_id
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = (float(v) for v in pos)
        (msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z,
         msg.pose.orientation.w) = (float(v) for v in quat)
        self.target_pub.publish(msg)

    def settled_since(self, window_s: float, pos_mm: float, rot_deg: float) -> bool:
        """The TCP moved less than pos_mm / rot_deg over the last window_s (and poses cover that window)."""
        now = time.monotonic()
        recent = [T for t, T in self.tcp if t >= now - window_s]
        if len(recent) < 3 or not self.tcp or self.tcp[0][0] > now - window_s:
            return False
        ref = recent[-1]
        return all(he.transform_error(T, ref)[0] < pos_mm and he.transform_error(T, ref)[1] < rot_deg
                   for T in recent)


def _spin_until(executor, predicate, timeout_s: float, tick=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
        if tick is not None:
            tick()
        value = predicate()
        if value:
            return value
    return None


def _mean_pose(Ts: list[np.ndarray]) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = he.project_rotation(sum(T[:3, :3] for T in Ts))
    out[:3, 3] = np.mean([T[:3, 3] for T in Ts], axis=0)
    return out


def _capture(node: HandEyeNode, executor, detector: BoardDetector, args) -> tuple[np.ndarray, np.ndarray, str]:
    """(TCP pose, board pose, info) from ``frames_per_pose`` images taken after now; (None, None, why) if not seen."""
    after = time.monotonic()
    boards, tcps, why = [], [], "no image"
    deadline = after + args.pose_timeout_s
    used = set()
    while len(boards) < args.frames_per_pose and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
        for t, msg in list(node.images):
            if t <= after or id(msg) in used or node.camera is None:
                continue
            used.add(id(msg))
            gray = image_to_gray(bytes(msg.data), msg.height, msg.width, msg.encoding, msg.step)
            pose, why = detector.detect(gray, node.camera)
            if pose is not None:
                boards.append(pose)
                tcps.append(node.tcp[-1][1])
            elif len(used) >= 3 * args.frames_per_pose:
                return None, None, why
    if len(boards) < args.frames_per_pose:
        return None, None, why
    info = (f"board markers {list(boards[-1].marker_ids)}, reprojection {boards[-1].reproj_err_px:.3f} px")
    return _mean_pose(tcps), _mean_pose([b.T_cam_board for b in boards]), info


def collect(args) -> tuple[list[np.ndarray], list[np.ndarray], dict]:
    """Visit the poses (twin: by publishing them; manual: by asking a person), return the pairs and notes."""
    rclpy.init()
    node = HandEyeNode(args)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    tcp, boards, skipped = [], [], []
    try:
        print(f"{PREFIX} waiting for {args.tcp_topic}, {args.image_topic} and {args.info_topic} ...", flush=True)
        if not _spin_until(executor, lambda: node.tcp and node.images and node.camera is not None, 60.0):
            raise SystemExit(f"{PREFIX} no TCP pose / image / camera_info within 60 s: is the robot (or the twin) "
                             "and the camera running?")
        if node.target_pub is not None:
            _spin_until(executor, lambda: node.target_pub.get_subscription_count() > 0, 10.0)
        start = node.tcp[-1][1]
        center = start[:3, 3] if args.center is None else np.asarray(args.center, dtype=np.float64)
        q0 = Rotation.from_matrix(start[:3, :3]).as_quat()
        targets = he.collection_poses(center, q0, args.poses, args.max_offset_m, args.max_angle_deg, args.seed,
                                      args.max_yaw_deg)
        detector = BoardDetector(args.board(), min_markers=args.min_markers)
        for k, (pos, quat) in enumerate(targets):
            delta = Rotation.from_quat(q0).inv() * Rotation.from_quat(quat)
            rv = delta.as_rotvec()
            axis = rv / max(np.linalg.norm(rv), 1e-12)
            where = (f"TCP at {np.round(pos, 3).tolist()} m ({np.round((pos - center) * 100, 1).tolist()} cm from the "
                     f"centre), turned {np.degrees(delta.magnitude()):.0f} deg about tool axis "
                     f"{np.round(axis, 2).tolist()}")
            print(f"{PREFIX} pose {k + 1}/{len(targets)}: {where}", flush=True)
            t0 = time.monotonic()
            if args.motion == "twin":
                def tick(p=pos, q=quat):
                    node.publish_target(p, q)
            else:
                tick = None
                if not args.yes:
                    try:
                        answer = input(f"{PREFIX}   move the arm there (quaternion x y z w "
                                       f"{np.round(quat, 4).tolist()}), keep the board in view, let go, then press "
                                       "Enter (s: skip, q: finish) ")
                    except EOFError:
                        print(f"{PREFIX} no input (stdin closed): finishing (--yes takes the poses without Enter)")
                        break
                    if answer.strip().lower() == "q":
                        break
                    if answer.strip().lower() == "s":
                        skipped.append(k)
                        continue
            # twin: let the move start (the settle test would pass on the pose before it)
            _spin_until(executor, lambda start=t0: time.monotonic() - start > 1.0, 2.0, tick)
            ok = _spin_until(executor, lambda: node.settled_since(args.settle_window_s, args.settle_pos_mm,
                                                                  args.settle_rot_deg), args.pose_timeout_s, tick)
            if not ok:
                print(f"{PREFIX}   skipped: the TCP did not settle within {args.pose_timeout_s:g} s", flush=True)
                skipped.append(k)
                continue
            A, B, info = _capture(node, executor, detector, args)
            if A is None:
                print(f"{PREFIX}   skipped: board not found ({info})", flush=True)
                skipped.append(k)
                continue
            reached = he.transform_error(A, he.pose_matrix(pos, quat))
            tcp.append(A)
            boards.append(B)
            print(f"{PREFIX}   pair {len(tcp)}: settled after {time.monotonic() - t0:.1f} s ({reached[0]:.1f} mm, "
                  f"{reached[1]:.2f} deg from the target), {info}", flush=True)
        if node.target_pub is not None:  # back to the centre pose
            pos, quat = targets[0]
            _spin_until(executor, lambda: False, 2.0, lambda: node.publish_target(pos, quat))
    finally:
        executor.shutdown()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return tcp, boards, {"poses": len(targets), "skipped": skipped, "motion": args.motion}
