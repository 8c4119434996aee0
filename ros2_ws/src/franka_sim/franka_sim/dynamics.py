"""Dynamics and placement randomisation, drawn per episode (a reset event), and the named held-out shifts.

What a real deployment changes besides the poses and the base: objects heavier or lighter than modelled, other
friction, a controller that tracks more softly or stiffly, commands that arrive a control step late, objects placed
further out than the training range. :class:`DynamicsRandomization` gives each of them a range; a reset draws one
:class:`DynamicsDraw` per episode from that episode's own generator (after everything else the reset draws, so an
episode's start is the same whether randomisation is on or off) and :class:`BatchSim <franka_sim.sim.BatchSim>`
applies it to that simulation only (``mujoco.batch.Batch.expand``: per-simulation model fields):

- **object mass**: every task object's body (the cube, base cube, cup, drawer; not the static mocap bodies) gets
  its mass and inertia scaled;
- **friction**: the sliding friction of every geom (objects, finger pads, table, cabinet) is scaled. MuJoCo takes
  the larger friction of the two geoms in contact, so scaling the objects alone would leave the pad contacts
  unchanged: this is "the real materials differ from the modelled ones";
- **arm stiffness**: each arm joint servo's stiffness is scaled by s and its damping by sqrt(s) (the damping ratio is
  kept), while the controller keeps its nominal feed-forward lead: a softer servo lags behind the commanded ramp, a
  stiffer one overshoots it (tracking lag);
- **action latency**: each command is applied that many control steps after it was sent; until the first one
  arrives the arm holds its reset pose with the gripper open;
- **placement**: :func:`widen_placement` scales each task's object placement ranges (x and y) about their centres
  (a task variant, fixed for a run; positions are still drawn per episode).

:data:`SHIFTS` names the held-out conditions ``residual-eval --dynamics`` evaluates and that training never draws
from unless asked to.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from franka_sim.tasks import TASKS, Task


@dataclass(frozen=True)
class DynamicsDraw:
    """One episode's dynamics (scales are multipliers of the nominal model)."""

    mass_scale: float = 1.0
    friction_scale: float = 1.0
    stiffness_scale: float = 1.0
    latency_steps: int = 0

    def as_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


NOMINAL = DynamicsDraw()


@dataclass(frozen=True)
class DynamicsRandomization:
    """Ranges the per-episode draws come from: scales (lo, hi) drawn log-uniformly, latency (lo, hi) uniformly over
    the integers lo..hi. All (1, 1) / (0, 0), the default, is the nominal model and draws nothing."""

    object_mass: tuple[float, float] = (1.0, 1.0)
    """Scale of every task object's mass and inertia."""
    friction: tuple[float, float] = (1.0, 1.0)
    """Scale of the sliding friction of every geom."""
    arm_stiffness: tuple[float, float] = (1.0, 1.0)
    """Scale of the arm servos' stiffness (damping by its square root)."""
    action_latency: tuple[int, int] = (0, 0)
    """Control steps between a command and its application."""

    def __post_init__(self) -> None:
        for name in ("object_mass", "friction", "arm_stiffness"):
            lo, hi = getattr(self, name)
            if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
                raise ValueError(f"dynamics {name}: need a scale range 0 < lo <= hi, got {(lo, hi)}")
        lo, hi = self.action_latency
        if int(lo) != lo or int(hi) != hi or not 0 <= lo <= hi:
            raise ValueError(f"dynamics action_latency: need integers 0 <= lo <= hi, got {(lo, hi)}")

    @property
    def enabled(self) -> bool:
        """Whether any draw can differ from the nominal model."""
        return (self.object_mass, self.friction, self.arm_stiffness, tuple(self.action_latency)) != (
            (1.0, 1.0), (1.0, 1.0), (1.0, 1.0), (0, 0))

    @property
    def max_latency(self) -> int:
        return int(self.action_latency[1])

    def sample(self, rng: np.random.Generator) -> DynamicsDraw:
        """One episode's draw (the nominal model, drawing nothing, when not :attr:`enabled`)."""
        if not self.enabled:
            return NOMINAL

        def log_uniform(r: tuple[float, float]) -> float:
            return float(np.exp(rng.uniform(np.log(r[0]), np.log(r[1]))))

        return DynamicsDraw(mass_scale=log_uniform(self.object_mass), friction_scale=log_uniform(self.friction),
                            stiffness_scale=log_uniform(self.arm_stiffness),
                            latency_steps=int(rng.integers(self.action_latency[0], self.action_latency[1] + 1)))

    def as_dict(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in dataclasses.asdict(self).items()}


