#!/usr/bin/env python3
"""Diagnostic: how far would better perception take the camera path? Runs residual-eval's camera path (both cameras,
the pose estimator, the residual node's presence rule) with an oracle edit of what the estimator publishes, compared
with the true object pose of the same state:

* ``reject``: estimates more than ``--max-error`` off (position) are not published (what an outlier gate that knew
  the truth would do: the residual then holds the last good pose for the node's pose_timeout, or sees nothing);
* ``fill``: ``reject``, and every image in which the object is missed or rejected publishes the true pose instead (a
  perfect tracker through occlusion: the upper bound of perception fixes that keep the estimator's good estimates).

Every row runs without the residual node's occlusion tracking (the estimator's output as it is published, edited or
not): the fix this pointed to, without the truth, is that tracking (on in the camera graphs and in ``residual-eval
--pose-source camera``; ``--no-occlusion-tracking`` there gives this tool's ``none`` row).

Not a product path (the truth is not available on a robot): it tells which perception fix is worth building.

    .venv/bin/python tools/camera_oracle.py --task stack_cube --episodes 20 --oracle reject fill
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from residual_core.checkpoint import default_base_checkpoint, default_residual_checkpoint
from residual_core.observation import layout_for_task
from residual_core.pipeline import ActionPipeline
from residual_core.residual_policy import ResidualPolicy
from residual_core.runtime import limit_blas_threads
from residual_learning.base_policy import BasePolicy
from residual_policy_node.core import ObjectInput
from trainer.camera_path import CameraPathConfig, CameraPerception
from trainer.franka_backend import FrankaSimBackend
from trainer.rollout import evaluate_episodes


class OracleCamera(CameraPerception):
    """The camera path with the estimator's published entries edited against the true poses (see the module doc)."""

    def __init__(self, backend, oracle: str, max_error: float):
        super().__init__(backend, CameraPathConfig(tracking=None))
        self.oracle, self.max_error = oracle, max_error
        self.edited = {"rejected": 0, "filled": 0, "published": 0}
        self._truth = None

    def reset(self, num_envs: int) -> None:
        super().reset(num_envs)
        for i, inputs in enumerate(self._inputs):  # (reset_env keeps the instances: the edit stays in place)
            inputs.update = self._editing(i, inputs.update)

    def _editing(self, i: int, update):
        def edited(entries, now_s):
            out = []
            for k, e in enumerate(entries):
                true_pos, true_quat = self._truth.obj_pos[i, k], self._truth.obj_quat[i, k]
                seen = e.confidence >= self.config.freshness.min_confidence
                wrong = seen and np.linalg.norm(np.asarray(e.pos) - true_pos) > self.max_error
                if wrong:
                    self.edited["rejected"] += 1
                if (not seen or wrong) and self.oracle == "fill":
                    self.edited["filled"] += 1
                    out.append(ObjectInput(e.name, tuple(map(float, true_pos)), tuple(map(float, true_quat)), 1.0,
                                           e.measured_s))  # (BatchState's quaternions are x, y, z, w)
                elif not wrong:
                    out.append(e)
                    self.edited["published"] += seen
            return update(out, now_s)

        return edited

    def view(self, s):
        self._truth = s
        return super().view(s)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, help="task name")
    p.add_argument("--episodes", type=int, default=20, help="episodes (seeds 0..N-1)")
    p.add_argument("--oracle", nargs="+", choices=["none", "reject", "fill"], default=["reject", "fill"],
                   help="oracle edits to run (none: the camera path as residual-eval runs it)")
    p.add_argument("--max-error", type=float, default=0.005, help="reject: position error (m) above which an "
                   "estimate is not published")
    p.add_argument("--json-out", default=None, help="write the outcomes here")
    a = p.parse_args(argv)
    limit_blas_threads(1)
    base = BasePolicy.from_checkpoint(default_base_checkpoint())
    path = default_residual_checkpoint(a.task)
    policy = ResidualPolicy.from_checkpoint(path, expected_task=a.task, expected_layout=layout_for_task(a.task))
    if policy.manifest.compose_from != "measured":
        print(f"{path}: trained composed from {policy.manifest.compose_from}; this tool composes from the measured TCP",
              file=sys.stderr)
        return 2
    seeds = list(range(a.episodes))
    rows = {}
    for oracle in a.oracle:
        backend = FrankaSimBackend(a.task, 1, seed=0)
        try:
            cam = CameraPerception(backend, CameraPathConfig(tracking=None)) if oracle == "none" else \
                OracleCamera(backend, oracle, a.max_error)
            res = evaluate_episodes(backend, base, seeds, residual_fn=policy, augmenter=cam,
                                    pipeline=ActionPipeline(residual_scale=tuple(policy.manifest.action_scale)))
        finally:
            backend.close()
        failed = [s for s, ok in zip(seeds, res.success, strict=True) if not ok]
        rows[oracle] = {"successes": int(res.successes), "failed_seeds": failed,
                        "edits": getattr(cam, "edited", None)}
        print(f"{a.task} {oracle}: {res.successes}/{len(seeds)} failed {failed} edits {rows[oracle]['edits']}",
              flush=True)
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump({"task": a.task, "episodes": a.episodes, "max_error": a.max_error, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
