"""The phase machine that drives every scripted expert, its style, and top-down grasp orientation geometry.

An expert reads the batched :class:`~franka_sim.tasks.base.TaskState` of its env (index ``i``) and outputs a
7-D action (residual_core.action layout). Its behaviour is a list of :class:`Phase`; a phase computes a
:class:`Target` TCP pose and gripper command from the *current* state, the machine servos the TCP towards it
(translation and rotation per step capped by the :class:`ExpertStyle`), and the phase ends when the target is
reached (and held long enough) or times out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from franka_sim.tasks.base import TaskState


@dataclass(frozen=True)
class ExpertStyle:
    """How an expert moves. The defaults are the clean scripted expert."""

    max_step: float = 0.02
    """Largest TCP translation per step (m)."""
    max_rot_step: float = 0.15
    """Largest TCP rotation per step (rad)."""
    pos_noise: float = 0.0
    """Std of Gaussian noise on the translation command (m)."""
    rot_noise: float = 0.0
    """Std of Gaussian noise on the rotation command (rad)."""
    pause_prob: float = 0.0
    """Per-step probability of starting a hesitation pause (zero motion, gripper held)."""
    pause_steps: tuple[int, int] = (2, 6)
    """Length range of a pause (steps)."""
    via_point_offset: float = 0.0
    """Half-range of a random via point (m, xy; z up to the same) visited before the first approach."""
    misalign_prob: float = 0.0
    """Probability per episode that a descent first goes to a laterally misaligned point, then corrects."""
    misalign_dist: float = 0.015
    """Lateral error of a misaligned descent (m)."""
    stall_steps: int | None = None
    """End a phase (after its min_steps) once its target has come no closer by 1 mm or 0.01 rad for this many steps
    in a row: a phase whose target the arm cannot reach within tolerance (the command clipped to a residual's bound,
    contact) then ends when the arm stops, which a policy imitating the expert can see, instead of at its max_steps
    timer, which it cannot. None (the default, the shipped experts and their demos): the timer only."""

    def __post_init__(self) -> None:
        if self.max_step <= 0 or self.max_rot_step <= 0:
            raise ValueError(f"max_step and max_rot_step must be > 0, got {self.max_step}, {self.max_rot_step}")
        if self.stall_steps is not None and self.stall_steps < 1:
            raise ValueError(f"stall_steps must be >= 1 or None, got {self.stall_steps}")
        for name in ("pos_noise", "rot_noise", "pause_prob", "via_point_offset", "misalign_prob", "misalign_dist"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class Target:
    """What a phase asks for at this step."""

    pos: np.ndarray
    mat: np.ndarray
    gripper: float
    tol: float = 0.008
    """Position tolerance (m) for the phase to count as reached."""
    rot_tol: float = 0.08
    """Orientation tolerance (rad)."""


@dataclass
class Phase:
    """A named phase: ``target(state, i, memory)`` plus completion rules."""

    name: str
    target: Callable[[TaskState, int, dict], Target]
    min_steps: int = 0
    """Steps the phase lasts at least (e.g. to let the gripper close)."""
    max_steps: int = 60
    """Steps after which the phase ends even if the target is not reached."""
    until: Callable[[TaskState, int, dict], bool] | None = None
    """Extra end condition (the phase ends when it is true, target reached or not)."""


PhaseBuilder = Callable[[ExpertStyle, np.random.Generator, dict], list[Phase]]
"""``build(style, rng, memory) -> phases`` of one episode (random style choices drawn from ``rng``)."""


def _yaw_candidates(mat: np.ndarray, axis: int, period: float) -> np.ndarray:
    """Top-down grasp orientations whose finger axis (TCP y) lines up with the object's ``axis`` modulo ``period``."""
    v = mat[:, axis]
    base = np.arctan2(v[1], v[0])
    return np.array([base + k * period for k in range(int(round(2 * np.pi / period)))])


def down_with_finger_axis(direction: np.ndarray) -> np.ndarray:
    """TCP rotation pointing down whose y (finger) axis is the horizontal ``direction``."""
    y = np.array([direction[0], direction[1], 0.0])
    y /= np.linalg.norm(y)
    z = np.array([0.0, 0.0, -1.0])
    return np.stack([np.cross(y, z), y, z], axis=1)


def closest_orientation(current: np.ndarray, candidates: list[np.ndarray]) -> np.ndarray:
    """The candidate rotation matrix nearest to ``current``."""
    angles = [np.linalg.norm(Rotation.from_matrix(c @ current.T).as_rotvec()) for c in candidates]
    return candidates[int(np.argmin(angles))]


