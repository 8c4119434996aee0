"""The residual policy's observation: a flat float32 vector with a named, ordered layout (docs/CONTRACTS.md).

Per task object, in the task's order: ``obj/<name>/pos`` (3, base frame), ``obj/<name>/rot6d`` (6),
``obj/<name>/pos_tcp`` (3, object position in the TCP frame), ``obj/<name>/present`` (1; when 0 the pose
fields are 0); then ``proprio/joint_pos`` (7), ``proprio/joint_vel`` (7), ``proprio/gripper_width`` (1),
``proprio/tcp_pos`` (3), ``proprio/tcp_rot6d`` (6); then ``base_action`` (7).

One code path: :func:`build_observation` (one sample, as the ROS node calls it) goes through
:func:`build_observation_batch` (N samples, as the vectorised gym envs and the trainer call it).

NaN or inf in an input is not an error here: it passes through into the affected fields (a non-finite TCP
pose spoils every ``pos_tcp`` field too). The residual's output is then NaN and the safety envelope
rejects the action. A dropped-out object's pose fields are zero whatever its inputs hold.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from residual_core.action import ACTION_DIM
from residual_core.rotations import matrix_to_rot6d, quat_to_matrix

NUM_JOINTS = 7
OBJECT_FIELDS: tuple[tuple[str, int], ...] = (("pos", 3), ("rot6d", 6), ("pos_tcp", 3), ("present", 1))
PROPRIO_FIELDS: tuple[tuple[str, int], ...] = (
    ("proprio/joint_pos", NUM_JOINTS),
    ("proprio/joint_vel", NUM_JOINTS),
    ("proprio/gripper_width", 1),
    ("proprio/tcp_pos", 3),
    ("proprio/tcp_rot6d", 6),
)
BASE_ACTION_FIELD: tuple[str, int] = ("base_action", ACTION_DIM)
_OBJ_SIZE = sum(n for _, n in OBJECT_FIELDS)


@dataclass(frozen=True)
class ObservationLayout:
    """Ordered ``(name, size)`` fields of a flat observation vector. Equal layouts compare equal and hash alike."""

    fields: tuple[tuple[str, int], ...]
    """The fields in order; names unique and non-empty, sizes positive integers."""

    def __post_init__(self) -> None:
        try:
            fields = tuple((str(name), _positive_int(size)) for name, size in self.fields)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"layout fields must be (name, size) pairs with size a positive int: {exc}") from None
        names = [n for n, _ in fields]
        if any(not n for n in names):
            raise ValueError("layout field names must be non-empty")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate layout field names: {dupes}")
        object.__setattr__(self, "fields", fields)

    @functools.cached_property
    def _offsets(self) -> dict[str, slice]:
        out, start = {}, 0
        for name, size in self.fields:
            out[name] = slice(start, start + size)
            start += size
        return out

    @property
    def size(self) -> int:
        """Total length of the vector."""
        return sum(n for _, n in self.fields)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.fields)

    @property
    def object_names(self) -> tuple[str, ...]:
        """Object names in order, from the ``obj/<name>/pos`` fields."""
        return tuple(n[4:-4] for n, _ in self.fields if n.startswith("obj/") and n.endswith("/pos"))

    def slice(self, name: str) -> slice:
        """Where field ``name`` lies in the vector; ValueError naming the fields if it does not exist."""
        try:
            return self._offsets[name]
        except KeyError:
            raise ValueError(f"no field {name!r} in layout; fields: {', '.join(self.names)}") from None

    def split(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        """Views of each field of ``obs`` (D,) or (N, D), keyed by name."""
        obs = np.asarray(obs)
        if obs.shape[-1:] != (self.size,):
            raise ValueError(f"observation must have a last axis of size {self.size}, got shape {obs.shape}")
        return {name: obs[..., s] for name, s in self._offsets.items()}

    def to_list(self) -> list[list[str | int]]:
        """``[[name, size], ...]``: the form stored in checkpoint manifests."""
        return [[n, s] for n, s in self.fields]

    def to_json(self) -> str:
        return json.dumps(self.to_list())

    @classmethod
    def from_json(cls, data: str | Sequence) -> ObservationLayout:
        """From :meth:`to_json`'s string or :meth:`to_list`'s list."""
        items = json.loads(data) if isinstance(data, str) else data
        if not isinstance(items, list | tuple) or not all(isinstance(i, list | tuple) and len(i) == 2 for i in items):
            raise ValueError(f"a layout must be a list of [name, size] pairs, got {str(items)[:200]}")
        return cls(tuple((name, size) for name, size in items))

    def describe_mismatch(self, other: ObservationLayout) -> str:
        """Where ``other`` first differs from this (expected) layout, in words; "" when they are equal."""
        if self == other:
            return ""
        for i, (mine, theirs) in enumerate(zip(self.fields, other.fields, strict=False)):
            if mine != theirs:
                return (
                    f"field #{i} differs: expected {mine[0]!r} (size {mine[1]}), got {theirs[0]!r} (size {theirs[1]})"
                )
        if len(self.fields) > len(other.fields):
            missing = self.fields[len(other.fields)]
            return (
                f"field #{len(other.fields)} {missing[0]!r} (size {missing[1]}) is missing (got {len(other.fields)} "
                f"fields, expected {len(self.fields)})"
            )
        extra = other.fields[len(self.fields)]
        return (
            f"unexpected extra field #{len(self.fields)} {extra[0]!r} (size {extra[1]}) (got {len(other.fields)} "
            f"fields, expected {len(self.fields)})"
        )


def _positive_int(size) -> int:
    if isinstance(size, bool) or int(size) != size or int(size) <= 0:
        raise ValueError(f"size {size!r} is not a positive integer")
    return int(size)


def _check_object_names(object_names: Iterable[str]) -> tuple[str, ...]:
    if isinstance(object_names, str):
        raise ValueError(f"object_names must be a sequence of names, got the string {object_names!r}")
    names = tuple(object_names)
    for n in names:
        if not isinstance(n, str) or not n or "/" in n:
            raise ValueError(f"object name {n!r} must be a non-empty string without '/'")
    if len(set(names)) != len(names):
        raise ValueError(f"object names must be unique, got {names}")
    return names


@functools.lru_cache(maxsize=64)
def _layout_for(names: tuple[str, ...]) -> ObservationLayout:
    fields = [(f"obj/{o}/{f}", n) for o in names for f, n in OBJECT_FIELDS]
    return ObservationLayout(tuple(fields) + PROPRIO_FIELDS + (BASE_ACTION_FIELD,))


def make_layout(object_names: Sequence[str]) -> ObservationLayout:
    """The residual observation layout for these objects, in this order (CONTRACTS.md)."""
    return _layout_for(_check_object_names(object_names))


def layout_for_task(task: str) -> ObservationLayout:
    """:func:`make_layout` of the task's objects (``TASK_OBJECTS[task]``)."""
    from residual_core.tasks import TASK_OBJECTS, check_task

    return make_layout(TASK_OBJECTS[check_task(task)])


