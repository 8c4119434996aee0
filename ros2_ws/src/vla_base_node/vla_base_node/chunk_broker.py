"""Turns asynchronously arriving action chunks into exactly one base action per control step.

A VLA returns a chunk of H actions computed from the observation at some step s: ``actions[i]`` is meant
for step ``s + i``. Chunks arrive late (inference takes time), so by the time one arrives at step t its
first ``t - s`` actions are already in the past and are never executed.

Per control step t, :meth:`ChunkBroker.next_action` returns

* ``ensemble="none"``: the newest chunk's action for t (receding horizon, open-loop between re-plans);
* ``ensemble="temporal"``: an exponentially weighted average over every stored chunk's prediction for t,
  as ACT's temporal ensembling: weight ``exp(-decay * i)`` with i = 0 for the *oldest* prediction (a
  positive decay favours older predictions, which smooths; a negative one favours newer ones).
  Translation is the weighted mean, rotation the weighted rotation mean (scipy), and the gripper the
  weighted *median* of the predicted commands, so disagreeing open/close predictions never average to a
  half-closed command;
* no chunk covers t (ran dry, or nothing arrived yet): a hold action, zero delta and the last gripper.

It asks for a re-plan when the steps still covered after t fall below a threshold (default: enough steps
to cover the measured inference latency; with temporal ensembling: every step, as ACT does), and not
while a requested inference is still in flight. Thread-safe: chunks may be added from a worker thread.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

ACTION_DIM = 7
ENSEMBLE_MODES = ("none", "temporal")


@dataclass(frozen=True)
class StepAction:
    """The base action for one control step and how it was obtained."""

    step: int
    """Control step index the action is for."""
    action: np.ndarray
    """The 7-D action (docs/CONTRACTS.md)."""
    source: str
    """"chunk" (one prediction), "ensemble" (several predictions combined) or "hold" (ran dry)."""
    n_predictions: int
    """How many chunk predictions covered this step (0 when holding)."""
    ran_dry: bool
    """True when no chunk covered this step and the hold action was emitted."""
    remaining: int
    """Consecutive steps after this one still covered by a stored chunk."""
    replan: bool
    """True when the caller should start a new inference now (see :meth:`ChunkBroker.replan_started`)."""
    chunk_start: int | None
    """start_step of the newest chunk covering this step (None when holding)."""


@dataclass(frozen=True)
class AddResult:
    """What :meth:`ChunkBroker.add_chunk` did with a chunk."""

    accepted: bool
    """False when the chunk was rejected (bad shape, non-finite values, or entirely in the past)."""
    reason: str
    """"ok", "bad_shape", "non_finite" or "stale"."""
    usable: int
    """Actions of the chunk for steps not yet emitted."""
    discarded_past: int
    """Actions of the chunk for steps already emitted (latency), never executed."""


@dataclass
class _Chunk:
    start: int
    actions: np.ndarray  # (n, 7)
    seq: int  # arrival order, to order chunks with the same start step

    @property
    def end(self) -> int:  # last step covered
        return self.start + len(self.actions) - 1


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The smallest value at which the cumulative weight reaches half the total (one of ``values``)."""
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    idx = int(np.searchsorted(cum, 0.5 * cum[-1] - 1e-12))
    return float(values[order][idx])


