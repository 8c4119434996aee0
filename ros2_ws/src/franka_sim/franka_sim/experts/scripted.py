"""The scripted expert of each task: a plain dict from task name to phase builder, run by the phase machine."""

from __future__ import annotations

from typing import Literal

import numpy as np

from franka_sim.experts.close_drawer import close_drawer_phases
from franka_sim.experts.cube_lift import cube_lift_phases
from franka_sim.experts.machine import ExpertStyle, PhaseBuilder, PhaseMachine
from franka_sim.experts.pick_place import pick_place_phases
from franka_sim.experts.stack_cube import stack_cube_phases
from franka_sim.experts.stand_cup_up import StandCupUpReactive, stand_cup_up_phases

PHASE_BUILDERS: dict[str, PhaseBuilder] = {
    "cube_lift": cube_lift_phases,
    "pick_place": pick_place_phases,
    "stack_cube": stack_cube_phases,
    "close_drawer": close_drawer_phases,
    "stand_cup_up": stand_cup_up_phases,
}
"""Task name -> the phase builder of its scripted expert."""


class ScriptedExpert(PhaseMachine):
    """The scripted expert of ``task``: its phase builder (:data:`PHASE_BUILDERS`) run by the phase machine."""

    def __init__(self, task: str, style: ExpertStyle | None = None, rng: np.random.Generator | None = None):
        if task not in PHASE_BUILDERS:
            raise ValueError(f"no expert for task {task!r}; known: {sorted(PHASE_BUILDERS)}")
        self.task = task
        super().__init__(PHASE_BUILDERS[task], style, rng)


REACTIVE_EXPERTS = {"stand_cup_up": StandCupUpReactive}
"""Task name -> its memory-free expert (a function of the current state alone), where one exists."""

ExpertKind = Literal["phases", "reactive"]


def make_expert(task: str, kind: ExpertKind = "phases", style: ExpertStyle | None = None,
                rng: np.random.Generator | None = None) -> PhaseMachine | StandCupUpReactive:
    """The expert of ``task``: the phase machine (``"phases"``) or the memory-free one (``"reactive"``)."""
    if kind == "phases":
        return ScriptedExpert(task, style, rng)
    if kind != "reactive":
        raise ValueError(f"unknown expert kind {kind!r}; known: phases, reactive")
    if task not in REACTIVE_EXPERTS:
        raise ValueError(f"no reactive expert for task {task!r}; tasks with one: {sorted(REACTIVE_EXPERTS)}")
    return REACTIVE_EXPERTS[task](style, rng)
