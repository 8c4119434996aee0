"""The latest robot and scene inputs, turned into the observation dict a backend's ``infer`` receives.

Pure Python (no rclpy): the node converts messages to numpy and calls the ``update_*`` methods; a worker
thread takes :meth:`InputCache.snapshot` for step t. Layout of the observation: see
:mod:`vla_base_node.backends`.

Every ``update_*`` first checks the values with :mod:`residual_ros.validate` (the node has checked the message, with
its frame and stamp, already) and stores nothing when they are unusable: it returns the reason, and the previous
value stands (an object refused is not seen in this message; its previous pose ages out by ``freshness``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from residual_core.observation import PoseFreshness, absent_reasons
from residual_ros.validate import LIMITS, joint_values_reason, object_values_reason, pose_values_reason

FR3_ARM_JOINTS = tuple(f"fr3_joint{i}" for i in range(1, 8))
FR3_FINGER_JOINTS = ("fr3_finger_joint1", "fr3_finger_joint2")


@dataclass
class InputCache:
    """Latest joint state, TCP pose, object poses and image, with their stamps (seconds)."""

    instruction: str
    """Language instruction sent with every observation."""
    arm_joints: tuple[str, ...] = FR3_ARM_JOINTS
    """Arm joint names in order; when a JointState lacks them, its first 7 positions are used."""
    finger_joints: tuple[str, ...] = FR3_FINGER_JOINTS
    """Finger joints whose positions sum to the gripper opening width (m)."""
    object_names: tuple[str, ...] = ()
    """Objects every observation lists (absent ones as not present); empty: whatever arrived."""
    freshness: PoseFreshness = field(default_factory=PoseFreshness)
    """When an object pose counts as present (residual_core.observation's one definition: age, confidence,
    validity), the same rule as the residual node's."""
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.arm_joints) != 7:
            raise ValueError(f"arm_joints must name 7 joints, got {len(self.arm_joints)}: {self.arm_joints}")
        self._joint_pos: np.ndarray | None = None
        self._joint_vel = np.zeros(7)
        self._gripper_width = np.zeros(1)
        self._tcp: tuple[np.ndarray, np.ndarray, float] | None = None
        self._objects: dict[str, tuple[np.ndarray, float, float]] = {}
        self._image: tuple[np.ndarray, float] | None = None

    def update_joint_state(self, names: Sequence[str], position: Sequence[float], velocity: Sequence[float]) -> str:
        """Store arm joint positions/velocities and the gripper width; returns "" or why nothing was stored
        (residual_ros.validate's reasons; "too_few_joints": neither the arm joints' names nor 7 unnamed positions)."""
        reason = joint_values_reason(names, position, velocity, min_joints=1)
        if reason:
            return reason
        pos, vel = np.asarray(position, dtype=np.float64), np.asarray(velocity, dtype=np.float64)
        index = {n: i for i, n in enumerate(names)}
        if all(n in index for n in self.arm_joints):
            arm = [index[n] for n in self.arm_joints]
        elif len(pos) >= 7:
            arm = list(range(7))
        else:
            return "too_few_joints"
        fingers = [index[n] for n in self.finger_joints if n in index]
        with self._lock:
            self._joint_pos = pos[arm]
            self._joint_vel = vel[arm] if len(vel) == len(pos) else np.zeros(7)
            if fingers:
                self._gripper_width = np.array([float(np.sum(pos[fingers]))])
        return ""

    def update_tcp_pose(self, pos: Sequence[float], quat_xyzw: Sequence[float], stamp_s: float) -> str:
        """Store the TCP pose; returns "" or why it was not stored."""
        reason = pose_values_reason(pos, quat_xyzw)
        if reason:
            return reason
        with self._lock:
            self._tcp = (np.asarray(pos, dtype=np.float64), np.asarray(quat_xyzw, dtype=np.float64), stamp_s)
        return ""

    def update_objects(self, objects: Sequence[tuple[str, Sequence[float], float]], stamp_s: float) -> dict[str, str]:
        """``objects``: (name, pose (7,) pos + quat xyzw, confidence) each, all measured at ``stamp_s``. Returns the
        objects refused, name -> reason (not seen in this message). Objects outside ``object_names`` (when given) are
        skipped; without ``object_names`` at most ``LIMITS.max_objects`` names are kept."""
        refused = {}
        with self._lock:
            for name, pose, confidence in objects:
                if self.object_names and name not in self.object_names:
                    continue
                reason = ("length_mismatch" if len(pose) != 7
                          else object_values_reason(name, pose[:3], pose[3:], confidence))
                if not reason and name not in self._objects and len(self._objects) >= LIMITS.max_objects:
                    reason = "too_many"
                if reason:
                    refused[str(name)] = reason
                    continue
                self._objects[name] = (np.asarray(pose, dtype=np.float64), float(confidence), stamp_s)
        return refused

    def update_image(self, image: np.ndarray, stamp_s: float) -> None:
        with self._lock:
            self._image = (image, stamp_s)

    def missing(self) -> list[str]:
        """Inputs an observation needs that have not arrived yet."""
        out = []
        if self._tcp is None:
            out.append("tcp_pose")
        if self._joint_pos is None:
            out.append("joint_states")
        return out

    def snapshot(self, step: int, now_s: float) -> dict | None:
        """The observation for ``step`` (see vla_base_node.backends), or None while required inputs are missing."""
        with self._lock:
            if self._tcp is None or self._joint_pos is None:
                return None
            names = self.object_names or tuple(sorted(self._objects))
            objects, present = {}, {}
            for name in names:
                entry = self._objects.get(name)
                fresh = entry is not None and absent_reasons(entry[0][:3], entry[0][3:7], True, entry[1],
                                                             now_s - entry[2], self.freshness) == ""
                objects[name] = entry[0].copy() if fresh else np.zeros(7)
                present[name] = bool(fresh)
            return {
                "instruction": self.instruction,
                "step": int(step),
                "state": {
                    "joint_pos": self._joint_pos.copy(),
                    "joint_vel": self._joint_vel.copy(),
                    "gripper_width": self._gripper_width.copy(),
                    "tcp_pos": self._tcp[0].copy(),
                    "tcp_quat": self._tcp[1].copy(),
                    "objects": objects,
                    "object_present": present,
                },
                "image": None if self._image is None else self._image[0],
            }
