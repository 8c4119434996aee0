"""`residual-perception`: record the camera estimator's output in sim, fit the perception model to it, and check the
model against the estimator on held-out episodes (trainer.perception_model; docs/PERCEPTION.md).

    residual-perception record --task all --seeds 300-339 --out logs/perception/fit_300-339.csv
    residual-perception fit --log logs/perception/fit_300-339.csv --out checkpoints/perception/camera.json
    residual-perception record --task all --seeds 400-419 --out logs/perception/check_400-419.csv
    residual-perception check --log logs/perception/check_400-419.csv --model checkpoints/perception/camera.json \\
        --json-out docs/perception_check.json --png-out docs/img/perception_check.png

``record`` runs base + residual episodes on the graph's camera path offline (as ``residual-eval --pose-source
camera``: the two sim cameras rendered every step, the node's ArUco estimator, the residual node's presence rule) and
logs per image and object the true pose, the TCP pose, the gripper width and the joint positions, and what the
estimator published. A real camera log in the same columns (docs/PERCEPTION.md) is fitted the same way.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import tyro
from residual_core.tasks import TASK_NAMES, check_task
from tqdm import tqdm

from trainer.camera_log import CameraLog
from trainer.perception_geometry import PHASES
from trainer.perception_model import PerceptionModelParams, compare, fit, model_on_log


def parse_seeds(text: str) -> list[int]:
    """"100-105" -> 100..105; "1,4,9" -> those; "7" -> [7]."""
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ValueError(f"seeds: {part!r} is not N or N-M") from None
        if b < a:
            raise ValueError(f"seeds: {part!r} is an empty range")
        out.extend(range(a, b + 1))
    if not out:
        raise ValueError("seeds: none given")
    return out


def sim_camera_positions(front_camera: bool = True) -> list[list[float]]:
    from residual_core.sim_camera import SIM_CAMERA_POS, SIM_FRONT_CAMERA_POS

    return [list(SIM_CAMERA_POS)] + ([list(SIM_FRONT_CAMERA_POS)] if front_camera else [])


class _Recorder:
    """Wraps a CameraPerception: logs every image's estimator output with the state it was rendered from."""

    def __init__(self, inner, task: str, seeds: list[int], min_confidence: float):
        self.inner, self.task, self.seeds, self.min_confidence = inner, task, seeds, min_confidence
        self.rows: list[tuple] = []
        self._state = None
        self._episode = np.zeros(0, dtype=np.int64)
        self._started = 0
        inner.on_image = self._on_image

    @property
    def num_envs(self) -> int:
        return self.inner.num_envs

    def reset(self, num_envs: int) -> None:
        self.inner.reset(num_envs)
        self._episode = np.array([self._next() for _ in range(num_envs)])

    def reset_env(self, env_ids) -> None:
        self.inner.reset_env(env_ids)
        for i in np.atleast_1d(env_ids):
            self._episode[i] = self._next()

    def _next(self) -> int:
        seed = self.seeds[min(self._started, len(self.seeds) - 1)]
        self._started += 1
        return seed

    def view(self, s):
        self._state = s
        return self.inner.view(s)

    def _on_image(self, env: int, step: int, entries) -> None:
        s = self._state
        for k, e in enumerate(entries):
            det = float(e.confidence) >= self.min_confidence and bool(np.any(np.asarray(e.quat_xyzw) != 0))
            self.rows.append((self.task, int(self._episode[env]), int(step), e.name, s.obj_pos[env, k].copy(),
                              s.obj_quat[env, k].copy(), s.tcp_pos[env].copy(), s.tcp_quat[env].copy(),
                              float(s.gripper_width[env]), s.joint_pos[env].copy(), det, np.asarray(e.pos, float),
                              np.asarray(e.quat_xyzw, float)))

    def log(self) -> CameraLog:
        r = list(zip(*self.rows, strict=True))
        return CameraLog(task=np.array(r[0]), episode=np.array(r[1]), step=np.array(r[2]), object=np.array(r[3]),
                         true_pos=np.array(r[4]), true_quat=np.array(r[5]), tcp_pos=np.array(r[6]),
                         tcp_quat=np.array(r[7]), gripper_width=np.array(r[8]), joint_pos=np.array(r[9]),
                         detected=np.array(r[10], dtype=bool), est_pos=np.array(r[11]), est_quat=np.array(r[12]))


