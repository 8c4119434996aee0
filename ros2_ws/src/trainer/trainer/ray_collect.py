"""`residual-train --collectors K`: collection in K Ray actors, the learner in the driver.

Each actor holds a :class:`trainer.collector.Collector` (its own ``--num-envs`` envs, its share of the episode seeds,
its own MuJoCo threads: ``--collector-cpus``) and returns, per call, the n-step transitions of ``--round-steps`` env
steps (>= 1,000 by default: a Ray round trip costs ~10 ms) played with the weights the driver passed. The replay
buffers stay in the driver (never in the object store); only the actor's numpy weights travel (``ray.put`` once per
round, shared by every call of that round).

``--sync``: every round, all K collect with the same weights and the driver waits for them, adds their transitions in
collector order and then updates; after each validation they start fresh episodes, as in-process. With K = 1 the
driver also hands its random generator's state to the collector and takes it back, so the run draws the very numbers
of the in-process trainer and ends with the same weights, bit for bit.

Without ``--sync`` (asynchronous): each collector is sent its next call as soon as its last one returns, with the
newest weights the driver has; the driver adds whatever has returned, then updates while the collectors play on.
The weights a collector plays are therefore one round old or more, and the result depends on timing.
"""

from __future__ import annotations

import time

import numpy as np

from trainer.collector import Collector, CollectorPolicy, first_train_seed
from trainer.ray_support import require_ray, start_ray
from trainer.residual_train_args import Args


class CollectorWorker:
    """The body of a collector actor (wrapped with ``ray.remote`` by :class:`RayCollection`)."""

    def __init__(self, args: Args, index: int, stride: int, nthread: int):
        from residual_core.runtime import limit_compute_threads

        self.collector = Collector(args, index=index, stride=stride, nthread=nthread)
        limit_compute_threads(1)  # BLAS/OpenMP/torch: the actor's CPUs belong to its MuJoCo threads

    def collect(self, steps: int, policy: CollectorPolicy, episodes: int | None = None,
                rng_state: dict | None = None) -> dict:
        return self.collector.collect(steps, policy, episodes=episodes, rng_state=rng_state)

    def reset(self, rng_state: dict | None = None) -> dict:
        return {"rng_state": self.collector.reset_with(rng_state), "next_seed": self.collector.next_seed}

    def start_after(self, used: int) -> int:
        self.collector.start_after(used)
        return self.collector.next_seed


def _add(stats: dict, part: dict) -> dict:
    return {k: stats.get(k, 0) + part[k] for k in ("episodes", "successes", "steps")}


