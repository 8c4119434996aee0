"""pick_place: put the red cube into the green target square.

Objects: ``cube`` (4 cm, 60 g, ArUco id 1) and ``target`` (a flat, visual-only 12 cm green square, ArUco id 2
at its centre). Reset: cube in x [0.42, 0.62], y [-0.2, 0.2]; target in x [0.4, 0.62], y [-0.22, 0.22], at
least 0.15 m from the cube; both yaws uniform in [-pi/4, pi/4].
Success: cube centre inside the square with 1 cm margin (|x|, |y| < 5 cm in the target frame), the cube resting
on the table (centre < 1 cm above its resting height) and released. Horizon 200 steps (10 s).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import mujoco
import numpy as np

from franka_sim.tasks import objects, rewards
from franka_sim.tasks.base import ResetSample, RewardTerm, Task, TaskState, sample_separated_xy, yaw_quat

CUBE_HALF = 0.02
TARGET_HALF = 0.06


@dataclass(frozen=True)
class PickPlaceConfig:
    """Randomisation and success parameters of pick_place."""

    cube_x: tuple[float, float] = (0.42, 0.62)
    """Cube centre x range (m)."""
    cube_y: tuple[float, float] = (-0.2, 0.2)
    """Cube centre y range (m)."""
    target_x: tuple[float, float] = (0.4, 0.62)
    """Target centre x range (m)."""
    target_y: tuple[float, float] = (-0.22, 0.22)
    """Target centre y range (m)."""
    min_separation: float = 0.15
    """Least distance between cube and target centres (m)."""
    yaw_range: tuple[float, float] = (-np.pi / 4, np.pi / 4)
    """Yaw range of cube and target (rad)."""
    margin: float = 0.01
    """The cube centre must be this far inside the square's edge (m)."""
    cube_mass: float = 0.06
    """Cube mass (kg)."""


class PickPlace(Task):
    name = "pick_place"
    horizon = 200

    def __init__(self, cfg: PickPlaceConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or PickPlaceConfig()

    @property
    def reward_terms(self) -> tuple[RewardTerm, ...]:
        w = 2 * CUBE_HALF
        return (
            RewardTerm("reach", rewards.reach, 1.0, MappingProxyType({"obj": "cube", "scale": 10.0})),
            RewardTerm("grasp", rewards.grasp, 1.0, MappingProxyType({"obj": "cube", "width": w})),
            RewardTerm("lift", rewards.lift, 1.0,
                       MappingProxyType({"obj": "cube", "rest_z": CUBE_HALF, "height": 0.05})),
            RewardTerm("transport", rewards.xy_approach, 3.0, MappingProxyType(
                {"obj": "cube", "goal": "target", "scale": 10.0, "rest_z": CUBE_HALF, "min_lift": 0.02})),
            RewardTerm("success", lambda s: self.success(s).astype(np.float64), 5.0),
            RewardTerm("action_l2", rewards.action_l2, -0.1),
        )

    def build(self, spec: mujoco.MjSpec) -> None:
        objects.add_cube(spec, "cube", CUBE_HALF, self.cfg.cube_mass, objects.RED)
        objects.add_target_square(spec, "target", TARGET_HALF)

    def sample_reset(self, rng: np.random.Generator) -> ResetSample:
        c = self.cfg
        cube_xy, target_xy = sample_separated_xy(rng, [(c.cube_x, c.cube_y), (c.target_x, c.target_y)],
                                                 c.min_separation)
        return ResetSample(
            free_bodies={"cube_joint": (np.array([*cube_xy, CUBE_HALF]), yaw_quat(rng.uniform(*c.yaw_range)))},
            mocap={"target": (np.array([*target_xy, 0.0]), yaw_quat(rng.uniform(*c.yaw_range)))},
        )

    def success(self, state: TaskState) -> np.ndarray:
        rel = state.obj_pos["cube"] - state.obj_pos["target"]
        local = np.einsum("nji,nj->ni", state.obj_mat["target"], rel)
        inside = np.all(np.abs(local[:, :2]) < TARGET_HALF - self.cfg.margin, axis=-1)
        resting = state.obj_pos["cube"][:, 2] < CUBE_HALF + 0.01
        return inside & resting & rewards.is_released(state, "cube", 2 * CUBE_HALF)
