"""`residual-train`: train a residual policy on the frozen base policy in simulation (TD3 or SAC, n-step, ensemble).

The loop (per vector step of ``num_envs`` envs): the frozen base plays its action chunks open-loop; the
residual actor sees object poses (with pose noise and whole-object dropout) + proprioception + the base's
action and outputs a bounded correction; base + residual is applied; n-step transitions go to the online
buffer. Before the online phase, base-only rollouts fill an offline buffer (zero residual) that every
update samples from alongside the online buffer (``offline_ratio``). The actor's last layer is
zero-initialised, so training starts exactly from the base's behaviour.

Writes to ``out_dir``: ``best.safetensors/.json`` (the best evaluated checkpoint, residual_core format,
evaluation summary in the manifest), ``last.*``, ``metrics.csv``, ``eval.csv``, TensorBoard events,
``learning_curve.png``, and ``state/`` for ``--resume``.

Collection (the environment-stepping half, :mod:`trainer.collector`) runs in this process by default; with
``--collectors K`` it runs in K Ray actors (:mod:`trainer.ray_collect`, ``make setup-ray``) while the learner stays
here: ``--sync`` alternates collection and updates exactly as in-process (K = 1 gives the same weights), without it
the learner updates while the collectors play the last weights it pushed.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import tyro
from franka_sim.dynamics import TRAINING
from franka_sim.sim import check_backend
from franka_sim.tasks import make_task, reward_spec
from residual_core.checkpoint import default_base_checkpoint, load_checkpoint
from residual_core.observation import make_layout
from residual_core.pipeline import ActionPipeline
from residual_core.residual_policy import NumpyPolicy
from residual_core.runtime import limit_blas_threads
from residual_core.tasks import TASK_NAMES
from residual_learning.networks import save_residual_checkpoint
from tqdm import tqdm

from trainer.collector import (
    TRAIN_SEED_OFFSET,
    VALIDATION_SEED_OFFSET,
    Collector,
    CollectorPolicy,
    LocalCollection,
    eval_protocol,
    load_base,
    make_backend,
    make_perception,
)
from trainer.perception_model import PerceptionModelParams
from trainer.plots import plot_learning_curve
from trainer.ray_support import RayMissingError
from trainer.replay import ReplayBuffer
from trainer.residual_train_args import Args
from trainer.rollout import evaluate_episodes
from trainer.run_log import RunLog
from trainer.sac import SAC
from trainer.sim_backend import SimBackend
from trainer.td3 import TD3, ActorCriticConfig

__all__ = ["TRAIN_SEED_OFFSET", "VALIDATION_SEED_OFFSET", "Trainer", "main"]


class Trainer:
    def __init__(self, args: Args):
        self.args = a = args
        torch.set_num_threads(a.threads)
        self.out = Path(a.out_dir or f"runs/residual/{a.task}/seed{a.seed}")
        self.out.mkdir(parents=True, exist_ok=True)
        self.rng = np.random.default_rng(a.seed)
        self.backend: SimBackend = make_backend(a, a.physics_threads)
        self.base = load_base(a)
        self.layout = make_layout(self.backend.object_names)
        self.scale = np.asarray(a.residual_scale, dtype=np.float64)
        self.pipeline = ActionPipeline(residual_scale=tuple(self.scale))
        self.perception_params = None if a.perception_model is None else PerceptionModelParams.load(a.perception_model)
        self.agent_cfg: ActorCriticConfig = a.td3 if a.algo == "td3" else a.sac
        self.agent = (TD3 if a.algo == "td3" else SAC)(self.layout.size, 7, self.agent_cfg, seed=a.seed)
        self.init_actor = self._load_init_actor() if a.init_actor is not None else None
        if self.agent_cfg.anchor_penalty > 0.0:
            if self.init_actor is None:
                raise ValueError(f"--{a.algo}.anchor-penalty {self.agent_cfg.anchor_penalty} keeps the actor near "
                                 "an initial actor: pass --init-actor CHECKPOINT (or leave it at 0)")
            self.agent.set_anchor()
        # (each collector's envs run their episodes to the end: up to num_envs episodes more than asked, per collector)
        self.offline = ReplayBuffer((a.offline_episodes + a.num_envs * max(1, a.collectors)) * self.backend.horizon,
                                    self.layout.size, 7)
        self.online = ReplayBuffer(a.buffer_size, self.layout.size, 7)
        self.env_steps = 0
        self.episodes = 0
        self.resume_seed: int | None = None
        self.best: tuple[int, float] | None = None
        self.eval_rows: list[dict] = []
        self.wall0 = time.time()
        self.wall_before = 0.0

    def _load_init_actor(self) -> dict:
        """Load --init-actor into the actor (and its target); returns its provenance and normalisation."""
        a = self.args
        tensors, man = load_checkpoint(a.init_actor, expected_kind="residual", expected_task=a.task,
                                       expected_layout=self.layout)
        if not np.allclose(man.action_scale, self.scale):
            raise ValueError(f"--init-actor {a.init_actor}: its residual bound {man.action_scale} differs from "
                             f"--residual-scale {self.scale.tolist()}")
        hidden = list(man.network.get("kwargs", {}).get("hidden", []))
        if hidden != list(self.agent_cfg.hidden):
            raise ValueError(f"--init-actor {a.init_actor}: hidden layers {hidden}, the agent's "
                             f"{list(self.agent_cfg.hidden)} (pass the same --td3.hidden / --sac.hidden)")
        state = {k: torch.as_tensor(np.asarray(v)) for k, v in tensors.items()}
        self.agent.actor.load_state_dict(state)
        if hasattr(self.agent, "actor_target"):
            self.agent.actor_target.load_state_dict(state)
        norm = man.normalization
        return {"path": str(a.init_actor), "weights_sha256": man.weights_sha256,
                "obs_mean": np.asarray(norm["obs_mean"]), "obs_std": np.asarray(norm["obs_std"])}

    # --- collection ----------------------------------------------------------------------------------
    def _make_collection(self):
        """In this process (sharing the backend and generator), or in ``--collectors`` Ray actors."""
        a = self.args
        if a.collectors:
            from trainer.ray_collect import RayCollection  # (Ray is optional: make setup-ray)

            return RayCollection(a, self.rng, self.online, self.offline)
        return LocalCollection(Collector(a, backend=self.backend, base=self.base, rng=self.rng), self.online,
                               self.offline)

    def _policy(self) -> CollectorPolicy:
        return CollectorPolicy(NumpyPolicy.from_actor(self.agent.actor),
                               self.agent.exploration(self.args.exploration_noise))

    # --- evaluation & checkpoints ---------------------------------------------------------------------
    def _perception(self, seed: int, evaluation: bool):
        """Training's (or, ``evaluation``, validation's) perception model: the fitted camera model if given, else pose
        noise and i.i.d. dropout."""
        return make_perception(self.args, self.perception_params, self.backend.object_names, seed, evaluation)

    def evaluate(self) -> dict:
        a = self.args
        aug = self._perception(seed=12345, evaluation=True)
        pol = NumpyPolicy.from_actor(self.agent.actor)
        res = evaluate_episodes(self.backend, self.base, [VALIDATION_SEED_OFFSET + i for i in range(a.eval_episodes)],
                                residual_fn=lambda o: pol(o) * self.scale, augmenter=aug, pipeline=self.pipeline,
                                compose_from=a.compose_from)
        self.collection.after_evaluation()
        return res.to_dict()

    def save(self, name: str, evaluation: dict) -> Path:
        a = self.args
        training = {"args": json.loads(json.dumps(asdict(a), default=str)), "algorithm": self.agent.name,
                    "pipeline": json.loads(json.dumps(asdict(self.pipeline), default=list)),
                    "reward": {**reward_spec(make_task(a.task)), "success_reward": a.success_reward,
                               "reward_scale": a.reward_scale},
                    "wall_clock_s": self.wall_clock(), "env_steps": self.env_steps, "compose_from": a.compose_from,
                    "init_actor": (None if self.init_actor is None else
                                   {k: self.init_actor[k] for k in ("path", "weights_sha256")}),
                    "base_checkpoint": str(a.base_checkpoint or default_base_checkpoint()),
                    "base_population": (None if a.base_population is None else self.base.describe()),
                    "perception": ({"kind": "pose_noise_dropout", "pose_noise": a.pose_noise, "dropout": a.dropout}
                                   if self.perception_params is None else
                                   {"kind": "fitted_camera_model", "path": str(a.perception_model),
                                    "fitted_from": self.perception_params.fitted_from,
                                    "latency_steps": self.perception_params.latency_steps}),
                    "dynamics": ({"kind": "nominal"} if a.dynamics == "nominal" else
                                 {"kind": "per_episode_draws", **TRAINING.as_dict()})}
        return save_residual_checkpoint(self.out / name, self.agent.actor, self.layout, a.task, self.scale.tolist(),
                                        training, self.env_steps, evaluation)

    def wall_clock(self) -> float:
        return self.wall_before + time.time() - self.wall0

    def save_state(self):
        st = self.out / "state"
        st.mkdir(exist_ok=True)
        torch.save({k: v for k, v in self.agent.state_dict().items()}, st / "agent.pt")
        self.online.save(st / "online.npz")
        self.offline.save(st / "offline.npz")
        meta = {"env_steps": self.env_steps, "episodes": self.episodes, "next_seed": self.collection.next_seed(),
                "best": self.best, "updates": self.agent.updates, "wall_clock_s": self.wall_clock(),
                "rng": self.rng.bit_generator.state, "eval_rows": self.eval_rows,
                "eval_protocol": self.eval_protocol(), "algo": self.args.algo}
        (st / "meta.json").write_text(json.dumps(meta, default=int))

    def load_state(self):
        st = self.out / "state"
        if not (st / "meta.json").exists():
            raise FileNotFoundError(f"--resume: no saved state in {st}")
        meta = json.loads((st / "meta.json").read_text())
        saved_algo = meta.get("algo", "td3")
        if saved_algo != self.args.algo:
            raise ValueError(f"--resume: the saved state in {st} was trained with --algo {saved_algo}, not "
                             f"{self.args.algo}")
        ag = self.agent
        ag.load_state_dict(torch.load(st / "agent.pt", weights_only=True))
        self.online.load(st / "online.npz")
        self.offline.load(st / "offline.npz")
        self.env_steps, self.episodes, self.resume_seed = meta["env_steps"], meta["episodes"], meta["next_seed"]
        self.best = tuple(meta["best"]) if meta["best"] and not self.args.reset_best else None
        saved = meta.get("eval_protocol")
        if saved is not None and saved != self.eval_protocol() and not self.args.reset_best:
            raise ValueError(f"--resume: the evaluation protocol changed ({saved} -> {self.eval_protocol()}), so the "
                             "best checkpoint so far cannot be compared with new evaluations: pass --reset-best to "
                             "select among the continued run's evaluations only, or keep the protocol")
        ag.updates = meta["updates"]
        self.wall_before = meta["wall_clock_s"]
        self.rng.bit_generator.state = meta["rng"]
        self.eval_rows = meta["eval_rows"]

    def eval_protocol(self) -> dict:
        return eval_protocol(self.args)

    # --- the whole run --------------------------------------------------------------------------------
    def train(self) -> dict:
        a = self.args
        if a.resume:
            self.load_state()
            print(f"[residual-train] resumed at {self.env_steps} env steps")
        self.collection = self._make_collection()
        try:
            return self._train()
        finally:
            self.collection.close()

    def _train(self) -> dict:
        a, coll = self.args, self.collection
        if self.resume_seed is not None:
            coll.start_after(self.resume_seed)
        coll.reset()
        if len(self.offline) == 0:
            with tqdm(desc="base rollouts (offline buffer)", unit="step") as bar:
                st = coll.fill_offline(a.offline_episodes, on_step=bar.update)
            self.episodes += st["episodes"]
            print(f"[residual-train] offline buffer: {len(self.offline)} transitions, base success "
                  f"{st['successes']}/{st['episodes']} episodes")
            coll.reset()
        if self.init_actor is not None:  # the loaded actor's own normalisation, for every network
            self.agent.set_normalization(self.init_actor["obs_mean"], self.init_actor["obs_std"])
        else:
            obs_all = np.concatenate([self.offline.obs[: len(self.offline)]], axis=0)
            self.agent.set_normalization(obs_all.mean(0), obs_all.std(0))
        self.log = RunLog(self.out, new_run=self.env_steps == 0)
        if self.env_steps == 0:
            self._record_eval(self.evaluate())

        policy = self._policy()
        chunk = a.steps_per_round()
        next_eval = (self.env_steps // a.eval_every + 1) * a.eval_every
        bar = tqdm(total=a.total_steps, initial=self.env_steps, desc=f"residual-train {a.task}", unit="step")
        upd_debt = 0.0
        while self.env_steps < a.total_steps:
            st = coll.round(chunk, policy)
            self.env_steps += st["steps"]
            self.episodes += st["episodes"]
            bar.update(st["steps"])
            info = {}
            if self.env_steps >= a.warmup_steps and len(self.online):  # (probing: the first steps store nothing)
                upd_debt += st["steps"] * a.updates_per_step
                n_off = int(round(self.agent_cfg.batch_size * a.offline_ratio))
                while upd_debt >= 1:
                    b_on = self.online.sample(self.agent_cfg.batch_size - n_off, self.rng)
                    if n_off:
                        b_off = self.offline.sample(n_off, self.rng)
                        b_on = {k: np.concatenate([b_on[k], b_off[k]]) for k in b_on}
                    info = self.agent.update(b_on)
                    upd_debt -= 1
                policy = self._policy()
            self.log.train_chunk(self.env_steps, self.wall_clock(), self.episodes, st, info)
            if self.env_steps >= next_eval or self.env_steps >= a.total_steps:
                next_eval += a.eval_every
                ev = self.evaluate()
                self._record_eval(ev)
                bar.set_postfix(eval=f"{ev['successes']}/{ev['episodes']}", best=self.best)
                self.log.flush()
                self.save_state()
        bar.close()
        self.save("last", self.eval_rows[-1]["evaluation"])
        self.log.close()
        plot_learning_curve(self.out / "eval.csv", self.out / "learning_curve.png", title=f"residual-train {a.task}")
        summary = {"task": a.task, "best": self.best, "env_steps": self.env_steps, "wall_clock_s": self.wall_clock(),
                   "out_dir": str(self.out), **coll.describe()}
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary

    def _record_eval(self, ev: dict) -> None:
        """Log an evaluation and keep the best checkpoint (most successes, then fewest mean steps)."""
        row = {"env_steps": self.env_steps, "wall_s": round(self.wall_clock(), 1), "successes": ev["successes"],
               "episodes": ev["episodes"], "mean_steps": ev["mean_steps_to_success"],
               "residual_abs": ev["residual_abs_mean"], "evaluation": ev}
        self.eval_rows.append(row)
        steps = ev["mean_steps_to_success"]
        key = (ev["successes"], -(steps if steps is not None else 1e9))
        if self.best is None or key > tuple(self.best):
            self.best = key
            self.save("best", {**ev, "env_steps": self.env_steps, "wall_clock_s": round(self.wall_clock(), 1),
                               **self.eval_protocol()})
        self.log.evaluation(row, ev["success_rate"])


def main(argv: list[str] | None = None) -> None:
    try:
        args = tyro.cli(Args, args=argv, description=__doc__)
        check_backend(args.backend, args.device)
        limit_blas_threads(1)
        print(f"[residual-train] task={args.task} seed={args.seed} total_steps={args.total_steps} "
              f"num_envs={args.num_envs}; tasks available: {', '.join(TASK_NAMES)}")
        summary = Trainer(args).train()
    except (ValueError, FileNotFoundError, RayMissingError) as exc:  # bad options, a bad resume state, no Ray
        print(f"residual-train: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
