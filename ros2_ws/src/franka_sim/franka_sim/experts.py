"""Scripted experts (privileged state machines) for the five tasks, and a human-teleop-like demo generator.

An expert reads the batched :class:`~franka_sim.tasks.base.TaskState` of its env (index ``i``) and outputs a
7-D action (residual_core.action layout). Each task's expert is a list of phases; a phase computes a target
TCP pose and gripper command from the *current* state, the expert servos the TCP towards it (translation and
rotation per step capped), and the phase ends when the target is reached (and held long enough) or times out.

:func:`teleop_demo` runs an expert with an :class:`ExpertStyle` that imitates a human teleoperator: per-episode
speed, Gaussian action noise, hesitation pauses, a random via point on the approach, and occasional
misaligned descents that are then corrected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from franka_sim.tasks import objects as task_objects
from franka_sim.tasks.base import TaskState
from franka_sim.tasks.cube_lift import CUBE_HALF
from franka_sim.tasks.objects import HANDLE_HALF
from franka_sim.tasks.stack_cube import BASE_HALF
from franka_sim.tasks.stand_cup_up import GRASP_OFFSET as CUP_GRASP_OFFSET


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

    def __post_init__(self) -> None:
        if self.max_step <= 0 or self.max_rot_step <= 0:
            raise ValueError(f"max_step and max_rot_step must be > 0, got {self.max_step}, {self.max_rot_step}")
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


class ScriptedExpert:
    """A phase machine over a task's privileged state; ``act(state, i)`` returns a 7-D action."""

    def __init__(self, task: str, style: ExpertStyle | None = None, rng: np.random.Generator | None = None):
        if task not in _BUILDERS:
            raise ValueError(f"no expert for task {task!r}; known: {sorted(_BUILDERS)}")
        self.task = task
        self.style = style or ExpertStyle()
        self.rng = rng or np.random.default_rng()
        self.reset()

    def reset(self) -> None:
        """Start a new episode (the phase list is rebuilt, random style choices are drawn)."""
        self.memory: dict = {}
        self.phases: list[Phase] = _BUILDERS[self.task](self.style, self.rng, self.memory)
        self.phase_index = 0
        self.phase_steps = 0
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
        if phase.until is not None and phase.until(state, i, self.memory):
            done = True
        if done:
            self.phase_index += 1
            self.phase_steps = 0

        n = np.linalg.norm(dp)
        if n > self.style.max_step:
            dp *= self.style.max_step / n
        a = np.linalg.norm(dr)
        if a > self.style.max_rot_step:
            dr *= self.style.max_rot_step / a
        if self.style.pos_noise > 0:
            dp = dp + self.rng.normal(0.0, self.style.pos_noise, 3)
        if self.style.rot_noise > 0:
            dr = dr + self.rng.normal(0.0, self.style.rot_noise, 3)
        self.last_gripper = tgt.gripper
        return np.concatenate([dp, dr, [tgt.gripper]])


# ---------------------------------------------------------------------------------------------- phase builders
def _via_phase(style: ExpertStyle, rng: np.random.Generator) -> list[Phase]:
    if style.via_point_offset <= 0:
        return []
    off = rng.uniform(-style.via_point_offset, style.via_point_offset, 3)
    off[2] = abs(off[2])

    def target(s: TaskState, i: int, mem: dict) -> Target:
        if "via" not in mem:
            mem["via"] = s.tcp_pos[i] + off
        return Target(mem["via"], s.tcp_mat[i], 0.0, tol=0.02, rot_tol=np.pi)

    return [Phase("via_point", target, max_steps=25)]


