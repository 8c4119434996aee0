"""``residual-demo`` (``make demo``): the whole ROS 2 sim graph, base alone vs base + residual, on seeded episodes.

1. Starts the sim graph headless with ``residual-launch`` (sim, pose estimator, base, residual, arbiter) in
   lockstep with sim time, in a ROS domain of its own (ROS_DOMAIN_ID reserved, ROS_LOG_DIR in the run folder), and
   waits until every node is up. The residual's object poses (``--pose-source``): ``gt``, the sim's ground truth
   through the pose estimator in ground-truth mode with pose noise and dropout as in ``residual-eval``; or
   ``camera``, the sim renders its two cameras (scene and front) every step and the pose estimator finds the ArUco
   markers in the images (``residual-eval --pose-source camera`` runs the same estimator offline).
2. Runs N episodes (seeds seed_offset .. seed_offset + N - 1) with the residual switched off at the arbiter
   (``/arbiter/enable_residual``), then the same seeds with it on. Each episode: ``/sim/reset`` (task, seed), run
   until success or the task horizon (``/sim/episode``).
3. Prints the success table and writes ``runs/<timestamp>/``: ``recording.mcap`` (the topics, readable by
   Foxglove, rosbag2 and rosbags), ``corrections.csv`` (every step: base, residual, final, status, TCP, target),
   ``trajectory.png``, ``residual_magnitude.png``, ``results.json``, ``graph.log`` and ``ros_log/``.

Exit status: 0 when every episode ran, 1 when the graph failed, 2 for a configuration problem (e.g. no
checkpoint).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import tyro
from residual_core.tasks import TASK_NAMES, check_task

from residual_bringup.demo.graph_process import GraphProcess, isolated_ros_env, launch_command, reserve_domain_id
from residual_bringup.demo.recording import McapRecorder, topic_types
from residual_bringup.demo.results import (
    PHASES,
    EpisodeRecord,
    format_table,
    jsonable,
    summarize,
    write_corrections_csv,
)
from residual_bringup.graph import NodeSpec
from residual_bringup.supervisor import parse_set, resolve_executable

PREFIX = "[residual-demo]"

Task = Literal[TASK_NAMES]  # type: ignore[valid-type]
Phase = Literal[PHASES]  # type: ignore[valid-type]
POSE_SOURCES = ("gt", "camera")
PoseSource = Literal[POSE_SOURCES]  # type: ignore[valid-type]


@dataclass(frozen=True)
class DemoConfig:
    """Everything the demo run depends on (the command line: ``tyro.cli(DemoConfig)``)."""

    task: Task = "cube_lift"
    """Task to run."""
    episodes: int = 10
    """Episodes per phase; episode i uses seed seed_offset + i in both phases."""
    seed_offset: int = 0
    """Seed of the first episode."""
    checkpoint: str = ""
    """Residual checkpoint (.safetensors next to its .json manifest); empty: the shipped
    checkpoints/residual/<task>."""
    base_checkpoint: str = ""
    """Base policy checkpoint; empty: the shipped checkpoints/base/base_policy."""
    phases: tuple[Phase, ...] = PHASES
    """Which phases to run, in order: base (residual switched off) and/or residual (switched on)."""
    pose_source: PoseSource = "gt"
    """Where the residual's object poses come from: gt (the sim's ground truth, through the pose estimator with
    --pose-noise, --rot-noise, --dropout and --noise-seed) or camera (the sim renders its two cameras, scene and
    front, every step and the pose estimator finds the objects' ArUco markers in the images; the noise options do not
    apply). The base
    always reads the true poses (it stands in for a VLA, which sees the scene itself)."""
    pose_noise: float = 0.005
    """Position noise std of the poses the residual sees (m), as residual-eval's --pose-noise."""
    rot_noise: float = 0.05
    """Orientation noise std (rad); residual-eval: pose_noise x 10 rad/m."""
    dropout: float = 0.1
    """Probability that an object's pose is dropped per step, as residual-eval's --dropout."""
    noise_seed: int = 0
    """Seed of the pose noise and dropout stream."""
    out_dir: str = "runs"
    """Folder in which the run's timestamped folder is created (OUT_DIR/<timestamp>/)."""
    record: bool = True
    """Record topics to recording.mcap (--no-record: don't)."""
    record_topics: Annotated[tuple[str, ...] | None, tyro.conf.arg(metavar="TOPIC")] = None
    """Topics to record; None: the graph's state, actions, corrections, markers and diagnostics
    (residual_bringup.demo.recording.DEFAULT_TOPICS). Also possible: /clock /camera/image_raw
    /camera/camera_info /objects/pose_array."""
    startup_timeout_s: Annotated[float, tyro.conf.arg(name="startup-timeout")] = 180.0
    """How long the graph may take to come up (s)."""
    episode_timeout_s: Annotated[float, tyro.conf.arg(name="episode-timeout")] = 120.0
    """How long one episode may take (s, wall clock)."""
    set_params: Annotated[tuple[str, ...], tyro.conf.arg(name="set", metavar="NODE.PARAM=VALUE"),
                          tyro.conf.UseAppendAction] = field(default_factory=tuple)
    """Extra node parameter passed to residual-launch --set (VALUE parsed as YAML), e.g.
    arbiter.residual_deadline_s=1.0."""

    def __post_init__(self) -> None:
        check_task(self.task)
        if self.episodes < 1:
            raise ValueError(f"--episodes must be >= 1, got {self.episodes}")
        if not self.phases or any(p not in PHASES for p in self.phases):
            raise ValueError(f"--phases must name some of {PHASES}, got {self.phases}")
        for name, option in (("pose_noise", "--pose-noise"), ("rot_noise", "--rot-noise"), ("dropout", "--dropout"),
                             ("startup_timeout_s", "--startup-timeout"), ("episode_timeout_s", "--episode-timeout")):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{option} must be >= 0, got {getattr(self, name)}")
        if self.dropout > 1:
            raise ValueError(f"--dropout must be in [0, 1], got {self.dropout}")
        if self.rot_noise > 0 and self.pose_noise == 0:
            raise ValueError("--rot-noise > 0 needs --pose-noise > 0 (the estimator ties rotation noise to it)")
        if self.record_topics is not None:
            if not self.record_topics:
                raise ValueError("--record-topics needs at least one topic")
            topic_types(list(self.record_topics))
        parse_set(self.set_params)

    @property
    def seeds(self) -> list[int]:
        return list(range(self.seed_offset, self.seed_offset + self.episodes))


