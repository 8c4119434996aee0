"""Benchmark of residual-train's collection (issue 16): transitions/s in-process vs K Ray collector actors, Ray's
overhead per collected transition, and the learner's update rate (the ceiling collection has to feed).

    .venv/bin/python benchmarks/ray_collection.py --collectors 1 2 --json-out build/ray_collection.json

Every measurement plays the same thing: the frozen base plus a TD3 actor (the default network, random weights) with
exploration noise, through trainer.collector.Collector, as residual-train does; transitions are n-step (n = 3)
transitions returned to this process. In-process: one Collector in this process (MuJoCo threads: all CPUs, the
default of residual-train). Ray: K actors (one CPU and one MuJoCo thread each, --collector-cpus 1), each call
--round-steps env steps with the weights ray.put once per round, the driver waiting for all K (--sync's pattern).
Overhead = (the driver's wall time of a call - the collector's own stepping time) / transitions of the call:
scheduling, pickling the weights and the transitions, the object store. Needs Ray (`make setup-ray`).
Numbers depend on what else runs on the machine (the 1-minute load average is recorded); run it alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from residual_core.observation import layout_for_task
from residual_core.residual_policy import NumpyPolicy
from residual_core.runtime import limit_blas_threads
from trainer.collector import Collector, CollectorPolicy
from trainer.ray_collect import CollectorWorker
from trainer.replay import ReplayBuffer
from trainer.residual_train_args import Args
from trainer.td3 import TD3


def make_policy(args: Args, obs_dim: int) -> tuple[TD3, CollectorPolicy]:
    agent = TD3(obs_dim, 7, args.td3, seed=0)
    return agent, CollectorPolicy(NumpyPolicy.from_actor(agent.actor), agent.exploration(args.exploration_noise))


def in_process(args: Args, rounds: int, obs_dim: int) -> dict:
    c = Collector(args)
    _, policy = make_policy(args, obs_dim)
    c.collect(args.round_steps, policy)  # warm-up (base chunk compile paths, first episodes)
    t0, n, steps = time.perf_counter(), 0, 0
    for _ in range(rounds):
        res = c.collect(args.round_steps, policy)
        n += len(res["transitions"][2])
        steps += res["stats"]["steps"]
    wall = time.perf_counter() - t0
    return {"mode": "in-process", "collectors": 0, "transitions": n, "env_steps": steps, "wall_s": round(wall, 2),
            "transitions_per_s": round(n / wall, 1), "env_steps_per_s": round(steps / wall, 1)}


def on_ray(ray, args: Args, k: int, rounds: int, obs_dim: int) -> dict:
    worker = ray.remote(num_cpus=1)(CollectorWorker)
    workers = [worker.remote(args, i, k, 1) for i in range(k)]
    _, policy = make_policy(args, obs_dim)
    ray.get([w.reset.remote() for w in workers])
    ray.get([w.collect.remote(args.round_steps, policy) for w in workers])  # warm-up
    t0, n, steps, busy, call_wall = time.perf_counter(), 0, 0, 0.0, 0.0
    for _ in range(rounds):
        ref = ray.put(policy)
        t_call = time.perf_counter()
        results = ray.get([w.collect.remote(args.round_steps, ref) for w in workers])
        call_wall += (time.perf_counter() - t_call) * k  # each of the k calls lasted the round (they ran at once)
        for r in results:
            n += len(r["transitions"][2])
            steps += r["stats"]["steps"]
            busy += r["busy_s"]
    wall = time.perf_counter() - t0
    for w in workers:
        ray.kill(w)
    return {"mode": "ray", "collectors": k, "transitions": n, "env_steps": steps, "wall_s": round(wall, 2),
            "transitions_per_s": round(n / wall, 1), "env_steps_per_s": round(steps / wall, 1),
            "calls": rounds * k, "transitions_per_call": round(n / (rounds * k)),
            "overhead_ms_per_call": round((call_wall - busy) / (rounds * k) * 1e3, 2),
            "overhead_us_per_transition": round((call_wall - busy) / n * 1e6, 1)}


def learner_rate(args: Args, obs_dim: int, updates: int) -> dict:
    """TD3 updates/s on batches of the configured size, and the env steps/s they serve at --updates-per-step."""
    agent, _ = make_policy(args, obs_dim)
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(10_000, obs_dim, 7)
    buf.add_batch(rng.normal(size=(10_000, obs_dim)).astype(np.float32),
                  rng.uniform(-1, 1, (10_000, 7)).astype(np.float32), rng.normal(size=10_000).astype(np.float32),
                  rng.normal(size=(10_000, obs_dim)).astype(np.float32), np.full(10_000, 0.97, np.float32))
    agent.set_normalization(np.zeros(obs_dim), np.ones(obs_dim))
    for _ in range(20):
        agent.update(buf.sample(args.td3.batch_size, rng))
    t0 = time.perf_counter()
    for _ in range(updates):
        agent.update(buf.sample(args.td3.batch_size, rng))
    rate = updates / (time.perf_counter() - t0)
    return {"updates_per_s": round(rate, 1), "batch_size": args.td3.batch_size,
            "updates_per_step": args.updates_per_step,
            "env_steps_per_s_ceiling": round(rate / args.updates_per_step, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="cube_lift", help="task to collect on (default cube_lift)")
    p.add_argument("--num-envs", type=int, default=16, help="envs per collector (default 16, residual-train's)")
    p.add_argument("--round-steps", type=int, default=1024, help="env steps per collector call (default 1024)")
    p.add_argument("--rounds", type=int, default=4, help="timed rounds per measurement (default 4)")
    p.add_argument("--collectors", type=int, nargs="+", default=[1, 2], help="Ray collector counts (default 1 2)")
    p.add_argument("--small-round-steps", type=int, default=128,
                   help="also measure one Ray collector at this call size (the in-process chunk; 0: skip)")
    p.add_argument("--updates", type=int, default=200, help="timed learner updates (default 200)")
    p.add_argument("--json-out", type=Path, help="also write the results as JSON here")
    a = p.parse_args()
    torch.set_num_threads(1)
    limit_blas_threads(1)  # as residual-train does
    args = Args(task=a.task, num_envs=a.num_envs, round_steps=a.round_steps, total_steps=a.round_steps)
    import ray

    obs_dim = layout_for_task(a.task).size
    rows = [in_process(args, a.rounds, obs_dim)]
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False)
    try:
        for k in a.collectors:
            rows.append(on_ray(ray, args, k, a.rounds, obs_dim))
        if a.small_round_steps:
            small = Args(task=a.task, num_envs=a.num_envs, round_steps=a.small_round_steps, total_steps=a.round_steps)
            rows.append({**on_ray(ray, small, 1, a.rounds * a.round_steps // a.small_round_steps, obs_dim),
                         "mode": f"ray, {a.small_round_steps}-step calls"})
    finally:
        ray.shutdown()
    learner = learner_rate(args, obs_dim, a.updates)
    base = rows[0]["transitions_per_s"]
    print(f"| collection ({a.task}, {a.num_envs} envs per collector, {a.round_steps} steps per call) | collectors | "
          "transitions/s | vs in-process | Ray overhead per call | per transition |\n|---|---|---|---|---|---|")
    for r in rows:
        over = (f"{r['overhead_ms_per_call']} ms | {r['overhead_us_per_transition']} us" if r["mode"] != "in-process"
                else "- | -")
        print(f"| {r['mode']} | {r['collectors']} | {r['transitions_per_s']:,.0f} | "
              f"{r['transitions_per_s'] / base:.2f}x | {over} |")
    print(f"\nlearner: {learner['updates_per_s']:,.0f} TD3 updates/s (batch {learner['batch_size']}) = "
          f"{learner['env_steps_per_s_ceiling']:,.0f} env steps/s at updates_per_step {learner['updates_per_step']}")
    if a.json_out:
        a.json_out.parent.mkdir(parents=True, exist_ok=True)
        a.json_out.write_text(json.dumps({
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "load_avg_1min_at_end": round(os.getloadavg()[0], 2)},
            "collection": rows, "learner": learner}, indent=2) + "\n")
        print(f"wrote {a.json_out}")


if __name__ == "__main__":
    main()
