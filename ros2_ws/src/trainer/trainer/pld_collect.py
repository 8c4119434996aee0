"""`pld-collect`: the probe stage of the data flywheel (probe, learn, distill): corrected rollouts as a LeRobot dataset.

Per task, seeded episodes (seeds ``PLD_SEED_OFFSET + task_index * 1_000_000 + k``, disjoint from evaluation (0..),
validation (900,000..), demonstration (5,000,000..) and residual-training (10,000,000..) seeds): the frozen base runs
alone for a random prefix of ``T ~ U[0, alpha * horizon]`` control steps (drawn from the episode's seed), then base +
residual take over (the residual specialist trained for the task, seeing the poses through the deployment's perception
model), through the one closed loop of training and evaluation (:mod:`trainer.closed_loop`: the same action bounds,
safety envelope and composition). An episode ends at its first success or at the horizon. Successes are kept (failures
too with ``--keep-failures``, labelled in the episode's ``success`` column). ``--source base`` is the control the
flywheel is compared with: the base alone for the whole episode (its own successes).

Each frame records what the base observes (``observation.state``: proprioception; ``observation.environment_state``:
the object slots the base reads), the executed action (``action``: the label to distil; the base's action during the
prefix, base + residual after the takeover, both through the action bounds and envelope), the base action and the
residual separately (``complementary_info.*``), whether the residual was acting (``intervention``) and
``next.reward`` / ``next.success`` / ``next.done``. The dataset is LeRobotDataset v3.0 (:mod:`trainer.lerobot_v3`), one
multi-task dataset whose tasks are the instructions; each episode records its task name, seed, takeover step and
outcome. ``meta/pld_collect.json`` has the collection's summary (attempts, kept, success by takeover time, length).

The PLD recipe this follows (arXiv 2511.00091, as reported; no code of theirs is used): base prefix ~ U[0, 0.6 H], then
the specialist; keep successes; best alpha 0.6.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import tyro
from franka_sim.sim import SimBackendName, check_backend
from residual_core.action import CONTROL_DT
from residual_core.augment import PoseAugmenter
from residual_core.checkpoint import CheckpointError, default_base_checkpoint, default_residual_checkpoint
from residual_core.observation import layout_for_task
from residual_core.pipeline import ActionPipeline
from residual_core.residual_policy import ResidualPolicy
from residual_core.runtime import limit_compute_threads
from residual_core.tasks import TASK_INSTRUCTIONS, TASK_NAMES, check_task
from residual_learning.base_policy import BASE_MAX_OBJECTS, BasePolicy
from tqdm import tqdm

from trainer.closed_loop import ClosedLoop
from trainer.lerobot_v3 import DatasetWriter, FeatureSpec

PLD_SEED_OFFSET = 20_000_000
"""Collection episode ``k`` of task ``i`` (TASK_NAMES order) starts from seed ``PLD_SEED_OFFSET + i * 10**6 + k``."""
FPS = round(1.0 / CONTROL_DT)
"""Frames per second of the dataset: one frame per control step."""
STATE_NAMES = [*(f"joint{i}" for i in range(1, 8)), "gripper_width", "tcp_x", "tcp_y", "tcp_z", "tcp_qx", "tcp_qy",
               "tcp_qz", "tcp_qw"]
"""``observation.state``: arm joint positions (rad), gripper width (m), TCP pose (base frame, quaternion xyzw)."""
SLOT_FIELDS = ("x", "y", "z", "qx", "qy", "qz", "qw", "present")
ENV_STATE_NAMES = [f"slot{k}_{f}" for k in range(BASE_MAX_OBJECTS) for f in SLOT_FIELDS]
"""``observation.environment_state``: the base's object slots (the task's objects in order, then empty slots of zeros),
each position, orientation (xyzw) and present flag: what the base policy reads besides proprioception."""
ACTION_NAMES = ["dx", "dy", "dz", "drx", "dry", "drz", "gripper"]


def dataset_features() -> dict[str, FeatureSpec]:
    """The per-frame features of a PLD dataset (LeRobot naming; extras under ``complementary_info.``)."""
    vec = lambda n, names=None: FeatureSpec("float32", (n,), names)  # noqa: E731
    flag = lambda name: FeatureSpec("bool", (1,), [name])  # noqa: E731
    return {"observation.state": vec(len(STATE_NAMES), STATE_NAMES),
            "observation.environment_state": vec(len(ENV_STATE_NAMES), ENV_STATE_NAMES),
            "action": vec(7, ACTION_NAMES),
            "complementary_info.base_action": vec(7, ACTION_NAMES),
            "complementary_info.residual": vec(7, ACTION_NAMES),
            "intervention": flag("residual_acting"),
            "next.reward": FeatureSpec("float32", (1,), ["reward"]),
            "next.success": flag("success"),
            "next.done": flag("done")}


def environment_state(obj_pos: np.ndarray, obj_quat: np.ndarray) -> np.ndarray:
    """(N, K, 3), (N, K, 4) true object poses -> (N, len(ENV_STATE_NAMES)) slots (the base sees every task object)."""
    n, k = obj_pos.shape[:2]
    slots = np.zeros((n, BASE_MAX_OBJECTS, len(SLOT_FIELDS)))
    slots[:, :k, 0:3], slots[:, :k, 3:7], slots[:, :k, 7] = obj_pos, obj_quat, 1.0
    return slots.reshape(n, -1)


def split_environment_state(env_state: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`environment_state`: (N, BASE_MAX_OBJECTS, 3) positions, (.., 4) orientations, (..) present."""
    slots = np.asarray(env_state, dtype=np.float64).reshape(len(env_state), BASE_MAX_OBJECTS, len(SLOT_FIELDS))
    present = slots[..., 7] > 0.5
    quat = np.where(present[..., None], slots[..., 3:7], np.array([0.0, 0.0, 0.0, 1.0]))  # empty slots: identity
    return slots[..., 0:3], quat, present


