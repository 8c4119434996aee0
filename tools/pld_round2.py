#!/usr/bin/env python3
"""The data flywheel's second round (issue 14): new specialists trained against the distilled base, then probe and
distil again.

Round one (tools/pld_sweep.py) distils the shipped base (B0) with the shipped residuals' corrections into B1. To the
shipped residuals B1 is just another base (they add little on top of it), so the second round first trains the
specialists against B1, then collects with them and distils B1 into B2:

1. ``residual-train`` per task: the shipped residual's recipe (its manifest's options: residual scale, success
   reward, seed, ...), frozen base B1, the actor started from the shipped residual (``--init-actor``: a fine-tune;
   the critics start fresh) for ``--steps`` online steps; the best validation checkpoint becomes
   ``<out>/residual/<task>``;
2. ``residual-eval`` of B1 + the new residuals and of B1 + the shipped ones (seeds 0..N-1, the same protocol as the
   tables);
3. ``pld-collect`` with B1 and the new residuals (``--alpha``), ``pld-distill`` (the frames the residual acted in)
   from B1 over ``--seeds``; each distilled base's manifest holds its base-alone evaluation.

Everything goes under ``--out`` (default runs/pld/round2); a step whose output exists is skipped (rerun to resume).
One JSON with every number is written to ``--json-out``.

    .venv/bin/python tools/pld_round2.py --parent runs/pld/distilled/alpha0.3_interv/seed0 --steps 60000 \\
        --json-out docs/results_pld_round2.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from pld_sweep import BIN, ROOT, TASKS
from pld_sweep import run as sweep_run

# The shipped manifests' options that define the recipe (the rest, e.g. out_dir, resume, total_steps, eval cadence,
# are this round's own). success_bonus 0.0 is what the older trainer called the task's own dense reward.
_RECIPE_KEYS = ("seed", "num_envs", "offline_episodes", "offline_ratio", "warmup_steps", "updates_per_step",
                "buffer_size", "exploration_noise", "n_step", "reward_scale", "pose_noise", "dropout")


def recipe(task: str, td3_overrides: dict[str, float] | None = None) -> list[str]:
    """``residual-train`` options reproducing the shipped residual's recipe for ``task`` (from its manifest), with
    ``td3_overrides`` (e.g. a longer critic warm-up for a fine-tune) replacing the manifest's TD3 values."""
    args = json.loads((ROOT / "checkpoints/residual" / f"{task}.json").read_text())["training"]["args"]
    out: list[str] = []
    for key in _RECIPE_KEYS:
        out += [f"--{key.replace('_', '-')}", str(args[key])]
    out += ["--residual-scale", *(str(v) for v in args["residual_scale"])]
    out += ["--success-reward", args.get("success_reward", "task")]
    out += ["--terminate-on-success" if args["terminate_on_success"] else "--no-terminate-on-success"]
    for key, value in {**args.get("td3", {}), **(td3_overrides or {})}.items():
        flag = f"--td3.{key.replace('_', '-')}"
        if isinstance(value, bool):
            out.append(flag if value else f"--td3.no-{key.replace('_', '-')}")
        elif isinstance(value, list):
            out += [flag, *(str(v) for v in value)]
        else:
            out += [flag, str(value)]
    return out


def run(cmd: list[str], log: Path) -> None:
    """pld_sweep's runner (output to ``log``, stop on failure), with the command printed first."""
    log.parent.mkdir(parents=True, exist_ok=True)
    print("$", " ".join(cmd), f"  > {log}", flush=True)
    sweep_run(cmd, log)


def evaluate(out: Path, parent: Path, residual_dir: Path | None, episodes: int, name: str) -> dict[str, int]:
    """Base + residual successes per task (seeds 0..episodes-1); cached in ``out/eval_<name>.json``."""
    cache = out / f"eval_{name}.json"
    if not cache.exists():
        result = {}
        for task in TASKS:
            js = out / "eval" / f"{name}_{task}.json"
            extra = ["--residual-checkpoint", str(residual_dir / task)] if residual_dir else []
            run([str(BIN / "residual-eval"), "--task", task, "--episodes", str(episodes), "--base-checkpoint",
                 str(parent), "--json-out", str(js), *extra], js.with_suffix(".log"))
            result[task] = _successes(json.loads(js.read_text()), task)
        cache.write_text(json.dumps(result, indent=2))
    return json.loads(cache.read_text())


