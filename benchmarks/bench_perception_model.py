"""Cost of the fitted camera perception model per training step (trainer.perception_model.FittedPerception.view)
against the i.i.d. pose noise + dropout it replaces (residual_core.augment.PoseAugmenter.apply), on random arm
states around the home posture: 16 envs, pick_place's two objects.

    .venv/bin/python benchmarks/bench_perception_model.py [--model checkpoints/perception/camera.json] [--calls 500]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from residual_core.augment import PoseAugmenter
from trainer.perception_model import FittedPerception, PerceptionModelParams
from trainer.sim_backend import BatchState

HOME_Q = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])


def states(n_envs: int, count: int, seed: int = 0) -> list[BatchState]:
    rng = np.random.default_rng(seed)
    return [BatchState(obj_pos=np.tile([0.5, 0.0, 0.03], (n_envs, 2, 1)) + rng.normal(0, 0.05, (n_envs, 2, 3)),
                       obj_quat=np.tile([0.0, 0.0, 0.0, 1.0], (n_envs, 2, 1)),
                       joint_pos=HOME_Q + rng.normal(0, 0.2, (n_envs, 7)), joint_vel=np.zeros((n_envs, 7)),
                       gripper_width=np.full(n_envs, 0.05), tcp_pos=np.tile([0.5, 0.0, 0.2], (n_envs, 1)),
                       tcp_quat=np.tile([1.0, 0.0, 0.0, 0.0], (n_envs, 1))) for _ in range(count)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="checkpoints/perception/camera.json", help="fitted model JSON")
    ap.add_argument("--calls", type=int, default=500, help="timed calls of each")
    ap.add_argument("--envs", type=int, default=16, help="envs per call (residual-train's default)")
    args = ap.parse_args()
    model = FittedPerception(PerceptionModelParams.load(args.model), ["cube", "target"], seed=0, task="pick_place")
    model.reset(args.envs)
    aug = PoseAugmenter(seed=0)
    aug.reset(args.envs)
    ss = states(args.envs, 50)
    present = np.ones((args.envs, 2), dtype=bool)
    for name, fn in (("fitted camera model", lambda s: model.view(s)),
                     ("i.i.d. noise + dropout", lambda s: aug.apply(s.obj_pos, s.obj_quat, present))):
        t0 = time.perf_counter()
        for k in range(args.calls):
            fn(ss[k % len(ss)])
        print(f"{name}: {(time.perf_counter() - t0) / args.calls * 1e3:.2f} ms per step of {args.envs} envs")


if __name__ == "__main__":
    main()