TRAINING = DynamicsRandomization(object_mass=(0.5, 2.0), friction=(0.6, 1.5), arm_stiffness=(0.6, 1.6),
                                 action_latency=(0, 1))
"""The training distribution of ``residual-train --dynamics train``."""


@dataclass(frozen=True)
class Shift:
    """A named evaluation condition: dynamics ranges and a placement widening."""

    dynamics: DynamicsRandomization = DynamicsRandomization()
    placement_scale: float = 1.0
    note: str = ""
    held_out: bool = True
    """Outside :data:`TRAINING` (a condition ``--dynamics train`` never draws); False: inside it."""


SHIFTS: dict[str, Shift] = {
    "nominal": Shift(note="the model the residuals were trained in"),
    "heavy": Shift(DynamicsRandomization(object_mass=(3.0, 3.0)), note="objects 3x heavier"),
    "light": Shift(DynamicsRandomization(object_mass=(0.3, 0.3)), note="objects 0.3x as heavy"),
    "slippery": Shift(DynamicsRandomization(friction=(0.4, 0.4)), note="every friction x0.4"),
    "soft": Shift(DynamicsRandomization(arm_stiffness=(0.4, 0.4)), note="arm servos 0.4x as stiff"),
    "stiff": Shift(DynamicsRandomization(arm_stiffness=(2.5, 2.5)), note="arm servos 2.5x as stiff"),
    "latency": Shift(DynamicsRandomization(action_latency=(2, 2)), note="every command 2 control steps late"),
    "latency1": Shift(DynamicsRandomization(action_latency=(1, 1)), note="every command 1 control step late",
                      held_out=False),
    "wide": Shift(placement_scale=1.5, note="placement ranges 1.5x as wide"),
    "mixed": Shift(DynamicsRandomization(object_mass=(0.3, 3.0), friction=(0.4, 1.0), arm_stiffness=(0.4, 2.5),
                                         action_latency=(0, 2)), note="all of them drawn per episode"),
}
"""Evaluation conditions (``residual-eval --dynamics NAME``), each outside :data:`TRAINING` unless ``held_out`` is
False (latency1: one step of latency, inside the training ranges)."""

PLACEMENT_FIELDS: dict[str, tuple[str, ...]] = {
    "cube_lift": ("x_range", "y_range"),
    "pick_place": ("cube_x", "cube_y", "target_x", "target_y"),
    "stack_cube": ("x_range", "y_range"),
    "close_drawer": ("x_range", "y_range"),
    "stand_cup_up": ("x_range", "y_range"),
}
"""Each task's object placement ranges (fields of its config, (lo, hi) in metres)."""


def widen_placement(task: Task, scale: float) -> Task:
    """``task`` with its placement ranges scaled by ``scale`` about their centres (a new task instance; ``scale`` 1
    returns ``task`` itself)."""
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"placement scale must be finite and > 0, got {scale}")
    if scale == 1.0:
        return task
    changes = {}
    for name in PLACEMENT_FIELDS[task.name]:
        lo, hi = getattr(task.cfg, name)
        mid, half = 0.5 * (lo + hi), 0.5 * (hi - lo) * scale
        changes[name] = (mid - half, mid + half)
    return TASKS[task.name](dataclasses.replace(task.cfg, **changes))


def resolve_shift(name: str) -> Shift:
    """The named shift; ValueError naming the known ones otherwise."""
    if name not in SHIFTS:
        raise ValueError(f"unknown dynamics shift {name!r}; known: {', '.join(SHIFTS)}")
    return SHIFTS[name]
