"""What the demo measured, as plain data (no rclpy): per-step corrections, episodes, the success table, the CSV
of corrections and the results JSON."""

from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PHASES = ("base", "residual")
"""Demo phases: the base alone (residual switched off at the arbiter), then base + residual."""
PHASE_TITLES = {"base": "base", "residual": "base + residual"}


@dataclass(frozen=True)
class StepRecord:
    """One control step as the arbiter decided it (a Correction), plus the measured TCP position."""

    step: int
    base: np.ndarray
    """(7,) base action."""
    residual: np.ndarray
    """(7,) residual actually added (zeros when not applied)."""
    final: np.ndarray
    """(7,) commanded action after composition and the safety envelope."""
    status: str
    """Residual status: ok, disabled, late, masked, rejected_nan."""
    clipped: bool
    clip_reasons: tuple[str, ...]
    target_pos: np.ndarray | None
    """(3,) commanded TCP position; None when the arbiter had no valid command."""
    target_quat: np.ndarray | None
    tcp_pos: np.ndarray | None
    """(3,) measured TCP position the step started from (None if its /tcp_pose was not received)."""


@dataclass
class EpisodeRecord:
    """One episode of one phase."""

    phase: str
    seed: int
    episode: int
    """The sim's episode counter."""
    success: bool
    steps: int
    """Control steps applied (steps to success when successful)."""
    reason: str
    """success, horizon, or error."""
    wall_s: float
    records: list[StepRecord] = field(default_factory=list)
    error: str = ""

    def summary(self) -> dict[str, Any]:
        return {"phase": self.phase, "seed": self.seed, "episode": self.episode, "success": self.success,
                "steps": self.steps, "reason": self.reason, "wall_s": round(self.wall_s, 3),
                "steps_per_s": round(self.steps / self.wall_s, 1) if self.wall_s > 0 else None,
                "residual_status": dict(Counter(r.status for r in self.records)),
                "clipped_steps": sum(r.clipped for r in self.records), "error": self.error}


def residual_magnitudes(records: list[StepRecord]) -> tuple[np.ndarray, np.ndarray]:
    """Per step |residual translation| (m) and |residual rotation vector| (rad)."""
    if not records:
        return np.zeros(0), np.zeros(0)
    r = np.stack([s.residual for s in records])
    return np.linalg.norm(r[:, 0:3], axis=1), np.linalg.norm(r[:, 3:6], axis=1)


def summarize(episodes: list[EpisodeRecord]) -> dict[str, Any]:
    """Success count, rate and mean steps-to-success of one phase's episodes, and what the arbiter did."""
    ok = [e for e in episodes if e.success]
    steps = [e.steps for e in ok]
    all_steps = [r for e in episodes for r in e.records]
    trans, rot = residual_magnitudes(all_steps)
    wall = sum(e.wall_s for e in episodes)
    applied = sum(e.steps for e in episodes)
    return {
        "episodes": len(episodes),
        "successes": len(ok),
        "success_rate": len(ok) / len(episodes) if episodes else math.nan,
        "mean_steps_to_success": float(np.mean(steps)) if steps else math.nan,
        "seeds": [e.seed for e in episodes],
        "success": [e.success for e in episodes],
        "steps": [e.steps for e in episodes],
        "residual_status": dict(Counter(r.status for r in all_steps)),
        "clipped_steps": sum(r.clipped for r in all_steps),
        "clip_reasons": dict(Counter(x for r in all_steps for x in r.clip_reasons)),
        "residual_translation_mm_mean": float(trans.mean() * 1e3) if len(trans) else 0.0,
        "residual_rotation_deg_mean": float(np.degrees(rot.mean())) if len(rot) else 0.0,
        "steps_per_s": applied / wall if wall > 0 else math.nan,
        "errors": [e.error for e in episodes if e.error],
    }


def _fmt_steps(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:.1f}"


def format_table(task: str, summaries: dict[str, dict[str, Any]]) -> str:
    """Markdown success table: one row, base and base + residual columns (phases that did not run show -)."""
    cells = []
    for phase in PHASES:
        s = summaries.get(phase)
        cells.append("-" if s is None else f"{s['successes']}/{s['episodes']}")
    steps = [_fmt_steps(summaries[p]["mean_steps_to_success"]) if p in summaries else "-" for p in PHASES]
    return "\n".join([
        "| task | base | base + residual | mean steps (base) | mean steps (base + residual) |",
        "|---|---|---|---|---|",
        f"| {task} | {cells[0]} | {cells[1]} | {steps[0]} | {steps[1]} |",
    ])


CSV_FIELDS = (["phase", "seed", "episode", "step", "residual_status", "clipped", "clip_reasons"]
              + [f"base_{i}" for i in range(7)] + [f"residual_{i}" for i in range(7)] + [f"final_{i}" for i in range(7)]
              + ["tcp_x", "tcp_y", "tcp_z", "target_x", "target_y", "target_z", "target_qx", "target_qy", "target_qz",
                 "target_qw"])


def _cells(x: np.ndarray | None, n: int) -> list[str]:
    return [""] * n if x is None else [repr(float(v)) for v in x]


def write_corrections_csv(path: str | Path, episodes: list[EpisodeRecord]) -> int:
    """One row per step of every episode (columns CSV_FIELDS; floats written exactly); returns the row count."""
    rows = 0
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_FIELDS)
        for e in episodes:
            for r in e.records:
                w.writerow([e.phase, e.seed, e.episode, r.step, r.status, int(r.clipped), ";".join(r.clip_reasons),
                            *_cells(r.base, 7), *_cells(r.residual, 7), *_cells(r.final, 7), *_cells(r.tcp_pos, 3),
                            *_cells(r.target_pos, 3), *_cells(r.target_quat, 4)])
                rows += 1
    return rows


def read_corrections_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def jsonable(value: Any) -> Any:
    """NaN/inf -> None, numpy -> Python, Paths -> str (for json.dumps with allow_nan=False)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value
