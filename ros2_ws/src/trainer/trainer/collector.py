"""The environment-stepping half of `residual-train`: vector envs, the closed loop, n-step transitions.

:class:`Collector` plays the frozen base plus the current residual (a :class:`CollectorPolicy`: the actor's numpy
forward pass and the agent's exploration) in ``num_envs`` simulated envs and turns the steps into n-step transitions.
The in-process trainer owns one that shares its backend and random generator and writes straight into its buffers;
``residual-train --collectors K`` runs K of them as Ray actors (:mod:`trainer.ray_collect`) that return their
transitions to the learner in the driver.

Seeds: the training episodes of run seed ``s`` use ``TRAIN_SEED_OFFSET + s * 1_000_000 + k``; collector ``i`` of ``K``
takes every K-th of them, ``k = i, i + K, i + 2K, ...`` (collector 0 of 1 takes them all, as the in-process trainer
does), so collectors never share an episode seed, and none is a validation seed (``VALIDATION_SEED_OFFSET + i``)
or a residual-eval test seed (0, 1, ...).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from franka_sim.dynamics import TRAINING, Shift
from residual_core.augment import PoseAugmenter
from residual_core.checkpoint import default_base_checkpoint
from residual_core.pipeline import ActionPipeline
from residual_core.residual_policy import NumpyPolicy
from residual_learning.base_policy import BasePolicy

from trainer.base_population import BasePopulation
from trainer.closed_loop import ClosedLoop
from trainer.franka_backend import FrankaSimBackend
from trainer.perception_model import FittedPerception, PerceptionModelParams
from trainer.replay import NStepAccumulator
from trainer.residual_train_args import Args
from trainer.sim_backend import SimBackend

VALIDATION_SEED_OFFSET = 900_000
"""Periodic evaluation (checkpoint selection) uses seeds ``VALIDATION_SEED_OFFSET + i``: disjoint from the
training seeds (``TRAIN_SEED_OFFSET + seed * 1_000_000 + k``) and from residual-eval's test seeds (0, 1, ...)."""
TRAIN_SEED_OFFSET = 10_000_000
PERCEPTION_SEED_STRIDE = 100_003
"""Collector ``i``'s perception noise is seeded ``seed + 1 + i * PERCEPTION_SEED_STRIDE`` (collector 0: ``seed + 1``,
the in-process trainer's)."""


def first_train_seed(seed: int) -> int:
    """The first training-episode seed of run seed ``seed``."""
    return TRAIN_SEED_OFFSET + seed * 1_000_000


def make_backend(a: Args, nthread: int = 0) -> FrankaSimBackend:
    """The training envs of ``a`` (``nthread`` physics threads; 0: all CPUs)."""
    return FrankaSimBackend(a.task, num_envs=a.num_envs, seed=a.seed,
                            shift=Shift(dynamics=TRAINING) if a.dynamics == "train" else None, nthread=nthread,
                            backend=a.backend, device=a.device)


def load_base(a: Args) -> BasePolicy | BasePopulation:
    return (BasePolicy.from_checkpoint(a.base_checkpoint or default_base_checkpoint())
            if a.base_population is None else BasePopulation.load(a.base_population))


def make_perception(a: Args, params: PerceptionModelParams | None, object_names, seed: int, evaluation: bool):
    """Training's (or, ``evaluation``, validation's) perception model: the fitted camera model if given, else pose
    noise and i.i.d. dropout."""
    if params is not None:
        return FittedPerception(params, object_names, seed=seed, task=a.task)
    if evaluation:
        return PoseAugmenter(max_sigma=a.eval_pose_noise, dropout_p=a.eval_dropout, seed=seed, fixed_sigma=True)
    return PoseAugmenter(max_sigma=a.pose_noise, dropout_p=a.dropout, seed=seed)


def eval_protocol(a) -> dict:
    """The validation protocol of a training run's options ``a`` (residual-train's or residual-dagger's Args): what a
    checkpoint's validation score means, recorded in its manifest (and compared on --resume)."""
    extra = {} if a.dynamics == "nominal" else {"dynamics": a.dynamics}
    if a.compose_from != "measured":  # (absent for measured: states saved before the option still resume)
        extra["compose_from"] = a.compose_from
    if a.base_population is not None:
        extra["base_population"] = str(a.base_population)
    if a.perception_model is not None:
        return {"episodes": a.eval_episodes, "perception_model": str(a.perception_model), **extra}
    return {"episodes": a.eval_episodes, "pose_noise": a.eval_pose_noise, "dropout": a.eval_dropout, **extra}


