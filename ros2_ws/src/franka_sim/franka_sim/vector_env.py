"""``VectorFrankaEnv``: N simulations of one task stepped together with batched numpy arrays.

Physics runs on ``mujoco.batch.Batch`` (a C thread pool over the simulations, both cores by default); the
controller, rewards and observations are computed once per step on (N, ...) arrays. Actions (N, 7) in;
observations (dict of (N, ...) arrays), rewards, terminated, truncated (N,) out.

Auto-reset (default on, "same-step" style): an env whose episode ended in this step is reset at once; the
returned observation is then the first one of its new episode, and ``info["final_obs"]`` /
``info["final_success"]`` hold the last observation / success of the finished episode (valid where
``info["done"]``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from gymnasium import spaces

from franka_sim.dynamics import widen_placement
from franka_sim.observations import batched_observations, mats_to_quats, observation_space
from franka_sim.sim import BatchSim, SimConfig
from franka_sim.tasks import make_task


@dataclass(frozen=True)
class VectorEnvConfig:
    """Options of the vector environment."""

    sim: SimConfig = field(default_factory=SimConfig)
    """Simulation core configuration; nthread=0 uses all CPUs."""
    terminate_on_success: bool = True
    """End an episode at its first successful state."""
    autoreset: bool = True
    """Reset finished episodes inside step()."""
    placement_scale: float = 1.0
    """Object placement ranges scaled about their centres (franka_sim.dynamics.widen_placement); 1 = the task's."""


class VectorFrankaEnv:
    """N environments of one task with batched arrays."""

    def __init__(self, task: str, num_envs: int, seed: int | None = None, config: VectorEnvConfig | None = None):
        self.config = config or VectorEnvConfig()
        self._task = widen_placement(make_task(task), self.config.placement_scale)
        self.num_envs = int(num_envs)
        self.sim = BatchSim(self._task, self.num_envs, self.config.sim)
        self.single_observation_space = observation_space(len(self._task.objects), None)
        spec = self.config.sim.action_spec
        self.single_action_space = spaces.Box(spec.low, spec.high, dtype=np.float64)
        self.action_space = spaces.Box(np.tile(spec.low, (self.num_envs, 1)), np.tile(spec.high, (self.num_envs, 1)),
                                       dtype=np.float64)
        self._seed = seed
        self._rngs: list[np.random.Generator] = []
        self._seed_rngs(seed)
        self.elapsed = np.zeros(self.num_envs, dtype=np.int64)
        self.success = np.zeros(self.num_envs, dtype=bool)
        self._all = np.arange(self.num_envs)

    def _seed_rngs(self, seed: int | None) -> None:
        children = np.random.SeedSequence(seed).spawn(self.num_envs)
        self._rngs = [np.random.default_rng(c) for c in children]

    # ------------------------------------------------------------------ API
    def reset(self, seed: int | None = None, ids=None, seeds=None):
        """Reset all envs (or ``ids``). Returns (obs, info).

        ``seed`` re-seeds every env's generator first (one SeedSequence spawned per env); ``seeds`` (one int per
        reset env) instead gives each reset env its own generator ``default_rng(seeds[j])``, so an episode's
        start depends only on its seed, whatever env index runs it.
        """
        if seed is not None:
            self._seed_rngs(seed)
        ids = self._all if ids is None else np.asarray(ids, dtype=np.int64)
        if seeds is not None:
            if len(seeds) != len(ids):
                raise ValueError(f"need one seed per reset env: {len(seeds)} seeds for {len(ids)} envs")
            for i, s in zip(ids, seeds, strict=True):
                self._rngs[i] = np.random.default_rng(int(s))
        self._reset_ids(ids)
        return self.observations(), {"success": self.success.copy()}

    def _reset_ids(self, ids: np.ndarray) -> None:
        rngs = [self._rngs[i] for i in ids]
        self.sim.reset(ids, [self._task.sample_reset(r) for r in rngs], rngs)
        self.elapsed[ids] = 0
        state = self.sim.task_state(with_action=False)
        self.success[ids] = self._task.success(state)[ids]

    def step(self, actions: np.ndarray):
        """Step every env with (N, 7) actions. Returns (obs, reward, terminated, truncated, info)."""
        return self._finish_step(self.sim.step(actions))

    def step_targets(self, target_pos: np.ndarray, target_quat: np.ndarray, gripper: np.ndarray,
                     commanded: np.ndarray):
        """Step every env towards absolute TCP targets (N, 3), (N, 4) x, y, z, w with gripper commands (N,), as the
        sim node applies the arbiter's command; ``commanded`` (N, 7) is the action the targets were formed from
        (the action the reward sees). Returns what :meth:`step` returns."""
        commanded = np.asarray(commanded, dtype=np.float64)
        if commanded.shape != (self.num_envs, 7) or not np.all(np.isfinite(commanded)):
            raise ValueError(f"commanded must be finite with shape ({self.num_envs}, 7), got {commanded.shape}")
        self.sim.step_to_pose(target_pos, target_quat, gripper, commanded=commanded)
        return self._finish_step(commanded)

    def _finish_step(self, applied: np.ndarray):
        self.elapsed += 1
        state = self.sim.task_state()
        reward, raw, weighted = self._task.rewards(state)
        self.success = self._task.success(state)
        terminated = self.success & self.config.terminate_on_success
        truncated = (self.elapsed >= self._task.horizon) & ~terminated
        done = terminated | truncated
        obs = self.observations()
        info = {
            "success": self.success.copy(),
            "reward_terms": raw,
            "reward_terms_weighted": weighted,
            "applied_action": applied,
            "done": done,
        }
        if self.config.autoreset and np.any(done):
            ids = np.nonzero(done)[0]
            info["final_obs"] = {k: v.copy() for k, v in obs.items()}
            info["final_success"] = self.success.copy()
            self._reset_ids(ids)
            fresh = self.observations()
            for k in obs:
                obs[k][ids] = fresh[k][ids]
        return obs, reward, terminated, truncated, info

    def observations(self) -> dict[str, np.ndarray]:
        return batched_observations(self.sim)

    # ------------------------------------------------------------------ accessors (batched, base frame, xyzw)
    @property
    def task(self) -> str:
        return self._task.name

    @property
    def instruction(self) -> str:
        return self._task.instruction

    @property
    def horizon(self) -> int:
        return self._task.horizon

    @property
    def objects(self) -> tuple[str, ...]:
        return self._task.objects

    def object_poses(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Object name -> (pos (N, 3), quat_xyzw (N, 4))."""
        pos, mat = self.sim.object_pos_mat()
        return {k: (pos[k], mats_to_quats(mat[k])) for k in self._task.objects}

    def tcp_pose(self) -> tuple[np.ndarray, np.ndarray]:
        return self.sim.tcp_pos(), mats_to_quats(self.sim.tcp_mat())

    def joint_positions(self) -> np.ndarray:
        return self.sim.joint_positions()

    def joint_velocities(self) -> np.ndarray:
        return self.sim.joint_velocities()

    def gripper_width(self) -> np.ndarray:
        return self.sim.gripper_width()

    def is_success(self) -> np.ndarray:
        return self.success.copy()

    def task_state(self):
        return self.sim.task_state()

    def close(self) -> None:
        """Stop the isaaclab backend's worker process; nothing to release otherwise (the batch's threads end with
        it)."""
        closer = getattr(self.sim.batch, "close", None)
        if closer is not None:
            closer()
