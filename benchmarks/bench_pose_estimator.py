"""Accuracy and speed of the ArUco pose estimator (pose_estimator_node) on franka_sim's camera images.

Per task, ``--states`` random initial states (``env.reset(seed=seed + i)``) are rendered from the fixed scene camera
(``--cameras both``: and the front camera, estimated together with ``estimate_views``, as the sim graph does);
each task object's estimated pose is compared with the simulator's ground truth. With ``--expert``, each state is
instead taken from a scripted-expert rollout (a random number of steps in [0, horizon)), estimated every
``--every`` steps along the way with tracking on (objects grasped, lifted, occluded by the arm, the cup turning
upright). Prints a markdown table: detections, position error (mm) and rotation error (deg), median and p95,
for all detections and for those with confidence >= ``--min-confidence`` (what the residual node uses), and the
time per image.

    .venv/bin/python benchmarks/bench_pose_estimator.py                       # 100 states x 5 tasks, 640x480
    .venv/bin/python benchmarks/bench_pose_estimator.py --width 1280 --height 960 --tasks cube_lift stand_cup_up
    .venv/bin/python benchmarks/bench_pose_estimator.py --expert --states 20 --cameras both

Timings depend on what else runs on the machine; run it alone.
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import dataclass, field

import franka_sim  # noqa: F401  (chooses the GL backend before mujoco is imported)
import numpy as np
from franka_sim.camera import gl_backend
from franka_sim.env import FrankaTaskEnv
from franka_sim.experts import ScriptedExpert
from pose_estimator_node.camera import CameraModel, Extrinsic, image_to_gray
from pose_estimator_node.estimator import ArucoConfig, ArucoPoseEstimator
from residual_core.tasks import TASK_NAMES
from scipy.spatial.transform import Rotation


@dataclass
class ObjectStats:
    frames: int = 0
    """Images in which the object was looked for."""
    pos_mm: list[float] = field(default_factory=list)
    rot_deg: list[float] = field(default_factory=list)
    confidence: list[float] = field(default_factory=list)


def pose_error(pos, quat, gt_pos, gt_quat) -> tuple[float, float]:
    """(position error mm, rotation error deg)."""
    rot = (Rotation.from_quat(quat) * Rotation.from_quat(gt_quat).inv()).magnitude()
    return float(np.linalg.norm(np.asarray(pos) - gt_pos) * 1e3), float(np.degrees(rot))


CAMERAS = {"scene": (None,), "front": ("front",), "both": (None, "front")}
"""--cameras choice -> the env's cameras, in estimation order."""


def evaluate(env: FrankaTaskEnv, estimator: ArucoPoseEstimator, stats: dict[str, ObjectStats], times: list[float],
             stamp_s: float | None, cameras: tuple = (None,)) -> None:
    h, w = env.image_size
    imgs = [env.render(c) for c in cameras]
    t0 = time.perf_counter()
    views = [(image_to_gray(img.tobytes(), h, w, "rgb8", w * 3),
              CameraModel(env.camera_intrinsics(c).matrix(), np.zeros(5), w, h), Extrinsic(*env.camera_extrinsics(c)))
             for img, c in zip(imgs, cameras, strict=True)]
    result = estimator.estimate_views(views, stamp_s)
    times.append(time.perf_counter() - t0)
    truth = env.object_poses()
    for name, s in stats.items():
        s.frames += 1
        est = result.objects.get(name)
        if est is not None:
            p, r = pose_error(est.pos, est.quat_xyzw, *truth[name])
            s.pos_mm.append(p)
            s.rot_deg.append(r)
            s.confidence.append(est.confidence)


