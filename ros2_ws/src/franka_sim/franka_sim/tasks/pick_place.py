"""pick_place: put the red cube into the green target square.

Objects: ``cube`` (4 cm, 60 g, ArUco id 1) and ``target`` (a flat, visual-only 12 cm green square, ArUco id 2
at its centre). Reset: cube in x [0.42, 0.62], y [-0.2, 0.2]; target in x [0.4, 0.62], y [-0.22, 0.22], at
least 0.15 m from the cube; both yaws uniform in [-pi/4, pi/4].
Success: cube centre inside the square with 1 cm margin (|x|, |y| < 5 cm in the target frame), the cube resting
on the table (centre < 1 cm above its resting height) and released. Horizon 200 steps (10 s).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

import mujoco
import numpy as np

from franka_sim.tasks import objects, rewards
from franka_sim.tasks.base import ResetSample, RewardTerm, Task, TaskState, sample_separated_xy, yaw_quat

CUBE_HALF = 0.02
TARGET_HALF = 0.06


@dataclass(frozen=True)
class PickPlaceReward:
    """Weights and free parameters of pick_place's reward terms (object names and cube geometry are the task's)."""

    reach_weight: float = 1.0
    """Weight of reach = 1 - tanh(reach_scale * TCP-to-cube distance)."""
    reach_scale: float = 10.0
    """Distance scale of the reach term (1/m)."""
    grasp_weight: float = 1.0
    """Weight of grasp (1 while the cube is between the closed pads)."""
    lift_weight: float = 1.0
    """Weight of lift (the cube's height above rest as a fraction of ``lift_height``, clipped to [0, 1])."""
    lift_height: float = 0.05
    """Height above rest at which the lift term saturates (m)."""
    transport_weight: float = 3.0
    """Weight of transport = 1 - tanh(transport_scale * horizontal cube-to-target distance), once lifted."""
    transport_scale: float = 10.0
    """Distance scale of the transport term (1/m)."""
    transport_min_lift: float = 0.02
    """Height above rest (m) the cube must have for transport to count (unless already within 2 cm)."""
    success_weight: float = 5.0
    """Weight of the success indicator."""
    action_l2_weight: float = -0.1
    """Weight of the squared action norm (translation m, rotation rad)."""
    action_l2_bounds: tuple[float, float] = rewards.ACTION_L2_BOUNDS
    """Declared range of the raw action_l2 term (the default ActionSpec's)."""


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
    reward: PickPlaceReward = field(default_factory=PickPlaceReward)
    """Reward term weights and parameters."""


class PickPlace(Task):
    name = "pick_place"
    horizon = 200

    def __init__(self, cfg: PickPlaceConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or PickPlaceConfig()

    @property
    def reward_terms(self) -> tuple[RewardTerm, ...]:
        r, unit = self.cfg.reward, rewards.UNIT_BOUNDS
        w = 2 * CUBE_HALF
        return (
            RewardTerm("reach", rewards.reach, r.reach_weight, unit,
                       MappingProxyType({"obj": "cube", "scale": r.reach_scale})),
            RewardTerm("grasp", rewards.grasp, r.grasp_weight, unit, MappingProxyType({"obj": "cube", "width": w})),
            RewardTerm("lift", rewards.lift, r.lift_weight, unit,
                       MappingProxyType({"obj": "cube", "rest_z": CUBE_HALF, "height": r.lift_height})),
            RewardTerm("transport", rewards.xy_approach, r.transport_weight, unit, MappingProxyType(
                {"obj": "cube", "goal": "target", "scale": r.transport_scale, "rest_z": CUBE_HALF,
                 "min_lift": r.transport_min_lift})),
            RewardTerm("success", self.success_value, r.success_weight, unit),
            RewardTerm("action_l2", rewards.action_l2, r.action_l2_weight, r.action_l2_bounds),
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