def _resolve_names(layout_or_object_names: ObservationLayout | Sequence[str]) -> tuple[str, ...]:
    if isinstance(layout_or_object_names, ObservationLayout):
        names = layout_or_object_names.object_names
        expected = _layout_for(_check_object_names(names))
        if layout_or_object_names != expected:
            raise ValueError(
                "can only build the standard residual layout (make_layout); this one differs: "
                + expected.describe_mismatch(layout_or_object_names)
            )
        return names
    return _check_object_names(layout_or_object_names)


@dataclass
class Proprio:
    """Robot proprioception at one instant (base frame)."""

    joint_pos: np.ndarray
    """Arm joint positions (7,), rad."""
    joint_vel: np.ndarray
    """Arm joint velocities (7,), rad/s."""
    gripper_width: float
    """Distance between the fingers, m."""
    tcp_pos: np.ndarray
    """TCP position (3,), m."""
    tcp_quat: np.ndarray
    """TCP orientation (4,), x, y, z, w."""

    def __post_init__(self) -> None:
        for name, size in (("joint_pos", NUM_JOINTS), ("joint_vel", NUM_JOINTS), ("tcp_pos", 3), ("tcp_quat", 4)):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.shape != (size,):
                raise ValueError(f"Proprio.{name} must have shape ({size},), got {value.shape}")
            setattr(self, name, value)
        width = np.asarray(self.gripper_width, dtype=np.float64)
        if width.size != 1:
            raise ValueError(f"Proprio.gripper_width must be a scalar, got shape {width.shape}")
        self.gripper_width = float(width.reshape(()))


