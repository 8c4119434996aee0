"""`residual-dagger`: train a residual by imitating the scripted expert's correction of whatever base plays (DAgger).

The residual's job is to turn the base's proposed action into a good one within its bound. In simulation the good
action is known: the task's scripted expert (:mod:`franka_sim.experts`, privileged state) says at every step where
the TCP and gripper should go. The label of a step is the expert's correction of the base that played it,

    u* = clip((expert_action - base_action) / residual_scale, -1, 1),

the actor output (in [-1, 1], the deployed :class:`~residual_learning.networks.ResidualActor`) that best moves the
composed command towards the expert's. Because the label is computed against the base of each episode, training
against a population of bases (``--base-population``), randomised physics (``--dynamics train``) and the perception
model (``--perception-model``) costs nothing more than rolling them out; the residual still sees only what it sees at
run time (object poses through the perception model, proprioception, the base's action), never the expert's state.

Iterations (DAgger with a per-episode mixture): iteration 0 rolls out the bounded expert itself (base + the clipped
label); iteration k plays the expert's correction in an episode with probability ``beta ** k`` and the current
residual otherwise, labels every step the residual reached with the expert's correction, adds them to the data, and
refits the actor on all of it (mean squared error on u). After each iteration the residual is evaluated on the
validation seeds (the residual-train protocol: the same population, physics, composition and perception, seeds
``VALIDATION_SEED_OFFSET + i``); the best is kept.

The expert is the task's phase machine (approach, grasp, lift, ...), which advances when its targets are reached, so
under the residual's control its phases track what the arm does; or (``--expert reactive``, stand_cup_up) a memory-free
expert whose every step is a function of the current state. Its ceiling is the bounded expert's success (measured per
task in docs/RESULTS.md).

Writes to ``out_dir``: ``best.*`` and ``last.*`` (residual checkpoints; the manifest's ``training`` records the
recipe), ``eval.csv`` (one row per iteration; its ``env_steps`` are the labelled steps so far, so ``residual-compare``
reads it as it reads residual-train's) and ``learning_curve.png``.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro
from franka_sim.dynamics import TRAINING
from franka_sim.experts import REACTIVE_EXPERTS, ExpertKind, ExpertStyle, make_expert
from franka_sim.sim import SimBackendName
from residual_core.action import DEFAULT_RESIDUAL_SCALE, residual_bound_problems
from residual_core.checkpoint import default_base_checkpoint
from residual_core.observation import make_layout
from residual_core.pipeline import ActionPipeline
from residual_core.residual_policy import NumpyPolicy
from residual_core.runtime import limit_blas_threads
from residual_core.tasks import check_task
from residual_learning.networks import ResidualActor, save_residual_checkpoint
from tqdm import tqdm

from trainer.closed_loop import ClosedLoop
from trainer.collector import (
    TRAIN_SEED_OFFSET,
    VALIDATION_SEED_OFFSET,
    eval_protocol,
    load_base,
    make_backend,
    make_perception,
)
from trainer.perception_model import PerceptionModelParams
from trainer.plots import plot_learning_curve
from trainer.rollout import evaluate_episodes

DAGGER_SEED_OFFSET = TRAIN_SEED_OFFSET + 500_000
"""Episode seeds of run seed ``s``: ``DAGGER_SEED_OFFSET + s * 1_000_000 + k``, disjoint from residual-train's
(``TRAIN_SEED_OFFSET + s * 1_000_000 + k`` with k < 500,000), the validation seeds (900,000 + i) and residual-eval's
test seeds (0, 1, ...)."""


@dataclass
class Args:
    task: str = "cube_lift"
    """Task to train on: one of cube_lift, pick_place, stack_cube, close_drawer, stand_cup_up."""
    out_dir: Path | None = None
    """Output folder (default runs/residual/<task>/dagger_seed<seed>)."""
    base_checkpoint: Path | None = None
    """Frozen base policy checkpoint (default: the shipped checkpoints/base/base_policy)."""
    base_population: Path | None = None
    """Train against a population of bases (e.g. checkpoints/bases/population_bc.json; one member drawn per episode);
    validation plays the same population. Replaces --base-checkpoint."""
    seed: int = 0
    """Seed of everything (episodes, networks, mixture draws); a run is deterministic for a seed on one machine."""
    iterations: int = 10
    """DAgger iterations (each: roll out, label, refit, validate)."""
    episodes_per_iteration: int = 100
    """Episodes rolled out (and labelled) per iteration."""
    beta: float = 0.5
    """Iteration k plays the expert's correction in an episode with probability beta ** k (iteration 0: always)."""
    noise: float = 0.0
    """Std of Gaussian noise added to the played actor output (u units, then clipped to [-1, 1]) while the label
    stays the clean correction (DART): the expert's episodes then visit the states around its path."""
    expert: ExpertKind = "phases"
    """The expert whose correction is imitated: the task's phase machine, or (stand_cup_up) its memory-free
    "reactive" expert, whose every step is a function of the current state (franka_sim.experts.StandCupUpReactive):
    the residual sees what decides the label."""
    expert_stall_steps: int | None = None
    """The phase expert ends a phase once its target has come no closer for this many steps (franka_sim ExpertStyle
    stall_steps) instead of waiting for the phase's timer, which the residual cannot observe; None: the shipped
    expert as it is."""
    num_envs: int = 20
    """Parallel simulated envs."""
    epochs: float = 4.0
    """Passes over the aggregated data per refit (at least --min-updates updates)."""
    min_updates: int = 1_000
    """Fewest gradient updates per refit."""
    batch_size: int = 512
    """Minibatch size of the refit."""
    lr: float = 1e-3
    """Adam learning rate."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths of the actor (the deployed ResidualActor)."""
    residual_scale: tuple[float, ...] = tuple(DEFAULT_RESIDUAL_SCALE.tolist())
    """Residual bound per action component: actor output in [-1, 1] times this (m, m, m, rad, rad, rad, 1)."""
    pose_noise: float = 0.005
    """Training pose noise: sigma ~ U(0, pose_noise) per episode (m)."""
    dropout: float = 0.1
    """Training whole-object pose dropout probability per step."""
    perception_model: Path | None = None
    """A perception model fitted to the camera estimator (e.g. checkpoints/perception/camera.json), in training and
    validation, instead of --pose-noise / --dropout (and --eval-pose-noise / --eval-dropout)."""
    perception_mix: float = 0.5
    """With --perception-model: the fraction of training episodes (drawn per batch of --num-envs) in which the residual
    sees the poses through --pose-noise / --dropout instead (i.i.d. noise with sigma ~ U(0, pose_noise), so exact
    poses too). Without it an imitation-trained residual meets exact poses only at run time, and loses episodes there
    (measured: pick_place 20/20 with 5 mm noise, 10/20 with exact poses)."""
    dynamics: Literal["nominal", "train"] = "nominal"
    """Physics of the episodes: nominal, or train (mass, friction, servo stiffness, latency drawn per episode from
    franka_sim.dynamics.TRAINING, in training and validation)."""
    compose_from: Literal["measured", "target"] = "measured"
    """Where each command is composed from (trainer.closed_loop), in training and validation; recorded in the
    manifest."""
    eval_episodes: int = 40
    """Validation episodes after each iteration (seeds VALIDATION_SEED_OFFSET + i, the same every time)."""
    eval_iid_fraction: float = 0.0
    """With --perception-model: the fraction of the validation episodes that see the poses through --eval-pose-noise /
    --eval-dropout (the nominal test protocol) instead of the perception model, so the kept checkpoint is chosen on
    both (as --perception-mix trains on both). 0: the perception model only (how the shipped four were selected).
    Measured on stand_cup_up: a checkpoint kept at 94/100 on the perception model alone scored 79/100 in the nominal
    protocol."""
    eval_pose_noise: float = 0.005
    """Validation pose noise (fixed sigma, m)."""
    eval_dropout: float = 0.1
    """Validation pose dropout probability."""
    threads: int = 1
    """Torch intra-op threads."""
    backend: SimBackendName = "mujoco"
    """Physics backend (mujoco, warp or isaaclab), as residual-train's --backend."""
    device: str = "cpu"
    """Device of the warp backend."""
    physics_threads: int = 1
    """MuJoCo threads of the envs (0: every CPU)."""

    def __post_init__(self):
        check_task(self.task)
        problems = residual_bound_problems(self.residual_scale)
        if problems:
            raise ValueError(f"residual_scale {list(self.residual_scale)} must lie within the action spec: "
                             f"{'; '.join(problems)}")
        if self.base_population is not None and self.base_checkpoint is not None:
            raise ValueError("--base-population replaces --base-checkpoint: give one of them")
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {self.beta}")
        for name in ("iterations", "episodes_per_iteration", "num_envs", "batch_size", "eval_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.expert_stall_steps is not None and self.expert_stall_steps < 1:
            raise ValueError(f"expert_stall_steps must be >= 1, got {self.expert_stall_steps}")
        if self.expert == "reactive" and self.task not in REACTIVE_EXPERTS:
            raise ValueError(f"--expert reactive: no reactive expert for {self.task}; tasks with one: "
                             f"{sorted(REACTIVE_EXPERTS)}")
        if self.expert == "reactive" and self.expert_stall_steps is not None:
            raise ValueError("--expert-stall-steps applies to the phase expert only (the reactive one has no phases "
                             "to end)")
        if not 0.0 <= self.eval_iid_fraction <= 1.0:
            raise ValueError(f"eval_iid_fraction must be in [0, 1], got {self.eval_iid_fraction}")
        if self.eval_iid_fraction > 0 and self.perception_model is None:
            raise ValueError("--eval-iid-fraction needs --perception-model (without it every validation episode sees "
                             "--eval-pose-noise / --eval-dropout already)")
        if not 0.0 <= self.perception_mix <= 1.0:
            raise ValueError(f"perception_mix must be in [0, 1], got {self.perception_mix}")
        if self.noise < 0:
            raise ValueError(f"noise must be >= 0, got {self.noise}")
        if self.epochs <= 0 or self.lr <= 0 or self.min_updates < 0:
            raise ValueError(f"need epochs > 0, lr > 0, min_updates >= 0; got {self.epochs}, {self.lr}, "
                             f"{self.min_updates}")


def expert_label(expert_actions: np.ndarray, base_actions: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(N, 7) actor outputs in [-1, 1] that move base + residual towards the expert: the clipped correction in units of
    the bound (a component with a zero bound gets 0)."""
    safe = np.where(scale > 0, scale, 1.0)
    u = (np.asarray(expert_actions) - np.asarray(base_actions)) / safe
    return np.where(scale > 0, np.clip(u, -1.0, 1.0), 0.0)


class DaggerTrainer:
    def __init__(self, args: Args):
        self.args = a = args
        torch.manual_seed(a.seed)
        torch.set_num_threads(a.threads)
        self.out = Path(a.out_dir or f"runs/residual/{a.task}/dagger_seed{a.seed}")
        self.out.mkdir(parents=True, exist_ok=True)
        self.rng = np.random.default_rng(a.seed)
        self.backend = make_backend(a, a.physics_threads)
        self.base = load_base(a)
        self.layout = make_layout(self.backend.object_names)
        self.scale = np.asarray(a.residual_scale, dtype=np.float64)
        self.pipeline = ActionPipeline(residual_scale=tuple(self.scale))
        self.params = None if a.perception_model is None else PerceptionModelParams.load(a.perception_model)
        self.expert_style = ExpertStyle(stall_steps=a.expert_stall_steps)
        self.expert_class = type(make_expert(a.task, a.expert)).__name__
        self.actor = ResidualActor(self.layout.size, 7, a.hidden)
        self.opt = torch.optim.Adam(self.actor.parameters(), lr=a.lr)
        self.obs: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []
        self.next_seed = DAGGER_SEED_OFFSET + a.seed * 1_000_000
        self.eval_rows: list[dict] = []
        self.best: tuple[int, int] | None = None
        self.wall0 = time.time()

    @property
    def samples(self) -> int:
        """Labelled steps so far (one per env step rolled out)."""
        return sum(len(o) for o in self.obs)

    # --- rollouts --------------------------------------------------------------------------------------
    def rollout(self, episodes: int, beta: float, progress: tqdm | None = None) -> dict:
        """Roll out ``episodes`` labelled episodes (the expert's correction played with probability ``beta`` per
        episode, the current actor otherwise); adds every live step's (observation, label) to the data."""
        a, n_env = self.args, self.args.num_envs
        seed = int(self.rng.integers(2**31))
        perception = make_perception(a, self.params, self.backend.object_names, seed=seed, evaluation=False)
        iid = (None if self.params is None or a.perception_mix == 0.0 else
               make_perception(a, None, self.backend.object_names, seed=seed + 1, evaluation=False))
        loop = ClosedLoop(self.backend, self.base, self.pipeline, perception, compose_from=a.compose_from)
        policy = NumpyPolicy.from_actor(self.actor)
        stats = {"episodes": 0, "successes": 0, "student_successes": 0, "student_episodes": 0}
        while stats["episodes"] < episodes:
            m = min(n_env, episodes - stats["episodes"])
            seeds = list(range(self.next_seed, self.next_seed + n_env))
            self.next_seed += n_env
            if iid is not None:  # this batch's perception: the fitted camera model or i.i.d. noise
                loop.perception = iid if self.rng.random() < a.perception_mix else perception
            loop.reset(seeds)
            experts = [make_expert(a.task, a.expert, self.expert_style, rng=np.random.default_rng(s)) for s in seeds]
            by_expert = self.rng.random(n_env) < beta
            done = np.zeros(n_env, dtype=bool)
            done[m:] = True  # extra envs of a short last batch run but are not recorded
            success = np.zeros(n_env, dtype=bool)
            for _ in range(self.backend.horizon):
                seen = loop.observe()
                state = self.backend.env.task_state()
                expert = np.stack([experts[i].act(state, i) for i in range(n_env)])
                label = expert_label(expert, seen.base, self.scale)
                u = np.where(by_expert[:, None], label, policy(seen.residual_obs))
                if a.noise > 0:
                    u = np.clip(u + self.rng.normal(0.0, a.noise, u.shape), -1.0, 1.0)
                live = ~done
                self.obs.append(seen.residual_obs[live].astype(np.float32))
                self.labels.append(label[live].astype(np.float32))
                out = loop.step(seen.base, u * self.scale)
                success |= out.result.success & ~done
                done |= out.result.success
                if done.all():
                    break
            stats["episodes"] += m
            stats["successes"] += int(success[:m].sum())
            stats["student_episodes"] += int((~by_expert[:m]).sum())
            stats["student_successes"] += int((success & ~by_expert)[:m].sum())
            if progress is not None:
                progress.update(m)
        return stats

    # --- fitting ---------------------------------------------------------------------------------------
    def fit(self) -> tuple[float, float]:
        """Refit the actor on all data so far; returns the mean loss of the last tenth of the updates and the loss of
        predicting no correction (mean squared label)."""
        a = self.args
        x = torch.as_tensor(np.concatenate(self.obs))
        y = torch.as_tensor(np.concatenate(self.labels))
        if self.eval_rows == []:  # first fit: the normalisation of the data the actor will see
            std = x.std(0)
            self.actor.set_normalization(x.mean(0).numpy(), std.numpy())
        n = len(x)
        updates = max(a.min_updates, int(a.epochs * n / a.batch_size))
        gen = torch.Generator().manual_seed(int(self.rng.integers(2**31)))
        losses = []
        for _ in range(updates):
            idx = torch.randint(0, n, (a.batch_size,), generator=gen)
            loss = torch.mean((self.actor(x[idx]) - y[idx]) ** 2)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            losses.append(float(loss))
        return float(np.mean(losses[-max(1, updates // 10):])), float(torch.mean(y ** 2))

    # --- validation and checkpoints ------------------------------------------------------------------------
    def evaluate(self) -> dict:
        """Validation on seeds VALIDATION_SEED_OFFSET + i: the first round(eval_iid_fraction * N) through i.i.d. pose
        noise and dropout, the rest through the run's perception. Returns the evaluation a checkpoint records."""
        a = self.args
        pol = NumpyPolicy.from_actor(self.actor)
        seeds = [VALIDATION_SEED_OFFSET + i for i in range(a.eval_episodes)]
        n_iid = round(a.eval_iid_fraction * len(seeds)) if self.params is not None else 0
        out: dict = {}
        for name, params, part in (("iid", None, seeds[:n_iid]), ("model", self.params, seeds[n_iid:])):
            if part:
                aug = make_perception(a, params, self.backend.object_names, seed=12345, evaluation=True)
                res = evaluate_episodes(self.backend, self.base, part, residual_fn=lambda o: pol(o) * self.scale,
                                        augmenter=aug, pipeline=self.pipeline, compose_from=a.compose_from)
                out[f"{name}_successes"] = res.successes
        successes = sum(out.values())
        protocol, split = eval_protocol(a), {}
        if n_iid > 0:  # (absent without the split, as before the option)
            protocol["iid_fraction"], split = a.eval_iid_fraction, out
        return {"successes": successes, "episodes": len(seeds), "success_rate": successes / len(seeds),
                "seeds": "validation", "protocol": protocol, **split}

    def training_record(self) -> dict:
        """The recipe as residual-train's manifests record it (same keys), plus the DAgger specifics."""
        a = self.args
        return {"algorithm": "dagger", "args": json.loads(json.dumps(asdict(a), default=str)),
                "samples": self.samples, "wall_clock_s": time.time() - self.wall0,
                "expert": {"kind": a.expert, "class": self.expert_class,
                           "stall_steps": a.expert_stall_steps},
                "compose_from": a.compose_from,
                "base_checkpoint": (None if a.base_population is not None
                                    else str(a.base_checkpoint or default_base_checkpoint())),
                "base_population": None if a.base_population is None else self.base.describe(),
                "perception": ({"kind": "pose_noise_dropout", "pose_noise": a.pose_noise, "dropout": a.dropout}
                               if self.params is None else
                               {"kind": "fitted_camera_model", "path": str(a.perception_model),
                                "fitted_from": self.params.fitted_from, "latency_steps": self.params.latency_steps,
                                "iid_fraction": a.perception_mix, "pose_noise": a.pose_noise,
                                "dropout": a.dropout}),
                "dynamics": ({"kind": "nominal"} if a.dynamics == "nominal" else
                             {"kind": "per_episode_draws", **TRAINING.as_dict()})}

    def save(self, name: str, iteration: int, evaluation: dict) -> Path:
        return save_residual_checkpoint(self.out / name, self.actor, self.layout, self.args.task, self.scale.tolist(),
                                        {**self.training_record(), "iteration": iteration},
                                        self.samples, evaluation)

    def write_eval_csv(self) -> None:
        with open(self.out / "eval.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(self.eval_rows[0]))
            w.writeheader()
            w.writerows(self.eval_rows)

    def train(self) -> dict:
        a = self.args
        total = a.iterations * a.episodes_per_iteration
        with tqdm(total=total, desc=f"residual-dagger {a.task}", unit="ep", dynamic_ncols=True) as bar:
            for k in range(a.iterations):
                stats = self.rollout(a.episodes_per_iteration, a.beta ** k, bar)
                loss, zero_loss = self.fit()
                ev = self.evaluate()
                row = {"iteration": k, "beta": a.beta ** k, "env_steps": self.samples,
                       "rollout_success_rate": stats["successes"] / max(stats["episodes"], 1),
                       "student_rollout_successes": stats["student_successes"],
                       "student_rollout_episodes": stats["student_episodes"], "loss": loss,
                       "zero_loss": zero_loss,
                       "successes": ev["successes"], "episodes": ev["episodes"],
                       "wall_s": round(time.time() - self.wall0, 1)}
                self.eval_rows.append(row)
                bar.set_postfix(it=k, val=f"{ev['successes']}/{ev['episodes']}", loss=f"{loss:.4f}")
                self.save("last", k, ev)
                if self.best is None or ev["successes"] > self.best[1]:
                    self.best = (k, ev["successes"])
                    self.save("best", k, ev)
                self.write_eval_csv()
                plot_learning_curve(self.out / "eval.csv", self.out / "learning_curve.png",
                                    f"residual-dagger: {a.task} (validation, {a.eval_episodes} episodes)")
        summary = {"best_iteration": self.best[0], "best_successes": self.best[1], "episodes": a.eval_episodes,
                   "wall_clock_s": round(time.time() - self.wall0, 1), "out_dir": str(self.out)}
        print(json.dumps(summary))
        return summary

    def close(self) -> None:
        self.backend.close()


def main(argv: list[str] | None = None) -> int:
    args = tyro.cli(Args, args=argv, description=__doc__.split("\n\n")[0])
    limit_blas_threads(1)
    trainer = DaggerTrainer(args)
    try:
        trainer.train()
    finally:
        trainer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
