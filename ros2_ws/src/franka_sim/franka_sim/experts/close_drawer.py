"""The scripted expert's phases for close_drawer: hover in front of the pull, push the drawer shut."""

from __future__ import annotations

import numpy as np

from franka_sim.experts.machine import ExpertStyle, Phase, Target, closest_orientation, down_with_finger_axis
from franka_sim.experts.primitives import via_phase
from franka_sim.tasks.objects import HANDLE_HALF


def close_drawer_phases(style: ExpertStyle, rng: np.random.Generator, mem: dict) -> list[Phase]:
    """Via point, above the pull, in front of it, push past the panel face."""
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

    return via_phase(style, rng) + [
        Phase("above", above, max_steps=50),
        Phase("front", front, max_steps=40),
        Phase("push", push, max_steps=200),
    ]
