"""`residual-eval`: success of the frozen base alone and of base + residual on the same seeded episodes.

For each task, episode i starts from the initial state drawn with seed ``seed_offset + i`` (the same
seeds for both runs and for every invocation), so the table is reproducible. The base sees the true state (it stands
in for a VLA, which sees the scene itself). What the residual sees of the object poses (``--pose-source``):

* ``gt``: the true poses with evaluation pose noise (fixed sigma) and whole-object dropout;
* ``camera``: the ROS graph's camera path, offline (trainer.camera_path): every step the two sim cameras (scene and
  front) are rendered from the env's state, the ArUco pose estimator (the node's code and configuration, tracking per
  episode) estimates the poses, and the residual node's rule decides which objects are present. Episodes run one at
  a time, as in the graph; ``residual-demo --pose-source camera`` runs the same seeds through the graph.

Prints the table of the reference work (per task: base successes / N, base + residual successes / N, mean
steps-to-success of the successful episodes) and can write JSON and a PNG bar chart.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import tyro
from franka_sim.dynamics import resolve_shift
from franka_sim.sim import SimBackendName, check_backend
from franka_sim.sim_bridge import SimNodeConfig
from residual_core.augment import PoseAugmenter
from residual_core.checkpoint import (
    CheckpointError,
    CheckpointNotFoundError,
    default_base_checkpoint,
    default_residual_checkpoint,
)
from residual_core.observation import PoseFreshness, layout_for_task
from residual_core.pipeline import ActionPipeline
from residual_core.residual_policy import ResidualPolicy
from residual_core.runtime import limit_blas_threads
from residual_core.tasks import TASK_NAMES, check_task
from residual_learning.base_policy import BasePolicy
from residual_policy_node.core import OcclusionTracking
from tqdm import tqdm

from trainer.base_population import BasePopulation
from trainer.plots import plot_eval_table
from trainer.rollout import evaluate_episodes


@dataclass
class Args:
    task: str = "all"
    """Task name, or 'all' for the five tasks."""
    episodes: int = 20
    """Episodes per task (seeded: episode i uses seed seed_offset + i)."""
    seed_offset: int = 0
    """First episode seed."""
    no_residual: bool = False
    """Evaluate the base alone (skip base + residual)."""
    base_checkpoint: Path | None = None
    """Base policy checkpoint (default: the shipped checkpoints/base/base_policy)."""
    base_population: Path | None = None
    """Evaluate against a population of bases instead (trainer.base_population JSON: checkpoints with action noise,
    bias, chunk length, delay; one member per episode, drawn from its seed), e.g. held-out perturbed bases."""
    residual_checkpoint: Path | None = None
    """Residual checkpoint (only with a single task; default: the shipped checkpoints/residual/<task>)."""
    pose_source: Literal["gt", "camera"] = "gt"
    """What the residual sees of the object poses: gt (the true poses with --pose-noise and --dropout) or camera (the
    graph's camera path offline: the two sim cameras rendered from each env's state every step, the ArUco pose
    estimator with the node's configuration, the residual node's presence rule; --pose-noise and --dropout do not
    apply, and episodes run one env at a time, as in the graph)."""
    pose_noise: float = 0.005
    """gt: pose noise seen by the residual: fixed sigma per episode (m). 0 disables."""
    dropout: float = 0.1
    """gt: whole-object pose dropout probability per step seen by the residual. 0 disables."""
    image_width: int = SimNodeConfig.image_width
    """camera: rendered image width (px); the default is the sim node's."""
    image_height: int = SimNodeConfig.image_height
    """camera: rendered image height (px); the default is the sim node's (the scene's offscreen buffer allows up to
    1280x960)."""
    pose_timeout: float = PoseFreshness.timeout_s
    """camera: the residual node's ``pose_timeout`` (s): an object's last estimated pose stays present this long after
    the estimator stops seeing it (the node's default is the one used here unless you pass another; set the node's
    parameter to the same value to compare with the graph)."""
    occlusion_tracking: bool = True
    """camera: the residual node's ``occlusion_tracking`` (a missed object keeps its last confident estimate, carried
    with the hand while held, for ``--tracking-max-age`` s); on, as in the camera graphs (config/sim.yaml,
    config/real.yaml); --no-occlusion-tracking: the estimator's output as it is. gt: does not apply."""
    tracking_max_age: float = OcclusionTracking.max_age_s
    """camera, with --occlusion-tracking: the node's ``tracking_max_age`` (s)."""
    dynamics: str = "nominal"
    """Physics of the episodes, a named held-out shift of franka_sim.dynamics.SHIFTS: nominal, heavy (objects 3x),
    light (0.3x), slippery (every friction x0.4), soft (arm servos 0.4x as stiff), stiff (2.5x), latency (commands 2
    control steps late), latency1 (1 step late; inside the training ranges of residual-train --dynamics train), wide
    (placement ranges 1.5x), mixed (all drawn per episode). Each episode's draw depends only on its seed, so base and
    base + residual meet the same physics."""
    compose_from: Literal["auto", "measured", "target"] = "auto"
    """Where each command is composed from: measured (the TCP measured at the step) or target (the previous target
    while the arm tracks it within 0.15 m and 0.5 rad, else the measured TCP: what an arm lagging its targets needs,
    e.g. under --dynamics latency; trainer.closed_loop). auto: what the task's residual checkpoint was trained with
    (its manifest's training.compose_from; measured for checkpoints made before that option and with --no-residual),
    for the base rows too, so both meet the same loop."""
    num_envs: int = 10
    """Parallel envs (episodes run in batches of this size; camera: always 1)."""
    backend: SimBackendName = "mujoco"
    """Physics backend: mujoco (CPU MuJoCo, the default), warp (MuJoCo Warp on --device; `make setup-warp`) or
    isaaclab (Isaac Lab 3's Newton physics in a worker in its own environment; `make isaac-env`)."""
    device: str = "cpu"
    """Device of the warp and isaaclab backends: cpu or cuda:N (the mujoco backend runs on the CPU only)."""
    json_out: Path | None = None
    """Write the results as JSON here."""
    png_out: Path | None = None
    """Write a bar chart (base vs base + residual per task) here."""

    def __post_init__(self):
        if self.task != "all":
            check_task(self.task)
        elif self.residual_checkpoint is not None:
            raise ValueError("--residual-checkpoint needs a single --task (each task has its own residual)")
        if self.episodes < 1:
            raise ValueError(f"--episodes must be >= 1, got {self.episodes}")
        resolve_shift(self.dynamics)
        if self.base_population is not None and self.base_checkpoint is not None:
            raise ValueError("--base-population replaces --base-checkpoint: give one of them")
        if not (1 <= self.image_width <= 1280 and 1 <= self.image_height <= 960):
            raise ValueError(f"--image-width/--image-height must be within 1280x960 (the scene's offscreen buffer), "
                             f"got {self.image_width}x{self.image_height}")

    @property
    def envs(self) -> int:
        """Envs per batch: the camera path runs one at a time (as the graph: same floating-point path, no batch)."""
        return 1 if self.pose_source == "camera" else min(self.num_envs, self.episodes)