def _pick_phases(style: ExpertStyle, rng: np.random.Generator, obj: str, half: float) -> list[Phase]:
    """Hover above a box-shaped object, descend, close, lift to 0.12 m above the table."""
    misalign = None
    if rng.random() < style.misalign_prob:
        ang = rng.uniform(0, 2 * np.pi)
        misalign = style.misalign_dist * np.array([np.cos(ang), np.sin(ang), 0.0])

    def grasp_mat(s: TaskState, i: int, mem: dict) -> np.ndarray:
        if "grasp_mat" not in mem or not mem.get("grasp_locked", False):
            mem["grasp_mat"] = grasp_orientation_for_box(s.tcp_mat[i], s.obj_mat[obj][i])
        return mem["grasp_mat"]

    def above(s, i, mem):
        return Target(s.obj_pos[obj][i] + [0, 0, 0.1], grasp_mat(s, i, mem), 0.0, tol=0.015, rot_tol=0.1)

    def wrong(s, i, mem):
        return Target(s.obj_pos[obj][i] + misalign + [0, 0, 0.03], grasp_mat(s, i, mem), 0.0, tol=0.006)

    def descend(s, i, mem):
        return Target(s.obj_pos[obj][i] + [0, 0, -0.002], grasp_mat(s, i, mem), 0.0, tol=0.005, rot_tol=0.05)

    def close(s, i, mem):
        mem["grasp_locked"] = True
        if "close_pos" not in mem:
            mem["close_pos"] = s.tcp_pos[i].copy()
        return Target(mem["close_pos"], mem["grasp_mat"], 1.0, tol=0.01, rot_tol=0.1)

    def lift(s, i, mem):
        p = mem["close_pos"].copy()
        p[2] = 0.12 + half
        return Target(p, mem["grasp_mat"], 1.0, tol=0.02, rot_tol=0.1)

    phases = [Phase("above", above, max_steps=50)]
    if misalign is not None:
        phases.append(Phase("misaligned", wrong, min_steps=3, max_steps=30))
    phases += [
        Phase("descend", descend, max_steps=40),
        Phase("close", close, min_steps=6, max_steps=10),
        Phase("lift", lift, max_steps=40),
    ]
    return phases


def _place_phases(
    obj: str,
    place_xy: Callable[[TaskState, int], np.ndarray],
    place_z: Callable[[TaskState, int], float],
    carry_z: float,
) -> list[Phase]:
    """Carry a held object above a place point (object-centred), lower it, open, retreat upwards."""

    def tcp_for_obj(s: TaskState, i: int, obj_target: np.ndarray) -> np.ndarray:
        return obj_target + (s.tcp_pos[i] - s.obj_pos[obj][i])

    def carry(s, i, mem):
        t = np.array([*place_xy(s, i), carry_z])
        return Target(tcp_for_obj(s, i, t), mem["grasp_mat"], 1.0, tol=0.008, rot_tol=0.1)

    def lower(s, i, mem):
        t = np.array([*place_xy(s, i), place_z(s, i)])
        return Target(tcp_for_obj(s, i, t), mem["grasp_mat"], 1.0, tol=0.004, rot_tol=0.1)

    def release(s, i, mem):
        if "release_pos" not in mem:
            mem["release_pos"] = s.tcp_pos[i].copy()
        return Target(mem["release_pos"], mem["grasp_mat"], 0.0, tol=0.01, rot_tol=0.2)

    def retreat(s, i, mem):
        return Target(mem["release_pos"] + [0, 0, 0.1], mem["grasp_mat"], 0.0, tol=0.01, rot_tol=0.2)

    return [
        Phase("carry", carry, max_steps=60),
        Phase("lower", lower, min_steps=2, max_steps=30),
        Phase("release", release, min_steps=5, max_steps=8),
        Phase("retreat", retreat, max_steps=100),
    ]


def _cube_lift(style, rng, mem) -> list[Phase]:
    phases = _via_phase(style, rng) + _pick_phases(style, rng, "cube", CUBE_HALF)
    phases[-1] = Phase("lift", phases[-1].target, max_steps=200)
    return phases


def _pick_place(style, rng, mem) -> list[Phase]:
    half = CUBE_HALF
    return (
        _via_phase(style, rng)
        + _pick_phases(style, rng, "cube", half)
        + _place_phases("cube", lambda s, i: s.obj_pos["target"][i][:2], lambda s, i: half + 0.006, carry_z=0.12)
    )


def _stack_cube(style, rng, mem) -> list[Phase]:
    half = CUBE_HALF
    return (
        _via_phase(style, rng)
        + _pick_phases(style, rng, "cube", half)
        + _place_phases(
            "cube",
            lambda s, i: s.obj_pos["base_cube"][i][:2],
            lambda s, i: s.obj_pos["base_cube"][i][2] + BASE_HALF + half + 0.006,
            carry_z=0.16,
        )
    )


