"""The scripted expert's phases for cube_lift: pick the cube, lift it and hold it."""

from __future__ import annotations

import numpy as np

from franka_sim.experts.machine import ExpertStyle, Phase
from franka_sim.experts.primitives import pick_phases, via_phase
from franka_sim.tasks.cube_lift import CUBE_HALF


def cube_lift_phases(style: ExpertStyle, rng: np.random.Generator, mem: dict) -> list[Phase]:
    """Via point, pick, then hold the lift until the episode ends."""
    phases = via_phase(style, rng) + pick_phases(style, rng, "cube", CUBE_HALF)
    phases[-1] = Phase("lift", phases[-1].target, max_steps=200)
    return phases
