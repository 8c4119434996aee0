"""Latency through the ROS graph from the base action's publication to the arbiter's command, in lockstep.

Starts the sim graph (sim, pose estimator in ground-truth mode, base, residual, arbiter) with ``residual-launch``
in a ROS domain of its own, without sim time (every node stamps with the wall clock), and runs seeded episodes
until ``--steps`` control steps were commanded. For every step, the latency is the arbiter's command stamp (the
stamp of /arbiter/target_pose, which the step's /arbiter/correction carries too) minus the stamp of the base action
of that step (taken by the base node just before it publishes; the correction record carries it as base_stamp, so
this process subscribes to nothing on the control path). With the residual on, this includes the residual node's
turn (base action -> residual -> arbiter), split into its two hops with the residual's own stamp; with it off, only
the arbiter's. Also reported: the wall time of
a whole lockstep step (sim physics, state out, base inference, residual, arbiter, command back).

    .venv/bin/python benchmarks/bench_graph_latency.py --steps 10000

Without --checkpoint / --base-checkpoint the shipped checkpoints are used; where those do not exist yet, untrained
stand-ins of the same network sizes (the latency depends on their size, not their weights; the arm's motion is then
meaningless). Numbers depend on what else runs on the machine (2 cores shared here).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def stand_in_checkpoints(directory: Path, task: str) -> tuple[Path, Path]:
    """Untrained base (BasePolicyNet, default sizes, chunks of 8) and residual (ResidualActor, default sizes, random
    output layer) checkpoints."""
    import torch
    from residual_core.action import DEFAULT_RESIDUAL_SCALE
    from residual_core.checkpoint import Manifest, save_checkpoint
    from residual_core.observation import layout_for_task
    from residual_learning.base_policy import BasePolicyNet
    from residual_learning.networks import ResidualActor, save_residual_checkpoint

    torch.manual_seed(0)
    net = BasePolicyNet()
    base = save_checkpoint(directory / "base", dict(net.state_dict()), Manifest(
        kind="base", task="all", network=net.config(), training={"execute_steps": 8, "purpose": "latency stand-in"},
        normalization={k: getattr(net, k).tolist() for k in ("feat_mean", "feat_std", "act_mean", "act_std")}))
    layout = layout_for_task(task)
    actor = ResidualActor(layout.size)
    with torch.no_grad():
        torch.nn.init.normal_(actor.mlp.linears[-1].weight, std=0.05)
    residual = save_residual_checkpoint(directory / "residual", actor, layout, task, DEFAULT_RESIDUAL_SCALE,
                                        {"purpose": "latency stand-in"}, 0, {})
    return residual.with_suffix(""), base.with_suffix("")


def resolve(args, tmp: Path) -> tuple[Path, Path, str]:
    from residual_core.checkpoint import checkpoint_paths

    def shipped(kind: str) -> Path | None:
        try:
            from residual_core.checkpoint import default_base_checkpoint, default_residual_checkpoint

            p = default_residual_checkpoint(args.task) if kind == "residual" else default_base_checkpoint()
        except FileNotFoundError:
            return None
        return p if checkpoint_paths(p)[0].is_file() else None

    residual = Path(args.checkpoint) if args.checkpoint else shipped("residual")
    base = Path(args.base_checkpoint) if args.base_checkpoint else shipped("base")
    if residual is not None and base is not None:
        return residual, base, "given/shipped checkpoints"
    stand_res, stand_base = stand_in_checkpoints(tmp, args.task)
    return residual or stand_res, base or stand_base, "untrained stand-ins of the shipped sizes for the missing ones"


def percentiles(x: np.ndarray) -> dict[str, float]:
    return {"n": int(len(x)), "p50_ms": float(np.percentile(x, 50) * 1e3), "p90_ms": float(np.percentile(x, 90) * 1e3),
            "p99_ms": float(np.percentile(x, 99) * 1e3), "max_ms": float(x.max() * 1e3),
            "mean_ms": float(x.mean() * 1e3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--steps", type=int, default=10_000, help="control steps to measure per phase (at least)")
    p.add_argument("--task", default="cube_lift", help="task scene")
    p.add_argument("--phases", nargs="+", choices=("residual", "base"), default=["residual", "base"],
                   help="residual: base -> residual -> arbiter; base: residual switched off at the arbiter")
    p.add_argument("--checkpoint", default="", help="residual checkpoint (default: shipped, else a stand-in)")
    p.add_argument("--base-checkpoint", default="", help="base checkpoint (default: shipped, else a stand-in)")
    p.add_argument("--json-out", default="", help="also write the numbers as JSON here")
    args = p.parse_args(argv)

    from builtin_interfaces.msg import Time
    from residual_bringup.demo.graph_process import (
        GraphProcess,
        isolated_ros_env,
        launch_command,
        reserve_domain_id,
    )
    from residual_bringup.demo.session import DemoSession, expected_nodes

    def ns(stamp: Time) -> int:
        return stamp.sec * 1_000_000_000 + stamp.nanosec

    tmp = Path(tempfile.mkdtemp(prefix="bench_graph_"))
    residual, base, source = resolve(args, tmp)
    os.environ.update(isolated_ros_env(reserve_domain_id(), tmp / "ros_log"))
    overrides = {"sim": {"autostart": False, "render_camera": False}, "pose_estimator": {"source": "gt"}}
    graph = GraphProcess(launch_command(args.task, str(residual), str(base), "estimator", overrides,
                                        use_sim_time=False), dict(os.environ), tmp / "graph.log")
    session = DemoSession(node_name="bench_graph_latency")
    results: dict = {"task": args.task, "checkpoints": source, "residual": str(residual), "base": str(base),
                     "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"}
    status = 0
    try:
        session.wait_for_graph(expected_nodes(with_estimator=True), 180.0, graph.alive)
        session.warm_up(args.task, 0, 180.0, graph.alive)
        for phase in args.phases:
            session.set_residual(phase == "residual", graph.alive)
            with session.cond:
                first = len(session.corrections)
            step_walls, statuses, seed, steps = [], {}, 0, 0
            t0 = time.monotonic()
            while steps < args.steps:
                rec = session.run_episode(phase, args.task, seed, 120.0, graph.alive)
                steps += rec.steps
                step_walls.append(rec.wall_s / max(rec.steps, 1))
                seed += 1
            wall = time.monotonic() - t0
            with session.cond:
                corrections = list(session.corrections[first:])
            latencies, hop1, hop2 = [], [], []
            for c in corrections:
                statuses[c.residual_status] = statuses.get(c.residual_status, 0) + 1
                base_ns, residual_ns, command_ns = ns(c.base_stamp), ns(c.residual_stamp), ns(c.header.stamp)
                if base_ns == 0:
                    continue  # a watchdog command (no base action): not a base -> command path
                latencies.append((command_ns - base_ns) * 1e-9)
                if residual_ns:
                    hop1.append((residual_ns - base_ns) * 1e-9)
                    hop2.append((command_ns - residual_ns) * 1e-9)
            lat = np.array(latencies)
            results[phase] = {"latency": percentiles(lat), "steps": steps, "episodes": seed,
                              "lockstep_step_ms_mean": float(np.mean(step_walls) * 1e3),
                              "steps_per_s": steps / wall, "residual_status": statuses}
            if hop1:
                results[phase]["base_to_residual"] = percentiles(np.array(hop1))
                results[phase]["residual_to_command"] = percentiles(np.array(hop2))
            print(f"[bench] {phase}: {steps} steps in {seed} episodes, {len(lat)} latencies paired", flush=True)
    except Exception as exc:  # noqa: BLE001 (report and stop the graph)
        print(f"[bench] error: {exc}\n{graph.tail()}", file=sys.stderr)
        status = 1
    finally:
        graph.stop()
        session.close()
    if status:
        return status
    title = {"residual": "base -> residual -> arbiter (residual on)", "base": "base -> arbiter (residual off)"}
    print(f"\nGraph latency, base action published -> arbiter command published ({args.task}, lockstep, wall-clock "
          f"stamps; {source}; {results['machine']})\n")
    print("| path | steps | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | lockstep step (ms) | steps/s |")
    print("|---|---|---|---|---|---|---|---|")
    for phase in args.phases:
        r = results[phase]
        lat = r["latency"]
        print(f"| {title[phase]} | {lat['n']} | {lat['p50_ms']:.2f} | {lat['p90_ms']:.2f} | {lat['p99_ms']:.2f} | "
              f"{lat['max_ms']:.1f} | {r['lockstep_step_ms_mean']:.2f} | {r['steps_per_s']:.0f} |")
    for phase in args.phases:
        r = results[phase]
        if "base_to_residual" in r:
            for key, what in (("base_to_residual", "base published -> residual published (hop 1 + residual node)"),
                              ("residual_to_command", "residual published -> command (hop 2 + arbiter)")):
                h = r[key]
                print(f"| {what} | {h['n']} | {h['p50_ms']:.2f} | {h['p90_ms']:.2f} | {h['p99_ms']:.2f} | "
                      f"{h['max_ms']:.1f} | | |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
