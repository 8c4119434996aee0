"""The simulator's (and the twin's) episode status, ``/sim/episode``: a std_msgs/String of JSON with ``episode``,
``step``, ``stamp_ns`` and more (franka_sim.sim_bridge.EpisodeStatus). One parser for every node that reads it."""

from __future__ import annotations

import json

MAX_EPISODE = 2**32 - 1
"""Largest episode id (EefAction.episode is a uint32)."""
MAX_STEP = 2**32 - 1
"""Largest step index a status may carry (2.7 years at 20 Hz; far below uint64, so step + chunk index never
overflows an EefAction)."""
MAX_STAMP_NS = 2**63 - 1
NEXT_EPISODE_STEPS = 3
"""Steps of the episode after the announced one that are taken before its announcement (its first actions may
arrive before the status that announces it)."""


def status_fields(text: str, keys: tuple[str, ...], limits: dict[str, int] | None = None) -> tuple[int, ...]:
    """The integer ``keys`` of a status, in order; ValueError naming what is wrong (not JSON, too deeply nested, not
    an object, a field missing, not an integer in [0, its limit]): never another exception. Limits default to
    MAX_EPISODE, MAX_STEP and MAX_STAMP_NS for episode, step and stamp_ns."""
    limits = {"episode": MAX_EPISODE, "step": MAX_STEP, "stamp_ns": MAX_STAMP_NS, **(limits or {})}
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not JSON ({type(exc).__name__}): {text[:100]!r}") from None
    if not isinstance(data, dict):
        raise ValueError(f"not a JSON object: {text[:100]!r}")
    out = []
    for key in keys:
        value, limit = data.get(key), limits.get(key, MAX_STAMP_NS)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
            raise ValueError(f"{key!r} must be an integer in [0, {limit}], got {str(value)[:50]}: {text[:100]!r}")
        out.append(value)
    return tuple(out)


def foreign_episode(episode: int, step: int, current: int | None, announced: int | None) -> bool:
    """An action of ``episode`` / ``step`` belongs to no episode the simulator (or twin) runs: neither the one being
    computed or decided (``current``), the ``announced`` one, nor the first steps (< NEXT_EPISODE_STEPS) of the one
    after it. Never, without announcements (``announced`` None: every id is taken). A forged or leftover action then
    cannot start an episode (the arbiter) or cost a computation (the residual node)."""
    if announced is None or episode in (current, announced):
        return False
    return not (episode == announced + 1 and step < NEXT_EPISODE_STEPS)
