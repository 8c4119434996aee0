"""The scripted expert's phases for pick_place: pick the cube, place it on the target."""

from __future__ import annotations

import numpy as np

from franka_sim.experts.machine import ExpertStyle, Phase
from franka_sim.experts.primitives import pick_phases, place_phases, via_phase
from franka_sim.tasks.pick_place import CUBE_HALF


def pick_place_phases(style: ExpertStyle, rng: np.random.Generator, mem: dict) -> list[Phase]:
    """Via point, pick the cube, carry it over the target, lower, release, retreat."""
    half = CUBE_HALF
    return (
        via_phase(style, rng)
        + pick_phases(style, rng, "cube", half)
        + place_phases("cube", lambda s, i: s.obj_pos["target"][i][:2], lambda s, i: half + 0.006, carry_z=0.12)
    )
