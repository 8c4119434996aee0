"""PNG plots of training and evaluation (matplotlib, headless)."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_learning_curve(eval_csv: Path, out_png: Path, title: str = "") -> Path:
    """Evaluation success (and mean |residual|) against env steps and wall-clock, from eval.csv."""
    with open(eval_csv) as f:
        rows = list(csv.DictReader(f))
    steps = [int(r["env_steps"]) for r in rows]
    rate = [int(r["successes"]) / max(int(r["episodes"]), 1) for r in rows]
    wall = [float(r["wall_s"]) / 60 for r in rows]
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    ax[0].plot(steps, rate, "o-", color="tab:blue")
    ax[0].set_xlabel("environment steps")
    ax[0].xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x / 1000:g}k"))
    ax[0].set_ylabel("eval success rate")
    ax[0].set_ylim(-0.02, 1.02)
    ax[0].grid(alpha=0.3)
    ax[1].plot(wall, rate, "o-", color="tab:green")
    ax[1].set_xlabel("wall-clock (min)")
    ax[1].set_ylim(-0.02, 1.02)
    ax[1].grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def plot_eval_table(results: list[dict], out_png: Path, title: str = "") -> Path:
    """Grouped bars: base vs base+residual successes per task (results rows from residual-eval)."""
    tasks = [r["task"] for r in results]
    n = [r["episodes"] for r in results]
    base = [r["base"]["successes"] for r in results]
    resid = [r["residual"]["successes"] if r.get("residual") else 0 for r in results]
    fig, ax = plt.subplots(figsize=(1.6 * len(tasks) + 2, 3.6))
    x = range(len(tasks))
    ax.bar([i - 0.2 for i in x], base, width=0.4, label="base", color="tab:gray")
    if any(r.get("residual") for r in results):
        ax.bar([i + 0.2 for i in x], resid, width=0.4, label="base + residual", color="tab:blue")
    ax.set_xticks(list(x), tasks, rotation=15)
    ax.set_ylabel(f"successes / {max(n) if n else 0}")
    ax.set_ylim(0, max(n + [1]) * 1.05)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
