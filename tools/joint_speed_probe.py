#!/usr/bin/env python3
"""How fast the sim's arm moves its joints against the FR3's limits, during residual-eval's own episodes.

The sim tracks every target with a stiff joint servo and lets MuJoCo's joint ranges stop a joint at its limit; the
real FR3 stops in REFLEX on a joint faster than its maximum velocity or outside its range (franka_msgs/Errors
``joint_velocity_violation``, ``joint_position_limits_violation``; the twin's joint monitoring does the same). This
runs ``residual-eval`` unchanged (every option passes through) with every physics step sampled (the control step's
substeps stepped one at a time: the same physics) and prints, for the base alone and for base + residual, the peak
|dq| / dq_max per joint, the fraction of physics steps x envs above 1, and the same for the joint range:

    .venv/bin/python tools/joint_speed_probe.py --task stand_cup_up --episodes 10
    .venv/bin/python tools/joint_speed_probe.py --task stand_cup_up --episodes 10 --no-residual

(``--json-out`` and the other residual-eval options apply to the evaluation as usual.)
"""

from __future__ import annotations

import sys

import numpy as np
from franka_sim import robot as fr
from franka_sim import sim as fsim


class _SampledBatch:
    """Stands in for a BatchSim's ``batch``: steps one physics step at a time and records the arm's joints."""

    def __init__(self, batch, owner, record: dict, phase: list) -> None:
        self._batch, self._owner, self._record, self._phase = batch, owner, record, phase

    def __getattr__(self, name):
        return getattr(self._batch, name)

    def step(self, nstep: int = 1, **kwargs) -> None:
        for _ in range(nstep):
            self._batch.step(nstep=1, **kwargs)
            self._record.setdefault(self._phase[0], []).append((self._owner.joint_positions(),
                                                                self._owner.joint_velocities()))


def summarize(record: list) -> str:
    q = np.concatenate([r[0] for r in record])
    dq = np.concatenate([r[1] for r in record])
    speed = np.abs(dq) / fr.DQ_MAX
    beyond = (q < fr.Q_MIN) | (q > fr.Q_MAX)
    joints = [f"joint{i + 1}" for i in range(7)]
    lines = [f"physics steps x envs sampled: {len(q)}", "",
             "| | " + " | ".join(joints) + " | any |", "|---|" + "---|" * 8,
             "| peak abs(dq) / dq_max | " + " | ".join(f"{v:.2f}" for v in speed.max(0)) + f" | {speed.max():.2f} |",
             "| fraction above dq_max | " + " | ".join(f"{v:.4f}" for v in (speed > 1).mean(0))
             + f" | {(speed > 1).any(1).mean():.4f} |",
             "| fraction outside the range | " + " | ".join(f"{v:.4f}" for v in beyond.mean(0))
             + f" | {beyond.any(1).mean():.4f} |"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        print(__doc__)
    record: dict = {}
    phase = ["setup"]
    original = fsim.BatchSim.__init__

    def sampled_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.batch = _SampledBatch(self.batch, self, record, phase)

    import trainer.evaluate as evaluate

    episodes = evaluate.evaluate_episodes

    def labelled(*args, **kwargs):
        phase[0] = "base alone" if kwargs.get("residual_fn") is None else "base + residual"
        return episodes(*args, **kwargs)

    fsim.BatchSim.__init__, evaluate.evaluate_episodes = sampled_init, labelled
    try:
        code = evaluate.main(argv)
    finally:
        fsim.BatchSim.__init__, evaluate.evaluate_episodes = original, episodes
    for name in ("base alone", "base + residual"):
        if record.get(name):
            print(f"\n{name}: " + summarize(record[name]))
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
