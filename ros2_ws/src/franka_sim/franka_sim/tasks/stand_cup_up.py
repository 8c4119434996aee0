"""stand_cup_up: a cup lies on its side; stand it upright on the table.

Objects: ``cup`` (an octagonal cup of boxes with a bottom disk, 6.8 cm across, 10 cm tall, 100 g; frame at mid
height, z towards the opening; ArUco id 5 on one wall facet). Reset: the cup lies on the facet opposite its
marker, centre x in [0.45, 0.6], y in [-0.12, 0.12], the direction of its opening at a yaw uniform in
[-1.0, 1.0] rad (pointing away from the robot or sideways, where the arm can turn it up).
Success: the cup's axis within 15 degrees of vertical, its centre within 1.5 cm of its upright resting height,
and released. Horizon 200 steps (10 s).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import mujoco
import numpy as np
from scipy.spatial.transform import Rotation

from franka_sim.tasks import objects, rewards
from franka_sim.tasks.base import ResetSample, RewardTerm, Task, TaskState

CUP_WIDTH = 2 * objects.CUP_APOTHEM
GRASP_OFFSET = (0.0, 0.0, 0.035)
"""Where the cup is best held, in the cup frame: 1.5 cm from the rim, so the hand clears the table once upright."""


def lying_cup_quat(yaw: float) -> np.ndarray:
    """x, y, z, w orientation of the cup lying on its side with its opening towards ``yaw`` and marker up."""
    z_axis = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    x_axis = np.array([0.0, 0.0, 1.0])
    y_axis = np.cross(z_axis, x_axis)
    return Rotation.from_matrix(np.stack([x_axis, y_axis, z_axis], axis=1)).as_quat()


@dataclass(frozen=True)
class StandCupUpConfig:
    """Randomisation and success parameters of stand_cup_up."""

    x_range: tuple[float, float] = (0.45, 0.6)
    """Cup centre x range (m)."""
    y_range: tuple[float, float] = (-0.12, 0.12)
    """Cup centre y range (m)."""
    yaw_range: tuple[float, float] = (-1.0, 1.0)
    """Yaw of the cup's opening direction (rad)."""
    upright_tolerance: float = np.deg2rad(15.0)
    """Largest tilt of the cup's axis from vertical that counts as upright (rad)."""
    cup_mass: float = 0.1
    """Cup mass (kg)."""


class StandCupUp(Task):
    name = "stand_cup_up"
    horizon = 200

    def __init__(self, cfg: StandCupUpConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or StandCupUpConfig()

    @property
    def reward_terms(self) -> tuple[RewardTerm, ...]:
        return (
            RewardTerm("reach", rewards.reach, 1.0, MappingProxyType(
                {"obj": "cup", "scale": 10.0, "offset": GRASP_OFFSET})),
            RewardTerm("grasp", rewards.grasp, 1.0, MappingProxyType(
                {"obj": "cup", "width": CUP_WIDTH, "offset": GRASP_OFFSET})),
            RewardTerm("lift", rewards.lift, 1.0, MappingProxyType(
                {"obj": "cup", "rest_z": objects.CUP_APOTHEM, "height": 0.08})),
            RewardTerm("upright", rewards.axis_alignment, 3.0, MappingProxyType({"obj": "cup", "axis": 2})),
            RewardTerm("success", lambda s: self.success(s).astype(np.float64), 5.0),
            RewardTerm("action_l2", rewards.action_l2, -0.1),
        )

    def build(self, spec: mujoco.MjSpec) -> None:
        objects.add_cup(spec, "cup", self.cfg.cup_mass)

    def sample_reset(self, rng: np.random.Generator) -> ResetSample:
        c = self.cfg
        pos = np.array([rng.uniform(*c.x_range), rng.uniform(*c.y_range), objects.CUP_APOTHEM])
        return ResetSample(free_bodies={"cup_joint": (pos, lying_cup_quat(rng.uniform(*c.yaw_range)))})

    def success(self, state: TaskState) -> np.ndarray:
        upright = state.obj_mat["cup"][:, 2, 2] > np.cos(self.cfg.upright_tolerance)
        resting = np.abs(state.obj_pos["cup"][:, 2] - objects.CUP_HALF_HEIGHT) < 0.015
        return upright & resting & rewards.is_released(state, "cup", CUP_WIDTH)
