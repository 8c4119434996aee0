"""Running the frozen base policy (with or without a residual) on a SimBackend.

:class:`BaseChunkRunner` executes the base policy as a VLA is executed: it predicts a chunk of actions
from the current state and plays ``execute_steps`` of them open-loop before re-planning (per env).
:func:`evaluate_episodes` runs seeded episodes and reports success and steps-to-success; it is what
``residual-eval`` and the trainer's periodic evaluation call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from residual_core.action import DEFAULT_RESIDUAL_SCALE, compose_scaled_actions_batch
from residual_core.augment import PoseAugmenter
from residual_core.observation import build_observation_batch
from residual_learning.base_policy import BasePolicy, base_features_batch, embed_instruction

from trainer.sim_backend import BatchState, SimBackend


class BaseChunkRunner:
    """Per-env open-loop chunk execution of a :class:`BasePolicy` over a batch of envs."""

    def __init__(self, policy: BasePolicy, instruction: str, num_envs: int):
        self.policy = policy
        self.embedding = embed_instruction(instruction)
        self.num_envs = num_envs
        self.chunks: np.ndarray | None = None
        self.index = np.full(num_envs, policy.execute_steps, dtype=np.int64)

    def reset(self, env_ids: Sequence[int] | None = None) -> None:
        """Forget the current chunk of these envs (default all): their next step re-plans."""
        self.index[slice(None) if env_ids is None else np.asarray(env_ids)] = self.policy.execute_steps

    def features(self, s: BatchState) -> np.ndarray:
        present = np.ones(s.obj_pos.shape[:2], dtype=bool)
        return base_features_batch(s.obj_pos, s.obj_quat, present, s.joint_pos, s.gripper_width, s.tcp_pos,
                                   s.tcp_quat, self.embedding)

    def act(self, s: BatchState, env_ids: Sequence[int] | None = None) -> np.ndarray:
        """Base actions for the current step: (N, 7) for all envs, or (len(env_ids), 7) for a subset.

        Only the envs asked for advance in their chunk.
        """
        ids = np.arange(self.num_envs) if env_ids is None else np.asarray(env_ids, dtype=np.int64)
        replan = ids[self.index[ids] >= self.policy.execute_steps]
        if len(replan):
            feats = self.features(s)[replan]
            new = self.policy.predict_chunk(feats)
            if self.chunks is None:
                self.chunks = np.zeros((self.num_envs,) + new.shape[1:])
            self.chunks[replan] = new
            self.index[replan] = 0
        actions = self.chunks[ids, self.index[ids]]
        self.index[ids] += 1
        return actions


ResidualFn = Callable[[np.ndarray], np.ndarray]
"""Maps residual observations (N, D) to scaled residual actions (N, 7)."""


def residual_observation(backend: SimBackend, s: BatchState, base_actions: np.ndarray,
                         augmenter: PoseAugmenter | None) -> tuple[np.ndarray, np.ndarray]:
    """The residual's observation (N, D) for the current state, with pose noise/dropout if an augmenter is given.

    Returns (observations, present mask (N, K)).
    """
    pos, quat = s.obj_pos, s.obj_quat
    present = np.ones(pos.shape[:2], dtype=bool)
    if augmenter is not None:
        pos, quat, present = augmenter.apply(pos, quat, present)
    obs = build_observation_batch(backend.object_names, pos, quat, present, s.joint_pos, s.joint_vel,
                                  s.gripper_width, s.tcp_pos, s.tcp_quat, base_actions)
    return obs, present


FAILURE_MODES = ("never moved the object", "moved it without lifting (pushed; drawer part-closed)",
                 "lifted it, did not finish (dropped, misplaced or out of time)")


def classify_failure(max_rise: float, xy_displacement: float, lift=0.02, push=0.02) -> str:
    """A coarse, task-agnostic label for a failed episode from the manipulated object's trace.

    ``max_rise``: highest rise of the object above its start (m); ``xy_displacement``: its final horizontal
    displacement (m). For the drawer the object is the handle (it moves when the drawer is pushed); for the
    cup "lifted" means its centre rose while being stood up.
    """
    if max_rise > lift:
        return FAILURE_MODES[2]
    if xy_displacement > push:
        return FAILURE_MODES[1]
    return FAILURE_MODES[0]


@dataclass
class EvalResult:
    task: str
    seeds: list[int]
    success: np.ndarray
    """(E,) bool per episode."""
    steps_to_success: np.ndarray
    """(E,) control steps until the success predicate first held; -1 for failures."""
    residual_abs_mean: float = 0.0
    """Mean |scaled residual| per component over all steps (0 without a residual)."""
    extra: dict = field(default_factory=dict)

    @property
    def successes(self) -> int:
        return int(self.success.sum())

    @property
    def mean_steps(self) -> float:
        ok = self.steps_to_success[self.success]
        return float(ok.mean()) if len(ok) else float("nan")

    def to_dict(self) -> dict:
        return {"task": self.task, "episodes": len(self.seeds), "successes": self.successes,
                "success_rate": self.successes / max(len(self.seeds), 1),
                "mean_steps_to_success": None if np.isnan(self.mean_steps) else self.mean_steps,
                "seeds": list(self.seeds), "success": self.success.tolist(),
                "steps_to_success": self.steps_to_success.tolist(), "residual_abs_mean": self.residual_abs_mean,
                **self.extra}


def evaluate_episodes(backend: SimBackend, base: BasePolicy, seeds: Sequence[int],
                      residual_fn: ResidualFn | None = None, augmenter: PoseAugmenter | None = None,
                      residual_bound: np.ndarray = DEFAULT_RESIDUAL_SCALE,
                      progress: Callable[[int], None] | None = None) -> EvalResult:
    """Run one episode per seed (in batches of ``backend.num_envs``); an episode ends at its first success.

    ``residual_fn`` None evaluates the base alone. ``augmenter`` perturbs the residual's view of the object
    poses (never the base's: the base stands in for a VLA that sees the scene itself).
    """
    seeds = [int(x) for x in seeds]
    n_env = backend.num_envs
    success = np.zeros(len(seeds), dtype=bool)
    steps = np.full(len(seeds), -1, dtype=np.int64)
    runner = BaseChunkRunner(base, backend.instruction, n_env)
    res_sum, res_count = 0.0, 0
    failures: list[str] = []
    for start in range(0, len(seeds), n_env):
        batch = seeds[start:start + n_env]
        m = len(batch)
        # Pad a short last batch with repeats of its first seed; padded envs are ignored.
        backend.reset(batch + [batch[0]] * (n_env - m))
        runner.reset()
        if augmenter is not None:
            augmenter.reset(n_env)
        done = np.zeros(n_env, dtype=bool)
        done[m:] = True
        s = backend.state()
        first_pos = s.obj_pos[:, 0].copy()  # the task's first object (the one manipulated)
        last_pos = first_pos.copy()
        max_rise = np.zeros(n_env)
        for t in range(backend.horizon):
            base_act = runner.act(s)
            action = base_act
            if residual_fn is not None:
                obs, _ = residual_observation(backend, s, base_act, augmenter)
                res = residual_fn(obs)
                action = compose_scaled_actions_batch(base_act, res, residual_bound).actions
                live = ~done
                res_sum += float(np.abs(res[live]).sum())
                res_count += int(live.sum()) * res.shape[1]
            out = backend.step(action)
            s = backend.state()  # the trace's and the next step's state
            pos = s.obj_pos[:, 0]
            live = ~done
            max_rise[live] = np.maximum(max_rise[live], pos[live, 2] - first_pos[live, 2])
            last_pos[live] = pos[live]
            newly = out.success & ~done
            steps[start + np.flatnonzero(newly[:m])] = t + 1
            success[start + np.flatnonzero(newly[:m])] = True
            done |= out.success
            if done.all():
                break
        for j in range(m):
            if not success[start + j]:
                failures.append(classify_failure(max_rise[j], np.linalg.norm(last_pos[j, :2] - first_pos[j, :2])))
        if progress is not None:
            progress(m)
    return EvalResult(task=backend.task, seeds=seeds, success=success, steps_to_success=steps,
                      residual_abs_mean=res_sum / res_count if res_count else 0.0,
                      extra={"failure_modes": {k: failures.count(k) for k in FAILURE_MODES if k in failures}})