@dataclass
class ChunkBroker:
    """Emits one action per control step from asynchronously arriving chunks (see the module docstring)."""

    horizon: int
    """Largest number of actions kept from one chunk (longer chunks are truncated)."""
    control_dt: float
    """Control period (s); converts inference latency into steps for the re-plan threshold."""
    ensemble: str = "none"
    """"none" (newest chunk wins) or "temporal" (ACT-style exponential weighting over overlapping chunks)."""
    ensemble_decay: float = 0.01
    """Temporal ensembling weight exp(-decay * i), i = 0 for the oldest prediction."""
    replan_threshold: int | None = None
    """Re-plan when fewer than this many steps remain covered after the current one. None: automatic
    (ceil(latency / control_dt) + 1 with the measured inference latency; the horizon with temporal ensembling)."""
    initial_gripper: float = 0.0
    """Gripper command held before any action was emitted (0 = open)."""
    latency_smoothing: float = 0.3
    """Weight of the newest sample in the exponential moving average of the inference latency."""
    _chunks: list[_Chunk] = field(default_factory=list, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if int(self.horizon) != self.horizon or self.horizon < 1:
            raise ValueError(f"horizon must be a positive integer, got {self.horizon!r}")
        if not (math.isfinite(self.control_dt) and self.control_dt > 0):
            raise ValueError(f"control_dt must be > 0 seconds, got {self.control_dt!r}")
        if self.ensemble not in ENSEMBLE_MODES:
            raise ValueError(f"ensemble must be one of {ENSEMBLE_MODES}, got {self.ensemble!r}")
        if not math.isfinite(self.ensemble_decay):
            raise ValueError(f"ensemble_decay must be finite, got {self.ensemble_decay!r}")
        if self.replan_threshold is not None and not 0 <= self.replan_threshold <= self.horizon:
            raise ValueError(f"replan_threshold must be in [0, horizon={self.horizon}] or None, "
                             f"got {self.replan_threshold!r}")
        if not 0.0 <= self.initial_gripper <= 1.0:
            raise ValueError(f"initial_gripper must be in [0, 1], got {self.initial_gripper!r}")
        if not 0.0 < self.latency_smoothing <= 1.0:
            raise ValueError(f"latency_smoothing must be in (0, 1], got {self.latency_smoothing!r}")
        self.horizon = int(self.horizon)
        self.reset()

    # --- episode / bookkeeping ------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget all chunks and the step counter (new episode). The latency estimate is kept."""
        with self._lock:
            self._chunks = []
            self._seq = 0
            self._last_step: int | None = None
            self._last_gripper = float(self.initial_gripper)
            self._pending_since: int | None = None
            if not hasattr(self, "_latency_s"):
                self._latency_s: float | None = None
            self.chunks_received = 0
            self.dry_steps = 0

    @property
    def last_step(self) -> int | None:
        """The last step an action was emitted for (None before the first)."""
        return self._last_step

    @property
    def latency_s(self) -> float | None:
        """Smoothed inference latency (s), None until one was noted."""
        return self._latency_s

    @property
    def pending(self) -> bool:
        """True while a requested inference has not delivered a chunk yet."""
        return self._pending_since is not None

    def effective_replan_threshold(self) -> int:
        """The re-plan threshold in steps currently in force."""
        if self.replan_threshold is not None:
            return self.replan_threshold
        if self.ensemble == "temporal":
            return self.horizon
        latency_steps = math.ceil((self._latency_s or 0.0) / self.control_dt - 1e-9)
        return min(self.horizon, latency_steps + 1)

    def note_latency(self, seconds: float) -> float:
        """Record one inference latency; returns the smoothed estimate."""
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"latency must be a finite number of seconds >= 0, got {seconds!r}")
        with self._lock:
            a = self.latency_smoothing
            self._latency_s = seconds if self._latency_s is None else (1 - a) * self._latency_s + a * seconds
            return self._latency_s

    def replan_started(self, step: int) -> None:
        """The caller started an inference on the observation of ``step``: no new request until it delivers."""
        with self._lock:
            self._pending_since = int(step)

    def replan_failed(self) -> None:
        """The in-flight inference failed: allow a new request at the next step."""
        with self._lock:
            self._pending_since = None

    def wants_replan(self, step: int) -> bool:
        """Whether :meth:`next_action` for ``step`` would ask for a re-plan (lets a synchronous caller infer
        *before* emitting the step, so lockstep runs are deterministic)."""
        with self._lock:
            if self._pending_since is not None:
                return False
            covered = [c for c in self._chunks if c.start <= step and c.end >= step]
            remaining = max((c.end - step for c in covered), default=-1)
            return not covered or remaining < self.effective_replan_threshold()

    # --- chunks in, actions out ---------------------------------------------------------------------------------

    def add_chunk(self, start_step: int, actions: np.ndarray) -> AddResult:
        """Store a chunk whose ``actions[i]`` is for step ``start_step + i``; clears the pending request."""
        a = np.asarray(actions, dtype=np.float64)
        if a.ndim == 1:
            a = a[None, :]
        with self._lock:
            self._pending_since = None
            if a.ndim != 2 or a.shape[1] != ACTION_DIM or a.shape[0] == 0:
                return AddResult(False, "bad_shape", 0, 0)
            if not np.all(np.isfinite(a)):
                return AddResult(False, "non_finite", 0, 0)
            a = a[: self.horizon].copy()
            start = int(start_step)
            first_open = 0 if self._last_step is None else self._last_step + 1
            past = int(np.clip(first_open - start, 0, len(a)))
            usable = len(a) - past
            if usable == 0:
                return AddResult(False, "stale", 0, past)
            self._chunks.append(_Chunk(start, a, self._seq))
            self._seq += 1
            self.chunks_received += 1
            return AddResult(True, "ok", usable, past)

    def next_action(self, step: int) -> StepAction:
        """The one action for control ``step``; steps must increase (call :meth:`reset` for a new episode)."""
        step = int(step)
        with self._lock:
            if self._last_step is not None and step <= self._last_step:
                raise ValueError(f"step {step} is not after the last emitted step {self._last_step}; "
                                 "steps must increase (reset() starts a new episode)")
            self._last_step = step
            self._chunks = [c for c in self._chunks if c.end >= step]
            covering = sorted((c for c in self._chunks if c.start <= step), key=lambda c: (c.start, c.seq))
            remaining = max((c.end - step for c in self._chunks if c.start <= step + 1), default=0)
            if covering:
                preds = np.stack([c.actions[step - c.start] for c in covering])
                action = self._combine(preds)
                source = "ensemble" if self.ensemble == "temporal" and len(preds) > 1 else "chunk"
                chunk_start = covering[-1].start
            else:
                action = np.zeros(ACTION_DIM)
                action[6] = self._last_gripper
                source, chunk_start = "hold", None
                self.dry_steps += 1
            self._last_gripper = float(action[6])
            replan = self._pending_since is None and remaining < self.effective_replan_threshold()
            return StepAction(step, action, source, len(covering), not covering, int(remaining), replan, chunk_start)

    def _combine(self, preds: np.ndarray) -> np.ndarray:
        """One action from predictions ordered oldest first."""
        if self.ensemble == "none" or len(preds) == 1:
            return preds[-1].copy()
        w = np.exp(-self.ensemble_decay * np.arange(len(preds)))
        w = w / w.sum()
        out = np.empty(ACTION_DIM)
        out[0:3] = w @ preds[:, 0:3]
        out[3:6] = Rotation.from_rotvec(preds[:, 3:6]).mean(weights=w).as_rotvec()
        out[6] = weighted_median(preds[:, 6], w)
        return out
