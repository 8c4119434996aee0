"""Replay storage for off-policy residual RL: n-step transition accumulation and a uniform ring buffer."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np


class ReplayBuffer:
    """Fixed-capacity ring buffer of n-step transitions (obs, act, n-step return, next_obs, discount).

    ``discount`` is gamma^k for a k-step transition that did not end in a terminal state, and 0 when it did,
    so the TD target is ``ret + discount * Q(next_obs, pi(next_obs))``.
    """

    def __init__(self, capacity: int, obs_dim: int, act_dim: int):
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity, self.obs_dim, self.act_dim = capacity, obs_dim, act_dim
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.act = np.zeros((capacity, act_dim), np.float32)
        self.ret = np.zeros(capacity, np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.discount = np.zeros(capacity, np.float32)
        self.size = 0
        self.ptr = 0

    def __len__(self) -> int:
        return self.size

    def add_batch(self, obs, act, ret, next_obs, discount) -> None:
        n = len(ret)
        idx = (self.ptr + np.arange(n)) % self.capacity
        self.obs[idx], self.act[idx], self.ret[idx] = obs, act, ret
        self.next_obs[idx], self.discount[idx] = next_obs, discount
        self.ptr = int((self.ptr + n) % self.capacity)
        self.size = int(min(self.size + n, self.capacity))

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = rng.integers(0, self.size, size=batch_size)
        return {"obs": self.obs[idx], "act": self.act[idx], "ret": self.ret[idx],
                "next_obs": self.next_obs[idx], "discount": self.discount[idx]}

    _FIELDS = ("obs", "act", "ret", "next_obs", "discount")

    def save(self, path: str | Path) -> None:
        np.savez(path, size=self.size, ptr=self.ptr, **{f: getattr(self, f)[: self.size] for f in self._FIELDS})

    def load(self, path: str | Path) -> None:
        with np.load(path, allow_pickle=False) as z:
            size = int(z["size"])
            if z["obs"].shape[1] != self.obs_dim or z["act"].shape[1] != self.act_dim:
                raise ValueError(f"{path}: buffer shapes {z['obs'].shape}/{z['act'].shape} do not match "
                                 f"obs_dim={self.obs_dim}, act_dim={self.act_dim}")
            size = min(size, self.capacity)
            for f in self._FIELDS:
                getattr(self, f)[:size] = z[f][:size]
            self.size, self.ptr = size, int(z["ptr"]) % self.capacity


class NStepAccumulator:
    """Turns per-step transitions of N parallel envs into n-step transitions.

    Call :meth:`push` once per vector step with each env's (obs, act, reward, next_obs, terminal,
    truncated); it returns the completed n-step transitions (possibly none). At an episode end (terminal or
    truncated) every pending transition of that env is flushed with its shorter horizon; a terminal cuts
    the bootstrap (discount 0), a truncation does not.
    """

    def __init__(self, n: int, gamma: float, num_envs: int):
        if n < 1:
            raise ValueError(f"n-step must be >= 1, got {n}")
        self.n, self.gamma = n, gamma
        self.pending: list[deque] = [deque() for _ in range(num_envs)]

    def push(self, obs, act, reward, next_obs, terminal, truncated, store=None) -> tuple[np.ndarray, ...] | None:
        """``store`` (N,) bool, optional: envs whose step is not a transition (e.g. a probing prefix); their pending
        queue must be empty (such steps come before an env's first stored one in its episode)."""
        out: list[tuple] = []
        for i, q in enumerate(self.pending):
            if store is not None and not store[i]:
                if q:
                    raise ValueError(f"env {i}: a step not stored after stored ones of the same episode")
                continue
            q.append((obs[i], act[i], float(reward[i])))
            end = bool(terminal[i]) or bool(truncated[i])
            while q and (len(q) >= self.n or end):
                k = len(q)
                ret = sum(self.gamma**j * q[j][2] for j in range(k))
                disc = 0.0 if terminal[i] and end else self.gamma**k
                o, a, _ = q.popleft()
                out.append((o, a, ret, next_obs[i], disc))
                if not end:
                    break
        if not out:
            return None
        o, a, r, no, d = zip(*out, strict=True)
        return (np.asarray(o, np.float32), np.asarray(a, np.float32), np.asarray(r, np.float32),
                np.asarray(no, np.float32), np.asarray(d, np.float32))

    def reset(self) -> None:
        for q in self.pending:
            q.clear()
