#!/usr/bin/env python3
"""The ceiling of residual-dagger: how often the scripted expert's correction, clipped to a residual bound, succeeds.

Plays base + clip(expert - base, +-bound) (what a residual that imitated the expert perfectly would command, with
privileged state and no perception error) through the closed loop of residual-eval, on seeds 0..N-1, for a base (or
a population) and a bound. A task whose bounded expert fails often cannot be learnt by imitation within that bound.

    .venv/bin/python tools/bounded_expert.py --task stand_cup_up --bound 0.01 0.01 0.01 0.05 0.05 0.05 0.2 \
        --base runs/bases/seed200
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from franka_sim.dynamics import TRAINING, Shift
from franka_sim.experts import ExpertStyle, make_expert
from residual_core.action import DEFAULT_RESIDUAL_SCALE
from residual_core.checkpoint import default_base_checkpoint
from residual_core.pipeline import ActionPipeline
from residual_core.runtime import limit_blas_threads
from residual_core.tasks import check_task
from residual_learning.base_policy import BasePolicy
from trainer.base_population import BasePopulation
from trainer.closed_loop import ClosedLoop
from trainer.franka_backend import FrankaSimBackend
from trainer.residual_dagger import expert_label


def bounded_expert_successes(task: str, base, bound: np.ndarray, seeds: list[int], num_envs: int = 10,
                             dynamics: str = "nominal", compose_from: str = "measured",
                             stall_steps: int | None = None, expert_kind: str = "phases") -> np.ndarray:
    """(len(seeds),) bool: whether base + the clipped expert correction succeeded in each seeded episode."""
    backend = FrankaSimBackend(task, num_envs=num_envs, nthread=1,
                               shift=Shift(dynamics=TRAINING) if dynamics == "train" else None)
    loop = ClosedLoop(backend, base, ActionPipeline(residual_scale=tuple(bound)), compose_from=compose_from)
    out = np.zeros(len(seeds), dtype=bool)
    try:
        for start in range(0, len(seeds), num_envs):
            batch = seeds[start:start + num_envs]
            padded = batch + [batch[0]] * (num_envs - len(batch))
            loop.reset(padded)
            style = ExpertStyle(stall_steps=stall_steps)
            experts = [make_expert(task, expert_kind, style, rng=np.random.default_rng(s)) for s in padded]
            done = np.zeros(num_envs, dtype=bool)
            for _ in range(backend.horizon):
                seen = loop.observe()
                state = backend.env.task_state()
                expert = np.stack([experts[i].act(state, i) for i in range(num_envs)])
                step = loop.step(seen.base, expert_label(expert, seen.base, bound) * bound)
                done |= step.result.success
                if done.all():
                    break
            out[start:start + len(batch)] = done[:len(batch)]
    finally:
        backend.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, help="the task")
    p.add_argument("--bound", type=float, nargs=7, default=DEFAULT_RESIDUAL_SCALE.tolist(),
                   help="the residual bound (m, m, m, rad, rad, rad, gripper); default the project's default")
    p.add_argument("--base", type=Path, default=None, help="base checkpoint (default the shipped base)")
    p.add_argument("--base-population", type=Path, default=None, help="a population JSON instead of --base")
    p.add_argument("--episodes", type=int, default=100, help="seeds 0..N-1")
    p.add_argument("--dynamics", choices=["nominal", "train"], default="nominal",
                   help="nominal physics or residual-train's per-episode draws")
    p.add_argument("--compose-from", choices=["measured", "target"], default="measured",
                   help="where commands are composed from")
    p.add_argument("--stall-steps", type=int, default=None,
                   help="the expert ends a phase once its target came no closer for this many steps (residual-dagger "
                        "--expert-stall-steps); default: the shipped expert's timers only")
    p.add_argument("--expert", choices=["phases", "reactive"], default="phases",
                   help="the phase expert or the memory-free one (stand_cup_up; residual-dagger --expert)")
    a = p.parse_args(argv)
    check_task(a.task)
    limit_blas_threads(1)
    base = (BasePopulation.load(a.base_population) if a.base_population is not None
            else BasePolicy.from_checkpoint(a.base or default_base_checkpoint()))
    ok = bounded_expert_successes(a.task, base, np.asarray(a.bound), list(range(a.episodes)), dynamics=a.dynamics,
                                  compose_from=a.compose_from, stall_steps=a.stall_steps, expert_kind=a.expert)
    print(f"{a.task}: bounded expert {int(ok.sum())}/{len(ok)} (bound {a.bound}, base "
          f"{a.base_population or a.base or 'shipped'}, {a.dynamics} physics, composed from {a.compose_from}, "
          f"stall steps {a.stall_steps}, {a.expert} expert)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