class ConfigProblem(ValueError):
    """A problem with the demo's inputs, explained for the user."""


def resolve_checkpoints(task: str, checkpoint: str, base_checkpoint: str) -> tuple[Path, Path]:
    """(residual, base) checkpoint stems, loaded once to check them; ConfigProblem says what is missing and what
    to do about it."""
    from residual_core.checkpoint import (
        CheckpointError,
        checkpoint_paths,
        default_base_checkpoint,
        default_residual_checkpoint,
    )
    from residual_core.observation import layout_for_task
    from residual_core.residual_policy import ResidualPolicy
    from residual_learning.base_policy import BasePolicy

    def default(fn, *args) -> Path | None:
        try:
            return fn(*args)
        except FileNotFoundError:
            return None

    residual = Path(checkpoint) if checkpoint else default(default_residual_checkpoint, task)
    if residual is None or not checkpoint_paths(residual)[0].is_file():
        where = checkpoint_paths(residual)[0] if residual is not None else f"checkpoints/residual/{task}.safetensors"
        if checkpoint:
            raise ConfigProblem(f"--checkpoint {checkpoint}: no such residual checkpoint ({where} not found)")
        raise ConfigProblem(
            f"no trained residual checkpoint for task {task!r} yet: {where} does not exist (it is written by "
            f"`residual-train --task {task}`, which may still be running). Pass --checkpoint PATH to use another "
            "residual checkpoint (a .safetensors file with its .json manifest).")
    base = Path(base_checkpoint) if base_checkpoint else default(default_base_checkpoint)
    if base is None or not checkpoint_paths(base)[0].is_file():
        raise ConfigProblem(f"no base policy checkpoint at {base or 'checkpoints/base/base_policy'}(.safetensors): "
                            "train one with `base-train` or pass --base-checkpoint PATH")
    try:
        ResidualPolicy.from_checkpoint(residual, expected_task=task, expected_layout=layout_for_task(task))
    except (CheckpointError, ValueError) as exc:
        raise ConfigProblem(f"residual checkpoint {residual} cannot be used for {task}: {exc}") from None
    try:
        BasePolicy.from_checkpoint(base)
    except (CheckpointError, ValueError) as exc:
        raise ConfigProblem(f"base checkpoint {base} cannot be used: {exc}") from None
    stem = lambda p: checkpoint_paths(p)[0].with_suffix("")  # noqa: E731
    return stem(residual), stem(base)


