"""cube_lift: grasp the red cube and lift it at least 10 cm above the table.

Objects: ``cube`` (4 cm, 60 g, red, ArUco id 1 on top). Reset: cube centre uniform in x [0.42, 0.62] m,
y [-0.15, 0.15] m, yaw uniform in [-pi/4, pi/4] (the cube's 90-degree symmetry covers every yaw).
Success: cube centre >= 0.10 m above its resting height. Horizon 100 steps (5 s).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

import mujoco
import numpy as np

from franka_sim.tasks import objects, rewards
from franka_sim.tasks.base import ResetSample, RewardTerm, Task, TaskState, yaw_quat

CUBE_HALF = 0.02


@dataclass(frozen=True)
class CubeLiftReward:
    """Weights and free parameters of cube_lift's reward terms.

    The lift term saturates at the success height (:attr:`CubeLiftConfig.lift_height`); object names, the cube
    width and its resting height are the task's geometry, not tuning knobs.
    """

    reach_weight: float = 1.0
    """Weight of reach = 1 - tanh(reach_scale * TCP-to-cube distance)."""
    reach_scale: float = 10.0
    """Distance scale of the reach term (1/m)."""
    grasp_weight: float = 1.0
    """Weight of grasp (1 while the cube is between the closed pads)."""
    lift_weight: float = 4.0
    """Weight of lift (the cube's height above rest as a fraction of the success height, clipped to [0, 1])."""
    success_weight: float = 5.0
    """Weight of the success indicator."""
    action_l2_weight: float = -0.1
    """Weight of the squared action norm (translation m, rotation rad)."""
    action_l2_bounds: tuple[float, float] = rewards.ACTION_L2_BOUNDS
    """Declared range of the raw action_l2 term (the default ActionSpec's)."""


@dataclass(frozen=True)
class CubeLiftConfig:
    """Randomisation and success parameters of cube_lift."""

    x_range: tuple[float, float] = (0.42, 0.62)
    """Cube centre x range (m)."""
    y_range: tuple[float, float] = (-0.15, 0.15)
    """Cube centre y range (m)."""
    yaw_range: tuple[float, float] = (-np.pi / 4, np.pi / 4)
    """Cube yaw range (rad)."""
    lift_height: float = 0.10
    """Height above the resting height that counts as lifted (m)."""
    cube_mass: float = 0.06
    """Cube mass (kg)."""
    reward: CubeLiftReward = field(default_factory=CubeLiftReward)
    """Reward term weights and parameters."""


class CubeLift(Task):
    name = "cube_lift"
    horizon = 100

    def __init__(self, cfg: CubeLiftConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or CubeLiftConfig()

    @property
    def reward_terms(self) -> tuple[RewardTerm, ...]:
        r, unit = self.cfg.reward, rewards.UNIT_BOUNDS
        w = CUBE_HALF * 2
        return (
            RewardTerm("reach", rewards.reach, r.reach_weight, unit,
                       MappingProxyType({"obj": "cube", "scale": r.reach_scale})),
            RewardTerm("grasp", rewards.grasp, r.grasp_weight, unit, MappingProxyType({"obj": "cube", "width": w})),
            RewardTerm("lift", rewards.lift, r.lift_weight, unit,
                       MappingProxyType({"obj": "cube", "rest_z": CUBE_HALF, "height": self.cfg.lift_height})),
            RewardTerm("success", self.success_value, r.success_weight, unit),
            RewardTerm("action_l2", rewards.action_l2, r.action_l2_weight, r.action_l2_bounds),
        )

    def build(self, spec: mujoco.MjSpec) -> None:
        objects.add_cube(spec, "cube", CUBE_HALF, self.cfg.cube_mass, objects.RED)

    def sample_reset(self, rng: np.random.Generator) -> ResetSample:
        c = self.cfg
        pos = np.array([rng.uniform(*c.x_range), rng.uniform(*c.y_range), CUBE_HALF])
        return ResetSample(free_bodies={"cube_joint": (pos, yaw_quat(rng.uniform(*c.yaw_range)))})

    def success(self, state: TaskState) -> np.ndarray:
        return state.obj_pos["cube"][:, 2] >= CUBE_HALF + self.cfg.lift_height
