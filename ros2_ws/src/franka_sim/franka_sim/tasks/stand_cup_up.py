"""stand_cup_up: a cup lies on its side; stand it upright on the table.

Objects: ``cup`` (an octagonal cup of boxes with a bottom disk, 6.8 cm across, 10 cm tall, 100 g; frame at mid
height, z towards the opening; ArUco id 5 on one wall facet). Reset: the cup lies on the facet opposite its
marker, centre x in [0.45, 0.6], y in [-0.12, 0.12], the direction of its opening at a yaw uniform in
[-1.0, 1.0] rad (pointing away from the robot or sideways, where the arm can turn it up).
Success: the cup's axis within 15 degrees of vertical, its centre within 1.5 cm of its upright resting height,
and released. Horizon 200 steps (10 s).
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
class StandCupUpReward:
    """Weights and free parameters of stand_cup_up's reward terms.

    reach and grasp use the cup's grasp point (:data:`GRASP_OFFSET`, shared with the scripted expert); the cup's
    width and resting height are its geometry.
    """

    reach_weight: float = 1.0
    """Weight of reach = 1 - tanh(reach_scale * TCP-to-grasp-point distance)."""
    reach_scale: float = 10.0
    """Distance scale of the reach term (1/m)."""
    grasp_weight: float = 1.0
    """Weight of grasp (1 while the grasp point is between the closed pads)."""
    lift_weight: float = 1.0
    """Weight of lift (height above rest as a fraction of ``lift_height``, clipped to [0, 1])."""
    lift_height: float = 0.08
    """Height above rest at which the lift term saturates (m)."""
    upright_weight: float = 3.0
    """Weight of upright = (1 + cos(tilt of the cup's axis from vertical)) / 2."""
    success_weight: float = 5.0
    """Weight of the success indicator."""
    action_l2_weight: float = -0.1
    """Weight of the squared action norm (translation m, rotation rad)."""
    action_l2_bounds: tuple[float, float] = rewards.ACTION_L2_BOUNDS
    """Declared range of the raw action_l2 term (the default ActionSpec's)."""


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
    reward: StandCupUpReward = field(default_factory=StandCupUpReward)
    """Reward term weights and parameters."""


class StandCupUp(Task):
    name = "stand_cup_up"
    horizon = 200

    def __init__(self, cfg: StandCupUpConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or StandCupUpConfig()

    @property
    def reward_terms(self) -> tuple[RewardTerm, ...]:
        r, unit = self.cfg.reward, rewards.UNIT_BOUNDS
        return (
            RewardTerm("reach", rewards.reach, r.reach_weight, unit, MappingProxyType(
                {"obj": "cup", "scale": r.reach_scale, "offset": GRASP_OFFSET})),
            RewardTerm("grasp", rewards.grasp, r.grasp_weight, unit, MappingProxyType(
                {"obj": "cup", "width": CUP_WIDTH, "offset": GRASP_OFFSET})),
            RewardTerm("lift", rewards.lift, r.lift_weight, unit, MappingProxyType(
                {"obj": "cup", "rest_z": objects.CUP_APOTHEM, "height": r.lift_height})),
            RewardTerm("upright", rewards.axis_alignment, r.upright_weight, unit,
                       MappingProxyType({"obj": "cup", "axis": 2})),
            RewardTerm("success", self.success_value, r.success_weight, unit),
            RewardTerm("action_l2", rewards.action_l2, r.action_l2_weight, r.action_l2_bounds),
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
