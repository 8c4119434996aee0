"""The scripted expert's phases for stack_cube: pick the red cube, place it on the blue one."""

from __future__ import annotations

import numpy as np

from franka_sim.experts.machine import ExpertStyle, Phase
from franka_sim.experts.primitives import pick_phases, place_phases, via_phase
from franka_sim.tasks.stack_cube import BASE_HALF, CUBE_HALF


def stack_cube_phases(style: ExpertStyle, rng: np.random.Generator, mem: dict) -> list[Phase]:
    """Via point, pick the red cube, carry it over the blue cube, lower it on top, release, retreat."""
    half = CUBE_HALF
    return (
        via_phase(style, rng)
        + pick_phases(style, rng, "cube", half)
        + place_phases(
            "cube",
            lambda s, i: s.obj_pos["base_cube"][i][:2],
            lambda s, i: s.obj_pos["base_cube"][i][2] + BASE_HALF + half + 0.006,
            carry_z=0.16,
        )
    )
