"""Phase lists shared by several tasks' experts: a via point, picking a box-shaped object, placing it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from franka_sim.experts.machine import ExpertStyle, Phase, Target, grasp_orientation_for_box
from franka_sim.tasks.base import TaskState


def via_phase(style: ExpertStyle, rng: np.random.Generator) -> list[Phase]:
    """A random via point visited before the first approach (none when the style has no via_point_offset)."""
    if style.via_point_offset <= 0:
        return []
    off = rng.uniform(-style.via_point_offset, style.via_point_offset, 3)
    off[2] = abs(off[2])

    def target(s: TaskState, i: int, mem: dict) -> Target:
        if "via" not in mem:
            mem["via"] = s.tcp_pos[i] + off
        return Target(mem["via"], s.tcp_mat[i], 0.0, tol=0.02, rot_tol=np.pi)

    return [Phase("via_point", target, max_steps=25)]


def pick_phases(style: ExpertStyle, rng: np.random.Generator, obj: str, half: float) -> list[Phase]:
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


def place_phases(
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