def record_task(task: str, seeds: list[int], base, residual_checkpoint: Path | None = None,
                front_camera: bool = True, progress=None) -> tuple[CameraLog, dict]:
    """Base + residual episodes of ``task`` on the camera path, one per seed; the log and the episodes' outcome."""
    from residual_core.checkpoint import default_residual_checkpoint
    from residual_core.observation import layout_for_task
    from residual_core.pipeline import ActionPipeline
    from residual_core.residual_policy import ResidualPolicy

    from trainer.camera_path import CameraPathConfig, CameraPerception
    from trainer.franka_backend import FrankaSimBackend
    from trainer.rollout import evaluate_episodes

    path = residual_checkpoint or default_residual_checkpoint(task)
    policy = ResidualPolicy.from_checkpoint(path, expected_task=task, expected_layout=layout_for_task(task))
    backend = FrankaSimBackend(task, 1, seed=0)
    try:
        # Without the residual node's occlusion tracking: the episodes the shipped camera.json was fitted from (the
        # estimator's output does not depend on it; only the residual's path through the episode does).
        config = CameraPathConfig(front_camera=front_camera, tracking=None)
        rec = _Recorder(CameraPerception(backend, config), task, seeds, config.freshness.min_confidence)
        res = evaluate_episodes(backend, base, seeds, residual_fn=policy, augmenter=rec,
                                pipeline=ActionPipeline(residual_scale=tuple(policy.manifest.action_scale)),
                                progress=progress)
    finally:
        backend.close()
    return rec.log(), {"task": task, "seeds": seeds, "successes": res.successes, "residual_checkpoint": str(path)}


@dataclass
class Record:
    """Record the camera estimator's output on base + residual episodes in sim (the camera path offline)."""

    out: Path
    """CSV camera log to write (columns: trainer.camera_log.LOG_COLUMNS)."""
    task: str = "all"
    """Task, or 'all' for the five."""
    seeds: str = "300-339"
    """Episode seeds ("100-105", "1,4,9"): keep them disjoint from evaluation seeds (0-99) and from the seeds the
    model is checked on."""
    base_checkpoint: Path | None = None
    """Base policy checkpoint (default: the shipped one)."""
    one_camera: bool = False
    """Only the scene camera (the default is the sim graph's two cameras)."""


@dataclass
class Fit:
    """Fit the perception model to camera logs."""

    log: list[Path]
    """Camera log(s) (CSV) to fit to (``record``'s, or a real camera's in the same columns)."""
    out: Path
    """Model JSON to write."""
    latency_steps: int = 0
    """Camera latency in control steps (0 in the lockstep sim; a real camera: image stamp to pose arrival, rounded
    to control periods)."""
    one_camera: bool = False
    """The log is from the scene camera only (the occlusion cells use the cameras' positions)."""
    camera_positions: str | None = None
    """Camera positions in the base frame for a real log, "x,y,z;x,y,z" (default: the sim's cameras)."""


@dataclass
class Check:
    """Compare the model with the estimator on a camera log (per task, object and phase)."""

    log: list[Path]
    """Held-out camera log(s) (other seeds than the fit's)."""
    model: Path
    """Model JSON (``fit``'s)."""
    seed: int = 0
    """Seed of the model's draws."""
    repeats: int = 20
    """Runs of the model over the log (its quantiles are those of all runs together)."""
    min_images: int = 30
    """Rows (task, object, phase) with fewer images are listed but not counted in the summary."""
    json_out: Path | None = None
    """Write the comparison rows as JSON here."""
    png_out: Path | None = None
    """Write a plot (dropout and p90 position error per task, object and phase: estimator vs model) here."""


