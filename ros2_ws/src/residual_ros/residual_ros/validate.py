"""Validation of every message a node takes in: one pure function per message kind, one place (no rclpy).

A node calls the function for the kind it received before it uses a single field; the function returns ``""`` when
the message is usable, else the reason it is not (one of :data:`REASONS`). A rejected message is dropped and counted
in the node's :class:`DropCounter` (published on /diagnostics), never fatal: a well-typed but hostile message (a
JointState with fewer positions than names, a quaternion of 1e200, a pose in another frame, a stamp an hour ahead)
must not reach numpy/scipy code that raises or overflows, and must not kill the node.

The functions read messages by attribute (``msg.header.frame_id``, ``msg.pose.position.x``, ...) and import no
message package, so they are tested on real messages and on plain stand-ins alike. The ``*_values_reason`` functions
apply the same checks to plain values, for the pure parts (input caches, the residual computer, the ground-truth
noise) that take values rather than messages and must refuse what the node did not already.

Stamps are judged against the node's own clock (``now_ns``: sim time under ``use_sim_time``): a stamp further ahead than
``InputLimits.max_future_s`` is from another clock or forged. How old a stamp may be depends on the input and is the
caller's (``max_age_s``).

Magnitudes are physical plausibility bounds, far outside anything an FR3 scene produces but far inside where float
arithmetic breaks: positions within ``max_position_m`` of the robot base (FR3 reach 0.855 m), joint positions within
``max_joint_rad`` (FR3 limits are within +-3.1 rad: franka_description fr3 joint limits), unit quaternions (norm within
``quat_norm_tol`` of 1), action components within ``max_action_abs``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from residual_ros.franka_interfaces import FRAMES

REASONS = (
    "wrong_frame", "not_finite", "out_of_range", "bad_quaternion", "length_mismatch", "too_few_joints",
    "stamp_future", "stamp_old", "bad_size", "bad_encoding", "bad_intrinsics", "bad_confidence", "bad_name",
    "too_many", "bad_status",
)
"""Every reason a validator may return ("bad_status": a simulator status (/sim/episode JSON) that does not parse, from
vla_base_node.episodes.parse_status)."""

IMAGE_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
"""Image encodings a node can decode (residual_ros.conversions) -> bytes per pixel."""

DISTORTION_LENGTHS = (0, 4, 5, 8, 12, 14)
"""Lengths of a distortion vector OpenCV accepts (k1 k2 p1 p2 [k3 [k4 k5 k6 [s1 s2 s3 s4 [tx ty]]]]); any other
length makes ``cv2.undistortPoints`` raise."""


@dataclass(frozen=True)
class InputLimits:
    """Plausibility bounds for inputs (see the module doc for where each comes from)."""

    max_position_m: float = 5.0
    """Largest |x|, |y|, |z| of a pose in the robot base frame (m)."""
    quat_norm_tol: float = 0.1
    """A quaternion's norm must be within this of 1 (consumers normalise what passes)."""
    max_joint_rad: float = 6.5
    """Largest |joint position| (rad; finger joints are metres, far below)."""
    max_joint_velocity: float = 20.0
    """Largest |joint velocity| (rad/s; the FR3's limits are 2.62-5.26 rad/s)."""
    max_action_abs: float = 10.0
    """Largest |component| of an EefAction (m, rad, gripper): beyond it an action is garbage, not a big step."""
    max_future_s: float = 1.0
    """Largest time a stamp may be ahead of the node's clock (s)."""
    max_objects: int = 64
    """Most objects in one ObjectPoseArray."""
    max_image_side: int = 8192
    """Largest image width or height (px)."""

    def __post_init__(self) -> None:
        for name in ("max_position_m", "quat_norm_tol", "max_joint_rad", "max_joint_velocity", "max_action_abs",
                     "max_future_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and > 0, got {value}")
        if self.max_objects < 1 or self.max_image_side < 1:
            raise ValueError("max_objects and max_image_side must be >= 1")


LIMITS = InputLimits()