def evaluate_task(task: str, args: Args, base: BasePolicy | BasePopulation) -> dict:
    from trainer.franka_backend import FrankaSimBackend

    seeds = list(range(args.seed_offset, args.seed_offset + args.episodes))
    shift = resolve_shift(args.dynamics)
    backend = FrankaSimBackend(task, args.envs, seed=0, shift=shift, backend=args.backend, device=args.device)
    row: dict = {"task": task, "episodes": args.episodes, "seeds": seeds, "pose_source": args.pose_source,
                 "backend": args.backend, "device": args.device,
                 "dynamics": {"name": args.dynamics, "placement_scale": shift.placement_scale,
                              **shift.dynamics.as_dict()}}
    t0 = time.time()
    policy, path = None, None
    if not args.no_residual:
        path = args.residual_checkpoint or default_residual_checkpoint(task)
        try:
            policy = ResidualPolicy.from_checkpoint(path, expected_task=task, expected_layout=layout_for_task(task))
        except CheckpointNotFoundError as e:
            if args.task != "all":
                raise
            # With --task all, a task without a trained residual yet still gets its base row.
            print(f"residual-eval: {task}: no residual checkpoint ({e}); base only", file=sys.stderr)
            row["residual_missing"] = str(path)
    compose_from = args.compose_from
    if compose_from == "auto":
        compose_from = "measured" if policy is None else policy.manifest.compose_from
    row["compose_from"] = compose_from
    with tqdm(total=args.episodes, desc=f"{task}: base", unit="ep", leave=False) as bar:
        row["base"] = evaluate_episodes(backend, base, seeds, progress=bar.update,
                                        compose_from=compose_from).to_dict()
    if policy is not None:
        aug = None
        if args.pose_source == "camera":
            from trainer.camera_path import CameraPathConfig, CameraPerception

            aug = CameraPerception(backend, CameraPathConfig(
                image_width=args.image_width, image_height=args.image_height,
                freshness=PoseFreshness(timeout_s=args.pose_timeout),
                tracking=OcclusionTracking(max_age_s=args.tracking_max_age) if args.occlusion_tracking else None))
        elif args.pose_noise > 0 or args.dropout > 0:
            aug = PoseAugmenter(max_sigma=args.pose_noise, dropout_p=args.dropout, seed=777, fixed_sigma=True)
        pipeline = ActionPipeline(residual_scale=tuple(policy.manifest.action_scale))
        with tqdm(total=args.episodes, desc=f"{task}: base+residual", unit="ep", leave=False) as bar:
            res = evaluate_episodes(backend, base, seeds, residual_fn=policy, augmenter=aug, pipeline=pipeline,
                                    progress=bar.update, compose_from=compose_from)
        row["residual"] = res.to_dict()
        row["residual_checkpoint"] = str(path)
        if args.pose_source == "camera":
            row["camera"] = {"image": f"{args.image_width}x{args.image_height}", "pose_timeout_s": args.pose_timeout,
                             "occlusion_tracking": (args.tracking_max_age if args.occlusion_tracking else None),
                             "frames": aug.frames,
                             "detected_fraction": {o: n / max(aug.frames, 1) for o, n in aug.detected.items()}}
    row["wall_s"] = round(time.time() - t0, 1)
    backend.close()
    return row