def _camera_positions(args) -> list[list[float]]:
    if getattr(args, "camera_positions", None):
        try:
            cams = [[float(v) for v in c.split(",")] for c in args.camera_positions.split(";")]
        except ValueError:
            raise ValueError(f"--camera-positions {args.camera_positions!r}: not x,y,z;x,y,z") from None
        if not cams or any(len(c) != 3 for c in cams):
            raise ValueError(f"--camera-positions {args.camera_positions!r}: each camera needs x,y,z")
        return cams
    return sim_camera_positions(front_camera=not args.one_camera)


def _load_logs(paths: list[Path]) -> CameraLog:
    for p in paths:
        if not Path(p).is_file():
            raise FileNotFoundError(f"no camera log at {p}")
    return CameraLog.concat(CameraLog.from_csv(p) for p in paths)


def format_check(rows: list[dict]) -> str:
    def cell(r, key, fmt):
        v, iv, ok = r[f"{key}_model"], r.get(f"{key}_estimator_interval"), r.get(f"{key}_in_interval")
        est = r[f"{key}_estimator"]
        if est is None:
            return "-"
        span = f" [{format(iv[0], fmt)}-{format(iv[1], fmt)}]" if iv else ""
        mark = "" if ok is None else (" ok" if ok else " **out**")
        return f"{format(est, fmt)}{span} / {'-' if v is None else format(v, fmt)}{mark}"

    lines = ["| task | object | phase | images (episodes) | dropout: estimator [90 % over episodes] / model | "
             "position p50 mm | position p90 mm | angle p90 deg |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        model_ang = "-" if r["rot_p90_deg_model"] is None else f"{r['rot_p90_deg_model']:.1f}"
        ang = "-" if r["rot_p90_deg_estimator"] is None else f"{r['rot_p90_deg_estimator']:.1f} / {model_ang}"
        lines.append(f"| {r['task']} | {r['object']} | {r['phase']} | {r['images']} ({r['episodes']}) | "
                     f"{cell(r, 'dropout', '.2f')} | {cell(r, 'pos_p50_mm', '.1f')} | {cell(r, 'pos_p90_mm', '.1f')} | "
                     f"{ang} |")
    return "\n".join(lines)


def summarize_check(rows: list[dict], min_images: int) -> dict:
    """Per measure: rows (with at least ``min_images`` images) where the model lies in the estimator's interval."""
    counted = [r for r in rows if r["images"] >= min_images]
    out = {"rows": len(counted), "min_images": min_images}
    for key in ("dropout", "pos_p50_mm", "pos_p90_mm"):
        judged = [r for r in counted if r.get(f"{key}_in_interval") is not None]
        out[key] = {"in_interval": sum(r[f"{key}_in_interval"] for r in judged), "judged": len(judged),
                    "largest_gap": max((abs(r[f"{key}_model"] - r[f"{key}_estimator"]) for r in judged), default=None)}
    return out


def plot_check(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['task']}/{r['object']}\n{r['phase']}" for r in rows]
    x = np.arange(len(rows))
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 0.6 * len(rows)), 7), sharex=True)
    w = 0.38
    for ax, key, title in ((axes[0], "dropout", "dropout rate"), (axes[1], "pos_p90_mm", "position error p90 (mm)")):
        est = np.array([r[f"{key}_estimator"] or 0.0 for r in rows])
        mod = [r[f"{key}_model"] or 0.0 for r in rows]
        iv = np.array([r.get(f"{key}_estimator_interval") or [v, v] for r, v in zip(rows, est, strict=True)])
        err = np.clip(np.stack([est - iv[:, 0], iv[:, 1] - est]), 0, None)
        ax.bar(x - w / 2, est, w, yerr=err, capsize=2, label="camera estimator (90 % over episodes)")
        ax.bar(x + w / 2, mod, w, label="fitted model")
        ax.set_ylabel(title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend()
    axes[1].set_xticks(x, labels, rotation=90, fontsize=7)
    fig.suptitle("Perception model vs camera estimator (held-out episodes)")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_record(args: Record) -> int:
    from residual_core.checkpoint import CheckpointError, default_base_checkpoint
    from residual_core.runtime import limit_blas_threads
    from residual_learning.base_policy import BasePolicy

    limit_blas_threads(1)
    tasks = list(TASK_NAMES) if args.task == "all" else [check_task(args.task)]
    seeds = parse_seeds(args.seeds)
    try:
        base = BasePolicy.from_checkpoint(args.base_checkpoint or default_base_checkpoint())
    except (CheckpointError, FileNotFoundError) as e:
        print(f"residual-perception: cannot load the base policy: {e}", file=sys.stderr)
        return 2
    logs, outcomes = [], []
    with tqdm(total=len(tasks) * len(seeds), desc="camera episodes", unit="ep") as bar:
        for task in tasks:
            bar.set_postfix_str(task)
            log, outcome = record_task(task, seeds, base, front_camera=not args.one_camera, progress=bar.update)
            logs.append(log)
            outcomes.append(outcome)
    log = CameraLog.concat(logs)
    log.to_csv(args.out)
    meta = Path(str(args.out) + ".json")
    meta.write_text(json.dumps({"episodes": outcomes, "rows": len(log), "cameras": 1 if args.one_camera else 2},
                               indent=1) + "\n")
    print(f"wrote {len(log)} rows ({len(tasks)} task(s) x {len(seeds)} episodes) to {args.out} (+ {meta.name})")
    for o in outcomes:
        print(f"  {o['task']}: {o['successes']}/{len(o['seeds'])} episodes succeeded")
    return 0


def run_fit(args: Fit) -> int:
    log = _load_logs(args.log)
    cams = _camera_positions(args)
    params = fit(log, cams, latency_steps=args.latency_steps,
                 fitted_from={"logs": [str(p) for p in args.log], "rows": len(log),
                              "episodes": int(len({(t, e) for t, e in zip(log.task, log.episode, strict=True)}))})
    params.save(args.out)
    print(f"fitted the perception model to {len(log)} rows: {args.out}")
    for name, o in params.objects.items():
        e = o.errors["any"]
        print(f"  {name}: detected {o.overall_rate:.2f}; error: bias {np.linalg.norm(e.bias) * 1e3:.1f} mm, "
              f"per-episode spread {np.linalg.norm(e.episode_std) * 1e3:.1f} mm, per-step robust spread "
              f"{np.linalg.norm(e.step_std) * 1e3:.1f} mm, beyond 4 spreads {e.outlier_fraction:.3f}; own errors "
              f"for {', '.join(p for p in PHASES if p in o.errors) or 'no phase'}")
    return 0


def run_check(args: Check) -> int:
    log = _load_logs(args.log)
    params = PerceptionModelParams.load(args.model)
    if args.repeats < 1 or args.min_images < 1:
        raise ValueError("--repeats and --min-images must be >= 1")
    rows = compare(log, model_on_log(log, params, seed=args.seed, repeats=args.repeats), seed=args.seed)
    print(format_check(rows))
    summary = summarize_check(rows, args.min_images)
    print(f"\nrows with >= {args.min_images} images: {summary['rows']}; the model inside the estimator's 90 % "
          "interval over episodes:")
    for key in ("dropout", "pos_p50_mm", "pos_p90_mm"):
        v = summary[key]
        gap = "-" if v["largest_gap"] is None else f"{v['largest_gap']:.3g}"
        print(f"  {key}: {v['in_interval']}/{v['judged']} (largest gap to the estimator's value {gap})")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps({"model": str(args.model), "logs": [str(p) for p in args.log],
                                                   "repeats": args.repeats, "summary": summary, "rows": rows},
                                                  indent=1) + "\n")
    if args.png_out:
        plot_check(rows, args.png_out)
    return 0


def main(argv: list[str] | None = None) -> int:
    cmd = tyro.cli(Annotated[Record, tyro.conf.subcommand("record")] | Annotated[Fit, tyro.conf.subcommand("fit")]
                   | Annotated[Check, tyro.conf.subcommand("check")], args=argv, description=__doc__)
    try:
        if isinstance(cmd, Record):
            return run_record(cmd)
        if isinstance(cmd, Fit):
            return run_fit(cmd)
        return run_check(cmd)
    except (ValueError, FileNotFoundError) as e:
        print(f"residual-perception: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
