#!/usr/bin/env python3
"""Evaluate residual checkpoints of one task under every sim-to-real condition of issue 11, side by side.

Conditions: nominal; each held-out base of checkpoints/bases/held_out.json alone (never in a training population);
each named physics shift of franka_sim.dynamics.SHIFTS. Every condition runs residual-eval's own evaluate_task on the
same seeds (default 0-19: disjoint from training and validation seeds) for the base alone and each checkpoint. Prints a
markdown table (successes, and in brackets the episodes the base alone solved and the residual lost), writes the rows
as JSON. The checkpoints' composition follows residual-eval --compose-from (auto: what each was trained with; the base
row uses the first checkpoint's).

    .venv/bin/python tools/robust_eval.py --task cube_lift \
        --residual shipped=checkpoints/residual/cube_lift new=runs/residual/cube_lift/robust_target/best \
        --compose-from target --json-out docs/results_robust_cube_lift.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from franka_sim.dynamics import SHIFTS
from residual_core.checkpoint import default_base_checkpoint
from residual_core.runtime import limit_blas_threads
from residual_core.tasks import check_task
from residual_learning.base_policy import BasePolicy
from trainer.base_population import BasePopulation, read_members
from trainer.evaluate import Args, evaluate_task

ROOT = Path(__file__).resolve().parents[1]


def held_out_bases(path: Path) -> list[tuple[str, Path | None, Path | None]]:
    """(label, base checkpoint, single-member population JSON) per held-out base."""
    out = []
    raw = json.loads(path.read_text())["members"]
    for m, spec in zip(read_members(path), raw, strict=True):
        plain = m.action_noise == 0 and m.action_bias == 0 and m.delay_steps == 0 and m.execute_steps is None
        label = f"base {Path(m.checkpoint).name}" + ("" if plain else " perturbed")
        if plain:
            out.append((label, Path(m.checkpoint), None))
        else:
            one = Path(tempfile.mkdtemp()) / "member.json"
            one.write_text(json.dumps({"members": [spec]}))
            out.append((label, None, one))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, help="the task (one of residual_core.tasks.TASK_NAMES)")
    p.add_argument("--residual", nargs="+", required=True, metavar="LABEL=CHECKPOINT",
                   help="residual checkpoints to compare (path without suffix), each with a column label")
    p.add_argument("--episodes", type=int, default=20, help="episodes per condition (seeds 0..N-1)")
    p.add_argument("--compose-from", choices=["auto", "measured", "target"], default="auto",
                   help="where commands are composed from (residual-eval --compose-from)")
    p.add_argument("--conditions", nargs="*", default=None,
                   help="subset of conditions to run (nominal, base labels such as 'base seed200', shift names)")
    p.add_argument("--held-out", type=Path, default=ROOT / "checkpoints/bases/held_out.json",
                   help="held-out bases (trainer.base_population JSON)")
    p.add_argument("--json-out", type=Path, default=None, help="write every row here")
    a = p.parse_args(argv)
    check_task(a.task)
    limit_blas_threads(1)
    residuals = []
    for item in a.residual:
        label, sep, path = item.partition("=")
        if not sep:
            p.error(f"--residual {item!r}: expected LABEL=CHECKPOINT")
        residuals.append((label, Path(path)))
    conditions = [("nominal", None, None, "nominal")]
    conditions += [(label, ck, pop, "nominal") for label, ck, pop in held_out_bases(a.held_out)]
    conditions += [(name, None, None, name) for name in SHIFTS if name != "nominal"]
    if a.conditions:
        unknown = set(a.conditions) - {c[0] for c in conditions}
        if unknown:
            p.error(f"unknown conditions {sorted(unknown)}; known: {[c[0] for c in conditions]}")
        conditions = [c for c in conditions if c[0] in a.conditions]
    rows = []
    for label, ck, pop, dyn in conditions:
        t0 = time.time()
        base = (BasePolicy.from_checkpoint(ck or default_base_checkpoint()) if pop is None
                else BasePopulation.load(pop))
        row = {"condition": label, "residuals": {}}
        for i, (name, path) in enumerate(residuals):
            args = Args(task=a.task, episodes=a.episodes, residual_checkpoint=path, dynamics=dyn,
                        compose_from=a.compose_from, base_checkpoint=ck, base_population=pop)
            r = evaluate_task(a.task, args, base)
            if i == 0:
                row["base"] = r["base"]["successes"]
                row["base_success"] = r["base"]["success"]
            b, s = np.asarray(r["base"]["success"], bool), np.asarray(r["residual"]["success"], bool)
            row["residuals"][name] = {"successes": int(s.sum()), "lost": int(np.sum(b & ~s)),
                                      "gained": int(np.sum(~b & s)), "compose_from": r["compose_from"],
                                      "base_successes": int(b.sum()), "success": s.tolist()}
        row["wall_s"] = round(time.time() - t0, 1)
        rows.append(row)
        cells = " | ".join(f"{v['successes']} ({v['lost']})" for v in row["residuals"].values())
        print(f"{label:>24}: base {row['base']:>2} | {cells}   [{row['wall_s']} s]", flush=True)
    names = [n for n, _ in residuals]
    print(f"\n| condition | base | {' | '.join(names)} |\n|---|---|{'---|' * len(names)}")
    for row in rows:
        print(f"| {row['condition']} | {row['base']} | " + " | ".join(
            f"{row['residuals'][n]['successes']} ({row['residuals'][n]['lost']})" for n in names) + " |")
    held = [r for r in rows if r["condition"] != "nominal"]
    for n in names:
        if held:
            print(f"{n}: average over the {len(held)} held-out conditions "
                  f"{np.mean([r['residuals'][n]['successes'] for r in held]):.1f}/{a.episodes}, lost "
                  f"{sum(r['residuals'][n]['lost'] for r in held)}")
    if a.json_out:
        a.json_out.parent.mkdir(parents=True, exist_ok=True)
        a.json_out.write_text(json.dumps({"task": a.task, "episodes": a.episodes, "compose_from": a.compose_from,
                                          "residuals": {n: str(pth) for n, pth in residuals}, "rows": rows}, indent=2))
        print(f"wrote {a.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
