"""Rolling out a scripted expert in a FrankaTaskEnv, and human-teleop-like demonstrations."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from franka_sim.experts.scripted import ScriptedExpert
from franka_sim.experts.styles import teleop_style


@dataclass
class Episode:
    """One rolled-out episode."""

    task: str
    seed: int
    observations: list[dict[str, np.ndarray]] = field(default_factory=list)
    """Observation before each action, plus the final one (len = len(actions) + 1)."""
    actions: list[np.ndarray] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    success: bool = False
    phases: list[str] = field(default_factory=list)
    """The expert's phase at each step."""

    @property
    def length(self) -> int:
        return len(self.rewards)


def run_expert_episode(env, expert: ScriptedExpert, seed: int, record: bool = True) -> Episode:
    """Roll out ``expert`` in a FrankaTaskEnv from ``reset(seed=seed)`` until the episode ends."""
    obs, info = env.reset(seed=seed)
    expert.reset()
    ep = Episode(task=env.task, seed=seed)
    if record:
        ep.observations.append(obs)
    done = False
    while not done:
        state = env.task_state()
        ep.phases.append(expert.phase)
        action = expert.act(state, 0)
        obs, reward, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        if record:
            ep.observations.append(obs)
            ep.actions.append(action)
        ep.rewards.append(reward)
    ep.success = bool(info["success"])
    return ep


def teleop_demo(env, seed: int, rng: np.random.Generator | None = None, max_attempts: int = 1,
                keep_failures: bool = False) -> Episode | None:
    """A human-teleop-like demonstration on ``env`` (a FrankaTaskEnv) from ``reset(seed=seed)``.

    Draws a random :func:`teleop_style` per attempt (seeded from ``seed`` unless ``rng`` is given) and runs the
    task's expert with it. Tries up to ``max_attempts`` styles; returns the first successful episode, the last
    failed one if ``keep_failures``, else None.
    """
    rng = rng or np.random.default_rng(seed + 7_919)
    ep = None
    for _ in range(max_attempts):
        expert = ScriptedExpert(env.task, teleop_style(rng), rng)
        ep = run_expert_episode(env, expert, seed)
        if ep.success:
            return ep
    return ep if keep_failures else None