@dataclass
class Args:
    out: Path = Path("runs/pld/dataset")
    """Dataset folder to write (LeRobotDataset v3.0). Refused if it exists and is not empty, unless --overwrite."""
    overwrite: bool = False
    """Replace an existing dataset at --out."""
    tasks: tuple[str, ...] = TASK_NAMES
    """Tasks to collect, one multi-task dataset."""
    episodes: int = 50
    """Episodes kept per task (successes; with --keep-failures every attempt is kept and this counts attempts)."""
    max_attempts: int | None = None
    """Attempts per task before giving up on reaching --episodes (default 4 x --episodes)."""
    alpha: float = 0.6
    """The base's prefix is T ~ U[0, alpha * horizon] steps, then the residual takes over (0: the residual acts from
    the first step)."""
    source: Literal["pld", "base", "teleop"] = "pld"
    """pld: base prefix then base + residual; base: the base alone for the whole episode (its own successes); teleop:
    more of the teleop-like scripted demonstrations the base was cloned from (other seeds; their
    complementary_info columns are zero). The last two are the controls the flywheel is compared with."""
    keep_failures: bool = False
    """Keep failed episodes too (their episodes-parquet ``success`` is false and no frame has next.success)."""
    base_checkpoint: Path | None = None
    """The frozen base (default: the shipped checkpoints/base/base_policy)."""
    residual_dir: Path | None = None
    """Folder holding <task>.safetensors/.json residual checkpoints (default: the shipped checkpoints/residual)."""
    pose_noise: float = 0.005
    """Pose noise the residual sees (fixed sigma per episode, m): the deployment's perception model."""
    dropout: float = 0.1
    """Whole-object pose dropout probability per step the residual sees."""
    compose_from: Literal["auto", "measured", "target"] = "auto"
    """Where commands are composed from (trainer.closed_loop); auto: what the task's residual was trained with."""
    seed_offset: int = PLD_SEED_OFFSET
    """First collection seed (task i uses seed_offset + i * 1,000,000 + k)."""
    num_envs: int = 10
    """Parallel simulated envs."""
    backend: SimBackendName = "mujoco"
    """Physics backend: mujoco (CPU MuJoCo, the default), warp (MuJoCo Warp on --device; `make setup-warp`) or
    isaaclab (Isaac Lab 3's Newton physics in a worker in its own environment; `make isaac-env`)."""
    device: str = "cpu"
    """Device of the warp and isaaclab backends: cpu or cuda:N (the mujoco backend runs on the CPU only)."""

    def __post_init__(self):
        for t in self.tasks:
            check_task(t)
        if self.episodes < 1:
            raise ValueError(f"--episodes must be >= 1, got {self.episodes}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"--alpha must be in [0, 1], got {self.alpha}")
        if self.max_attempts is not None and self.max_attempts < self.episodes:
            raise ValueError(f"--max-attempts ({self.max_attempts}) < --episodes ({self.episodes})")
        if self.num_envs < 1:
            raise ValueError(f"--num-envs must be >= 1, got {self.num_envs}")

    @property
    def attempts(self) -> int:
        return self.episodes if self.keep_failures else (self.max_attempts or 4 * self.episodes)


def takeover_step(seed: int, alpha: float, horizon: int) -> int:
    """The step at which the residual takes over an episode: uniform in [0, alpha * horizon], from the seed alone."""
    return int(np.random.default_rng([seed, 0x91D]).integers(0, int(alpha * horizon) + 1))


class _Episode:
    """Frames of one env's running episode."""

    def __init__(self, seed: int, takeover: int):
        self.seed, self.takeover, self.rows = seed, takeover, {k: [] for k in dataset_features()}
        self.t, self.success = 0, False

    def add(self, **cols) -> None:
        for k, v in cols.items():
            self.rows[k].append(v)

    def frames(self) -> dict[str, np.ndarray]:
        spec = dataset_features()
        return {k: np.asarray(v, dtype=spec[k].dtype).reshape(len(v), *spec[k].shape) for k, v in self.rows.items()}


def collect_teleop(task: str, args: Args, writer: DatasetWriter, bar: tqdm) -> dict:
    """``--source teleop``: teleop-like scripted demonstrations (franka_sim.experts.teleop_demo: a random human-like
    style per episode) from this task's collection seeds, in the same format; returns the summary row."""
    from franka_sim.env import EnvConfig, FrankaTaskEnv
    from franka_sim.experts import teleop_demo
    from franka_sim.sim import SimConfig

    env = FrankaTaskEnv(task, config=EnvConfig(sim=SimConfig(nthread=1, backend=args.backend, device=args.device)))
    first_seed = args.seed_offset + TASK_NAMES.index(task) * 1_000_000
    outcomes, kept = [], 0
    for k in range(args.attempts):
        if kept >= args.episodes and not args.keep_failures:
            break
        ep = teleop_demo(env, first_seed + k, keep_failures=True)
        outcomes.append((0, ep.success, ep.length))
        if not (ep.success or args.keep_failures):
            continue
        obs = ep.observations[:-1]
        t = len(obs)
        stack = {key: np.stack([o[key] for o in obs]) for key in ("object_pos", "object_quat", "joint_pos",
                                                                  "gripper_width", "tcp_pos", "tcp_quat")}
        done = np.zeros((t, 1), dtype=bool)
        done[-1] = True
        frames = {"observation.state": np.concatenate([stack["joint_pos"], stack["gripper_width"].reshape(t, 1),
                                                       stack["tcp_pos"], stack["tcp_quat"]], axis=1),
                  "observation.environment_state": environment_state(stack["object_pos"], stack["object_quat"]),
                  "action": np.stack(ep.actions), "complementary_info.base_action": np.zeros((t, 7)),
                  "complementary_info.residual": np.zeros((t, 7)), "intervention": np.zeros((t, 1), dtype=bool),
                  "next.reward": np.asarray(ep.rewards).reshape(t, 1), "next.success": done & ep.success,
                  "next.done": done}
        spec = dataset_features()
        writer.add_episode({key: np.asarray(v, dtype=spec[key].dtype) for key, v in frames.items()},
                           TASK_INSTRUCTIONS[task], {"task_name": task, "seed": first_seed + k, "takeover_step": t,
                                                     "success": ep.success, "source": "teleop", "alpha": args.alpha})
        kept += 1
        bar.update(1)
    env.close()
    return summarize(task, outcomes, kept, None, "measured")


def collect_task(task: str, args: Args, base: BasePolicy, writer: DatasetWriter, bar: tqdm) -> dict:
    """Collect one task's episodes into ``writer``; returns its summary row."""
    from trainer.franka_backend import FrankaSimBackend

    if args.source == "teleop":
        return collect_teleop(task, args, writer, bar)

    residual = None
    if args.source == "pld":
        path = (args.residual_dir / task) if args.residual_dir is not None else default_residual_checkpoint(task)
        residual = ResidualPolicy.from_checkpoint(path, expected_task=task, expected_layout=layout_for_task(task))
    compose_from = args.compose_from
    if compose_from == "auto":
        compose_from = "measured" if residual is None else residual.manifest.compose_from
    n = min(args.num_envs, args.attempts)
    backend = FrankaSimBackend(task, n, seed=0, backend=args.backend, device=args.device)
    horizon = backend.horizon
    pipeline = ActionPipeline(residual_scale=tuple(residual.manifest.action_scale)) if residual else ActionPipeline()
    augmenter = PoseAugmenter(max_sigma=args.pose_noise, dropout_p=args.dropout, seed=args.seed_offset + 7,
                              fixed_sigma=True)
    loop = ClosedLoop(backend, base, pipeline, augmenter, compose_from=compose_from)
    first_seed = args.seed_offset + TASK_NAMES.index(task) * 1_000_000
    next_k = 0
    instruction = TASK_INSTRUCTIONS[task]

    def new_episode() -> _Episode:
        nonlocal next_k
        seed = first_seed + next_k
        next_k += 1
        never = args.source == "base"
        return _Episode(seed, horizon if never else takeover_step(seed, args.alpha, horizon))

    episodes = [new_episode() for _ in range(n)]
    loop.reset([e.seed for e in episodes])
    active = np.ones(n, dtype=bool)
    attempts = kept = 0
    outcomes: list[tuple[int, bool, int]] = []  # (takeover, success, length) per finished attempt
    while active.any():
        s = loop.state
        seen = loop.observe()
        acting = np.array([e.t >= e.takeover for e in episodes]) & active
        res = np.zeros((n, 7))
        if residual is not None and acting.any():
            res[acting] = np.asarray(residual(seen.residual_obs[acting]), dtype=np.float64)
        obs_state = np.concatenate([s.joint_pos, s.gripper_width.reshape(n, 1), s.tcp_pos, s.tcp_quat], axis=1)
        env_state = environment_state(s.obj_pos, s.obj_quat)
        out = loop.step(seen.base, None if residual is None else res)
        executed = out.pipeline.actions
        for i in np.flatnonzero(active):
            e = episodes[i]
            e.t += 1
            ok, done = bool(out.result.success[i]), bool(out.result.success[i]) or e.t >= horizon
            e.add(**{"observation.state": obs_state[i], "observation.environment_state": env_state[i],
                     "action": executed[i], "complementary_info.base_action": seen.base[i],
                     "complementary_info.residual": out.pipeline.residuals[i], "intervention": bool(acting[i]),
                     "next.reward": float(out.result.reward[i]), "next.success": ok, "next.done": done})
            if not done:
                continue
            attempts += 1
            outcomes.append((min(e.takeover, e.t), ok, e.t))
            room = attempts <= args.episodes if args.keep_failures else kept < args.episodes
            if (ok or args.keep_failures) and room:  # (several envs can end in one step: never more than asked)
                writer.add_episode(e.frames(), instruction,
                                   {"task_name": task, "seed": e.seed, "takeover_step": min(e.takeover, e.t),
                                    "success": ok, "source": args.source, "alpha": args.alpha})
                kept += 1
                bar.update(1)
            enough = kept >= args.episodes if not args.keep_failures else attempts >= args.episodes
            if enough or attempts + int(active.sum()) - 1 >= args.attempts:
                active[i] = False  # no new attempt in this env
            else:
                episodes[i] = new_episode()
                loop.reset([episodes[i].seed], env_ids=[i])
        if kept >= args.episodes and not args.keep_failures:
            break  # the attempts still running are not needed
    backend.close()
    return summarize(task, outcomes, kept, args.alpha * horizon if args.source == "pld" else None, compose_from)


def summarize(task: str, outcomes: list[tuple[int, bool, int]], kept: int, max_takeover: float | None,
              compose_from: str) -> dict:
    """A task's collection summary: attempts, kept, keep rate, success by takeover time (quarters of the prefix
    range; none without a takeover: ``max_takeover`` None), mean length of the successes."""
    take = np.array([o[0] for o in outcomes], dtype=np.float64)
    ok = np.array([o[1] for o in outcomes], dtype=bool)
    length = np.array([o[2] for o in outcomes], dtype=np.float64)
    edges = np.linspace(0.0, max(max_takeover or 0.0, 1.0), 5)
    by_takeover = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True) if max_takeover is not None else ():
        sel = (take >= lo) & ((take < hi) if hi < edges[-1] else (take <= hi))
        by_takeover.append({"takeover_from": round(float(lo), 1), "takeover_to": round(float(hi), 1),
                            "attempts": int(sel.sum()), "successes": int(ok[sel].sum())})
    return {"task": task, "attempts": len(outcomes), "successes": int(ok.sum()), "kept": kept,
            "keep_rate": float(ok.mean()) if len(ok) else 0.0,
            "mean_length_success": float(length[ok].mean()) if ok.any() else None,
            "success_by_takeover": by_takeover, "compose_from": compose_from}


