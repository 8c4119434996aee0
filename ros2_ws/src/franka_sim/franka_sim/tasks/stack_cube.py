"""stack_cube: stack the red cube on top of the blue cube.

Objects: ``cube`` (red, 4 cm, 60 g, ArUco id 1) and ``base_cube`` (blue, 5 cm, 150 g, ArUco id 3). Reset: both
in x [0.42, 0.62], y [-0.18, 0.18], at least 0.1 m apart, yaws uniform in [-pi/4, pi/4].
Success: cube centre within 1.5 cm (horizontally) of the base cube's, its height within 1 cm of resting on it,
and released. Horizon 200 steps (10 s).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import mujoco
import numpy as np

from franka_sim.tasks import objects, rewards
from franka_sim.tasks.base import ResetSample, RewardTerm, Task, TaskState, sample_separated_xy, yaw_quat

CUBE_HALF = 0.02
BASE_HALF = 0.025


@dataclass(frozen=True)
class StackCubeConfig:
    """Randomisation and success parameters of stack_cube."""

    x_range: tuple[float, float] = (0.42, 0.62)
    """x range of both cube centres (m)."""
    y_range: tuple[float, float] = (-0.18, 0.18)
    """y range of both cube centres (m)."""
    min_separation: float = 0.1
    """Least distance between the cubes' centres (m)."""
    yaw_range: tuple[float, float] = (-np.pi / 4, np.pi / 4)
    """Yaw range of both cubes (rad)."""
    xy_tolerance: float = 0.015
    """Largest horizontal offset of the stacked cube from the base cube (m)."""
    cube_mass: float = 0.06
    """Red cube mass (kg)."""
    base_mass: float = 0.15
    """Blue cube mass (kg)."""


class StackCube(Task):
    name = "stack_cube"
    horizon = 200

    def __init__(self, cfg: StackCubeConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or StackCubeConfig()

    @property
    def reward_terms(self) -> tuple[RewardTerm, ...]:
        w = 2 * CUBE_HALF
        return (
            RewardTerm("reach", rewards.reach, 1.0, MappingProxyType({"obj": "cube", "scale": 10.0})),
            RewardTerm("grasp", rewards.grasp, 1.0, MappingProxyType({"obj": "cube", "width": w})),
            RewardTerm("lift", rewards.lift, 1.0, MappingProxyType(
                {"obj": "cube", "rest_z": CUBE_HALF, "height": 2 * BASE_HALF + 0.02})),
            RewardTerm("align", rewards.xy_approach, 3.0, MappingProxyType(
                {"obj": "cube", "goal": "base_cube", "scale": 10.0, "rest_z": CUBE_HALF, "min_lift": 2 * BASE_HALF})),
            RewardTerm("success", lambda s: self.success(s).astype(np.float64), 5.0),
            RewardTerm("action_l2", rewards.action_l2, -0.1),
        )

    def build(self, spec: mujoco.MjSpec) -> None:
        objects.add_cube(spec, "cube", CUBE_HALF, self.cfg.cube_mass, objects.RED)
        objects.add_cube(spec, "base_cube", BASE_HALF, self.cfg.base_mass, objects.BLUE, pos=(0.5, 0.2, None))

    def sample_reset(self, rng: np.random.Generator) -> ResetSample:
        c = self.cfg
        cube_xy, base_xy = sample_separated_xy(rng, [(c.x_range, c.y_range)] * 2, c.min_separation)
        return ResetSample(free_bodies={
            "cube_joint": (np.array([*cube_xy, CUBE_HALF]), yaw_quat(rng.uniform(*c.yaw_range))),
            "base_cube_joint": (np.array([*base_xy, BASE_HALF]), yaw_quat(rng.uniform(*c.yaw_range))),
        })

    def success(self, state: TaskState) -> np.ndarray:
        rel = state.obj_pos["cube"] - state.obj_pos["base_cube"]
        aligned = np.linalg.norm(rel[:, :2], axis=-1) < self.cfg.xy_tolerance
        on_top = np.abs(rel[:, 2] - (BASE_HALF + CUBE_HALF)) < 0.01
        return aligned & on_top & rewards.is_released(state, "cube", 2 * CUBE_HALF)
