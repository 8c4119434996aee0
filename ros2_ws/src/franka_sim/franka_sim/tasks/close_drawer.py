"""close_drawer: push the open drawer of a cabinet closed.

Objects: ``drawer_handle`` (the pose of the drawer's flat pull; ArUco id 4 on its top). The cabinet (a mocap
body) stands with its front towards the robot: centre x in [0.72, 0.8], y in [-0.12, 0.12], yaw pi + U(-0.3, 0.3)
rad; the drawer starts open by U(0.10, 0.18) m on a damped slide joint ``drawer_slide`` (0 = closed).
Success: drawer open less than 1.5 cm. Horizon 100 steps (5 s).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType

import mujoco
import numpy as np

from franka_sim.tasks import objects, rewards
from franka_sim.tasks.base import ResetSample, RewardTerm, Task, TaskState, yaw_quat


@dataclass(frozen=True)
class CloseDrawerReward:
    """Weights and free parameters of close_drawer's reward terms (joint and object names are the task's)."""

    reach_weight: float = 1.0
    """Weight of reach = 1 - tanh(reach_scale * distance from the TCP to ``reach_offset`` of the handle)."""
    reach_scale: float = 10.0
    """Distance scale of the reach term (1/m)."""
    reach_offset: tuple[float, float, float] = (0.03, 0.0, 0.0)
    """Point reached for, in the handle frame (m): in front of the drawer's pull."""
    close_weight: float = 3.0
    """Weight of close (fraction of the initial opening removed, clipped to [0, 1])."""
    success_weight: float = 5.0
    """Weight of the success indicator."""
    action_l2_weight: float = -0.1
    """Weight of the squared action norm (translation m, rotation rad)."""
    action_l2_bounds: tuple[float, float] = rewards.ACTION_L2_BOUNDS
    """Declared range of the raw action_l2 term (the default ActionSpec's)."""


@dataclass(frozen=True)
class CloseDrawerConfig:
    """Randomisation and success parameters of close_drawer."""

    x_range: tuple[float, float] = (0.72, 0.8)
    """Cabinet centre x range (m)."""
    y_range: tuple[float, float] = (-0.12, 0.12)
    """Cabinet centre y range (m)."""
    yaw_noise: float = 0.3
    """Cabinet yaw is pi + U(-yaw_noise, yaw_noise) (rad): the drawer front faces the robot."""
    open_range: tuple[float, float] = (0.10, 0.18)
    """Initial drawer opening (m)."""
    closed_tolerance: float = 0.015
    """Opening below which the drawer counts as closed (m)."""
    reward: CloseDrawerReward = field(default_factory=CloseDrawerReward)
    """Reward term weights and parameters."""


class CloseDrawer(Task):
    name = "close_drawer"
    horizon = 100
    task_joints = ("drawer_slide",)
    episode_keys = ("drawer_initial_opening",)

    def __init__(self, cfg: CloseDrawerConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or CloseDrawerConfig()

    @property
    def reward_terms(self) -> tuple[RewardTerm, ...]:
        r, unit = self.cfg.reward, rewards.UNIT_BOUNDS
        return (
            RewardTerm("reach", rewards.reach, r.reach_weight, unit, MappingProxyType(
                {"obj": "drawer_handle", "scale": r.reach_scale, "offset": r.reach_offset})),
            RewardTerm("close", rewards.joint_progress, r.close_weight, unit, MappingProxyType(
                {"joint": "drawer_slide", "initial_key": "drawer_initial_opening"})),
            RewardTerm("success", self.success_value, r.success_weight, unit),
            RewardTerm("action_l2", rewards.action_l2, r.action_l2_weight, r.action_l2_bounds),
        )

    def build(self, spec: mujoco.MjSpec) -> None:
        objects.add_cabinet(spec)

    def sample_reset(self, rng: np.random.Generator) -> ResetSample:
        c = self.cfg
        pos = np.array([rng.uniform(*c.x_range), rng.uniform(*c.y_range), 0.0005])
        opening = rng.uniform(*c.open_range)
        return ResetSample(
            mocap={"cabinet": (pos, yaw_quat(np.pi + rng.uniform(-c.yaw_noise, c.yaw_noise)))},
            joints={"drawer_slide": opening},
            episode={"drawer_initial_opening": opening},
        )

    def success(self, state: TaskState) -> np.ndarray:
        return state.joints["drawer_slide"] < self.cfg.closed_tolerance
