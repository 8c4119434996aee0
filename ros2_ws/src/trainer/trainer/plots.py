"""PNG plots of training and evaluation (matplotlib, headless)."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_eval_csv(eval_csv: Path) -> dict[str, list[float]]:
    """A run's eval.csv as columns: env_steps, wall_min, rate (successes / episodes), successes, episodes."""
    with open(eval_csv) as f:
        rows = list(csv.DictReader(f))
    return {"env_steps": [int(r["env_steps"]) for r in rows], "wall_min": [float(r["wall_s"]) / 60 for r in rows],
            "rate": [int(r["successes"]) / max(int(r["episodes"]), 1) for r in rows],
            "successes": [int(r["successes"]) for r in rows], "episodes": [int(r["episodes"]) for r in rows]}


def plot_learning_curves(runs: dict[str, Path], out_png: Path, title: str = "") -> Path:
    """Evaluation success against env steps and wall-clock, one line per run (label -> its eval.csv)."""
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    single = len(runs) == 1
    for i, (label, eval_csv) in enumerate(runs.items()):
        c = read_eval_csv(eval_csv)
        colors = ("tab:blue", "tab:green") if single else (f"C{i}", f"C{i}")
        ax[0].plot(c["env_steps"], c["rate"], "o-", color=colors[0], label=label, markersize=4)
        ax[1].plot(c["wall_min"], c["rate"], "o-", color=colors[1], label=label, markersize=4)
    ax[0].set_xlabel("environment steps")
    ax[0].xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x / 1000:g}k"))
    ax[0].set_ylabel("eval success rate")
    ax[1].set_xlabel("wall-clock (min)")
    for a in ax:
        a.set_ylim(-0.02, 1.02)
        a.grid(alpha=0.3)
    if not single:
        ax[1].legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def plot_learning_curve(eval_csv: Path, out_png: Path, title: str = "") -> Path:
    """Evaluation success against env steps and wall-clock, from one run's eval.csv."""
    return plot_learning_curves({"run": eval_csv}, out_png, title)


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
