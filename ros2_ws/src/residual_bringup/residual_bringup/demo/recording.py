"""MCAP recording of serialized ROS 2 messages (no rclpy): the file Foxglove, rosbag2 and ``rosbags`` read.

The demo's node subscribes with ``raw=True`` and hands each message's CDR bytes to :meth:`McapRecorder.write`,
so messages are stored exactly as they travelled (what rosbag2 does), without deserialising them in Python.
Profile ``ros2``, schemas ``ros2msg`` (see :mod:`residual_bringup.demo.msgdefs`), messages ``cdr``.
"""

from __future__ import annotations

import importlib
import threading
from collections import Counter
from pathlib import Path

from mcap.writer import CompressionType, Writer

from residual_bringup.demo.msgdefs import message_definition, split_type

DEFAULT_TOPICS: dict[str, str] = {
    "/sim/step": "std_msgs/msg/UInt64",
    "/sim/episode": "std_msgs/msg/String",
    "/joint_states": "sensor_msgs/msg/JointState",
    "/tcp_pose": "geometry_msgs/msg/PoseStamped",
    "/sim/object_poses_gt": "residual_interfaces/msg/ObjectPoseArray",
    "/objects/poses": "residual_interfaces/msg/ObjectPoseArray",
    "/base/action": "residual_interfaces/msg/EefAction",
    "/base/chunk": "residual_interfaces/msg/EefActionChunk",
    "/residual/action": "residual_interfaces/msg/EefAction",
    "/arbiter/command": "residual_interfaces/msg/ArbiterCommand",
    "/arbiter/correction": "residual_interfaces/msg/Correction",
    "/arbiter/target_pose": "geometry_msgs/msg/PoseStamped",
    "/arbiter/gripper": "std_msgs/msg/Float64",
    "/arbiter/markers": "visualization_msgs/msg/MarkerArray",
    "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
}
"""Topic -> message type recorded by default (the camera image and /clock only on request)."""

OPTIONAL_TOPICS: dict[str, str] = {
    "/clock": "rosgraph_msgs/msg/Clock",
    "/camera/image_raw": "sensor_msgs/msg/Image",
    "/camera/camera_info": "sensor_msgs/msg/CameraInfo",
    "/objects/pose_array": "geometry_msgs/msg/PoseArray",
}
"""More topics that may be asked for by name."""


def topic_types(names: list[str] | None) -> dict[str, str]:
    """Topic -> type for ``names`` (None: the defaults); ValueError naming unknown topics."""
    if names is None:
        return dict(DEFAULT_TOPICS)
    known = {**DEFAULT_TOPICS, **OPTIONAL_TOPICS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"cannot record {unknown}: known topics are {sorted(known)}")
    return {n: known[n] for n in names}


def message_class(type_name: str) -> type:
    """The Python class of ``pkg/msg/Name`` (imports ``pkg.msg``; rosidl_runtime_py is not available here)."""
    package, name = split_type(type_name)
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"message type {type_name} is not installed: {exc}") from None


class McapRecorder:
    """Writes messages of known topics to one MCAP file; thread-safe; :meth:`close` finishes the file."""

    def __init__(self, path: str | Path, topics: dict[str, str], compression: str = "zstd"):
        if compression.upper() not in CompressionType.__members__:
            raise ValueError(f"compression must be one of {[c.name.lower() for c in CompressionType]}, "
                             f"got {compression!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb")  # noqa: SIM115 (closed in close())
        self._writer = Writer(self._file, compression=CompressionType[compression.upper()])
        self._writer.start(profile="ros2", library="residual_bringup.demo")
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.channels: dict[str, int] = {}
        schemas: dict[str, int] = {}
        for topic, type_name in topics.items():
            split_type(type_name)
            if type_name not in schemas:
                schemas[type_name] = self._writer.register_schema(
                    name=type_name, encoding="ros2msg", data=message_definition(type_name).encode())
            self.channels[topic] = self._writer.register_channel(
                topic=topic, message_encoding="cdr", schema_id=schemas[type_name])
        self.closed = False

    def write(self, topic: str, data: bytes, log_time_ns: int, publish_time_ns: int | None = None) -> bool:
        """Store one serialized message; returns False (nothing written) after close or for an unknown topic."""
        with self._lock:
            if self.closed or topic not in self.channels:
                return False
            self._writer.add_message(channel_id=self.channels[topic], log_time=int(log_time_ns), data=bytes(data),
                                     publish_time=int(publish_time_ns if publish_time_ns is not None else log_time_ns),
                                     sequence=self.counts[topic])
            self.counts[topic] += 1
            return True

    def close(self) -> dict[str, int]:
        """Finish the file (summary, indexes); returns messages per topic."""
        with self._lock:
            if not self.closed:
                self._writer.finish()
                self._file.close()
                self.closed = True
        return dict(self.counts)
