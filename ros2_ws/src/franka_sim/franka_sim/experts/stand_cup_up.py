"""The scripted expert's phases for stand_cup_up: grasp the lying cup, lift, turn it upright, set it down."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from franka_sim.experts.machine import ExpertStyle, Phase, Target, closest_orientation, down_with_finger_axis, servo
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


class StandCupUpReactive:
    """A memory-free expert for stand_cup_up: what to do is a function of the current state alone.

    The phase expert (:func:`stand_cup_up_phases`) locks the grasp orientation and the turn's axis at the grasp and
    ends phases on timers, which a residual imitating it cannot see. Here every step is decided from the cup's pose,
    the TCP pose and the gripper width, the quantities the residual observes:

    - not holding the cup: come down a funnel onto the grasp point (the height above it shrinks with the horizontal
      and angular error; the phase expert's stand-off along the tilted hand's axis is out of reach for the farthest
      cups) with the phase expert's grasp orientation, and close once within 5 mm horizontally and 12 mm above it (the
      fingers touch the cup or the table a few mm above the point); a gripper closed on nothing opens again;
    - holding it, the hand not yet turned: lift to ``lift_z`` (no turning below ``lift_z - 3 cm``), then turn the
      hand about the finger axis to the upright grasp, holding the TCP's position. The upright grasp is the phase
      expert's: the hand tilted 45 degrees down towards the cup's opening (the horizontal direction of the cup's
      axis), so it depends on the cup's heading only, not on how far the cup has swung in the fingers;
    - holding it, the hand turned (within ``turned_tol``): lower until the cup's bottom is 5 mm above the table;
    - the cup within ``release_tilt`` of upright and ``release_height`` of its resting height: open, then back off
      against the hand's approach direction and up.

    Same interface as :class:`~franka_sim.experts.PhaseMachine` (``reset``, ``act(state, i)``, ``phase``).
    """

    lift_z = 0.19
    approach_height = 0.07
    turned_tol = 0.15
    release_tilt = np.deg2rad(15.0)
    release_height = 0.009

    def __init__(self, style: ExpertStyle | None = None, rng: np.random.Generator | None = None):
        self.style = style or ExpertStyle()
        self.rng = rng
        self.phase = "approach"

    def reset(self) -> None:
        self.phase = "approach"

    def act(self, state, i: int = 0) -> np.ndarray:
        tgt = self.target(state, i)
        dp = tgt.pos - state.tcp_pos[i]
        dr = Rotation.from_matrix(tgt.mat @ state.tcp_mat[i].T).as_rotvec()
        return servo(dp, dr, tgt.gripper, self.style, self.rng)

    def target(self, s, i: int) -> Target:
        """The target of this step (and :attr:`phase`, its name) from the state alone."""
        width = 2 * task_objects.CUP_APOTHEM
        tcp, tcp_mat, w = s.tcp_pos[i], s.tcp_mat[i], float(s.gripper_width[i])
        cup, cup_mat = s.obj_pos["cup"][i], s.obj_mat["cup"][i]
        axis = cup_mat[:, 2]
        grasp = cup + cup_mat @ np.asarray(CUP_GRASP_OFFSET)
        tilt = float(np.arccos(np.clip(axis[2], -1.0, 1.0)))
        to_grasp = float(np.linalg.norm(tcp - grasp))
        hold = tcp_mat
        low = cup[2] - task_objects.CUP_HALF_HEIGHT < self.release_height

        if tilt < self.release_tilt and low and (w > width + 0.003 or to_grasp < 0.03):
            if w < width + 0.006:
                self.phase = "release"
                return Target(tcp, hold, 0.0)
            self.phase = "retreat"
            h = np.array([tcp_mat[0, 2], tcp_mat[1, 2], 0.0])
            h /= max(np.linalg.norm(h), 1e-6)
            return Target(grasp - 0.1 * h + [0.0, 0.0, 0.05], hold, 0.0)

        if to_grasp < 0.03 and width - 0.01 < w < width + 0.003:  # holding the cup
            up = _upright_grasp(axis, tcp_mat)
            off = float(np.linalg.norm(Rotation.from_matrix(up @ tcp_mat.T).as_rotvec()))
            if off < self.turned_tol:
                self.phase = "lower"
                place = tcp[2] + (task_objects.CUP_HALF_HEIGHT + 0.005) - cup[2]
                return Target(np.array([tcp[0], tcp[1], place]), up, 1.0)
            if tcp[2] < self.lift_z - 0.03 and tilt > np.pi / 4:
                self.phase = "lift"
                return Target(np.array([tcp[0], tcp[1], self.lift_z]), hold, 1.0)
            self.phase = "turn"
            return Target(np.array([tcp[0], tcp[1], self.lift_z]), up, 1.0)

        gm = _grasp_mat(axis, tcp_mat)
        rel = tcp - grasp
        lateral = float(np.linalg.norm(rel[:2]))
        angle = float(np.linalg.norm(Rotation.from_matrix(gm @ tcp_mat.T).as_rotvec()))
        closing = width - 0.01 < w < 0.078 and to_grasp < 0.015
        if (lateral < 0.005 and rel[2] < 0.012 and angle < 0.06) or closing:
            self.phase = "close"
            return Target(tcp, hold, 1.0)
        self.phase = "approach"
        standoff = min(self.approach_height, 5.0 * lateral + 0.3 * angle)
        return Target(grasp + [0.0, 0.0, standoff], gm, 0.0)


def _upright_grasp(axis: np.ndarray, tcp_mat: np.ndarray) -> np.ndarray:
    """The hand holding the cup upright: the finger axis the TCP's (made horizontal), the approach axis 45 degrees
    below horizontal towards the cup's opening (the horizontal direction of its ``axis``; once the cup is within
    10 degrees of upright, that of the hand's approach axis, which points there after the turn)."""
    y = np.array([tcp_mat[0, 1], tcp_mat[1, 1], 0.0])
    y /= max(np.linalg.norm(y), 1e-9)
    d = np.cross(y, [0.0, 0.0, 1.0])
    toward = axis if np.hypot(axis[0], axis[1]) > np.sin(np.deg2rad(10.0)) else tcp_mat[:, 2]
    if d @ toward < 0:
        d = -d
    z = (d - np.array([0.0, 0.0, 1.0])) / np.sqrt(2.0)
    return np.stack([np.cross(y, z), y, z], axis=1)


def _grasp_mat(axis: np.ndarray, tcp_mat: np.ndarray) -> np.ndarray:
    """The phase expert's grasp orientation of a lying cup (fingers across it, the hand tilted 45 degrees towards its
    bottom), of the two mirror images the one nearest the TCP's."""
    a = np.array([axis[0], axis[1], 0.0])
    a /= max(np.linalg.norm(a), 1e-9)
    u = np.cross(a, [0.0, 0.0, 1.0])
    tilt = Rotation.from_rotvec(-np.pi / 4 * u).as_matrix()
    return closest_orientation(tcp_mat, [tilt @ down_with_finger_axis(u), tilt @ down_with_finger_axis(-u)])