def stamp_ns(stamp) -> int:
    """A builtin_interfaces/Time as integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _finite(values: Iterable[float]) -> bool:
    return all(math.isfinite(v) for v in values)


def judged_now(now_ns: int) -> int | None:
    """The clock reading stamps are judged against: ``now_ns``, or None (judge no stamp) while the clock reads 0, as a
    sim-time clock does before the first /clock message."""
    return int(now_ns) if now_ns > 0 else None


def stamp_reason(stamp, now_ns: int | None, max_age_s: float | None = None, limits: InputLimits = LIMITS) -> str:
    """"" or why ``stamp`` is not usable at ``now_ns`` (None: not judged): too far ahead, or older than
    ``max_age_s`` (None: any age)."""
    return time_ns_reason(stamp_ns(stamp), now_ns, max_age_s, limits)


def time_ns_reason(t_ns: int, now_ns: int | None, max_age_s: float | None = None, limits: InputLimits = LIMITS) -> str:
    """:func:`stamp_reason` for a time already in integer nanoseconds (e.g. a stamp carried in JSON)."""
    if now_ns is None:
        return ""
    age_ns = now_ns - int(t_ns)
    if age_ns < -limits.max_future_s * 1e9:
        return "stamp_future"
    if max_age_s is not None and age_ns > max_age_s * 1e9:
        return "stamp_old"
    return ""


def position_reason(x: float, y: float, z: float, limits: InputLimits = LIMITS) -> str:
    if not _finite((x, y, z)):
        return "not_finite"
    if max(abs(x), abs(y), abs(z)) > limits.max_position_m:
        return "out_of_range"
    return ""


def quaternion_reason(x: float, y: float, z: float, w: float, limits: InputLimits = LIMITS) -> str:
    if not _finite((x, y, z, w)):
        return "not_finite"
    if max(abs(x), abs(y), abs(z), abs(w)) > 2.0:  # before squaring: 1e200**2 overflows
        return "bad_quaternion"
    if abs(math.sqrt(x * x + y * y + z * z + w * w) - 1.0) > limits.quat_norm_tol:
        return "bad_quaternion"
    return ""


def pose_values_reason(pos: Sequence[float], quat_xyzw: Sequence[float], limits: InputLimits = LIMITS) -> str:
    """"" or why a position (3) and quaternion (4, x y z w) are not a usable pose: the check of :func:`pose_reason` on
    plain values, for the pure parts that receive values rather than messages."""
    if len(pos) != 3 or len(quat_xyzw) != 4:
        return "length_mismatch"
    return position_reason(*pos, limits=limits) or quaternion_reason(*quat_xyzw, limits=limits)


def pose_reason(pose, limits: InputLimits = LIMITS) -> str:
    """"" or why a geometry_msgs/Pose is not a usable pose."""
    p, q = pose.position, pose.orientation
    return position_reason(p.x, p.y, p.z, limits) or quaternion_reason(q.x, q.y, q.z, q.w, limits)


ROBOT_ROOT_FRAME = FRAMES.root
"""franka_description's URDF root: fixed to ``<arm_id>_link0`` with the identity; franka_robot_state_broadcaster stamps
the measured TCP pose (``current_pose``) in it (notes/franka-ros2-jazzy.md)."""

Frames = str | tuple[str, ...] | None
"""The frame a stamped input must be in: one name, names of frames identical to each other, or None (any)."""


def same_frames(frame_id: str) -> tuple[str, ...]:
    """``frame_id`` and the frames identical to it: a Franka base frame ``<arm_id>_link0`` is also the URDF root
    :data:`ROBOT_ROOT_FRAME`. What a node that works in ``frame_id`` accepts its pose inputs in."""
    return (frame_id, ROBOT_ROOT_FRAME) if frame_id.endswith("_link0") else (frame_id,)


def _frame_reason(header, frame_id: Frames) -> str:
    if frame_id is None:
        return ""
    frames = (frame_id,) if isinstance(frame_id, str) else frame_id
    return "" if header.frame_id in frames else "wrong_frame"


def pose_stamped_reason(msg, frame_id: Frames, now_ns: int | None = None, max_age_s: float | None = None,
                        limits: InputLimits = LIMITS) -> str:
    """A geometry_msgs/PoseStamped (the TCP pose, a target): frame (:data:`Frames`), pose, stamp."""
    return (_frame_reason(msg.header, frame_id) or pose_reason(msg.pose, limits)
            or stamp_reason(msg.header.stamp, now_ns, max_age_s, limits))


def joint_state_reason(msg, required: Sequence[str] = (), min_joints: int = 7, now_ns: int | None = None,
                       max_age_s: float | None = None, limits: InputLimits = LIMITS) -> str:
    """A sensor_msgs/JointState: as many positions as names (velocities: none or as many), the ``required`` names
    present (else at least ``min_joints`` positions, taken in order), finite, plausible, stamp."""
    return (joint_values_reason(msg.name, msg.position, msg.velocity, required, min_joints, limits)
            or stamp_reason(msg.header.stamp, now_ns, max_age_s, limits))


def joint_values_reason(names: Sequence[str], position: Sequence[float], velocity: Sequence[float],
                        required: Sequence[str] = (), min_joints: int = 7, limits: InputLimits = LIMITS) -> str:
    """The checks of :func:`joint_state_reason` on a JointState's name, position and velocity lists (no stamp)."""
    names, pos, vel = list(names), list(position), list(velocity)
    if (names and len(pos) != len(names)) or (len(vel) not in (0, len(pos))):
        return "length_mismatch"
    if len(pos) < min_joints or (required and names and not set(required) <= set(names)):
        return "too_few_joints"
    if any(not isinstance(n, str) for n in names):
        return "bad_name"
    if not _finite(pos) or not _finite(vel):
        return "not_finite"
    if any(abs(v) > limits.max_joint_rad for v in pos) or any(abs(v) > limits.max_joint_velocity for v in vel):
        return "out_of_range"
    return ""


