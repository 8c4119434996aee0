#!/usr/bin/env python3
"""Plot residual-dagger learning curves of several runs in one figure: validation successes against training minutes.

    .venv/bin/python tools/dagger_curves.py runs/residual/*/dagger_final --out docs/img/learning_curves_dagger.png

Each run folder holds the eval.csv residual-dagger writes (one row per iteration); its label is the task from the
folder's parent.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="residual-dagger output folders (each with an eval.csv)")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    a = p.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    episodes = None
    for run in a.runs:
        path = run / "eval.csv"
        if not path.is_file():
            print(f"no eval.csv in {run}", file=sys.stderr)
            return 2
        rows = list(csv.DictReader(path.open()))
        episodes = int(rows[0]["episodes"])
        minutes = [float(r["wall_clock_s"]) / 60 for r in rows]
        ax.plot(minutes, [int(r["successes"]) for r in rows], "o-", ms=3, label=run.parent.name)
    ax.set_xlabel("training wall-clock (min, this machine)")
    ax.set_ylabel(f"validation successes of {episodes}")
    ax.set_ylim(0, (episodes or 40) * 1.05)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("residual-dagger (base population, physics, perception model)", fontsize=10)
    fig.tight_layout()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=120)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