def _close_drawer(style, rng, mem) -> list[Phase]:
    def push_mat(s, i, mem):
        if "push_mat" not in mem:
            y_d = s.obj_mat["drawer_handle"][i][:, 1]
            cands = [down_with_finger_axis(y_d), down_with_finger_axis(-y_d)]
            mem["push_mat"] = closest_orientation(s.tcp_mat[i], cands)
        return mem["push_mat"]

    def frame(s, i):
        return s.obj_pos["drawer_handle"][i], s.obj_mat["drawer_handle"][i][:, 0]

    def above(s, i, mem):
        h, x_d = frame(s, i)
        return Target(h + 0.06 * x_d + [0, 0, 0.12], push_mat(s, i, mem), 1.0, tol=0.02, rot_tol=0.1)

    def front(s, i, mem):
        h, x_d = frame(s, i)
        return Target(h + 0.06 * x_d + [0, 0, 0.03], push_mat(s, i, mem), 1.0, tol=0.008)

    def push(s, i, mem):
        h, x_d = frame(s, i)
        # Aim 3 cm past the panel face (pull depth + finger half-thickness), so the hand keeps pushing.
        return Target(h - (HANDLE_HALF[0] + 0.0105 + 0.03) * x_d + [0, 0, 0.03], push_mat(s, i, mem), 1.0, tol=0.003)

    return _via_phase(style, rng) + [
        Phase("above", above, max_steps=50),
        Phase("front", front, max_steps=40),
        Phase("push", push, max_steps=200),
    ]


def _stand_cup_up(style, rng, mem) -> list[Phase]:
    lift_z = 0.19
    # TCP height that puts the upright cup's bottom 5 mm above the table: grasp offset + half height + 5 mm.
    place_z = CUP_GRASP_OFFSET[2] + task_objects.CUP_HALF_HEIGHT + 0.005
    width = 2 * task_objects.CUP_APOTHEM

    def grasp_point(s, i):
        return s.obj_pos["cup"][i] + s.obj_mat["cup"][i] @ np.asarray(CUP_GRASP_OFFSET)

    def grasp_mat(s, i, mem):
        # Fingers across the lying cup (finger axis horizontal, normal to the cup axis a), the hand tilted 45 degrees
        # towards the cup's bottom about the finger axis: turning it by +90 degrees about u = a x z then stands the
        # cup up and leaves the hand tilted 45 degrees the other way (never horizontal, which the wrist cannot reach).
        if not mem.get("locked", False):
            a = s.obj_mat["cup"][i][:, 2].copy()
            a[2] = 0.0
            a /= np.linalg.norm(a)
            u = np.cross(a, [0.0, 0.0, 1.0])
            tilt = Rotation.from_rotvec(-np.pi / 4 * u).as_matrix()
            cands = [tilt @ down_with_finger_axis(u), tilt @ down_with_finger_axis(-u)]
            mem["grasp_mat"] = closest_orientation(s.tcp_mat[i], cands)
            mem["axis"] = a
        return mem["grasp_mat"]

    def above(s, i, mem):
        gm = grasp_mat(s, i, mem)
        return Target(grasp_point(s, i) - 0.1 * gm[:, 2], gm, 0.0, tol=0.015, rot_tol=0.1)

    def descend(s, i, mem):
        return Target(grasp_point(s, i), grasp_mat(s, i, mem), 0.0, tol=0.005, rot_tol=0.05)

    def close(s, i, mem):
        mem["locked"] = True
        if "close_pos" not in mem:
            mem["close_pos"] = s.tcp_pos[i].copy()
        return Target(mem["close_pos"], mem["grasp_mat"], 1.0, tol=0.01)

    def lift(s, i, mem):
        p = mem["close_pos"].copy()
        p[2] = lift_z
        return Target(p, mem["grasp_mat"], 1.0, tol=0.015)

    def upright_mat(mem) -> np.ndarray:
        a = mem["axis"]
        u = np.cross(a, [0.0, 0.0, 1.0])
        u /= np.linalg.norm(u)
        return Rotation.from_rotvec(u * np.pi / 2).as_matrix() @ mem["grasp_mat"]

    def turn(s, i, mem):
        p = mem["close_pos"].copy()
        p[2] = lift_z
        return Target(p, upright_mat(mem), 1.0, tol=0.01, rot_tol=0.04)

    def lower(s, i, mem):
        p = mem["close_pos"].copy()
        p[2] = place_z
        return Target(p, upright_mat(mem), 1.0, tol=0.004, rot_tol=0.05)

    def release(s, i, mem):
        if "release_pos" not in mem:
            mem["release_pos"] = s.tcp_pos[i].copy()
        return Target(mem["release_pos"], upright_mat(mem), 0.0, tol=0.01, rot_tol=0.2)

    def retreat(s, i, mem):
        back = mem["release_pos"] - 0.1 * mem["axis"] + [0, 0, 0.05]
        return Target(back, upright_mat(mem), 0.0, tol=0.01, rot_tol=0.2)

    return _via_phase(style, rng) + [
        Phase("above", above, max_steps=50),
        Phase("descend", descend, max_steps=40),
        Phase("close", close, min_steps=8, max_steps=14),
        Phase("lift", lift, max_steps=40),
        Phase("turn", turn, max_steps=40),
        Phase("lower", lower, min_steps=2, max_steps=30),
        Phase("release", release, min_steps=5, max_steps=8,
              until=lambda s, i, mem: s.gripper_width[i] > width + 0.006),
        Phase("retreat", retreat, max_steps=100),
    ]