def grasp_orientation_for_box(tcp_mat: np.ndarray, obj_mat: np.ndarray) -> np.ndarray:
    """Top-down grasp of a box: fingers along one of its horizontal face normals, nearest the current yaw."""
    yaws = _yaw_candidates(obj_mat, 0, np.pi / 2)
    cands = [down_with_finger_axis(np.array([np.cos(a), np.sin(a), 0.0])) for a in yaws]
    return closest_orientation(tcp_mat, cands)


class PhaseMachine:
    """Runs a list of phases over a task's privileged state; ``act(state, i)`` returns a 7-D action.

    ``build(style, rng, memory)`` makes the phase list of one episode (called at every :meth:`reset`).
    """

    def __init__(self, build: PhaseBuilder, style: ExpertStyle | None = None, rng: np.random.Generator | None = None):
        self.build = build
        self.style = style or ExpertStyle()
        self.rng = rng or np.random.default_rng()
        self.reset()

    def reset(self) -> None:
        """Start a new episode (the phase list is rebuilt, random style choices are drawn)."""
        self.memory: dict = {}
        self.phases: list[Phase] = self.build(self.style, self.rng, self.memory)
        self.phase_index = 0
        self.phase_steps = 0
        self._stall = (np.inf, np.inf, 0)  # best distance, best angle to the phase's target; steps without progress
        self.pause_left = 0
        self.last_gripper = 0.0

    @property
    def phase(self) -> str:
        return self.phases[self.phase_index].name if self.phase_index < len(self.phases) else "done"

    def act(self, state: TaskState, i: int = 0) -> np.ndarray:
        """Action for env ``i`` of ``state``."""
        if self.phase_index >= len(self.phases):
            return np.array([0, 0, 0, 0, 0, 0, self.last_gripper], dtype=np.float64)
        if self.pause_left > 0:
            self.pause_left -= 1
            return np.array([0, 0, 0, 0, 0, 0, self.last_gripper], dtype=np.float64)
        if self.style.pause_prob > 0 and self.rng.random() < self.style.pause_prob:
            self.pause_left = int(self.rng.integers(self.style.pause_steps[0], self.style.pause_steps[1] + 1)) - 1
            return np.array([0, 0, 0, 0, 0, 0, self.last_gripper], dtype=np.float64)

        phase = self.phases[self.phase_index]
        tgt = phase.target(state, i, self.memory)
        tcp_pos, tcp_mat = state.tcp_pos[i], state.tcp_mat[i]
        dp = tgt.pos - tcp_pos
        dr = Rotation.from_matrix(tgt.mat @ tcp_mat.T).as_rotvec()
        reached = np.linalg.norm(dp) < tgt.tol and np.linalg.norm(dr) < tgt.rot_tol
        self.phase_steps += 1
        done = (reached and self.phase_steps >= phase.min_steps) or self.phase_steps >= phase.max_steps
        if self.style.stall_steps is not None:
            dist, ang = float(np.linalg.norm(dp)), float(np.linalg.norm(dr))
            best_d, best_a, still = self._stall
            progress = dist < best_d - 1e-3 or ang < best_a - 1e-2
            self._stall = (min(dist, best_d) if progress else best_d, min(ang, best_a) if progress else best_a,
                           0 if progress else still + 1)
            if self._stall[2] >= self.style.stall_steps and self.phase_steps >= phase.min_steps:
                done = True
        if phase.until is not None and phase.until(state, i, self.memory):
            done = True
        if done:
            self.phase_index += 1
            self.phase_steps = 0
            self._stall = (np.inf, np.inf, 0)

        self.last_gripper = tgt.gripper
        return servo(dp, dr, tgt.gripper, self.style, self.rng)


def servo(dp: np.ndarray, dr: np.ndarray, gripper: float, style: ExpertStyle,
          rng: np.random.Generator | None = None) -> np.ndarray:
    """The 7-D action that moves the TCP by ``dp`` (m) and rotates it by the rotation vector ``dr`` (rad), each capped
    per step by ``style`` (with its noise when ``rng`` is given), and commands ``gripper``."""
    dp, dr = np.array(dp, dtype=np.float64), np.array(dr, dtype=np.float64)
    n = np.linalg.norm(dp)
    if n > style.max_step:
        dp *= style.max_step / n
    a = np.linalg.norm(dr)
    if a > style.max_rot_step:
        dr *= style.max_rot_step / a
    if rng is not None and style.pos_noise > 0:
        dp = dp + rng.normal(0.0, style.pos_noise, 3)
    if rng is not None and style.rot_noise > 0:
        dr = dr + rng.normal(0.0, style.rot_noise, 3)
    return np.concatenate([dp, dr, [gripper]])
