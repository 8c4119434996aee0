"""`pld-distill`: the distill stage of the data flywheel: fine-tune the frozen base on corrected rollouts.

Reads a LeRobotDataset v3.0 written by ``pld-collect`` (:mod:`trainer.lerobot_v3`), turns every frame into the base's
features (:func:`residual_learning.base_policy.base_features_batch` of ``observation.environment_state``,
``observation.state`` and the episode's instruction, the task string) and every episode's ``action`` sequence into
chunk targets (:func:`trainer.base_train.chunk_targets`), and fine-tunes the parent base with base-train's loss (L1 on
the parent's normalised actions), optionally mixed with the parent's own teleop-like demonstrations (regenerated from
its manifest: same seed, counts and demo seeds) or trained from scratch. Deterministic for a seed on one machine.
Writes a normal base checkpoint (loads unchanged in ``residual-eval --base-checkpoint``, the base node and
``make demo``) whose manifest records the parent (path and weights sha256), the dataset (path and content sha256) and
the options, then evaluates it alone on every task (seeds 0..N-1, as base-train does).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Literal

import numpy as np
import tyro
from residual_core.checkpoint import CheckpointError, default_base_checkpoint, read_manifest
from residual_core.runtime import limit_compute_threads
from residual_core.tasks import TASK_NAMES
from residual_learning.base_policy import BasePolicy, base_features_batch, embed_instruction

from trainer.base_train import chunk_targets, collect_demos, evaluate_base, save_base_checkpoint, train_bc
from trainer.lerobot_v3_read import LeRobotDataset, read_dataset
from trainer.pld_collect import split_environment_state


@dataclass
class Args:
    dataset: Path
    """A pld-collect dataset folder (LeRobotDataset v3.0)."""
    out: Path = Path("runs/pld/distilled/base_policy")
    """Checkpoint path to write (without suffix)."""
    base_checkpoint: Path | None = None
    """The parent base to fine-tune (default: the shipped checkpoints/base/base_policy)."""
    from_scratch: bool = False
    """Train a new network of the parent's size on the data (normalised to it) instead of fine-tuning the parent."""
    mix_demos: bool = False
    """Add the parent's original teleop-like demonstrations (regenerated from its manifest) to the dataset."""
    demo_cache: Path | None = None
    """With --mix-demos: load/save the regenerated demonstrations here (npz), as base-train --demo-cache."""
    episodes_per_task: int | None = None
    """Use only the first N episodes of each task in the dataset (a data-quantity curve from one collection)."""
    frames: Literal["all", "intervention"] = "all"
    """Which frames are training samples: all (the base's prefix, labelled with its own actions, and the takeover) or
    intervention (only the frames in which the residual acted: the recoveries; each frame's chunk target still reads
    the actions that followed it)."""
    epochs: int = 20
    """Passes over the data."""
    batch_size: int = 512
    lr: float = 3e-4
    """Peak learning rate (cosine to 0); lower than base-train's 1e-3 for fine-tuning."""
    weight_decay: float = 1e-4
    seed: int = 0
    """Seed of initialisation (--from-scratch) and batching."""
    eval_episodes: int = 20
    """Episodes per task of the base-alone evaluation written into the manifest (seeds 0..N-1); 0 skips."""

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"--epochs must be >= 1, got {self.epochs}")
        if self.episodes_per_task is not None and self.episodes_per_task < 1:
            raise ValueError(f"--episodes-per-task must be >= 1, got {self.episodes_per_task}")
        if self.demo_cache is not None and not self.mix_demos:
            raise ValueError("--demo-cache only applies with --mix-demos")


def dataset_sha256(root: Path) -> str:
    """sha256 over the dataset's data and meta files (relative path and bytes, sorted): what the distilled base saw."""
    h = hashlib.sha256()
    root = Path(root)
    for p in sorted(q for q in root.rglob("*") if q.is_file() and q.parts[len(root.parts)] in ("data", "meta")):
        if p.name == "pld_collect.json":
            continue  # the collection's report, not data
        h.update(str(p.relative_to(root)).encode() + b"\0")
        h.update(p.read_bytes())
    return h.hexdigest()


