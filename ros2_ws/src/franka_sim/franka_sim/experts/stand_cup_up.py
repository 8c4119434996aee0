"""The scripted expert's phases for stand_cup_up: grasp the lying cup, lift, turn it upright, set it down."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from franka_sim.experts.machine import ExpertStyle, Phase, Target, closest_orientation, down_with_finger_axis
from franka_sim.experts.primitives import via_phase
from franka_sim.tasks import objects as task_objects
from franka_sim.tasks.stand_cup_up import GRASP_OFFSET as CUP_GRASP_OFFSET


def stand_cup_up_phases(style: ExpertStyle, rng: np.random.Generator, mem: dict) -> list[Phase]:
    """Via point, grasp the lying cup across, lift, turn it upright, lower, release, retreat."""
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

    return via_phase(style, rng) + [
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