def run_task(task: str, args: argparse.Namespace, config: ArucoConfig) -> tuple[dict[str, ObjectStats], list[float]]:
    env = FrankaTaskEnv(task, image_size=(args.height, args.width))
    estimator = ArucoPoseEstimator(env.objects, config)
    stats = {o: ObjectStats() for o in env.objects}
    times: list[float] = []
    rng = np.random.default_rng(args.seed)
    for i in range(args.states):
        env.reset(seed=args.seed + i)
        estimator.reset()
        if not args.expert:
            evaluate(env, estimator, stats, times, None, CAMERAS[args.cameras])
            continue
        expert = ScriptedExpert(task, rng=np.random.default_rng(args.seed + i))
        steps = int(rng.integers(0, env.horizon))
        for k in range(steps + 1):
            if k % args.every == 0 or k == steps:
                evaluate(env, estimator, stats, times, env.sim_time, CAMERAS[args.cameras])
            if k == steps:
                break
            _, _, terminated, truncated, _ = env.step(expert.act(env.task_state()))
            if terminated or truncated:
                evaluate(env, estimator, stats, times, env.sim_time, CAMERAS[args.cameras])
                break
    env.close()
    return stats, times


def pct(values: list[float], q: float) -> str:
    return f"{np.percentile(values, q):.1f}" if values else "-"


def table(results: dict[str, tuple[dict[str, ObjectStats], list[float]]], min_conf: float) -> str:
    lines = [
        f"| task | object | detected | conf >= {min_conf} | pos med / p95 (mm) | rot med / p95 (deg) | "
        f"conf >= {min_conf}: pos med / p95 (mm) | rot med / p95 (deg) | ms / image |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task, (stats, times) in results.items():
        for name, s in stats.items():
            keep = [i for i, c in enumerate(s.confidence) if c >= min_conf]
            pk, rk = [s.pos_mm[i] for i in keep], [s.rot_deg[i] for i in keep]
            lines.append(
                f"| {task} | {name} | {len(s.pos_mm)}/{s.frames} | {len(keep)}/{s.frames} | "
                f"{pct(s.pos_mm, 50)} / {pct(s.pos_mm, 95)} | {pct(s.rot_deg, 50)} / {pct(s.rot_deg, 95)} | "
                f"{pct(pk, 50)} / {pct(pk, 95)} | {pct(rk, 50)} / {pct(rk, 95)} | {1e3 * np.mean(times):.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASK_NAMES), choices=TASK_NAMES, help="tasks to measure")
    parser.add_argument("--states", type=int, default=100, help="random states (episodes with --expert) per task")
    parser.add_argument("--width", type=int, default=640, help="image width (px)")
    parser.add_argument("--height", type=int, default=480, help="image height (px)")
    parser.add_argument("--seed", type=int, default=0, help="first reset seed")
    parser.add_argument("--min-confidence", type=float, default=0.5,
                        help="confidence threshold of the second error columns (the residual node's min_confidence)")
    parser.add_argument("--expert", action="store_true", help="states from scripted-expert rollouts, with tracking")
    parser.add_argument("--every", type=int, default=10, help="with --expert: estimate every this many steps")
    parser.add_argument("--no-refine", action="store_true", help="use the detector's corners (ablation)")
    parser.add_argument("--cameras", choices=sorted(CAMERAS), default="scene",
                        help="which sim cameras' images to estimate from (both: as the sim graph)")
    args = parser.parse_args(argv)
    if args.states < 1 or args.every < 1:
        parser.error("--states and --every must be >= 1")
    config = ArucoConfig(refine_corners=not args.no_refine)
    results = {}
    t0 = time.perf_counter()
    for task in args.tasks:
        results[task] = run_task(task, args, config)
    print(f"# pose estimator: {args.width}x{args.height}, cameras {args.cameras}, "
          f"{'expert rollouts' if args.expert else 'reset states'}, "
          f"{args.states} per task, seed {args.seed}, corner refinement {'off' if args.no_refine else 'on'}, "
          f"MUJOCO_GL={gl_backend()}, {platform.processor() or platform.machine()}, "
          f"{time.perf_counter() - t0:.0f} s\n")
    print(table(results, args.min_confidence))


if __name__ == "__main__":
    main()
