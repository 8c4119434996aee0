#!/usr/bin/env python3
"""The data flywheel's evaluation (issue 14): collect with pld-collect, distil with pld-distill over several seeds,
report the distilled base alone per task.

Each experiment is a collection (cached under runs/pld/data/<name>: reused when its pld_collect.json exists) and
pld-distill options; every distill seed writes runs/pld/distilled/<experiment>/seed<k> and its manifest holds the
base-alone evaluation (seeds 0..N-1 of residual-eval, disjoint from the collection's). Prints one markdown row per
experiment (per task: mean over seeds, and min-max) and writes every number as JSON.

    .venv/bin/python tools/pld_sweep.py alpha0.6 alpha0 base_own teleop --seeds 0 1 2 --json-out docs/results_pld.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TASKS = ("cube_lift", "pick_place", "stack_cube", "close_drawer", "stand_cup_up")

COLLECTIONS = {  # name -> pld-collect options
    "a0.6_n50": ["--alpha", "0.6", "--episodes", "50"],
    "a0_n50": ["--alpha", "0", "--episodes", "50"],
    "a0.3_n50": ["--alpha", "0.3", "--episodes", "50"],
    "a0.9_n50": ["--alpha", "0.9", "--episodes", "50"],
    "base_n50": ["--source", "base", "--episodes", "50"],
    "teleop_n50": ["--source", "teleop", "--episodes", "50"],
    "a0.6_n200": ["--alpha", "0.6", "--episodes", "200"],
}
EXPERIMENTS = {  # name -> (collection, pld-distill options, what it is)
    "alpha0.6": ("a0.6_n50", [], "PLD, alpha 0.6, 50 per task, fine-tuned"),
    "alpha0": ("a0_n50", [], "residual from step 0 (alpha 0)"),
    "alpha0.3": ("a0.3_n50", [], "alpha 0.3"),
    "alpha0.9": ("a0.9_n50", [], "alpha 0.9"),
    "base_own": ("base_n50", [], "the base's own successes, 50 per task"),
    "teleop": ("teleop_n50", [], "50 more teleop-like scripted demos per task"),
    "mix": ("a0.6_n50", ["--mix-demos"], "alpha 0.6 + the original demos"),
    "scratch": ("a0.6_n50", ["--from-scratch", "--mix-demos", "--epochs", "60", "--lr", "1e-3"],
                "from scratch on alpha 0.6 + the original demos (base-train's epochs and lr)"),
    "alpha0.6_interv": ("a0.6_n50", ["--frames", "intervention"], "alpha 0.6, only the frames the residual acted in"),
    "alpha0.3_interv": ("a0.3_n50", ["--frames", "intervention"], "alpha 0.3, only the frames the residual acted in"),
    "alpha0.9_interv": ("a0.9_n50", ["--frames", "intervention"], "alpha 0.9, only the frames the residual acted in"),
    "scratch_interv": ("a0.6_n50", ["--frames", "intervention", "--from-scratch", "--mix-demos", "--epochs", "60",
                                    "--lr", "1e-3"],
                       "from scratch on alpha 0.6's residual frames + the original demos (base-train's epochs, lr)"),
    "alpha0_mix": ("a0_n50", ["--mix-demos"], "alpha 0 + the original demos"),
    "mix_interv": ("a0.6_n50", ["--frames", "intervention", "--mix-demos"],
                   "alpha 0.6, the frames the residual acted in + the original demos"),
    **{f"n{n}": ("a0.6_n200", ["--episodes-per-task", str(n), "--frames", "intervention"],
                 f"alpha 0.6, the frames the residual acted in, first {n} episodes per task")
       for n in (10, 25, 50, 100, 200)},
}


def run(cmd: list[str], log: Path) -> None:
    with log.open("w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}; see {log}")


def collect(name: str, base: Path | None) -> dict:
    out = ROOT / "runs/pld/data" / name
    report = out / "meta" / "pld_collect.json"
    if not report.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        extra = ["--base-checkpoint", str(base)] if base else []
        run([str(BIN / "pld-collect"), "--out", str(out), "--overwrite", *COLLECTIONS[name], *extra],
            out.parent / f"{name}.log")
    return json.loads(report.read_text())


def plot_quantity(results: dict, path: Path) -> None:
    """The data-quantity curve: the distilled base's average success against kept episodes per task (n* experiments),
    mean and min-max over distill seeds, with the base before and the teleop control as references."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = sorted(int(k[1:]) for k in results if k[0] == "n" and k[1:].isdigit())
    if not ns:
        return
    mean = [results[f"n{n}"]["average"] for n in ns]
    lo = [min(results[f"n{n}"]["seed_averages"]) for n in ns]
    hi = [max(results[f"n{n}"]["seed_averages"]) for n in ns]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ns, mean, "o-", label="distilled base alone (PLD, alpha 0.6, residual frames)")
    ax.fill_between(ns, lo, hi, alpha=0.25, label="min-max over distill seeds")
    ax.axhline(8.6, color="grey", ls="--", label="shipped base (8.6)")
    if "teleop" in results:
        ax.axhline(results["teleop"]["average"], color="green", ls=":", label="50 more teleop demos per task")
    ax.set_xscale("log")
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_xlabel("kept episodes per task")
    ax.set_ylabel("successes of 20, average over the five tasks")
    ax.set_ylim(0, 20)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiments", nargs="*", metavar="EXPERIMENT",
                   help=f"experiments to run, in order, of: {', '.join(EXPERIMENTS)} (none: only --plot-out from "
                        "--json-out)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="pld-distill seeds per experiment")
    p.add_argument("--eval-episodes", type=int, default=20, help="base-alone evaluation episodes per task")
    p.add_argument("--base-checkpoint", type=Path, default=None, help="the parent base (default: the shipped one)")
    p.add_argument("--json-out", type=Path, default=None, help="write every number here (merged into an existing "
                                                                "file: experiments already there are kept)")
    p.add_argument("--plot-out", type=Path, default=None,
                   help="write the data-quantity curve (the n* experiments in the results) here as PNG")
    a = p.parse_args(argv)
    unknown = [e for e in a.experiments if e not in EXPERIMENTS]
    if unknown:
        p.error(f"unknown experiments {unknown}; known: {', '.join(EXPERIMENTS)}")
    results = json.loads(a.json_out.read_text()) if a.json_out and a.json_out.exists() else {}
    for name in a.experiments:
        coll_name, opts, about = EXPERIMENTS[name]
        t0 = time.time()
        coll = collect(coll_name, a.base_checkpoint)
        per_seed = []
        for seed in a.seeds:
            out = ROOT / "runs/pld/distilled" / name / f"seed{seed}"
            out.parent.mkdir(parents=True, exist_ok=True)
            extra = ["--base-checkpoint", str(a.base_checkpoint)] if a.base_checkpoint else []
            run([str(BIN / "pld-distill"), "--dataset", str(ROOT / "runs/pld/data" / coll_name), "--out", str(out),
                 "--seed", str(seed), "--eval-episodes", str(a.eval_episodes), *opts, *extra],
                out.parent / f"seed{seed}.log")
            man = json.loads(out.with_suffix(".json").read_text())
            per_seed.append({t: man["evaluation"][t]["successes"] for t in TASKS})
        mean = {t: float(np.mean([s[t] for s in per_seed])) for t in TASKS}
        results[name] = {"about": about, "collection": coll_name, "distill_options": opts, "seeds": a.seeds,
                         "eval_episodes": a.eval_episodes, "per_seed": per_seed, "mean": mean,
                         "average": float(np.mean(list(mean.values()))),
                         "seed_averages": [float(np.mean(list(s.values()))) for s in per_seed],
                         "collection_keep_rate": {r["task"]: r["keep_rate"] for r in coll["tasks"]},
                         "wall_s": round(time.time() - t0, 1)}
        cells = " | ".join(f"{mean[t]:.1f} ({min(s[t] for s in per_seed)}-{max(s[t] for s in per_seed)})"
                           for t in TASKS)
        print(f"| {name} | {cells} | **{results[name]['average']:.1f}** |   [{results[name]['wall_s']} s]",
              flush=True)
        if a.json_out:
            a.json_out.parent.mkdir(parents=True, exist_ok=True)
            a.json_out.write_text(json.dumps(results, indent=2))
    if a.plot_out:
        plot_quantity(results, a.plot_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