_BUILDERS: dict[str, Callable[[ExpertStyle, np.random.Generator, dict], list[Phase]]] = {
    "cube_lift": _cube_lift,
    "pick_place": _pick_place,
    "stack_cube": _stack_cube,
    "close_drawer": _close_drawer,
    "stand_cup_up": _stand_cup_up,
}


# ---------------------------------------------------------------------------------------------- rollouts
@dataclass
class Episode:
    """One rolled-out episode."""

    task: str
    seed: int
    observations: list[dict[str, np.ndarray]] = field(default_factory=list)
    """Observation before each action, plus the final one (len = len(actions) + 1)."""
    actions: list[np.ndarray] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    success: bool = False
    phases: list[str] = field(default_factory=list)
    """The expert's phase at each step."""

    @property
    def length(self) -> int:
        return len(self.rewards)


def run_expert_episode(env, expert: ScriptedExpert, seed: int, record: bool = True) -> Episode:
    """Roll out ``expert`` in a FrankaTaskEnv from ``reset(seed=seed)`` until the episode ends."""
    obs, info = env.reset(seed=seed)
    expert.reset()
    ep = Episode(task=env.task, seed=seed)
    if record:
        ep.observations.append(obs)
    done = False
    while not done:
        state = env.task_state()
        ep.phases.append(expert.phase)
        action = expert.act(state, 0)
        obs, reward, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        if record:
            ep.observations.append(obs)
            ep.actions.append(action)
        ep.rewards.append(reward)
    ep.success = bool(info["success"])
    return ep


def teleop_style(rng: np.random.Generator) -> ExpertStyle:
    """A random human-teleop-like style: slower or faster, noisy, hesitant, sometimes misaligned."""
    speed = rng.uniform(0.5, 1.0)
    return ExpertStyle(
        max_step=0.02 * speed,
        max_rot_step=0.15 * speed,
        pos_noise=rng.uniform(0.001, 0.003),
        rot_noise=rng.uniform(0.005, 0.02),
        pause_prob=rng.uniform(0.0, 0.04),
        pause_steps=(2, 8),
        via_point_offset=rng.uniform(0.0, 0.08),
        misalign_prob=0.3,
        misalign_dist=rng.uniform(0.01, 0.025),
    )


def teleop_demo(env, seed: int, rng: np.random.Generator | None = None, max_attempts: int = 1,
                keep_failures: bool = False) -> Episode | None:
    """A human-teleop-like demonstration on ``env`` (a FrankaTaskEnv) from ``reset(seed=seed)``.

    Draws a random :func:`teleop_style` per attempt (seeded from ``seed`` unless ``rng`` is given) and runs the
    task's expert with it. Tries up to ``max_attempts`` styles; returns the first successful episode, the last
    failed one if ``keep_failures``, else None.
    """
    rng = rng or np.random.default_rng(seed + 7_919)
    ep = None
    for _ in range(max_attempts):
        expert = ScriptedExpert(env.task, teleop_style(rng), rng)
        ep = run_expert_episode(env, expert, seed)
        if ep.success:
            return ep
    return ep if keep_failures else None
