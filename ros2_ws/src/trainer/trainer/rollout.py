"""Seeded evaluation episodes of the frozen base policy (with or without a residual) on a SimBackend.

:func:`evaluate_episodes` runs the one closed loop (:mod:`trainer.closed_loop`: base chunks, perception model,
residual, action pipeline with the safety envelope) over seeded episodes and reports success and
steps-to-success; it is what ``residual-eval``, ``base-train`` and the trainer's periodic evaluation call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from residual_core.pipeline import ActionPipeline
from residual_learning.base_policy import BasePolicy

from trainer.base_population import BasePopulation
from trainer.closed_loop import ClosedLoop, ResidualFn

if TYPE_CHECKING:
    from trainer.closed_loop import Perception
from trainer.sim_backend import SimBackend

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


def evaluate_episodes(backend: SimBackend, base: BasePolicy | BasePopulation, seeds: Sequence[int],
                      residual_fn: ResidualFn | None = None, augmenter: Perception | None = None,
                      pipeline: ActionPipeline | None = None,
                      progress: Callable[[int], None] | None = None, record_present: bool = False,
                      compose_from: str = "measured") -> EvalResult:
    """Run one episode per seed (in batches of ``backend.num_envs``); an episode ends at its first success.

    ``residual_fn`` None evaluates the base alone (through the same action bounds and safety envelope).
    ``augmenter`` is the perception model: it decides the residual's view of the object poses (never the base's:
    the base stands in for a VLA that sees the scene itself): a PoseAugmenter (noise and dropout on the true poses)
    or a :class:`trainer.camera_path.CameraPerception` (the graph's camera path). ``pipeline`` composes and guards
    every command (default :class:`~residual_core.pipeline.ActionPipeline` with the default bounds and envelope; pass
    one with the residual checkpoint's ``residual_scale``).

    With a residual, ``extra["present_fraction"]`` holds per object the fraction of the episodes' steps in which the
    residual saw it; ``record_present`` adds ``extra["present"]``: per episode (in ``seeds`` order) the per-step
    present masks (steps x objects, 0/1). ``compose_from``: where commands are composed from
    (:mod:`trainer.closed_loop`: the measured TCP, or the previous target while the arm tracks it).
    """
    seeds = [int(x) for x in seeds]
    n_env = backend.num_envs
    success = np.zeros(len(seeds), dtype=bool)
    steps = np.full(len(seeds), -1, dtype=np.int64)
    loop = ClosedLoop(backend, base, pipeline, augmenter if residual_fn is not None else None,
                      compose_from=compose_from)
    res_sum, res_count, enveloped_steps, all_steps = 0.0, 0, 0, 0
    failures: list[str] = []
    seen_steps = np.zeros(len(backend.object_names))
    present_trace: list[list[list[int]]] = [[] for _ in seeds]
    for start in range(0, len(seeds), n_env):
        batch = seeds[start:start + n_env]
        m = len(batch)
        # Pad a short last batch with repeats of its first seed; padded envs are ignored.
        loop.reset(batch + [batch[0]] * (n_env - m))
        done = np.zeros(n_env, dtype=bool)
        done[m:] = True
        first_pos = loop.state.obj_pos[:, 0].copy()  # the task's first object (the one manipulated)
        last_pos = first_pos.copy()
        max_rise = np.zeros(n_env)
        for t in range(backend.horizon):
            seen = loop.observe()
            res = None if residual_fn is None else np.asarray(residual_fn(seen.residual_obs), dtype=np.float64)
            live = ~done
            seen_steps += seen.present[live].sum(axis=0)
            if record_present:
                for j in np.flatnonzero(live[:m]):
                    present_trace[start + j].append(seen.present[j].astype(int).tolist())
            out = loop.step(seen.base, res)
            if res is not None:
                res_sum += float(np.abs(out.pipeline.residuals[live]).sum())
                res_count += int(live.sum()) * res.shape[1]
            enveloped_steps += sum(1 for i in np.flatnonzero(live) if set(out.pipeline.reasons[i]) - {"action_bounds"})
            all_steps += int(live.sum())
            pos = loop.state.obj_pos[:, 0]
            max_rise[live] = np.maximum(max_rise[live], pos[live, 2] - first_pos[live, 2])
            last_pos[live] = pos[live]
            newly = out.result.success & ~done
            steps[start + np.flatnonzero(newly[:m])] = t + 1
            success[start + np.flatnonzero(newly[:m])] = True
            done |= out.result.success
            if done.all():
                break
        for j in range(m):
            if not success[start + j]:
                failures.append(classify_failure(max_rise[j], np.linalg.norm(last_pos[j, :2] - first_pos[j, :2])))
        if progress is not None:
            progress(m)
    extra = {"failure_modes": {k: failures.count(k) for k in FAILURE_MODES if k in failures},
             "envelope_step_fraction": enveloped_steps / all_steps if all_steps else 0.0}
    if residual_fn is not None:
        extra["present_fraction"] = {o: float(n / all_steps) if all_steps else 0.0
                                     for o, n in zip(backend.object_names, seen_steps, strict=True)}
    if record_present:
        extra["present"] = present_trace
    return EvalResult(task=backend.task, seeds=seeds, success=success, steps_to_success=steps,
                      residual_abs_mean=res_sum / res_count if res_count else 0.0, extra=extra)
