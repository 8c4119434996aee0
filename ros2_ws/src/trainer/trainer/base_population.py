"""A population of frozen bases: the residual trains (or is evaluated) against many bases, not one (issue 11 item 4).

On the robot the VLA is always "another base": a residual trained against exactly one base learns that base's
habits. A population file (JSON) lists members; each episode draws one member (uniformly, from the episode's seed)
and plays it as :class:`trainer.closed_loop.BaseChunkRunner` plays one base, with the member's perturbation:

- ``checkpoint``: a base checkpoint (``base-train`` with other seeds or demo mixes; the held-out ones start at
  seed 100);
- ``action_noise``: Gaussian noise on every action, sigma as a fraction of each component's action-spec bound;
- ``action_bias``: a constant offset per episode, uniform in +-``action_bias`` times each component's bound
  (pose components only; the gripper command stays binary);
- ``execute_steps``: chunk actions executed open-loop before re-planning (default: the checkpoint's);
- ``delay_steps``: each action reaches the robot this many steps late (the first ones: no motion, gripper open),
  like a VLA whose inference takes that long.

Example (``checkpoints/bases/population.json`` has the one the issue's recipe uses)::

    {"members": [{"checkpoint": "checkpoints/base/base_policy"},
                 {"checkpoint": "runs/bases/seed1", "action_noise": 0.1},
                 {"checkpoint": "checkpoints/base/base_policy", "execute_steps": 8, "delay_steps": 1}]}

Relative checkpoint paths are taken from the current directory (the repository root), as every command's are.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from residual_core.action import ActionSpec
from residual_learning.base_policy import BasePolicy, base_features_batch, embed_instruction

from trainer.sim_backend import BatchState


@dataclass(frozen=True)
class Member:
    """One base of a population and how it is perturbed."""

    checkpoint: str
    action_noise: float = 0.0
    action_bias: float = 0.0
    execute_steps: int | None = None
    delay_steps: int = 0

    def __post_init__(self) -> None:
        for name in ("action_noise", "action_bias"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and 0.0 <= v <= 1.0):
                raise ValueError(f"{name} must be a fraction of the action bound in [0, 1], got {v!r}")
        if self.execute_steps is not None and (not isinstance(self.execute_steps, int) or self.execute_steps < 1):
            raise ValueError(f"execute_steps must be a positive integer, got {self.execute_steps!r}")
        if not isinstance(self.delay_steps, int) or not 0 <= self.delay_steps <= 10:
            raise ValueError(f"delay_steps must be an integer in [0, 10], got {self.delay_steps!r}")


@dataclass
class BasePopulation:
    """Members and their loaded policies (a checkpoint shared by several members is loaded once)."""

    members: tuple[Member, ...]
    policies: dict[str, BasePolicy] = field(default_factory=dict, repr=False)
    source: str = ""

    @classmethod
    def load(cls, path: str | Path) -> BasePopulation:
        """Read and check a population file (:func:`read_members`) and load its checkpoints."""
        return cls.from_members(read_members(path), source=str(path))

    @classmethod
    def from_members(cls, members: Sequence[Member], source: str = "") -> BasePopulation:
        policies: dict[str, BasePolicy] = {}
        for m in members:
            if m.checkpoint not in policies:
                policies[m.checkpoint] = BasePolicy.from_checkpoint(m.checkpoint)
        return cls(members=tuple(members), policies=policies, source=source)

    def describe(self) -> dict:
        """What a manifest records."""
        return {"source": self.source, "members": [dataclasses.asdict(m) for m in self.members]}


def read_members(path: str | Path) -> tuple[Member, ...]:
    """The members of a population file, checked (checkpoints not loaded); ValueError / FileNotFoundError naming what
    is wrong (the file, a member, a field)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"base population file not found: {path}") from None
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    raw = data.get("members") if isinstance(data, dict) else None
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{path}: needs a non-empty list 'members'")
    known = {f.name for f in dataclasses.fields(Member)}
    members = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or "checkpoint" not in m or set(m) - known:
            raise ValueError(f"{path}: member {i} must be an object with 'checkpoint' and only {sorted(known)}, "
                             f"got {m!r}")
        try:
            members.append(Member(**m))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: member {i}: {exc}") from None
    return tuple(members)


