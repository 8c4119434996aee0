"""Declarative task description shared by the five tasks.

A task says which bodies it adds to the scene (:meth:`Task.build`), how an episode starts (reset-time
randomisation, :meth:`Task.sample_reset`), when it is solved (:meth:`Task.success`) and how it is rewarded: a
tuple of :class:`RewardTerm` (name, function, weight, declared bounds of the raw value, parameters) built from the
task's reward config dataclass. Rewards and success are computed on a *batched* :class:`TaskState` (leading
dimension N = number of environments), so the single and the vector environment run the same code. Raw and
weighted terms are reported separately. :meth:`Task.max_reward` and :func:`reward_spec` follow from the declared
bounds and weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any

import mujoco
import numpy as np
from residual_core.tasks import TASK_INSTRUCTIONS, TASK_OBJECTS, check_task
from scipy.spatial.transform import Rotation


@dataclass
class TaskState:
    """Batched simulator state that rewards, success predicates and experts read (base frame, N envs)."""

    tcp_pos: np.ndarray
    """(N, 3) TCP position."""
    tcp_mat: np.ndarray
    """(N, 3, 3) TCP rotation matrix (columns: TCP axes in the base frame)."""
    gripper_width: np.ndarray
    """(N,) distance between the finger pads (m, 0..0.08)."""
    obj_pos: dict[str, np.ndarray]
    """Object name -> (N, 3) position."""
    obj_mat: dict[str, np.ndarray]
    """Object name -> (N, 3, 3) rotation matrix."""
    joints: dict[str, np.ndarray] = field(default_factory=dict)
    """Task joint name (e.g. the drawer slide) -> (N,) position."""
    episode: dict[str, np.ndarray] = field(default_factory=dict)
    """Per-episode constants drawn at reset (e.g. the drawer's initial opening) -> (N,)."""
    action: np.ndarray | None = None
    """(N, 7) the action applied in the step that led to this state (None right after reset)."""

    @property
    def num_envs(self) -> int:
        return self.tcp_pos.shape[0]


@dataclass(frozen=True)
class RewardTerm:
    """One named, weighted reward term: ``weight * func(state, **params)``, the raw value within ``bounds``."""

    name: str
    """Key of the term in ``info['reward_terms']`` / ``info['reward_terms_weighted']``."""
    func: Callable[..., np.ndarray]
    """Function of (TaskState, **params) returning (N,) floats."""
    weight: float
    """Multiplier of the raw term in the total reward."""
    bounds: tuple[float, float]
    """Declared (lo, hi) range of the raw value (before weighting); a randomised test checks it holds."""
    params: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    """Keyword parameters of ``func``."""

    def __post_init__(self) -> None:
        lo, hi = self.bounds
        if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
            raise ValueError(f"reward term {self.name!r}: bounds must be finite with lo <= hi, got {self.bounds}")
        if not np.isfinite(self.weight):
            raise ValueError(f"reward term {self.name!r}: weight must be finite, got {self.weight}")

    def __call__(self, state: TaskState) -> np.ndarray:
        return np.asarray(self.func(state, **self.params), dtype=np.float64)

    @property
    def max_weighted(self) -> float:
        """Largest weighted value the bounds allow: ``weight * hi`` for a positive weight, else ``weight * lo``."""
        lo, hi = self.bounds
        return self.weight * (hi if self.weight > 0 else lo)


@dataclass
class ResetSample:
    """What a reset sets, besides the robot (all poses in the base frame, quaternions x, y, z, w)."""

    free_bodies: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    """Free joint name -> (pos (3,), quat_xyzw (4,))."""
    mocap: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    """Mocap body name -> (pos (3,), quat_xyzw (4,)) (static objects placed per episode)."""
    joints: dict[str, float] = field(default_factory=dict)
    """Scalar joint name -> position."""
    episode: dict[str, float] = field(default_factory=dict)
    """Per-episode constants exposed in ``TaskState.episode``."""


def yaw_quat(yaw: float) -> np.ndarray:
    """x, y, z, w quaternion of a rotation by ``yaw`` about z."""
    return Rotation.from_euler("z", yaw).as_quat()


def sample_separated_xy(
    rng: np.random.Generator,
    regions: list[tuple[tuple[float, float], tuple[float, float]]],
    min_dist: float,
    max_tries: int = 1000,
) -> list[np.ndarray]:
    """One xy point per region ((x_lo, x_hi), (y_lo, y_hi)), pairwise at least ``min_dist`` apart."""
    for _ in range(max_tries):
        pts = [np.array([rng.uniform(*xr), rng.uniform(*yr)]) for xr, yr in regions]
        if all(np.linalg.norm(a - b) >= min_dist for i, a in enumerate(pts) for b in pts[i + 1 :]):
            return pts
    raise RuntimeError(f"could not place {len(regions)} objects {min_dist} m apart in {regions}")


class Task:
    """Base class: subclasses set ``name``, ``horizon``, ``cfg``, ``reward_terms`` and implement the three methods."""

    name: str = ""
    horizon: int = 0
    """Episode length in control steps (20 Hz)."""
    task_joints: tuple[str, ...] = ()
    """Joints (besides the robot's) whose positions appear in ``TaskState.joints``."""
    episode_keys: tuple[str, ...] = ()
    """Keys of ``ResetSample.episode`` (fixed per task, so the vector env can preallocate)."""
    cfg: Any
    """The task's config dataclass (set by the subclass); its ``reward`` field is the task's reward config."""

    def __init__(self) -> None:
        check_task(self.name)
        if self.horizon <= 0:
            raise ValueError(f"task {self.name!r} needs a positive horizon, got {self.horizon}")

    @property
    def objects(self) -> tuple[str, ...]:
        """Ordered task objects (residual_core.tasks.TASK_OBJECTS); each is a site of that name in the scene."""
        return TASK_OBJECTS[self.name]

    @property
    def instruction(self) -> str:
        return TASK_INSTRUCTIONS[self.name]

    @property
    def reward_terms(self) -> tuple[RewardTerm, ...]:
        """The terms, built from the task's reward config (``self.cfg.reward``)."""
        raise NotImplementedError

    def max_reward(self) -> float:
        """Upper bound of the total reward: the sum over terms of ``weight`` times the bound that maximises it."""
        return float(sum(t.max_weighted for t in self.reward_terms))

    def success_value(self, state: TaskState) -> np.ndarray:
        """(N,) float: :meth:`success` as a 0/1 reward term (bounds (0, 1))."""
        return self.success(state).astype(np.float64)

    def build(self, spec: mujoco.MjSpec) -> None:
        """Add the task's bodies (with a site per task object and its marker) to ``spec``."""
        raise NotImplementedError

    def sample_reset(self, rng: np.random.Generator) -> ResetSample:
        """Draw the initial object placement of one episode."""
        raise NotImplementedError

    def success(self, state: TaskState) -> np.ndarray:
        """(N,) bool: is the task solved in this state."""
        raise NotImplementedError

    def rewards(self, state: TaskState) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(total (N,), raw terms, weighted terms) for ``state``."""
        raw = {t.name: t(state) for t in self.reward_terms}
        weighted = {t.name: t.weight * raw[t.name] for t in self.reward_terms}
        total = np.sum(np.stack(list(weighted.values()), axis=0), axis=0)
        return total, raw, weighted


def _jsonable(value: object) -> object:
    """Tuples, mappings and numpy scalars as lists, dicts and Python numbers (JSON round-trips them unchanged)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (tuple, list, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def reward_spec(task: Task) -> dict:
    """The task's full reward as JSON-able data, for checkpoint manifests.

    ``{"task", "config_type", "config", "terms": [{"name", "func", "weight", "bounds": [lo, hi], "params"}],
    "max_reward"}``: ``config`` is the reward config dataclass (``task.cfg.reward``) as a dict, ``terms`` the
    resolved terms (parameters derived from the task's geometry included), ``func`` the term function's
    ``module.qualname``.
    """
    cfg = task.cfg.reward
    terms = [
        {
            "name": t.name,
            "func": f"{t.func.__module__}.{t.func.__qualname__}",
            "weight": float(t.weight),
            "bounds": [float(t.bounds[0]), float(t.bounds[1])],
            "params": _jsonable(dict(t.params)),
        }
        for t in task.reward_terms
    ]
    return {
        "task": task.name,
        "config_type": type(cfg).__name__,
        "config": _jsonable(asdict(cfg)),
        "terms": terms,
        "max_reward": task.max_reward(),
    }