def _arr(name: str, x, shape: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    return a


def build_observation_batch(
    object_names: ObservationLayout | Sequence[str],
    obj_pos: np.ndarray,
    obj_quat: np.ndarray,
    present: np.ndarray,
    joint_pos: np.ndarray,
    joint_vel: np.ndarray,
    gripper_width: np.ndarray,
    tcp_pos: np.ndarray,
    tcp_quat: np.ndarray,
    base_action: np.ndarray,
) -> np.ndarray:
    """(N, D) float32 observations laid out as ``make_layout(object_names)``.

    Shapes: obj_pos (N, K, 3), obj_quat (N, K, 4) x, y, z, w, present (N, K) bool (or 0/1), joint_pos and
    joint_vel (N, 7), gripper_width (N,) or (N, 1), tcp_pos (N, 3), tcp_quat (N, 4) x, y, z, w, base_action
    (N, 7); K = len(object_names). The quaternion of an absent object is ignored (may be all zero).
    """
    names = _resolve_names(object_names)
    k = len(names)
    base_action = np.asarray(base_action, dtype=np.float64)
    if base_action.ndim != 2:
        raise ValueError(f"base_action must have shape (N, {ACTION_DIM}), got {base_action.shape}")
    n = base_action.shape[0]
    base_action = _arr("base_action", base_action, (n, ACTION_DIM))
    obj_pos = _arr("obj_pos", obj_pos, (n, k, 3))
    obj_quat = _arr("obj_quat", obj_quat, (n, k, 4))
    present = np.asarray(present)
    if present.shape != (n, k):
        raise ValueError(f"present must have shape {(n, k)}, got {present.shape}")
    if present.dtype != np.bool_:
        if not np.all((present == 0) | (present == 1)):
            raise ValueError(f"present must be bool or 0/1, got values {np.unique(present)[:5]}")
        present = present.astype(bool)
    joint_pos = _arr("joint_pos", joint_pos, (n, NUM_JOINTS))
    joint_vel = _arr("joint_vel", joint_vel, (n, NUM_JOINTS))
    gripper_width = np.asarray(gripper_width, dtype=np.float64)
    if gripper_width.shape not in ((n,), (n, 1)):
        raise ValueError(f"gripper_width must have shape ({n},) or ({n}, 1), got {gripper_width.shape}")
    tcp_pos = _arr("tcp_pos", tcp_pos, (n, 3))
    tcp_quat = _arr("tcp_quat", tcp_quat, (n, 4))

    # One scipy call for the TCP and all objects; an absent object's quaternion is replaced by the identity.
    quats = np.concatenate([tcp_quat[:, None, :], np.where(present[..., None], obj_quat, [0.0, 0.0, 0.0, 1.0])], 1)
    mats = quat_to_matrix(quats)  # (N, 1 + K, 3, 3)
    tcp_rot, obj_rot = mats[:, 0], mats[:, 1:]

    obj = np.empty((n, k, _OBJ_SIZE))
    obj[..., 0:3] = obj_pos
    obj[..., 3:9] = matrix_to_rot6d(obj_rot)
    # Object position in the TCP frame: R_tcp^T (p_obj - p_tcp).
    obj[..., 9:12] = np.einsum("nji,nkj->nki", tcp_rot, obj_pos - tcp_pos[:, None, :])
    obj[..., 12] = 1.0
    obj[~present] = 0.0

    return np.concatenate(
        [
            obj.reshape(n, k * _OBJ_SIZE),
            joint_pos,
            joint_vel,
            gripper_width.reshape(n, 1),
            tcp_pos,
            matrix_to_rot6d(tcp_rot),
            base_action,
        ],
        axis=1,
        dtype=np.float32,
    )


ObjectPose = tuple[np.ndarray, np.ndarray]
"""(position (3,), quaternion (4,) x, y, z, w) in the base frame."""


def build_observation(
    layout_or_object_names: ObservationLayout | Sequence[str],
    object_poses: Mapping[str, ObjectPose | None],
    proprio: Proprio,
    base_action: np.ndarray,
) -> np.ndarray:
    """(D,) float32 observation of one instant, via :func:`build_observation_batch`.

    ``object_poses`` maps object name to ``(pos, quat_xyzw)``; an object that is missing or maps to None is
    dropped out (present 0, pose fields 0). A name that is not one of the layout's objects is a ValueError.
    """
    names = _resolve_names(layout_or_object_names)
    unknown = [o for o in object_poses if o not in names]
    if unknown:
        raise ValueError(f"unknown object name(s) {unknown}; this layout's objects are {list(names)}")
    k = len(names)
    obj_pos = np.zeros((1, k, 3))
    obj_quat = np.zeros((1, k, 4))
    present = np.zeros((1, k), dtype=bool)
    for i, o in enumerate(names):
        pose = object_poses.get(o)
        if pose is None:
            continue
        if len(pose) != 2:
            raise ValueError(f"pose of {o!r} must be (pos, quat_xyzw), got {len(pose)} items")
        obj_pos[0, i] = _arr(f"position of {o!r}", pose[0], (3,))
        obj_quat[0, i] = _arr(f"quaternion of {o!r}", pose[1], (4,))
        present[0, i] = True
    if not isinstance(proprio, Proprio):
        raise ValueError(f"proprio must be a Proprio, got {type(proprio).__name__}")
    return build_observation_batch(
        names,
        obj_pos,
        obj_quat,
        present,
        proprio.joint_pos[None],
        proprio.joint_vel[None],
        np.array([proprio.gripper_width]),
        proprio.tcp_pos[None],
        proprio.tcp_quat[None],
        _arr("base_action", base_action, (ACTION_DIM,))[None],
    )[0]


# --- Run-time dropout: when is an object pose present? (docs/CONTRACTS.md, "Run-time dropout") -------------------

ABSENT_REASONS: tuple[str, ...] = ("missing", "invalid", "stale", "low_confidence")
"""Why an object is a dropout, in the order they are checked."""


@dataclass(frozen=True)
class PoseFreshness:
    """When an object pose counts as present: the one definition used by training's perception model (through
    :func:`present_mask`), the residual node, the base node's input cache and the arbiter."""

    timeout_s: float = 0.25
    """A pose older than this (s, from the earlier of its measurement and its arrival) is stale: a dropout."""
    min_confidence: float = 0.5
    """A pose with a lower detection confidence is a dropout."""

    def __post_init__(self) -> None:
        if not (np.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError(f"timeout_s must be finite and > 0, got {self.timeout_s}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in [0, 1], got {self.min_confidence}")


def absent_reasons(obj_pos, obj_quat, arrived, confidence=None, age_s=None,
                   freshness: PoseFreshness = PoseFreshness()) -> np.ndarray:
    """Per object, "" when present, else the first of ABSENT_REASONS that applies (same shape as ``arrived``).

    ``obj_pos`` (..., 3), ``obj_quat`` (..., 4) x, y, z, w, ``arrived`` (...) bool: a pose was received at all;
    ``confidence`` (...) detection confidence (None: 1); ``age_s`` (...) seconds since the measurement (None: 0; a
    negative age means the clock went back, e.g. a new simulated episode: stale). Invalid: not finite, or a
    (near) zero quaternion.
    """
    arrived = np.asarray(arrived, dtype=bool)
    pos = np.asarray(obj_pos, dtype=np.float64)
    quat = np.asarray(obj_quat, dtype=np.float64)
    conf = np.ones(arrived.shape) if confidence is None else np.asarray(confidence, dtype=np.float64)
    age = np.zeros(arrived.shape) if age_s is None else np.asarray(age_s, dtype=np.float64)
    finite_q = np.all(np.isfinite(quat), axis=-1)
    qmax = np.max(np.abs(np.where(finite_q[..., None], quat, 0.0)), axis=-1)
    valid = np.all(np.isfinite(pos), axis=-1) & finite_q & np.isfinite(conf) & (qmax > 1e-9)
    fresh = (age >= 0.0) & (age <= freshness.timeout_s)
    out = np.full(arrived.shape, "", dtype=object)
    out[~(conf >= freshness.min_confidence)] = "low_confidence"
    out[~fresh] = "stale"
    out[~valid] = "invalid"
    out[~arrived] = "missing"
    return out


def present_mask(obj_pos, obj_quat, arrived, confidence=None, age_s=None,
                 freshness: PoseFreshness = PoseFreshness()) -> np.ndarray:
    """(...) bool: the objects :func:`absent_reasons` finds present."""
    return absent_reasons(obj_pos, obj_quat, arrived, confidence, age_s, freshness) == ""