def lost_gained(row: dict) -> tuple[int, int] | None:
    """Episodes the residual lost (solved by the base alone, failed with the residual) and gained, or None without
    a residual row."""
    res = row.get("residual")
    if not res:
        return None
    b, r = np.asarray(row["base"]["success"], bool), np.asarray(res["success"], bool)
    return int(np.sum(b & ~r)), int(np.sum(~b & r))


def format_table(rows: list[dict], args: Args) -> str:
    n = args.episodes
    lines = ["| task | base | base + residual | lost / gained | mean steps (base) | mean steps (base + residual) |",
             "|---|---|---|---|---|---|"]
    fmt = lambda x: "-" if x is None else f"{x:.1f}"  # noqa: E731
    for r in rows:
        b = r["base"]
        res = r.get("residual")
        res_cell = f"{res['successes']}/{n}" if res else ("no checkpoint" if r.get("residual_missing") else "-")
        lg = lost_gained(r)
        lg_cell = "-" if lg is None else f"{lg[0]} / {lg[1]}"
        lines.append(f"| {r['task']} | {b['successes']}/{n} | {res_cell} | {lg_cell} | "
                     f"{fmt(b['mean_steps_to_success'])} | {fmt(res['mean_steps_to_success']) if res else '-'} |")
    if len(rows) > 1:
        avg_b = np.mean([r["base"]["successes"] for r in rows])
        res_rows = [r["residual"]["successes"] for r in rows if r.get("residual")]
        avg_r = f"{np.mean(res_rows):.1f}/{n}" if res_rows else "-"
        if res_rows and len(res_rows) < len(rows):
            avg_r += f" (over the {len(res_rows)} task(s) with a residual)"
        lg = [x for x in map(lost_gained, rows) if x is not None]
        total = f"{sum(x[0] for x in lg)} / {sum(x[1] for x in lg)}" if lg else "-"
        lines.append(f"| **average** | {avg_b:.1f}/{n} | {avg_r} | {total} | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = tyro.cli(Args, args=argv, description=__doc__)
    try:
        check_backend(args.backend, args.device)
    except ValueError as exc:
        print(f"residual-eval: {exc}", file=sys.stderr)
        return 2
    limit_blas_threads(1)
    import torch

    torch.set_num_threads(1)
    tasks = list(TASK_NAMES) if args.task == "all" else [args.task]
    try:
        base = (BasePolicy.from_checkpoint(args.base_checkpoint or default_base_checkpoint())
                if args.base_population is None else BasePopulation.load(args.base_population))
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"residual-eval: cannot load the base policy: {e}", file=sys.stderr)
        return 2
    rows = []
    for task in tasks:
        try:
            rows.append(evaluate_task(task, args, base))
        except (CheckpointError, FileNotFoundError) as e:
            print(f"residual-eval: {task}: cannot load the residual checkpoint: {e}", file=sys.stderr)
            return 2
    if args.no_residual:
        noise = ""
    elif args.pose_source == "camera":
        noise = (f" (residual sees the poses the ArUco estimator found in the {args.image_width}x{args.image_height} "
                 "images of the sim's two cameras)")
    else:
        noise = f" (residual sees pose noise {args.pose_noise * 1000:g} mm, dropout {args.dropout:g})"
    physics = "" if args.dynamics == "nominal" else f", dynamics {args.dynamics}: {resolve_shift(args.dynamics).note}"
    composed = sorted({r["compose_from"] for r in rows})
    physics += "; commands composed from the " + " / ".join(
        {"measured": "measured TCP", "target": "tracked previous target"}[c] for c in composed)
    print(f"\nSuccess over {args.episodes} seeded episodes per task (seeds {args.seed_offset}.."
          f"{args.seed_offset + args.episodes - 1}){noise}{physics}:\n")
    print(format_table(rows, args))
    if any(r.get("residual") for r in rows):
        print("\nFraction of steps the residual saw each object (base + residual):")
        for r in rows:
            if r.get("residual"):
                seen = ", ".join(f"{o} {f:.2f}" for o, f in r["residual"]["present_fraction"].items())
                detected = ""
                if r.get("camera"):
                    detected = "; marker detected in " + ", ".join(
                        f"{o} {f:.2f}" for o, f in r["camera"]["detected_fraction"].items()) + " of the images"
                print(f"  {r['task']:>13}: {seen}{detected}")
    print("\nFailed episodes by what happened to the manipulated object:")
    for r in rows:
        for who in ("base", "residual"):
            if r.get(who) and r[who].get("failure_modes"):
                modes = ", ".join(f"{v} {k}" for k, v in r[who]["failure_modes"].items())
                print(f"  {r['task']:>13} {'base + residual' if who == 'residual' else 'base':>15}: {modes}")
    result = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "results": rows}
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=2))
        print(f"\nwrote {args.json_out}")
    if args.png_out:
        args.png_out.parent.mkdir(parents=True, exist_ok=True)
        plot_eval_table(rows, args.png_out, title=f"success over {args.episodes} episodes")
        print(f"wrote {args.png_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