def pose_estimator_available() -> bool:
    return resolve_executable(NodeSpec("pose_estimator_node", "pose-estimator-node", "pose_estimator")) is not None


def graph_overrides(cfg: DemoConfig, with_estimator: bool) -> dict[str, dict[str, object]]:
    """Node parameters the demo sets on top of the graph's: episodes only on request; with ``--pose-source gt``
    ground-truth poses (with noise and dropout through the estimator when it is installed), no camera and no
    occlusion tracking, with ``camera`` the rendered camera and the estimator in ArUco mode (and the residual's
    occlusion tracking, config/sim.yaml); then ``--set`` (YAML-typed)."""
    out: dict[str, dict[str, object]] = {"sim": {"autostart": False}}
    if cfg.pose_source == "camera":
        if not with_estimator:
            raise ConfigProblem("--pose-source camera needs pose-estimator-node, which is not installed")
        out["sim"]["render_camera"] = True
        out["pose_estimator"] = {"source": "aruco"}
    else:
        out["sim"]["render_camera"] = False
        # The nominal protocol (training's, residual-eval's): a dropped pose is absent, not tracked (sim.yaml turns
        # occlusion tracking on for the camera).
        out["residual"] = {"occlusion_tracking": False}
        if with_estimator:
            out["pose_estimator"] = {"source": "gt", "gt.noise_pos_m": cfg.pose_noise,
                                     "gt.noise_rot_rad": cfg.rot_noise, "gt.dropout_p": cfg.dropout,
                                     "gt.seed": cfg.noise_seed}
    for node, params in parse_set(cfg.set_params).items():
        out.setdefault(node, {}).update(params)
    return out


def pose_source_text(cfg: DemoConfig, with_estimator: bool) -> str:
    """What the residual's object poses are in this run, in words (printed, and in results.json)."""
    if cfg.pose_source == "camera":
        tracking = parse_set(cfg.set_params).get("residual", {}).get("occlusion_tracking", True)  # sim.yaml: on
        return ("camera: the sim's two rendered cameras (scene, front) -> ArUco pose estimator; the residual's "
                f"occlusion tracking {'on' if tracking else 'off'}")
    if not with_estimator:
        return "gt: the sim's ground truth (no noise, no dropout: pose-estimator-node is not installed)"
    return (f"gt: the sim's ground truth with {cfg.pose_noise * 1000:g} mm / {cfg.rot_noise:g} rad noise and dropout "
            f"{cfg.dropout:g} (pose estimator, noise seed {cfg.noise_seed})")


def make_run_dir(base: str | os.PathLike) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(base) / stamp
    k = 1
    while path.exists():
        path = Path(base) / f"{stamp}-{k}"
        k += 1
    path.mkdir(parents=True)
    return path


def say(text: str) -> None:
    print(f"{PREFIX} {text}", flush=True)


