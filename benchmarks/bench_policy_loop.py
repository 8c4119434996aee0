"""Env steps/s of the evaluation loop with the real policies in it: the shipped base policy (chunked,
re-planning every execute_steps) alone and with a residual actor (numpy forward) + observation builder +
pose noise/dropout, on franka_sim's vector env (physics on all cores). Also the residual forward pass
alone (one observation, p50/p99). Prints markdown tables.

    .venv/bin/python benchmarks/bench_policy_loop.py --task cube_lift --num-envs 16 64

Numbers depend on what else runs on the machine; run it alone.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from franka_sim.sim import SIM_BACKENDS, check_backend
from residual_core.augment import PoseAugmenter
from residual_core.checkpoint import default_base_checkpoint
from residual_core.observation import layout_for_task
from residual_core.residual_policy import NumpyPolicy
from residual_core.runtime import limit_blas_threads
from residual_learning.base_policy import BasePolicy
from residual_learning.networks import ResidualActor
from trainer.franka_backend import FrankaSimBackend
from trainer.rollout import evaluate_episodes


def loop_rate(task: str, num_envs: int, episodes: int, with_residual: bool, backend_name: str = "mujoco",
              device: str = "cpu") -> float:
    backend = FrankaSimBackend(task, num_envs, backend=backend_name, device=device)
    base = BasePolicy.from_checkpoint(default_base_checkpoint())
    residual_fn = aug = None
    if with_residual:
        layout = layout_for_task(task)
        pol = NumpyPolicy.from_actor(ResidualActor(layout.size))
        scale = np.array([0.01] * 3 + [0.05] * 3 + [1.0])
        residual_fn = lambda o: pol(o) * scale  # noqa: E731
        aug = PoseAugmenter(0.005, 0.1, seed=0)
    steps = [0]
    step_targets = backend.step_targets  # what the closed loop (trainer.closed_loop) steps with

    def counted(pos, quat, gripper, commanded):
        steps[0] += len(pos)
        return step_targets(pos, quat, gripper, commanded)

    backend.step_targets = counted
    t0 = time.perf_counter()
    evaluate_episodes(backend, base, list(range(episodes)), residual_fn=residual_fn, augmenter=aug)
    dt = time.perf_counter() - t0
    backend.close()
    return steps[0] / dt


def forward_latency(task: str, repeats: int) -> tuple[float, float]:
    layout = layout_for_task(task)
    pol = NumpyPolicy.from_actor(ResidualActor(layout.size))
    obs = np.random.default_rng(0).normal(size=layout.size).astype(np.float32)
    for _ in range(100):
        pol(obs)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter_ns()
        pol(obs)
        ts.append(time.perf_counter_ns() - t)
    return float(np.percentile(ts, 50)) / 1e6, float(np.percentile(ts, 99)) / 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="cube_lift", help="task to run (default cube_lift)")
    p.add_argument("--num-envs", type=int, nargs="+", default=[16, 64], help="vector env sizes")
    p.add_argument("--episodes-per-env", type=int, default=2, help="episodes per env per measurement")
    p.add_argument("--repeats", type=int, default=20000, help="timed residual forward passes")
    p.add_argument("--backend", choices=SIM_BACKENDS, default="mujoco",
                   help="physics backend (warp: `make setup-warp`; its kernels compile in the first measurement)")
    p.add_argument("--device", default="cpu", help="Warp device of --backend warp: cpu or cuda:N (default cpu)")
    a = p.parse_args()
    try:
        check_backend(a.backend, a.device)
    except ValueError as exc:
        p.error(str(exc))
    torch.set_num_threads(1)
    limit_blas_threads(1)  # as every CLI does
    print(f"| loop ({a.task}, {a.backend} on {a.device}) | envs | env steps/s (20 Hz control steps) |\n|---|---|---|")
    for n in a.num_envs:
        for res in (False, True):
            r = loop_rate(a.task, n, n * a.episodes_per_env, res, a.backend, a.device)
            print(f"| {'base + residual + obs builder + noise' if res else 'base only'} | {n} | {r:,.0f} |")
    p50, p99 = forward_latency(a.task, a.repeats)
    print(f"\n| residual forward, one observation (numpy, 256x256) | p50 | p99 |\n|---|---|---|\n"
          f"| {a.task} | {p50:.4f} ms | {p99:.4f} ms |")


if __name__ == "__main__":
    main()