class RayCollection:
    """K collector actors with the methods of :class:`trainer.collector.LocalCollection` (see the module docstring).

    ``rng``: the driver's generator (lent to a single ``--sync`` collector, see above); ``online``/``offline``: the
    driver's replay buffers the returned transitions go to.
    """

    def __init__(self, args: Args, rng: np.random.Generator, online, offline):
        self.ray = ray = require_ray()
        self.args, self.rng, self.online, self.offline = args, rng, online, offline
        self.k = args.collectors
        self.lend_rng = args.sync and self.k == 1
        self.started = start_ray(args.ray_address)
        try:
            worker = ray.remote(num_cpus=args.collector_cpus)(CollectorWorker)
            self.workers = [worker.remote(args, i, self.k, args.collector_cpus) for i in range(self.k)]
        except Exception:
            if self.started:
                ray.shutdown()
            raise
        self.next_seeds = [first_train_seed(args.seed) + i for i in range(self.k)]
        self.pending: dict = {}  # async: in-flight call -> collector index
        self.timing = {"calls": 0, "transitions": 0, "collector_busy_s": 0.0, "driver_wait_s": 0.0}

    # --- the driver's rng, lent to one --sync collector --------------------------------------------------
    def _rng_state(self) -> dict | None:
        return self.rng.bit_generator.state if self.lend_rng else None

    def _take_rng(self, state: dict | None) -> None:
        if self.lend_rng:
            self.rng.bit_generator.state = state

    def _get(self, refs: list) -> list:
        t0 = time.perf_counter()
        out = self.ray.get(refs)
        self.timing["driver_wait_s"] += time.perf_counter() - t0
        return out

    def _absorb(self, index: int, res: dict, buffer) -> dict:
        """Add one call's transitions to ``buffer``; returns its counts."""
        if res["transitions"] is not None:
            buffer.add_batch(*res["transitions"])
            self.timing["transitions"] += len(res["transitions"][2])
        self.next_seeds[index] = res["next_seed"]
        self.timing["calls"] += 1
        self.timing["collector_busy_s"] += res["busy_s"]
        self._take_rng(res["rng_state"])
        return res["stats"]

    # --- what the trainer calls -------------------------------------------------------------------------
    def reset(self) -> None:
        """Fresh episodes in every collector (``--sync``: after each validation too)."""
        if self.pending:
            raise RuntimeError("reset while collector calls are in flight")
        if self.lend_rng:
            res = self._get([self.workers[0].reset.remote(self._rng_state())])
        else:
            res = self._get([w.reset.remote(None) for w in self.workers])
        for i, r in enumerate(res):
            self.next_seeds[i] = r["next_seed"]
        self._take_rng(res[0]["rng_state"])

    def after_evaluation(self) -> None:
        if self.args.sync:
            self.reset()

    def fill_offline(self, episodes: int, on_step=None) -> dict:
        """The base-only episodes of the offline buffer, split over the collectors (in collector order)."""
        share = [episodes // self.k + (i < episodes % self.k) for i in range(self.k)]
        refs = {i: self.workers[i].collect.remote(0, CollectorPolicy(), share[i], self._rng_state())
                for i in range(self.k) if share[i]}
        stats: dict = {}
        for i, res in zip(refs, self._get(list(refs.values())), strict=True):
            stats = _add(stats, self._absorb(i, res, self.offline))
        if on_step is not None:
            on_step(stats.get("steps", 0))
        return stats

    def round(self, steps: int, policy: CollectorPolicy) -> dict:
        """One round of collection with ``policy``; returns the summed counts of the calls it received."""
        ref = self.ray.put(policy)
        stats: dict = {}
        if self.args.sync:
            calls = [w.collect.remote(steps, ref, None, self._rng_state()) for w in self.workers]
            for i, res in enumerate(self._get(calls)):
                stats = _add(stats, self._absorb(i, res, self.online))
            return stats
        if not self.pending:
            self.pending = {w.collect.remote(steps, ref): i for i, w in enumerate(self.workers)}
        t0 = time.perf_counter()
        ready, _ = self.ray.wait(list(self.pending), num_returns=1)
        more, _ = self.ray.wait([r for r in self.pending if r not in ready], num_returns=len(self.pending) - 1,
                                timeout=0) if len(self.pending) > 1 else ([], None)
        self.timing["driver_wait_s"] += time.perf_counter() - t0
        done = [(self.pending.pop(r), r) for r in [*ready, *more]]
        for i, _ in done:  # straight back to work with the newest weights, before the driver updates
            self.pending[self.workers[i].collect.remote(steps, ref)] = i
        for (i, _), res in zip(done, self.ray.get([r for _, r in done]), strict=True):
            stats = _add(stats, self._absorb(i, res, self.online))
        return stats

    def next_seed(self) -> int:
        """The smallest episode seed no collector has used (every collector's seeds are ``next_seed + i + j K``)."""
        return max(self.next_seeds) - self.k + 1

    def start_after(self, used: int) -> None:
        self.next_seeds = self._get([w.start_after.remote(int(used)) for w in self.workers])

    def describe(self) -> dict:
        t = self.timing
        return {"collectors": self.k, "sync": self.args.sync,
                "collection": {**{k: round(v, 3) if isinstance(v, float) else v for k, v in t.items()}}}

    def close(self) -> None:
        """Stop the actors (and Ray, when this run started it)."""
        for w in self.workers:
            self.ray.kill(w)
        self.workers, self.pending = [], {}
        if self.started:
            self.ray.shutdown()