def run_demo(cfg: DemoConfig, residual: Path, base: Path, run_dir: Path) -> tuple[dict, int]:
    """Start the graph, run the phases, stop it, write the outputs; returns (results, exit status)."""
    from residual_bringup.demo.session import DemoError, DemoSession, expected_nodes

    with_estimator = pose_estimator_available()
    if not with_estimator:
        say("pose-estimator-node is not installed: the sim publishes ground-truth poses (no noise, no dropout)")
    overrides = graph_overrides(cfg, with_estimator)
    say(f"pose source {pose_source_text(cfg, with_estimator)}")
    domain = reserve_domain_id()
    os.environ.update(isolated_ros_env(domain, run_dir / "ros_log"))
    topics = topic_types(list(cfg.record_topics) if cfg.record_topics is not None else None)
    recorder = McapRecorder(run_dir / "recording.mcap", topics) if cfg.record else None
    session = DemoSession(recorder, topics)
    cmd = launch_command(cfg.task, str(residual), str(base), "estimator" if with_estimator else "ground_truth",
                         overrides)
    say(f"ROS_DOMAIN_ID={domain}; starting the graph: {' '.join(cmd)}")
    graph = GraphProcess(cmd, dict(os.environ), run_dir / "graph.log")
    episodes: list[EpisodeRecord] = []
    results: dict = {"config": asdict(cfg), "residual_checkpoint": str(residual), "base_checkpoint": str(base),
                     "ros_domain_id": domain, "pose_source": cfg.pose_source,
                     "pose_source_detail": pose_source_text(cfg, with_estimator), "launch_command": cmd}
    status = 0
    t_start = time.monotonic()
    # What the estimator subscribes to follows its final source (a --set pose_estimator.source=... included).
    expected = expected_nodes(with_estimator, str(overrides.get("pose_estimator", {}).get("source", "gt")))
    try:
        up = session.wait_for_graph(expected, cfg.startup_timeout_s, graph.alive)
        results["startup_s"] = round(up, 2)
        say(f"graph up after {up:.1f} s: {', '.join(e.name for e in expected)}")
        warm = session.warm_up(cfg.task, cfg.seeds[0], cfg.startup_timeout_s, graph.alive)
        results["warm_up"] = [w.summary() for w in warm]
        say(f"{len(warm)} warm-up episode(s) (not counted) until every node had its inputs in time")
        for phase in cfg.phases:
            say(session.set_residual(phase == "residual", graph.alive))
            for seed in cfg.seeds:
                rec = session.run_episode(phase, cfg.task, seed, cfg.episode_timeout_s, graph.alive)
                episodes.append(rec)
                outcome = f"success after {rec.steps} steps" if rec.success else f"failure ({rec.reason})"
                say(f"{phase:8s} seed {seed:3d}: {outcome} ({rec.wall_s:.1f} s)")
    except DemoError as exc:
        status = 1
        results["error"] = str(exc)
        say(f"ERROR: {exc}\n--- last lines of {run_dir / 'graph.log'} ---\n{graph.tail()}")
    finally:
        results["graph_exit_status"] = graph.stop()
        session.close()
        if recorder is not None:
            results["recorded_messages"] = recorder.close()
    results["wall_s"] = round(time.monotonic() - t_start, 1)
    results["summary"] = {p: summarize([e for e in episodes if e.phase == p]) for p in cfg.phases
                          if any(e.phase == p for e in episodes)}
    results["episodes"] = [e.summary() for e in episodes]
    write_outputs(cfg, episodes, results, run_dir)
    return results, status


def write_outputs(cfg: DemoConfig, episodes: list[EpisodeRecord], results: dict, run_dir: Path) -> None:
    from residual_bringup.demo.plots import plot_residual_magnitude, plot_trajectory

    files = {"results": run_dir / "results.json", "graph_log": run_dir / "graph.log"}
    if cfg.record:
        files["recording"] = run_dir / "recording.mcap"
    if episodes:
        files["corrections"] = run_dir / "corrections.csv"
        results["corrections_rows"] = write_corrections_csv(files["corrections"], episodes)
        on = [e for e in episodes if e.phase == "residual"]
        shown = next((e for e in on if e.success), on[0] if on else episodes[0])
        files["trajectory_plot"] = plot_trajectory(shown, run_dir / "trajectory.png")
        results["trajectory_plot_episode"] = {"phase": shown.phase, "seed": shown.seed}
        if on:
            files["residual_plot"] = plot_residual_magnitude(on, run_dir / "residual_magnitude.png")
    results["files"] = {k: str(v) for k, v in files.items()}
    files["results"].write_text(json.dumps(jsonable(results), indent=2, allow_nan=False) + "\n")


def parse_args(argv: list[str] | None = None) -> DemoConfig:
    """The command line as a DemoConfig; a bad option prints why and exits with status 2."""
    return tyro.cli(DemoConfig, args=argv, prog="residual-demo", description=__doc__)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    try:
        residual, base = resolve_checkpoints(cfg.task, cfg.checkpoint, cfg.base_checkpoint)
    except ValueError as exc:  # ConfigProblem included
        print(f"{PREFIX} {exc}", file=sys.stderr, flush=True)
        return 2
    if cfg.pose_source == "camera" and not pose_estimator_available():
        print(f"{PREFIX} --pose-source camera needs pose-estimator-node, which is not installed", file=sys.stderr,
              flush=True)
        return 2
    run_dir = make_run_dir(cfg.out_dir)
    say(f"task {cfg.task}, {cfg.episodes} episodes per phase (seeds {cfg.seeds[0]}..{cfg.seeds[-1]}), residual "
        f"{residual}, base {base}; writing {run_dir}")
    results, status = run_demo(cfg, residual, base, run_dir)
    seeds = f"seeds {cfg.seeds[0]}..{cfg.seeds[-1]}"
    print(f"\nSuccess through the ROS 2 graph (lockstep, {seeds}; pose source {results['pose_source_detail']}):\n")
    print(format_table(cfg.task, results["summary"]))
    for key, path in results.get("files", {}).items():
        print(f"  {key:16s} {path}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
