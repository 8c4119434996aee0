"""`residual-compare`: compare residual-train runs (e.g. TD3 vs SAC, or seeds) from their eval.csv files.

    .venv/bin/residual-compare runs/residual/cube_lift_td3_s0 runs/residual/cube_lift_sac_s0 --out cmp.png

Prints one row per run: the env steps and wall-clock of the first validation evaluation at or above
``--threshold``, the best score, the mean success rate of the last ``--last`` evaluations and the wall-clock per
10,000 env steps; writes one PNG with every run's learning curve. Wall-clock compares only between runs that shared
the machine in the same way.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import tyro

from trainer.plots import plot_learning_curves, read_eval_csv


def summarize(run_dir: Path, threshold: float, last: int, label: str | None = None) -> dict:
    """The comparison row of one run (see the module docstring); ``label`` names it (default: its folder's name)."""
    c = read_eval_csv(run_dir / "eval.csv")
    if len(c["env_steps"]) < 2:
        raise ValueError(f"{run_dir}: fewer than two evaluations in eval.csv")
    label = run_dir.name if label is None else label
    summary_file = run_dir / "best.json"
    algo = json.loads(summary_file.read_text())["training"].get("algorithm", "?") if summary_file.is_file() else "?"
    first = next((i for i, r in enumerate(c["rate"]) if r >= threshold and c["env_steps"][i] > 0), None)
    best = int(np.argmax(c["rate"]))
    span = c["env_steps"][-1] - c["env_steps"][0]
    return {"run": label, "algorithm": algo,
            "first_at_threshold_steps": None if first is None else c["env_steps"][first],
            "first_at_threshold_min": None if first is None else round(c["wall_min"][first], 1),
            "best": f"{c['successes'][best]}/{c['episodes'][best]}", "best_steps": c["env_steps"][best],
            f"mean_rate_last_{last}": round(float(np.mean(c["rate"][-last:])), 3),
            "s_per_10k_steps": round((c["wall_min"][-1] - c["wall_min"][0]) * 60 / span * 10_000, 1) if span else None}


def run_labels(runs: tuple[Path, ...]) -> list[str]:
    """A label per run: its folder's name, or parent/name where two runs share a name (e.g. runs/residual/*/dagger)."""
    names = [r.name for r in runs]
    return [f"{r.parent.name}/{r.name}" if names.count(r.name) > 1 else r.name for r in runs]


def markdown_table(rows: list[dict]) -> str:
    """The rows of :func:`summarize` as a Markdown table (None as "-")."""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join("-" if r[k] is None else str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


@dataclass(frozen=True)
class Args:
    """residual-compare's command line (``tyro.cli(Args)``)."""

    runs: Annotated[tuple[Path, ...], tyro.conf.Positional, tyro.conf.arg(metavar="RUN")]
    """residual-train output folders (each with its eval.csv); at least one."""
    threshold: float = 0.95
    """Success rate the 'first at' columns look for."""
    last: int = 5
    """How many final evaluations the mean rate averages."""
    out: Path | None = None
    """PNG with all learning curves (None: no plot)."""
    title: str = ""
    """Title of the PNG."""
    json_out: Path | None = None
    """Also write the rows as JSON here."""

    def __post_init__(self) -> None:
        if not self.runs:
            raise ValueError("RUN: name at least one residual-train output folder")
        if not 0 <= self.threshold <= 1:
            raise ValueError(f"--threshold must be in [0, 1], got {self.threshold}")
        if self.last < 1:
            raise ValueError(f"--last must be >= 1, got {self.last}")


def parse_args(argv: list[str] | None = None) -> Args:
    """The command line as Args; a bad option prints why and exits with status 2."""
    return tyro.cli(Args, args=argv, prog="residual-compare", description=__doc__)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    try:
        labels = run_labels(a.runs)
        rows = [summarize(r, a.threshold, a.last, label) for r, label in zip(a.runs, labels, strict=True)]
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"residual-compare: {exc}", file=sys.stderr)
        return 2
    print(markdown_table(rows))
    if a.out:
        plot_learning_curves({label: r / "eval.csv" for r, label in zip(a.runs, labels, strict=True)}, a.out, a.title)
        print(f"wrote {a.out}")
    if a.json_out:
        a.json_out.write_text(json.dumps(rows, indent=2) + "\n")
        print(f"wrote {a.json_out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
