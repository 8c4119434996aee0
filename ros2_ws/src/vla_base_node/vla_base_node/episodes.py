"""Which (episode, step) the base node acts for (pure, no rclpy).

Episode ids are explicit (docs/CONTRACTS.md): the base node stamps every action with one, the residual copies it,
the arbiter pairs by (episode, step), the simulator takes only its current episode's commands. Nobody infers an
episode from a step index going backwards.

Where the id comes from:

* following the simulator (``episode_topic``, its ``/sim/episode`` status: JSON with ``episode`` and ``step``):
  the sim's episode counter. In lockstep a tick needs ``/sim/step`` t *and* the status of step t: the sim publishes
  the status first, but on another topic, so either may arrive first and the tick waits for both. In real time the
  node's timer ticks; a status with another episode restarts the step count at 0.
* its own counter (real robot, no simulator): episode 1 from the start, advanced by :meth:`EpisodeClock.reset`
  (the node's ``~/reset`` service); the timer ticks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from residual_ros.episode_status import status_fields


@dataclass(frozen=True)
class Tick:
    """Emit the action of ``step`` of ``episode``."""

    episode: int
    step: int
    new_episode: bool
    """The first tick of this episode after a tick of another one: chunks and backend state must be reset first."""
    repeat: bool = False
    """Lockstep: the simulator re-published the step just answered (its command was lost somewhere, e.g. while DDS
    was still matching): send the same action again, compute nothing new."""


def parse_status(text: str) -> tuple[int, int]:
    """(episode, step) of a simulator status (``/sim/episode`` JSON); ValueError naming what is wrong (not JSON, too
    deeply nested, not an object, a field missing, not an integer in range): never another exception."""
    try:
        episode, step = status_fields(text, ("episode", "step"))
    except ValueError as exc:
        raise ValueError(f"not a simulator episode status ({exc})") from None
    return episode, step


def status_stamp_ns(text: str) -> int:
    """The header stamp (ns) of the state a simulator status describes (``stamp_ns``), or -1 when it has none (or
    not a non-negative integer)."""
    try:
        data = json.loads(text)
        value = data.get("stamp_ns", -1) if isinstance(data, dict) else -1
    except (ValueError, TypeError, RecursionError):
        return -1
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else -1


class EpisodeClock:
    """Turns simulator statuses, ``/sim/step`` messages, timer ticks and resets into :class:`Tick` s.

    A tick for a step below the last one of the same episode is not emitted; in lockstep, the last step again (the
    simulator re-publishes a step whose command it did not get) is emitted as a ``repeat``, so the base answers it
    again and a lost message cannot stall the loop; a tick of another episode always is (``new_episode``).
    """

    def __init__(self, lockstep: bool, follow_sim: bool):
        if lockstep and not follow_sim:
            raise ValueError("lockstep needs the simulator's episode status (episode_topic, e.g. /sim/episode)")
        self.lockstep, self.follow_sim = lockstep, follow_sim
        self.episode = 0 if follow_sim else 1
        """Current episode; 0 while following a simulator that has not reported one yet (no ticks then)."""
        self.next_step = 0
        """Real time: step of the next timer tick."""
        self._last: tuple[int, int] | None = None
        self._status: tuple[int, int] | None = None
        self._waiting_step: int | None = None

    def on_status(self, episode: int, step: int) -> Tick | None:
        """A simulator status. Lockstep: the tick of ``step`` if its /sim/step came first. Real time: another
        episode restarts the step count (the next timer tick starts it)."""
        if self.lockstep:
            self._status = (int(episode), int(step))
            if self._waiting_step == step:
                self._waiting_step = None
                return self._tick(episode, step)
            return None
        if episode != self.episode:
            self.episode, self.next_step = int(episode), 0
        return None

    def on_sim_step(self, step: int) -> Tick | None:
        """Lockstep: /sim/step ``step``; its tick, or None until the status of that step has arrived."""
        if self._status is not None and self._status[1] == step:
            self._waiting_step = None
            return self._tick(self._status[0], step)
        self._waiting_step = int(step)
        return None

    def on_timer(self) -> Tick | None:
        """Real time: the tick of the next step (None while no episode is known)."""
        if self.episode == 0:
            return None
        tick = self._tick(self.episode, self.next_step)
        self.next_step += 1
        return tick

    def reset(self) -> int:
        """Own counter: start the next episode at step 0; returns its id."""
        if self.follow_sim:
            raise ValueError("episodes follow the simulator's status; reset the simulator (/sim/reset) instead")
        self.episode, self.next_step = self.episode + 1, 0
        return self.episode

    def _tick(self, episode: int, step: int) -> Tick | None:
        last = self._last
        if last is not None and last[0] == episode and step <= last[1]:
            if self.lockstep and step == last[1]:
                return Tick(int(episode), int(step), new_episode=False, repeat=True)
            return None
        self._last = (int(episode), int(step))
        return Tick(int(episode), int(step), new_episode=last is not None and last[0] != episode)
