"""cube_lift: grasp the red cube and lift it at least 10 cm above the table.

Objects: ``cube`` (4 cm, 60 g, red, ArUco id 1 on top). Reset: cube centre uniform in x [0.42, 0.62] m,
y [-0.15, 0.15] m, yaw uniform in [-pi/4, pi/4] (the cube's 90-degree symmetry covers every yaw).
Success: cube centre >= 0.10 m above its resting height. Horizon 100 steps (5 s).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import mujoco
import numpy as np

from franka_sim.tasks import objects, rewards
from franka_sim.tasks.base import ResetSample, RewardTerm, Task, TaskState, yaw_quat

CUBE_HALF = 0.02


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


class CubeLift(Task):
    name = "cube_lift"
    horizon = 100

    def __init__(self, cfg: CubeLiftConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or CubeLiftConfig()

    @property
    def reward_terms(self) -> tuple[RewardTerm, ...]:
        w = CUBE_HALF * 2
        return (
            RewardTerm("reach", rewards.reach, 1.0, MappingProxyType({"obj": "cube", "scale": 10.0})),
            RewardTerm("grasp", rewards.grasp, 1.0, MappingProxyType({"obj": "cube", "width": w})),
            RewardTerm("lift", rewards.lift, 4.0,
                       MappingProxyType({"obj": "cube", "rest_z": CUBE_HALF, "height": self.cfg.lift_height})),
            RewardTerm("success", lambda s: self.success(s).astype(np.float64), 5.0),
            RewardTerm("action_l2", rewards.action_l2, -0.1),
        )

    def build(self, spec: mujoco.MjSpec) -> None:
        objects.add_cube(spec, "cube", CUBE_HALF, self.cfg.cube_mass, objects.RED)

    def sample_reset(self, rng: np.random.Generator) -> ResetSample:
        c = self.cfg
        pos = np.array([rng.uniform(*c.x_range), rng.uniform(*c.y_range), CUBE_HALF])
        return ResetSample(free_bodies={"cube_joint": (pos, yaw_quat(rng.uniform(*c.yaw_range)))})

    def success(self, state: TaskState) -> np.ndarray:
        return state.obj_pos["cube"][:, 2] >= CUBE_HALF + self.cfg.lift_height