def _successes(report: dict, task: str) -> int:
    """Base + residual successes of ``task`` in a residual-eval JSON."""
    (entry,) = [r for r in report["results"] if r["task"] == task]
    return int(entry["residual"]["successes"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parent", type=Path, required=True,
                   help="the round-one distilled base B1 (a base checkpoint path without suffix)")
    p.add_argument("--out", type=Path, default=ROOT / "runs/pld/round2", help="where everything goes")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS, help="tasks to train specialists for")
    p.add_argument("--steps", type=int, default=60000, help="online env steps of each specialist's fine-tune")
    p.add_argument("--eval-every", type=int, default=10000, help="validation cadence of the fine-tunes")
    p.add_argument("--critic-warmup", type=int, default=None,
                   help="critic-only updates before the actor moves (default: the shipped recipe's, 1000); the "
                        "fine-tune's critics start fresh, and with 1000 the actor first unlearns (pick_place 20 -> "
                        "2/20 after 10k steps)")
    p.add_argument("--actor-lr", type=float, default=None, help="the fine-tune's actor learning rate (default: the "
                                                                "shipped recipe's)")
    p.add_argument("--alpha", type=float, default=0.3, help="pld-collect's prefix fraction")
    p.add_argument("--episodes", type=int, default=50, help="kept episodes per task of the collection")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="pld-distill seeds")
    p.add_argument("--eval-episodes", type=int, default=20, help="evaluation episodes per task (seeds 0..N-1)")
    p.add_argument("--json-out", type=Path, default=None, help="write every number here")
    a = p.parse_args(argv)
    parent = a.parent.resolve()
    if not parent.with_suffix(".safetensors").exists():
        p.error(f"no base checkpoint at {parent}.safetensors")
    out = a.out.resolve()
    residual_dir = out / "residual"
    residual_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    timing: dict[str, float] = {}

    overrides = {k: v for k, v in (("critic_warmup", a.critic_warmup), ("actor_lr", a.actor_lr)) if v is not None}
    # 1. specialists against B1 (fine-tunes of the shipped ones)
    for task in a.tasks:
        if (residual_dir / f"{task}.safetensors").exists():
            continue
        t = time.time()
        run_dir = out / "train" / task
        run([str(BIN / "residual-train"), "--task", task, "--base-checkpoint", str(parent), "--init-actor",
             str(ROOT / "checkpoints/residual" / task), "--total-steps", str(a.steps), "--eval-every",
             str(a.eval_every), "--eval-episodes", "20", "--out-dir", str(run_dir), *recipe(task, overrides)],
            out / "train" / f"{task}.log")
        for suffix in (".safetensors", ".json"):
            shutil.copy(run_dir / f"best{suffix}", residual_dir / f"{task}{suffix}")
        timing[f"train_{task}_s"] = round(time.time() - t, 1)
    # tasks not retrained keep the shipped specialist (the collection needs one per task)
    for task in TASKS:
        if not (residual_dir / f"{task}.safetensors").exists():
            for suffix in (".safetensors", ".json"):
                shutil.copy(ROOT / "checkpoints/residual" / f"{task}{suffix}", residual_dir / f"{task}{suffix}")

    # 2. B1 + the new specialists, B1 + the shipped ones
    new = evaluate(out, parent, residual_dir, a.eval_episodes, "b1_new_residuals")
    shipped = evaluate(out, parent, None, a.eval_episodes, "b1_shipped_residuals")

    # 3. collect with them, distil B1 again
    data = out / "data"
    report = data / "meta" / "pld_collect.json"
    if not report.exists():
        t = time.time()
        run([str(BIN / "pld-collect"), "--out", str(data), "--overwrite", "--alpha", str(a.alpha), "--episodes",
             str(a.episodes), "--base-checkpoint", str(parent), "--residual-dir", str(residual_dir)],
            out / "collect.log")
        timing["collect_s"] = round(time.time() - t, 1)
    coll = json.loads(report.read_text())
    per_seed = []
    for seed in a.seeds:
        dst = out / "distilled" / f"seed{seed}"
        if not dst.with_suffix(".json").exists():
            run([str(BIN / "pld-distill"), "--dataset", str(data), "--out", str(dst), "--seed", str(seed),
                 "--base-checkpoint", str(parent), "--frames", "intervention", "--eval-episodes",
                 str(a.eval_episodes)], dst.parent / f"seed{seed}.log")
        man = json.loads(dst.with_suffix(".json").read_text())
        per_seed.append({t: man["evaluation"][t]["successes"] for t in TASKS})
    b1 = json.loads(parent.with_suffix(".json").read_text())["evaluation"]
    result = {
        "parent": str(parent), "parent_alone": {t: b1[t]["successes"] for t in TASKS},
        "steps": a.steps, "td3_overrides": overrides, "alpha": a.alpha, "episodes": a.episodes,
        "eval_episodes": a.eval_episodes,
        "retrained": a.tasks, "b1_plus_new_residuals": new, "b1_plus_shipped_residuals": shipped,
        "collection_keep_rate": {r["task"]: r["keep_rate"] for r in coll["tasks"]},
        "b2_per_seed": per_seed, "b2_mean": {t: float(np.mean([s[t] for s in per_seed])) for t in TASKS},
        "b2_seed_averages": [float(np.mean(list(s.values()))) for s in per_seed],
        "timing": timing, "wall_s": round(time.time() - t0, 1),
    }
    rows = [("B1 alone", result["parent_alone"]), ("B1 + shipped residuals", shipped),
            ("B1 + round-2 residuals", new), ("B2 alone (mean of seeds)", result["b2_mean"])]
    print("| | " + " | ".join(TASKS) + " | average |")
    print("|---" * (len(TASKS) + 2) + "|")
    for name, row in rows:
        print(f"| {name} | " + " | ".join(f"{row[t]:g}" for t in TASKS) + f" | {np.mean(list(row.values())):.1f} |")
    print("B2 per seed:", ", ".join(f"{s:.1f}" for s in result["b2_seed_averages"]))
    if a.json_out:
        a.json_out.parent.mkdir(parents=True, exist_ok=True)
        a.json_out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