def object_pose_reason(obj, limits: InputLimits = LIMITS) -> str:
    """One residual_interfaces/ObjectPose: a name, a confidence in [0, 1] and a usable pose, or the "not seen" entry
    (confidence 0 and an all-zero pose, as the pose estimator reports an object it did not see). A rejected object is
    treated as not seen (a dropout), the rest of its array is used."""
    p, q = obj.pose.position, obj.pose.orientation
    return object_values_reason(obj.name, (p.x, p.y, p.z), (q.x, q.y, q.z, q.w), obj.confidence, limits)


def confidence_reason(confidence: float) -> str:
    """A detection confidence must be a number in [0, 1]."""
    return "" if math.isfinite(confidence) and 0.0 <= confidence <= 1.0 else "bad_confidence"


def object_values_reason(name: str, pos: Sequence[float], quat_xyzw: Sequence[float], confidence: float,
                         limits: InputLimits = LIMITS) -> str:
    """The checks of :func:`object_pose_reason` on plain values (name, position, quaternion, confidence)."""
    if not isinstance(name, str) or not name or len(name) > 128:
        return "bad_name"
    reason = confidence_reason(confidence)
    if reason or (confidence == 0.0 and len(pos) == 3 and len(quat_xyzw) == 4
                  and all(v == 0.0 for v in (*pos, *quat_xyzw))):  # the "not seen" entry
        return reason
    return pose_values_reason(pos, quat_xyzw, limits)


def object_pose_array_reason(msg, frame_id: Frames, now_ns: int | None = None, max_age_s: float | None = None,
                             limits: InputLimits = LIMITS) -> str:
    """A residual_interfaces/ObjectPoseArray as a whole: frame, size, unique names, stamp (objects: see
    :func:`object_pose_reason`)."""
    if len(msg.objects) > limits.max_objects:
        return "too_many"
    names = [o.name for o in msg.objects]
    if len(set(names)) != len(names):
        return "bad_name"
    return _frame_reason(msg.header, frame_id) or stamp_reason(msg.header.stamp, now_ns, max_age_s, limits)


def eef_action_reason(msg, now_ns: int | None = None, limits: InputLimits = LIMITS) -> str:
    """A residual_interfaces/EefAction: 7 finite components of plausible size, a stamp not from the future.
    (The step against the episode's progress is the receiver's: see action_arbiter.arbiter.StepMatcher.)"""
    return action_values_reason(msg.action, limits) or stamp_reason(msg.header.stamp, now_ns, None, limits)