def format_summary(rows: list[dict]) -> str:
    """The printed table: one row per task."""
    lines = ["| task | attempts | kept | success rate | mean length (successes) | success by takeover step (quarter) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        quarters = ", ".join(f"{b['takeover_from']:g}-{b['takeover_to']:g}: {b['successes']}/{b['attempts']}"
                             for b in r["success_by_takeover"]) or "-"
        length = "-" if r["mean_length_success"] is None else f"{r['mean_length_success']:.1f}"
        lines.append(f"| {r['task']} | {r['attempts']} | {r['kept']} | {r['keep_rate']:.2f} | {length} | {quarters} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = tyro.cli(Args, args=argv, description=__doc__)
    try:
        check_backend(args.backend, args.device)
    except ValueError as exc:
        print(f"pld-collect: {exc}", file=sys.stderr)
        return 2
    limit_compute_threads(1)  # BLAS, torch (imported by then) and cv2: one thread each
    t0 = time.time()
    try:
        base = BasePolicy.from_checkpoint(args.base_checkpoint or default_base_checkpoint())
        writer = DatasetWriter(args.out, fps=FPS, features=dataset_features(), robot_type="franka_fr3_sim",
                               overwrite=args.overwrite)
    except FileExistsError as e:
        print(f"pld-collect: {e} (here: --overwrite)", file=sys.stderr)
        return 2
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"pld-collect: {e}", file=sys.stderr)
        return 2
    rows = []
    total = args.episodes * len(args.tasks)
    try:
        with writer, tqdm(total=total, desc="pld-collect", unit="episode") as bar:
            for task in args.tasks:
                bar.set_postfix_str(task)
                rows.append(collect_task(task, args, base, writer, bar))
    except (CheckpointError, FileNotFoundError) as e:
        print(f"pld-collect: cannot load a residual checkpoint: {e}", file=sys.stderr)
        return 2
    wall = time.time() - t0
    summary = {"args": json.loads(json.dumps(asdict(args), default=str)), "tasks": rows, "wall_s": round(wall, 1),
               "base_checkpoint": str(args.base_checkpoint or default_base_checkpoint())}
    (args.out / "meta" / "pld_collect.json").write_text(json.dumps(summary, indent=2))
    print(f"\n{format_summary(rows)}\n\nwrote {args.out} ({sum(r['kept'] for r in rows)} episodes, {wall:.0f} s)")
    short = [r["task"] for r in rows if r["kept"] < args.episodes]
    if short:
        print(f"pld-collect: fewer than {args.episodes} episodes kept for {', '.join(short)} within "
              f"{args.attempts} attempts", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
