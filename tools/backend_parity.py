#!/usr/bin/env python3
"""A second physics backend (MuJoCo Warp or Isaac Lab 3) vs CPU MuJoCo on the scripted experts of every task.

For each task, the same seeds are reset on both backends (initial object poses and joints compared), then one
scripted expert per env runs on each backend (the unchanged controller, tasks and experts; each backend's expert
reacts to its own state), and the largest TCP and object position differences over the episode and the first-success
steps are reported (franka_sim.backend_parity), as a table and JSON.

--backend warp needs `make setup-warp`; Warp compiles its kernels on first use (~45 s cold on 2 CPU cores, then cached
in ~/.cache/warp; a new scene recompiles a few model-specialised kernels). --backend isaaclab needs `make isaac-env`
(Isaac Lab 3 in its own environment, ~7 GB); its worker converts each scene with Isaac Lab's MJCF converter and
compiles its own Warp kernels (~40 s cold for the first scene, then 11-16 s per task to start).

    .venv/bin/python tools/backend_parity.py --json-out /tmp/warp_parity.json
    .venv/bin/python tools/backend_parity.py --tasks cube_lift close_drawer --seeds 0 1 --device cuda:0
    .venv/bin/python tools/backend_parity.py --backend isaaclab --seeds 0 1 2 3 4 5 6 7 8 9
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from franka_sim.backend_parity import compare, expert_rollout
from franka_sim.sim import check_backend
from franka_sim.warp_batch import WarpOptions
from residual_core.tasks import TASK_NAMES, check_task


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["warp", "isaaclab"], default="warp",
                        help="the backend compared with CPU MuJoCo (default warp)")
    parser.add_argument("--tasks", nargs="+", default=list(TASK_NAMES), help="tasks to compare (default: all five)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                        help="episode seeds, one env each (default: 0 1)")
    parser.add_argument("--steps", type=int, default=None,
                        help="control steps per episode (default: the task's horizon)")
    parser.add_argument("--stop-after-success", type=int, default=None,
                        help="stop this many steps after every env succeeded on a backend (default: run all steps)")
    parser.add_argument("--device", default="cpu", help="device of the compared backend: cpu or cuda:N (default cpu)")
    parser.add_argument("--no-graph", action="store_true",
                        help="warp: launch Warp's kernels from Python every substep instead of replaying a graph")
    parser.add_argument("--json-out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    for t in args.tasks:
        check_task(t)
    return args


def format_table(rows: list[dict], backend: str = "warp") -> str:
    lines = ["| task | envs x steps | initial objects / joints | max TCP diff | max object diff | first success "
             f"(mujoco / {backend}) | mujoco ms/step | {backend} ms/step | {backend} setup + first step |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        init = f"{r['initial_obj_pos_m'] * 1000:.1e} mm / {r['initial_joints_rad']:.1e} rad"
        succ = f"{r['first_success_ref']} / {r['first_success_other']}"
        lines.append(f"| {r['task']} | {r['envs']} x {r['steps']} | {init} | {r['max_tcp_mm']:.3f} mm | "
                     f"{r['max_obj_mm']:.3f} mm | {succ} | {r['ref_step_ms']:.1f} | {r['other_step_ms']:.1f} | "
                     f"{r['other_setup_s']:.1f} s |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        check_backend(args.backend, args.device)
    except ValueError as e:
        print(f"backend_parity: {e}", file=sys.stderr)
        return 2
    rows = []
    t0 = time.time()
    for task in args.tasks:
        ref = expert_rollout(task, args.seeds, args.steps, backend="mujoco",
                             stop_after_success=args.stop_after_success)
        other = expert_rollout(task, args.seeds, args.steps, backend=args.backend, device=args.device,
                               stop_after_success=args.stop_after_success, warp=WarpOptions(graph=not args.no_graph))
        row = compare(task, ref, other).as_dict()
        rows.append(row)
        print(f"{task}: TCP {row['max_tcp_mm']:.3f} mm, objects {row['max_obj_mm']:.3f} mm, first success "
              f"{row['first_success_ref']} / {row['first_success_other']}", flush=True)
    print()
    print(format_table(rows, args.backend))
    graph = f", graph {not args.no_graph}" if args.backend == "warp" else ""
    print(f"\n{len(args.tasks)} task(s), seeds {args.seeds}, {args.backend} on {args.device}{graph}, "
          f"{time.time() - t0:.0f} s")
    if args.json_out is not None:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps({"backend": args.backend, "device": args.device,
                                             "graph": not args.no_graph, "seeds": args.seeds,
                                             "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
