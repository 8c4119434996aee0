"""Lockstep with sim time: hold one step's work until the state it must be computed on has arrived (pure, no rclpy).

A node is handed step t's trigger (the base action; a re-planning tick) together with the stamp of step t's state.
That state's messages (joint states, TCP pose) travel on other topics and can arrive after the trigger, e.g. a new
episode's first base action overtaking its state. :class:`StateWait` holds the trigger until the newest stamp of every
watched input has reached the wanted stamp; the node's deadline timer releases it anyway (:meth:`StateWait.expire`).
Used by the base node and the residual node.
"""

from __future__ import annotations

from typing import Any


class StateWait:
    """One held item and the newest stamp (ns) of each watched input; disabled: every item passes at once."""

    def __init__(self, inputs: tuple[str, ...] = ("joint_states", "tcp_pose"), enabled: bool = True):
        if not inputs:
            raise ValueError("StateWait needs at least one input to watch")
        self.enabled = bool(enabled)
        self.stamps: dict[str, int] = dict.fromkeys(inputs, -1)
        self._held: tuple[Any, int] | None = None
        self.ahead_of_clock = 0
        """Inputs judged at their stamp because the clock had not reached it (:meth:`judged_at`)."""

    def judged_at(self, clock_s: float, stamp_ns: int) -> float:
        """The time (s) an input of stamp ``stamp_ns`` is judged at: the node's clock, but in lockstep never earlier
        than the stamp. The sim's /clock is a topic of its own and can arrive after the step's state (on a loaded
        machine): judged on the lagging clock, a pose's age, a tracked object's age and the hand at an estimate's time
        would be one step off, and the step would not be what the same step is offline (residual-eval judges every
        input at its step's time). Disabled (real time): the clock."""
        if not self.enabled or stamp_ns * 1e-9 <= clock_s:
            return clock_s
        self.ahead_of_clock += 1
        return stamp_ns * 1e-9

    @property
    def holding(self) -> bool:
        return self._held is not None

    def current(self, want_ns: int) -> bool:
        """Every watched input is at least as new as ``want_ns`` (always, when disabled)."""
        return not self.enabled or min(self.stamps.values()) >= want_ns

    def offer(self, item: Any, want_ns: int) -> Any | None:
        """``item`` back when the state of stamp ``want_ns`` is in; else None, and the item is held (replacing any
        held one)."""
        if self.current(want_ns):
            self._held = None
            return item
        self._held = (item, int(want_ns))
        return None

    def arrived(self, name: str, stamp_ns: int) -> Any | None:
        """Input ``name`` arrived with ``stamp_ns``; returns the held item if the state is now complete."""
        if name not in self.stamps:
            raise KeyError(f"{name!r} is not watched (watched: {sorted(self.stamps)})")
        self.stamps[name] = int(stamp_ns)
        if self._held is not None and self.current(self._held[1]):
            return self.expire()
        return None

    def expire(self) -> Any | None:
        """The held item (None if none), released whatever the stamps say: the caller's deadline passed."""
        held, self._held = self._held, None
        return None if held is None else held[0]
