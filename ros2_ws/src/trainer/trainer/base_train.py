"""`base-train`: behaviour-clone the frozen sim base policy (our stand-in for a VLA) on teleop-like demos.

1. Demonstrations: for each task, franka_sim's teleop-like demo generator (a scripted expert driven with a
   random human-like style: noise, hesitation, via points, corrected misalignments) is rolled out from
   seeded initial states; only successful demos are kept, ``demos_per_task`` per task.
2. Behaviour cloning: one generalist over the tasks, conditioned on the instruction string (bag-of-words
   embedding), reading privileged state (object poses + proprioception, no pixels), predicting chunks of
   ``horizon`` 7-D actions (L1 loss on normalised actions, as ACT does). At run time the chunk is executed
   open-loop for ``execute_steps`` steps before re-planning, as the VLAs it stands in for are.
3. Evaluation on every task (seeded, the same seeds as ``residual-eval``'s default) into the manifest.

The imperfection is the policy's own: a small data set of noisy, multimodal demonstrations and open-loop
chunks produce missed grasps, drift and pushed objects; nothing is injected at run time.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
import tyro
from residual_core.checkpoint import Manifest, save_checkpoint
from residual_core.runtime import limit_blas_threads
from residual_core.tasks import TASK_INSTRUCTIONS, TASK_NAMES, check_task
from residual_learning.base_policy import BasePolicy, BasePolicyNet, base_features_batch, embed_instruction
from tqdm import tqdm

DEMO_SEED_OFFSET = 5_000_000
"""Demonstration episodes start from seeds ``DEMO_SEED_OFFSET + k``, disjoint from evaluation seeds."""


@dataclass
class Args:
    out: Path = Path("checkpoints/base/base_policy")
    """Checkpoint path (without suffix): writes <out>.safetensors and <out>.json."""
    tasks: tuple[str, ...] = TASK_NAMES
    """Tasks the generalist is trained on."""
    demos_per_task: int = 60
    """Successful teleop-like demonstrations kept per task."""
    demo_counts: dict[str, int] = field(default_factory=dict)
    """Per-task overrides of demos_per_task, e.g. --demo-counts cube_lift 12 close_drawer 6 (a data set with
    fewer demonstrations of some tasks, as real ones have)."""
    horizon: int = 8
    """Actions per predicted chunk."""
    execute_steps: int = 8
    """Actions of each chunk executed open-loop before re-planning."""
    hidden: tuple[int, ...] = (512, 512, 512)
    """Hidden layer sizes of the MLP."""
    epochs: int = 60
    """Passes over the demonstration steps."""
    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    """Seed of demo styles, initialisation and batching."""
    eval_episodes: int = 20
    """Evaluation episodes per task after training (seeds 0..N-1); 0 skips."""
    workers: int = 2
    """Processes generating demonstrations."""
    demo_cache: Path | None = None
    """Load/save the demonstration arrays here (npz), to retrain without regenerating."""

    def __post_init__(self):
        for t in self.tasks:
            check_task(t)
        for t, n in self.demo_counts.items():
            check_task(t)
            if n < 1:
                raise ValueError(f"--demo-counts {t} must be >= 1, got {n}")
        if not 1 <= self.execute_steps <= self.horizon:
            raise ValueError(f"execute_steps must be in [1, horizon={self.horizon}], got {self.execute_steps}")


def _demos_for_task(job: tuple[str, int, int]) -> dict:
    """Worker: successful teleop-like demos for one task -> features and chunk targets."""
    task, n, seed = job
    from franka_sim.env import FrankaTaskEnv
    from franka_sim.experts import teleop_demo

    env = FrankaTaskEnv(task)
    emb = embed_instruction(TASK_INSTRUCTIONS[task])
    feats, acts = [], []
    tried = kept = 0
    rng = np.random.default_rng(seed)
    while kept < n:
        ep = teleop_demo(env, DEMO_SEED_OFFSET + seed * 100_000 + tried, rng=rng)
        tried += 1
        if tried > 20 * n:
            raise RuntimeError(f"{task}: only {kept} successful demos in {tried} attempts")
        if ep is None or not ep.success:
            continue
        obs = ep.observations[:-1]
        stack = {k: np.stack([o[k] for o in obs]) for k in ("object_pos", "object_quat", "joint_pos",
                                                              "gripper_width", "tcp_pos", "tcp_quat")}
        t = len(obs)
        feats.append(base_features_batch(stack["object_pos"], stack["object_quat"],
                                         np.ones(stack["object_pos"].shape[:2], bool), stack["joint_pos"],
                                         stack["gripper_width"].reshape(t), stack["tcp_pos"], stack["tcp_quat"], emb))
        acts.append(np.stack(ep.actions))
        kept += 1
    env.close()
    return {"task": task, "feats": feats, "acts": acts, "tried": tried, "kept": kept}


def chunk_targets(actions: np.ndarray, horizon: int) -> np.ndarray:
    """(T, 7) episode actions -> (T, H, 7) chunk targets; past the end: hold (zero motion, last gripper)."""
    t = len(actions)
    hold = np.zeros(7)
    hold[6] = actions[-1, 6]
    padded = np.concatenate([actions, np.tile(hold, (horizon, 1))])
    idx = np.arange(t)[:, None] + np.arange(horizon)[None, :]
    return padded[idx]


def collect_demos(args: Args) -> tuple[np.ndarray, np.ndarray, dict]:
    if args.demo_cache and Path(args.demo_cache).exists():
        z = np.load(args.demo_cache, allow_pickle=False)
        stats = json.loads(str(z["stats"]))
        if int(z["horizon"]) == args.horizon and stats.get("tasks") == list(args.tasks) and \
                stats.get("demos_per_task") == args.demos_per_task and stats.get("demo_counts") == args.demo_counts:
            print(f"[base-train] loaded demonstrations from {args.demo_cache}")
            return z["feats"], z["chunks"], stats
    jobs = [(t, args.demo_counts.get(t, args.demos_per_task), args.seed * 1000 + i) for i, t in enumerate(args.tasks)]
    feats, chunks, stats = [], [], {"tasks": list(args.tasks), "demos_per_task": args.demos_per_task,
                                    "demo_counts": dict(args.demo_counts), "per_task": {}}
    ctx = get_context("spawn")
    with ctx.Pool(max(1, args.workers)) as pool, tqdm(total=len(jobs), desc="teleop demos", unit="task") as bar:
        for res in pool.imap_unordered(_demos_for_task, jobs):
            for f, a in zip(res["feats"], res["acts"], strict=True):
                feats.append(f)
                chunks.append(chunk_targets(a, args.horizon))
            steps = sum(len(a) for a in res["acts"])
            stats["per_task"][res["task"]] = {"kept": res["kept"], "tried": res["tried"], "steps": steps}
            bar.set_postfix_str(f"{res['task']}: {res['kept']}/{res['tried']} ok")
            bar.update()
    F, C = np.concatenate(feats), np.concatenate(chunks)
    if args.demo_cache:
        Path(args.demo_cache).parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.demo_cache, feats=F, chunks=C, horizon=args.horizon, stats=json.dumps(stats))
    return F, C, stats


def train_bc(feats: np.ndarray, chunks: np.ndarray, args, net: BasePolicyNet | None = None,
             mask: np.ndarray | None = None) -> tuple[BasePolicyNet, list[float]]:
    """L1 behaviour cloning of (T, H, 7) chunk targets from (T, F) features; ``args`` gives epochs, batch_size, lr,
    weight_decay, seed (and horizon, hidden for a new net). ``net``: fine-tune this network, keeping its
    normalisation (pld-distill); None: a new one, normalised to the data. ``mask`` (T, H) bool: the chunk actions that
    supervise (None: all; pld-distill leaves out the actions past an episode that ended at its success)."""
    torch.manual_seed(args.seed)
    if net is None:
        net = BasePolicyNet(horizon=args.horizon, hidden=args.hidden)
        flat = chunks.reshape(-1, 7)
        act_std = flat.std(0)
        act_std[act_std < 1e-6] = 1.0
        feat_std = feats.std(0)
        feat_std[feat_std < 1e-6] = 1.0
        net.set_normalization(feats.mean(0), feat_std, flat.mean(0), act_std)
    elif chunks.shape[1] != net.horizon:
        raise ValueError(f"chunk targets of {chunks.shape[1]} actions for a network predicting {net.horizon}")
    net.train()
    X = torch.as_tensor(feats, dtype=torch.float32)
    Y = (torch.as_tensor(chunks, dtype=torch.float32) - net.act_mean) / net.act_std
    M = None if mask is None else torch.as_tensor(mask, dtype=torch.float32)[..., None].expand_as(Y)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = max(1, len(X) // args.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(args.seed)
    losses = []
    with tqdm(range(args.epochs), desc="behaviour cloning", unit="epoch") as bar:
        for _ in bar:
            perm = torch.randperm(len(X), generator=gen)
            total = 0.0
            for i in range(steps_per_epoch):
                idx = perm[i * args.batch_size:(i + 1) * args.batch_size]
                err = (net.forward_normalized(X[idx]) - Y[idx]).abs()
                loss = err.mean() if M is None else (err * M[idx]).sum() / M[idx].sum().clamp(min=1.0)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item()
            losses.append(total / steps_per_epoch)
            bar.set_postfix(l1=f"{losses[-1]:.4f}")
    net.eval()
    return net, losses


def evaluate_base(policy: BasePolicy, tasks, episodes: int) -> dict:
    from trainer.franka_backend import FrankaSimBackend
    from trainer.rollout import evaluate_episodes

    out = {}
    for task in tasks:
        backend = FrankaSimBackend(task, min(10, episodes), seed=0)
        r = evaluate_episodes(backend, policy, list(range(episodes)))
        backend.close()
        out[task] = {"successes": r.successes, "episodes": episodes,
                     "mean_steps_to_success": None if np.isnan(r.mean_steps) else r.mean_steps}
        print(f"[base-train] {task}: base {r.successes}/{episodes}")
    return out


def main(argv: list[str] | None = None) -> None:
    args = tyro.cli(Args, args=argv, description=__doc__)
    limit_blas_threads(1)
    torch.set_num_threads(1)
    t0 = time.time()
    feats, chunks, stats = collect_demos(args)
    t_demo = time.time() - t0
    print(f"[base-train] {len(feats)} demonstration steps ({t_demo:.0f} s): " + ", ".join(
        f"{k} {v['kept']}/{v['tried']}" for k, v in stats["per_task"].items()))
    net, losses = train_bc(feats, chunks, args)
    policy = BasePolicy(net=net, execute_steps=args.execute_steps)
    evaluation = evaluate_base(policy, args.tasks, args.eval_episodes) if args.eval_episodes else {}
    training = {**json.loads(json.dumps(asdict(args), default=str)), "execute_steps": args.execute_steps,
                "demo_stats": stats, "final_l1": losses[-1], "wall_clock_s": round(time.time() - t0, 1),
                "demo_seed_offset": DEMO_SEED_OFFSET}
    path = save_base_checkpoint(args.out, net, training, len(losses), evaluation)
    print(f"[base-train] wrote {path} ({time.time() - t0:.0f} s)")


def save_base_checkpoint(out: Path, net: BasePolicyNet, training: dict, steps: int, evaluation: dict) -> Path:
    """Write a base checkpoint (residual_core format; ``training`` must hold execute_steps)."""
    manifest = Manifest(kind="base", task="all", observation_layout=None,
                        normalization={k: getattr(net, k).tolist() for k in ("feat_mean", "feat_std", "act_mean",
                                                                                 "act_std")},
                        action_scale=[], network=net.config(), training=training, steps=steps,
                        evaluation=evaluation)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(out, dict(net.state_dict()), manifest)


if __name__ == "__main__":
    main()
