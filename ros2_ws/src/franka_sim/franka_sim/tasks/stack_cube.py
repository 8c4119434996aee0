"""stack_cube: stack the red cube on top of the blue cube.

Objects: ``cube`` (red, 4 cm, 60 g, ArUco id 1) and ``base_cube`` (blue, 5 cm, 150 g, ArUco id 3). Reset: both
in x [0.42, 0.62], y [-0.18, 0.18], at least 0.1 m apart, yaws uniform in [-pi/4, pi/4].
Success: cube centre within 1.5 cm (horizontally) of the base cube's, its height within 1 cm of resting on it,
and released. Horizon 200 steps (10 s).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

import mujoco
import numpy as np

from franka_sim.tasks import objects, rewards
from franka_sim.tasks.base import ResetSample, RewardTerm, Task, TaskState, sample_separated_xy, yaw_quat

CUBE_HALF = 0.02
BASE_HALF = 0.025


@dataclass(frozen=True)
class StackCubeReward:
    """Weights and free parameters of stack_cube's reward terms (object names and cube sizes are the task's).

    The align term counts once the red cube is lifted by the base cube's height.
    """

    reach_weight: float = 1.0
    """Weight of reach = 1 - tanh(reach_scale * TCP-to-cube distance)."""
    reach_scale: float = 10.0
    """Distance scale of the reach term (1/m)."""
    grasp_weight: float = 1.0
    """Weight of grasp (1 while the red cube is between the closed pads)."""
    lift_weight: float = 1.0
    """Weight of lift (height above rest as a fraction of the base cube's height + ``lift_clearance``)."""
    lift_clearance: float = 0.02
    """How far above the base cube's height the lift term saturates (m)."""
    align_weight: float = 3.0
    """Weight of align = 1 - tanh(align_scale * horizontal distance to the base cube), once lifted."""
    align_scale: float = 10.0
    """Distance scale of the align term (1/m)."""
    success_weight: float = 5.0
    """Weight of the success indicator."""
    action_l2_weight: float = -0.1
    """Weight of the squared action norm (translation m, rotation rad)."""
    action_l2_bounds: tuple[float, float] = rewards.ACTION_L2_BOUNDS
    """Declared range of the raw action_l2 term (the default ActionSpec's)."""


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
    reward: StackCubeReward = field(default_factory=StackCubeReward)
    """Reward term weights and parameters."""


class StackCube(Task):
    name = "stack_cube"
    horizon = 200

    def __init__(self, cfg: StackCubeConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or StackCubeConfig()

    @property
    def reward_terms(self) -> tuple[RewardTerm, ...]:
        r, unit = self.cfg.reward, rewards.UNIT_BOUNDS
        w = 2 * CUBE_HALF
        return (
            RewardTerm("reach", rewards.reach, r.reach_weight, unit,
                       MappingProxyType({"obj": "cube", "scale": r.reach_scale})),
            RewardTerm("grasp", rewards.grasp, r.grasp_weight, unit, MappingProxyType({"obj": "cube", "width": w})),
            RewardTerm("lift", rewards.lift, r.lift_weight, unit, MappingProxyType(
                {"obj": "cube", "rest_z": CUBE_HALF, "height": 2 * BASE_HALF + r.lift_clearance})),
            RewardTerm("align", rewards.xy_approach, r.align_weight, unit, MappingProxyType(
                {"obj": "cube", "goal": "base_cube", "scale": r.align_scale, "rest_z": CUBE_HALF,
                 "min_lift": 2 * BASE_HALF})),
            RewardTerm("success", self.success_value, r.success_weight, unit),
            RewardTerm("action_l2", rewards.action_l2, r.action_l2_weight, r.action_l2_bounds),
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