def dataset_targets(ds: LeRobotDataset, horizon: int, episodes_per_task: int | None = None,
                    frames: str = "all") -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """(T, F) base features, (T, H, 7) chunk targets and their (T, H) mask of every frame (of the first
    ``episodes_per_task`` episodes of each task, default all; ``frames`` "intervention": only those in which the
    residual acted); frames per task instruction.

    An episode ends at its first success, so a chunk that runs past its end has no label there: the mask leaves those
    actions out rather than teaching base-train's "hold still" padding just short of success (measured: the same
    sweep with the padding, docs/RESULTS.md, differed by at most 3 successes of 20 on a task, e.g. close_drawer 15 ->
    18 at alpha 0.6)."""
    tasks = {int(i): str(t) for t, i in zip(ds.tasks.index, ds.tasks["task_index"], strict=True)}
    feats, chunks, masks, per_task, episodes = [], [], [], {}, {}
    for ep in range(ds.num_episodes):
        f = ds.episode_frames(ep)
        instruction = tasks[int(np.ravel(f["task_index"])[0])]
        episodes[instruction] = episodes.get(instruction, 0) + 1
        if episodes_per_task is not None and episodes[instruction] > episodes_per_task:
            continue
        pos, quat, present = split_environment_state(f["observation.environment_state"])
        st = np.asarray(f["observation.state"], dtype=np.float64)
        feats.append(base_features_batch(pos, quat, present, st[:, 0:7], st[:, 7], st[:, 8:11], st[:, 11:15],
                                         embed_instruction(instruction)))
        chunks.append(chunk_targets(np.asarray(f["action"], dtype=np.float64), horizon))
        t = len(st)
        masks.append(np.arange(t)[:, None] + np.arange(horizon)[None, :] < t)
        if frames == "intervention":
            keep = np.ravel(f["intervention"]).astype(bool)
            feats[-1], chunks[-1], masks[-1] = feats[-1][keep], chunks[-1][keep], masks[-1][keep]
        per_task[instruction] = per_task.get(instruction, 0) + len(feats[-1])
    if not sum(per_task.values()):
        raise ValueError(f"no training frames in the dataset (frames={frames})")
    return np.concatenate(feats), np.concatenate(chunks), np.concatenate(masks), per_task


def parent_demos(parent_manifest, demo_cache: Path | None) -> tuple[np.ndarray, np.ndarray, dict]:
    """The parent's own demonstrations, regenerated with its base-train options."""
    from trainer.base_train import Args as BaseArgs

    t = parent_manifest.training
    try:
        base_args = BaseArgs(tasks=tuple(t["tasks"]), demos_per_task=int(t["demos_per_task"]),
                             demo_counts={k: int(v) for k, v in t.get("demo_counts", {}).items()},
                             horizon=int(t["horizon"]), seed=int(t["seed"]), workers=int(t.get("workers", 2)),
                             demo_cache=demo_cache, execute_steps=int(t["execute_steps"]))
    except KeyError as e:
        raise ValueError(f"--mix-demos: the parent's manifest does not say how its demonstrations were made ({e})"
                         ) from None
    return collect_demos(base_args)


def main(argv: list[str] | None = None) -> int:
    args = tyro.cli(Args, args=argv, description=__doc__)
    limit_compute_threads(1)  # BLAS, torch (imported by then) and cv2: one thread each
    t0 = time.time()
    parent_path = Path(args.base_checkpoint or default_base_checkpoint())
    try:
        parent = BasePolicy.from_checkpoint(parent_path)
        parent_manifest = read_manifest(parent_path)
        ds = read_dataset(args.dataset)
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"pld-distill: {e}", file=sys.stderr)
        return 2
    horizon = parent.net.horizon
    try:
        feats, chunks, mask, per_task = dataset_targets(ds, horizon, args.episodes_per_task, args.frames)
    except ValueError as e:
        print(f"pld-distill: {e}", file=sys.stderr)
        return 2
    print(f"[pld-distill] {args.dataset}: {ds.num_episodes} episodes, {len(feats)} frames ("
          + ", ".join(f"{k!r} {v}" for k, v in per_task.items()) + ")")
    demo_stats = None
    if args.mix_demos:
        try:
            d_feats, d_chunks, demo_stats = parent_demos(parent_manifest, args.demo_cache)
        except ValueError as e:
            print(f"pld-distill: {e}", file=sys.stderr)
            return 2
        feats, chunks = np.concatenate([feats, d_feats]), np.concatenate([chunks, d_chunks])
        mask = np.concatenate([mask, np.ones(d_chunks.shape[:2], dtype=bool)])  # (base-train's own targets)
        print(f"[pld-distill] + {len(d_feats)} frames of the parent's demonstrations")
    hp = SimpleNamespace(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                         seed=args.seed, horizon=horizon, hidden=parent.net.hidden)
    net, losses = train_bc(feats, chunks, hp, net=None if args.from_scratch else parent.net, mask=mask)
    policy = BasePolicy(net=net, execute_steps=parent.execute_steps)
    evaluation = evaluate_base(policy, TASK_NAMES, args.eval_episodes) if args.eval_episodes else {}
    collect_report = Path(args.dataset) / "meta" / "pld_collect.json"
    training = {"kind": "pld_distill", **json.loads(json.dumps(asdict(args), default=str)),
                "execute_steps": parent.execute_steps, "horizon": horizon, "hidden": list(parent.net.hidden),
                "parent": {"path": str(parent_path), "weights_sha256": parent_manifest.weights_sha256},
                "dataset": {"path": str(args.dataset), "sha256": dataset_sha256(Path(args.dataset)),
                            "episodes": ds.num_episodes, "frames": int(ds.num_frames), "frames_per_task": per_task,
                            "collection": (json.loads(collect_report.read_text())["args"]
                                           if collect_report.exists() else None)},
                "demo_stats": demo_stats, "frames": len(feats), "final_l1": losses[-1],
                "wall_clock_s": round(time.time() - t0, 1)}
    path = save_base_checkpoint(args.out, net, training, len(losses), evaluation)
    if evaluation:
        print("[pld-distill] base alone after distillation: " + ", ".join(
            f"{k} {v['successes']}/{v['episodes']}" for k, v in evaluation.items()))
    print(f"[pld-distill] wrote {path} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