def action_values_reason(action: Sequence[float], limits: InputLimits = LIMITS) -> str:
    """The checks of :func:`eef_action_reason` on the 7 action values."""
    action = list(action)
    if len(action) != 7:
        return "length_mismatch"
    if not _finite(action):
        return "not_finite"
    if any(abs(v) > limits.max_action_abs for v in action):
        return "out_of_range"
    return ""


def gripper_reason(value: float) -> str:
    """A gripper command (the arbiter's, std_msgs/Float64 or ArbiterCommand.gripper) must be a number in [0, 1]."""
    if not math.isfinite(value):
        return "not_finite"
    return "" if 0.0 <= value <= 1.0 else "out_of_range"


def image_reason(msg, limits: InputLimits = LIMITS, size: tuple[int, int] | None = None) -> str:
    """A sensor_msgs/Image a node can decode: known encoding, sane size (``size``: exactly this width, height, e.g.
    the camera info's), ``step`` and ``data`` matching it."""
    if msg.encoding not in IMAGE_CHANNELS:
        return "bad_encoding"
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if not (0 < h <= limits.max_image_side and 0 < w <= limits.max_image_side):
        return "bad_size"
    if size is not None and (w, h) != tuple(size):
        return "bad_size"
    if step < w * IMAGE_CHANNELS[msg.encoding] or len(msg.data) < step * h:
        return "bad_size"
    return ""


def camera_info_reason(msg, limits: InputLimits = LIMITS) -> str:
    """A sensor_msgs/CameraInfo: sane size, finite intrinsics with positive focal lengths and the principal point
    on the image, finite distortion of a length OpenCV takes (:data:`DISTORTION_LENGTHS`)."""
    h, w = int(msg.height), int(msg.width)
    if not (0 < h <= limits.max_image_side and 0 < w <= limits.max_image_side):
        return "bad_size"
    k, d = list(msg.k), list(msg.d)
    if len(k) != 9 or not _finite(k) or not _finite(d) or len(d) not in DISTORTION_LENGTHS:
        return "bad_intrinsics"
    fx, cx, fy, cy = k[0], k[2], k[4], k[5]
    if not (fx > 0 and fy > 0 and 0 <= cx <= w and 0 <= cy <= h):
        return "bad_intrinsics"
    return ""


def arbiter_command_reason(msg, frame_id: Frames, limits: InputLimits = LIMITS) -> str:
    """A residual_interfaces/ArbiterCommand: frame; when ``valid``, a usable target and a gripper in [0, 1]."""
    if msg.valid:
        return (gripper_reason(msg.gripper) or _frame_reason(msg.header, frame_id)
                or pose_reason(msg.target, limits))
    return ""


class DropCounter:
    """Messages dropped per "topic/reason", for /diagnostics; :meth:`drop` says whether to log (first of a key, then
    at most every ``log_every``-th). A node's callback calls ``if drops.refuse(topic, reason, log): return``."""

    def __init__(self, log_every: int = 100):
        self.counts: Counter[str] = Counter()
        self.log_every = int(log_every)
        self._reported = 0

    def refuse(self, topic: str, reason: str, log: Callable[[str], object] | None = None, detail: str = "") -> bool:
        """False when ``reason`` is "" (the message is usable); else count it, log it (with ``detail``) through
        ``log`` when :meth:`drop` says so, and return True (the caller drops the message)."""
        if not reason:
            return False
        if self.drop(topic, reason) and log is not None:
            n = self.counts[f"{topic}/{reason}"]
            log(f"dropped a message on {topic}: {reason} ({n} so far; logged again every {self.log_every})"
                + (f": {detail}" if detail else ""))
        return True

    def take_new(self) -> int:
        """Drops since the previous call (for a diagnostics level per period)."""
        new, self._reported = self.total - self._reported, self.total
        return new

    def drop(self, topic: str, reason: str) -> bool:
        """Count one dropped message; True when this one should be logged."""
        key = f"{topic}/{reason}"
        self.counts[key] += 1
        n = self.counts[key]
        return n == 1 or n % self.log_every == 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def key_values(self) -> list[tuple[str, str]]:
        """("dropped <topic>/<reason>", count) pairs, sorted, and the total."""
        return [("dropped total", str(self.total))] + [(f"dropped {k}", str(v)) for k, v in sorted(self.counts.items())]
