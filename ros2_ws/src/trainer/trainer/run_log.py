"""Where a ``residual-train`` run reports: ``metrics.csv`` (one row per collection chunk), ``eval.csv`` (one row per
evaluation), TensorBoard events under ``tb/``, and a console line per evaluation.

Kept apart from the training loop so the loop only schedules (collect, update, evaluate) and the files' columns are
declared in one place (``residual-compare`` and ``plots.plot_learning_curve`` read them).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

METRIC_COLUMNS = ("env_steps", "wall_s", "episodes", "train_success_rate", "critic_loss", "actor_loss", "q_mean",
                  "residual_abs")
EVAL_COLUMNS = ("env_steps", "wall_s", "successes", "episodes", "mean_steps", "residual_abs")


class RunLog:
    """Appends to the run folder's CSV files and TensorBoard log (a resumed run continues them)."""

    def __init__(self, out: Path, new_run: bool, prefix: str = "[residual-train]"):
        from torch.utils.tensorboard import SummaryWriter

        self.out = Path(out)
        self.prefix = prefix
        self._metrics_f = open(self.out / "metrics.csv", "a", newline="")
        self._metrics = csv.writer(self._metrics_f)
        if new_run:
            self._metrics.writerow(METRIC_COLUMNS)
        self.tb = SummaryWriter(str(self.out / "tb"))

    def train_chunk(self, env_steps: int, wall_s: float, episodes: int, stats: dict, info: dict) -> None:
        """One collection chunk: its episode statistics and the last update's losses."""
        rate = stats["successes"] / stats["episodes"] if stats["episodes"] else float("nan")
        self._metrics.writerow([env_steps, round(wall_s, 1), episodes, rate, info.get("critic_loss", ""),
                                info.get("actor_loss", ""), info.get("q_mean", ""), info.get("residual_abs", "")])
        for k, v in info.items():
            self.tb.add_scalar(f"train/{k}", v, env_steps)
        if not math.isnan(rate):
            self.tb.add_scalar("train/success_rate", rate, env_steps)

    def evaluation(self, row: dict, success_rate: float) -> None:
        """One evaluation row (EVAL_COLUMNS keys) to eval.csv, TensorBoard and the console."""
        self.tb.add_scalar("eval/success_rate", success_rate, row["env_steps"])
        path = self.out / "eval.csv"
        new_file = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.writer(f)
            if new_file:
                w.writerow(EVAL_COLUMNS)
            w.writerow([row[k] for k in EVAL_COLUMNS])
        steps = row["mean_steps"]
        print(f"{self.prefix} {row['env_steps']} steps, {row['wall_s']:.0f} s: eval {row['successes']}/"
              f"{row['episodes']} (mean steps to success {steps if steps is None else round(steps, 1)})")

    def flush(self) -> None:
        self._metrics_f.flush()

    def close(self) -> None:
        self._metrics_f.close()
        self.tb.close()
