"""Micro-benchmarks of the per-step code paths: ``python -m residual_learning.bench [--repeats N] [--torch-threads T]``.

Prints p50/p90 wall time per call for observation building, composition, the safety envelope, pose
augmentation, the residual actor (numpy and torch) and the critic ensemble (stacked vs a loop of MLPs).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from residual_core.action import compose_action, compose_actions_batch
from residual_core.augment import PoseAugmenter
from residual_core.observation import Proprio, build_observation, build_observation_batch, layout_for_task
from residual_core.pipeline import ActionPipeline
from residual_core.residual_policy import NumpyPolicy
from residual_core.safety import apply_envelope
from scipy.spatial.transform import Rotation

from residual_learning.networks import MLP, CriticEnsemble, ResidualActor


def timeit(fn: Callable[[], object], repeats: int, warmup: int = 20) -> tuple[float, float]:
    """(p50, p90) of one call, in microseconds."""
    for _ in range(warmup):
        fn()
    times = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - t0
    return float(np.percentile(times, 50) * 1e6), float(np.percentile(times, 90) * 1e6)


def run(repeats: int = 2000, torch_threads: int | None = None) -> dict[str, tuple[float, float]]:
    """Run every benchmark; returns {name: (p50_us, p90_us)} and prints a table."""
    if torch_threads:
        torch.set_num_threads(torch_threads)
    rng = np.random.default_rng(0)
    layout = layout_for_task("pick_place")
    names = layout.object_names
    n, k = 64, len(names)
    batch = dict(
        obj_pos=rng.uniform(0.3, 0.6, (n, k, 3)),
        obj_quat=Rotation.random(n * k, rng=0).as_quat().reshape(n, k, 4),
        present=rng.random((n, k)) > 0.1,
        joint_pos=rng.normal(size=(n, 7)),
        joint_vel=rng.normal(size=(n, 7)),
        gripper_width=rng.uniform(0, 0.08, n),
        tcp_pos=rng.uniform(0.3, 0.6, (n, 3)),
        tcp_quat=Rotation.random(n, rng=1).as_quat(),
        base_action=rng.uniform(-0.02, 0.02, (n, 7)),
    )
    proprio = Proprio(np.zeros(7), np.zeros(7), 0.04, np.array([0.4, 0.0, 0.3]), np.array([1.0, 0, 0, 0]))
    poses = {"cube": (np.array([0.5, 0.0, 0.02]), np.array([0, 0, 0, 1.0])), "target": None}
    base, u = rng.uniform(-0.02, 0.02, (n, 7)), rng.uniform(-1, 1, (n, 7))
    aug = PoseAugmenter(seed=0)
    aug.reset(n)

    actor = ResidualActor(layout.size)
    with torch.no_grad():
        actor.mlp.linears[-1].weight.normal_(0, 0.1)
    np_actor = NumpyPolicy.from_actor(actor)
    obs1 = build_observation_batch(names, **batch)[0]
    obs1_t = torch.from_numpy(obs1)[None]
    b = 256
    obs_b, act_b = torch.randn(b, layout.size), torch.randn(b, 7)

    results: dict[str, tuple[float, float]] = {}

    def bench(name: str, fn: Callable[[], object], reps: int = repeats) -> None:
        results[name] = timeit(fn, reps)

    bench("build_observation_batch N=64", lambda: build_observation_batch(names, **batch))
    bench("build_observation (single)", lambda: build_observation(names, poses, proprio, base[0]))
    bench("compose_actions_batch N=64", lambda: compose_actions_batch(base, u))
    bench("compose_action (single)", lambda: compose_action(base[0], u[0]))
    bench(
        "apply_envelope (single)",
        lambda: apply_envelope(base[0], np.array([0.5, 0, 0.3]), np.array([1.0, 0, 0, 0]), 0.0),
    )
    pipe, n = ActionPipeline(), len(base)
    tcp_p, tcp_q = np.array([0.5, 0, 0.3]), np.array([1.0, 0, 0, 0])
    bench("ActionPipeline.step (single, the arbiter's)", lambda: pipe.step(base[0], u[0] * 0.01, tcp_p, tcp_q, 0.0))
    tcp_pn, tcp_qn = np.tile(tcp_p, (n, 1)), np.tile(tcp_q, (n, 1))
    bench("ActionPipeline.step_batch N=64", lambda: pipe.step_batch(base, u * 0.01, tcp_pn, tcp_qn, np.zeros(n)))
    bench("PoseAugmenter.apply N=64", lambda: aug.apply(batch["obj_pos"], batch["obj_quat"], batch["present"]))
    bench("NumpyPolicy 256x256, 1 obs", lambda: np_actor(obs1))
    with torch.no_grad():
        bench("torch ResidualActor 256x256, 1 obs", lambda: actor(obs1_t))
    for c in (2, 10):
        ens = CriticEnsemble(layout.size, 7, num_critics=c)
        loop = [MLP(layout.size + 7, 1) for _ in range(c)]
        x = torch.cat([obs_b, act_b], -1)
        reps = max(repeats // 10, 50)
        with torch.no_grad():
            bench(f"CriticEnsemble stacked C={c} B={b} (no grad)", lambda ens=ens: ens(obs_b, act_b), reps)
            bench(f"critic loop of MLPs C={c} B={b} (no grad)", lambda loop=loop, x=x: [m(x) for m in loop], reps)

        def step_stacked(ens=ens):
            ens.zero_grad()
            ens(obs_b, act_b).sum().backward()

        def step_loop(loop=loop, x=x):
            for m in loop:
                m.zero_grad()
            torch.stack([m(x) for m in loop]).sum().backward()

        bench(f"CriticEnsemble stacked C={c} B={b} fwd+bwd", step_stacked, reps)
        bench(f"critic loop of MLPs C={c} B={b} fwd+bwd", step_loop, reps)

    width = max(len(name) for name in results)
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"{'benchmark':<{width}}  {'p50 us':>9}  {'p90 us':>9}")
    for name, (p50, p90) in results.items():
        print(f"{name:<{width}}  {p50:9.1f}  {p90:9.1f}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2000, help="timed calls per benchmark")
    parser.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    run(args.repeats, args.torch_threads)


if __name__ == "__main__":
    main()