@dataclass
class CollectorPolicy:
    """What a collector plays: the actor's forward pass and the agent's exploration (``explore(u, rng)``), or
    nothing (``actor`` None: the base alone, zero residual, every step stored)."""

    actor: NumpyPolicy | None = None
    explore: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None


class TransitionList:
    """A sink for :meth:`Collector.run` that keeps the transitions to return them as one batch."""

    def __init__(self):
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add_batch(self, *tr: np.ndarray) -> None:
        self.parts.append(tr)

    def __len__(self) -> int:
        return sum(len(p[2]) for p in self.parts)

    def take(self) -> tuple[np.ndarray, ...] | None:
        """(obs, act, ret, next_obs, discount) of everything added, in order (None if nothing)."""
        if not self.parts:
            return None
        out = tuple(np.concatenate(f) for f in zip(*self.parts, strict=True))
        self.parts = []
        return out


class Collector:
    """``num_envs`` envs of ``args.task`` stepped by the base plus a residual; see the module docstring.

    ``backend``/``base``/``rng``: share the in-process trainer's (default: build them; ``rng`` then draws from
    ``default_rng([seed, index])``). ``index``/``stride``: this collector's share of the episode seeds.
    """

    def __init__(self, args: Args, *, index: int = 0, stride: int = 1, backend: SimBackend | None = None,
                 base: BasePolicy | BasePopulation | None = None, rng: np.random.Generator | None = None,
                 nthread: int = 0):
        if not 0 <= index < stride:
            raise ValueError(f"collector index {index} must be in [0, {stride})")
        self.args = a = args
        self.index, self.stride = index, stride
        self.backend = backend if backend is not None else make_backend(a, nthread)
        self.base = base if base is not None else load_base(a)
        self.scale = np.asarray(a.residual_scale, dtype=np.float64)
        self.pipeline = ActionPipeline(residual_scale=tuple(self.scale))
        params = None if a.perception_model is None else PerceptionModelParams.load(a.perception_model)
        self.loop = ClosedLoop(self.backend, self.base, self.pipeline,
                               make_perception(a, params, self.backend.object_names,
                                               seed=a.seed + 1 + index * PERCEPTION_SEED_STRIDE, evaluation=False),
                               compose_from=a.compose_from)
        self.rng = rng if rng is not None else np.random.default_rng([a.seed, index])
        gamma = (a.td3 if a.algo == "td3" else a.sac).gamma
        self.acc = NStepAccumulator(a.n_step, gamma, a.num_envs)
        self.next_seed = first_train_seed(a.seed) + index
        self.episodes = 0
        self._obs_cache: tuple[np.ndarray, np.ndarray] | None = None

    def start_after(self, used: int) -> None:
        """Continue (``--resume``) with seeds after ``used`` (the run's next unused episode seed)."""
        self.next_seed = int(used) + self.index

    def seeds(self, n: int) -> list[int]:
        s = list(range(self.next_seed, self.next_seed + n * self.stride, self.stride))
        self.next_seed += n * self.stride
        return s

    def reset(self) -> None:
        """Start fresh episodes in every env and drop the pending n-step transitions."""
        n = self.args.num_envs
        self.loop.reset(self.seeds(n))
        self.ep_t = np.zeros(n, dtype=np.int64)
        self.ep_success = np.zeros(n, dtype=bool)
        self.prefix = self.prefixes(n)
        seen = self.loop.observe()
        self._obs_cache = (seen.residual_obs, seen.base)
        self.acc.reset()

    def prefixes(self, n: int) -> np.ndarray:
        """Base-only prefix lengths of ``n`` new training episodes (--probe-alpha; zeros without probing)."""
        if self.args.probe_alpha <= 0:
            return np.zeros(n, dtype=np.int64)
        return self.rng.integers(0, int(self.args.probe_alpha * self.backend.horizon) + 1, size=n)

    def run(self, steps: int, policy: CollectorPolicy, sink, on_step=None, episodes: int | None = None) -> dict:
        """Step all envs ``steps // num_envs`` times (or until ``episodes`` episodes ended); n-step transitions go
        to ``sink.add_batch``. Returns counts: env steps, ended episodes and their successes."""
        a, n = self.args, self.args.num_envs
        if self._obs_cache is None:
            self.reset()
        obs, base_act = self._obs_cache
        stats = {"episodes": 0, "successes": 0, "steps": 0}
        vector_steps = max(steps // n, 1)
        learner = policy.actor is not None
        while (stats["episodes"] < episodes) if episodes is not None else (stats["steps"] < vector_steps * n):
            stats["steps"] += n
            u = np.zeros((n, 7), np.float32) if not learner else policy.actor(obs)
            if learner:
                u = policy.explore(u, self.rng)
            # probing: the base alone before its takeover, not stored (base-only rollouts store every step)
            acting = self.ep_t >= self.prefix if learner else np.ones(n, dtype=bool)
            u = np.where(acting[:, None], u, 0.0).astype(np.float32)
            out = self.loop.step(base_act, u * self.scale).result
            self.ep_t += 1
            self.ep_success |= out.success
            terminal = out.success if a.terminate_on_success else np.zeros(n, dtype=bool)
            truncated = (self.ep_t >= self.backend.horizon) & ~terminal
            reward = out.reward
            if a.success_reward == "max":
                reward = np.where(out.success, self.backend.max_reward, reward)
            reward = a.reward_scale * reward
            seen = self.loop.observe()
            next_base, next_obs = seen.base, seen.residual_obs
            tr = self.acc.push(obs, u, reward, next_obs, terminal, truncated, store=acting)
            if tr is not None:
                sink.add_batch(*tr)
            done = np.flatnonzero(terminal | truncated)
            if len(done):
                stats["episodes"] += len(done)
                stats["successes"] += int(self.ep_success[done].sum())
                self.ep_success[done] = False
                self.episodes += len(done)
                self.loop.reset(self.seeds(len(done)), env_ids=done.tolist())
                self.ep_t[done] = 0
                self.prefix[done] = self.prefixes(len(done))
                fresh = self.loop.observe(done)
                next_base[done], next_obs[done] = fresh.base, fresh.residual_obs
            obs, base_act = next_obs, next_base
            if on_step is not None:
                on_step(n)
        self._obs_cache = (obs, base_act)
        return stats

    def collect(self, steps: int, policy: CollectorPolicy, episodes: int | None = None,
                rng_state: dict | None = None) -> dict:
        """:meth:`run` into a fresh :class:`TransitionList`; returns ``{"transitions", "stats", "next_seed",
        "rng_state", "busy_s"}`` (``busy_s``: the seconds spent stepping and building transitions).

        ``rng_state`` (``--sync``): continue the learner's generator and hand it back, so one collector draws exactly
        the numbers the in-process trainer draws."""
        if rng_state is not None:
            self.rng.bit_generator.state = rng_state
        t0 = time.perf_counter()
        sink = TransitionList()
        stats = self.run(steps, policy, sink, episodes=episodes)
        return {"transitions": sink.take(), "stats": stats, "next_seed": self.next_seed,
                "rng_state": self.rng.bit_generator.state if rng_state is not None else None,
                "busy_s": time.perf_counter() - t0}

    def reset_with(self, rng_state: dict | None = None) -> dict | None:
        """:meth:`reset` drawing from the learner's generator state when given (``--sync``); returns the new state."""
        if rng_state is not None:
            self.rng.bit_generator.state = rng_state
        self.reset()
        return self.rng.bit_generator.state if rng_state is not None else None


class LocalCollection:
    """Collection in the trainer's process: one :class:`Collector` (sharing the trainer's backend and generator)
    writing straight into the trainer's buffers. :class:`trainer.ray_collect.RayCollection` has the same methods."""

    def __init__(self, collector: Collector, online, offline):
        self.collector, self.online, self.offline = collector, online, offline

    def reset(self) -> None:
        self.collector.reset()

    def after_evaluation(self) -> None:
        """The validation episodes ran on the shared backend: start fresh training episodes."""
        self.collector.reset()

    def fill_offline(self, episodes: int, on_step=None) -> dict:
        return self.collector.run(0, CollectorPolicy(), self.offline, on_step=on_step, episodes=episodes)

    def round(self, steps: int, policy: CollectorPolicy) -> dict:
        return self.collector.run(steps, policy, self.online)

    def next_seed(self) -> int:
        return self.collector.next_seed

    def start_after(self, used: int) -> None:
        self.collector.start_after(used)

    def describe(self) -> dict:
        return {}

    def close(self) -> None:
        pass