class PopulationRunner:
    """Plays a :class:`BasePopulation` over a batch of envs: the drop-in for :class:`BaseChunkRunner`.

    ``reset`` draws each reset env's member (and its bias) from ``rng`` or, with ``seeds``, from the episode's seed
    (so an episode meets the same base whichever env runs it).
    """

    def __init__(self, population: BasePopulation, instruction: str, num_envs: int, seed: int = 0,
                 spec: ActionSpec | None = None):
        self.population = population
        self.embedding = embed_instruction(instruction)
        self.num_envs = num_envs
        self.rng = np.random.default_rng(seed)
        spec = spec or ActionSpec()
        self.bound = np.asarray(spec.high, dtype=np.float64)
        n = num_envs
        self.member = np.zeros(n, dtype=np.int64)
        self.bias = np.zeros((n, 7))
        self.chunks = np.zeros((n, max(p.net.horizon for p in population.policies.values()), 7))
        self.index = np.full(n, 10**9, dtype=np.int64)  # past any chunk: the first act() re-plans
        depth = max(m.delay_steps for m in population.members) + 1
        self.delay_line = np.zeros((n, depth, 7))
        self.sent = np.zeros(n, dtype=np.int64)

    def _execute_steps(self, k: int) -> int:
        m = self.population.members[k]
        return m.execute_steps or self.population.policies[m.checkpoint].execute_steps

    def reset(self, env_ids: Sequence[int] | None = None, seeds: Sequence[int] | None = None) -> None:
        ids = np.arange(self.num_envs) if env_ids is None else np.asarray(env_ids, dtype=np.int64)
        for j, i in enumerate(ids):
            rng = self.rng if seeds is None else np.random.default_rng([int(seeds[j]), 0xBA5E])
            k = int(rng.integers(len(self.population.members)))
            self.member[i] = k
            b = self.population.members[k].action_bias
            self.bias[i, :6] = rng.uniform(-b, b, 6) * self.bound[:6]
        self.index[ids] = 10**9
        self.sent[ids] = 0
        self.delay_line[ids] = 0.0

    def act(self, s: BatchState, env_ids: Sequence[int] | None = None) -> np.ndarray:
        """Base actions of the current step for ``env_ids`` (default all); only those envs advance."""
        ids = np.arange(self.num_envs) if env_ids is None else np.asarray(env_ids, dtype=np.int64)
        feats = None  # every env's base features, computed once when some env re-plans
        for k, m in enumerate(self.population.members):
            mine = ids[self.member[ids] == k]
            replan = mine[self.index[mine] >= self._execute_steps(k)]
            if len(replan):
                if feats is None:
                    present = np.ones(s.obj_pos.shape[:2], dtype=bool)
                    feats = base_features_batch(s.obj_pos, s.obj_quat, present, s.joint_pos, s.gripper_width,
                                                s.tcp_pos, s.tcp_quat, self.embedding)
                chunk = self.population.policies[m.checkpoint].predict_chunk(feats[replan])
                self.chunks[replan, : chunk.shape[1]] = chunk
                self.index[replan] = 0
        actions = self.chunks[ids, self.index[ids]].copy()
        self.index[ids] += 1
        noise = np.array([self.population.members[k].action_noise for k in self.member[ids]])
        if np.any(noise > 0):
            actions[:, :6] += self.rng.normal(size=(len(ids), 6)) * noise[:, None] * self.bound[:6]
        actions[:, :6] += self.bias[ids, :6]
        actions[:, :6] = np.clip(actions[:, :6], -self.bound[:6], self.bound[:6])
        # the delay line: each env's action of ``delay_steps`` steps ago (none yet: no motion, gripper open)
        depth = self.delay_line.shape[1]
        delay = np.array([self.population.members[k].delay_steps for k in self.member[ids]])
        self.delay_line[ids, self.sent[ids] % depth] = actions
        due = self.sent[ids] - delay
        out = np.where((due >= 0)[:, None], self.delay_line[ids, due % depth], 0.0)
        self.sent[ids] += 1
        return out
