"""Which simulated episode each camera image belongs to (pure, no rclpy): the estimator's tracking must never carry an
object's orientation from one episode into the next, and a re-published image must get the same answer.

The estimator remembers each object's last orientation and lets it decide between the two poses an ambiguous marker
allows (:mod:`pose_estimator_node.estimator`, ``track_timeout_s``). In simulation the objects are put somewhere else at
every reset, one control period after the last state of the previous episode, so without episodes the first estimates
of an episode would depend on how the previous one ended (which seed ran before, how many warm-up episodes the demo
needed): not a function of the episode's own seed.

:class:`ImageEpisodes` joins each image with the simulator's status of the same state (``/sim/episode``: JSON with the
episode id and the state's ``stamp_ns``, published on another topic, so either may arrive first) by stamp. An image is
released for estimation once its status is in (held until then; only the newest image is held), with ``new_episode``
when its episode differs from the previous image's: the node then resets the estimator's tracking. An image with the
stamp of the image released last (lockstep: the simulator re-published the state because its command was lost) is
released as a ``repeat``: the node answers it with the poses it published for that stamp instead of estimating again
(tracking would now start from that very estimate and could choose, and score, differently).

Disabled (no episode topic, e.g. the real robot): every image is released at once, never as a new episode.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from residual_ros.episode_status import status_fields


@dataclass(frozen=True)
class Release:
    """An image to answer now."""

    item: Any
    """What the caller handed in with the image (e.g. the message)."""
    stamp_ns: int
    """The image's stamp."""
    new_episode: bool
    """Its episode differs from the previous image's: reset the tracking before estimating."""
    repeat: bool
    """Same stamp as the image released last: answer with the same poses, estimate nothing."""


def parse_status(text: str) -> tuple[int, int]:
    """(episode, stamp_ns) of a simulator status (``/sim/episode`` JSON); ValueError naming what is wrong."""
    episode, stamp = status_fields(text, ("episode", "stamp_ns"))
    return episode, stamp


class ImageEpisodes:
    """Joins images with their episode by stamp; see the module docstring."""

    def __init__(self, enabled: bool = True, memory: int = 256):
        if memory < 1:
            raise ValueError(f"memory must be >= 1, got {memory}")
        self.enabled = bool(enabled)
        self.memory = int(memory)
        self._episode_of: OrderedDict[int, int] = OrderedDict()
        """stamp_ns -> episode of the newest ``memory`` statuses."""
        self._held: tuple[Any, int] | None = None
        self.episode: int | None = None
        """Episode of the image released last (None before the first, or when it is not known)."""
        self.last_stamp_ns: int | None = None
        """Stamp of the image released last."""
        self.superseded = 0
        """Held images replaced by a newer one before their status came."""

    @property
    def holding(self) -> bool:
        return self._held is not None

    def status(self, episode: int, stamp_ns: int) -> Release | None:
        """A simulator status arrived; returns the held image if this is its status."""
        self._episode_of[int(stamp_ns)] = int(episode)
        self._episode_of.move_to_end(int(stamp_ns))
        while len(self._episode_of) > self.memory:
            self._episode_of.popitem(last=False)
        if self._held is not None and self._held[1] == int(stamp_ns):
            item, stamp = self._held
            self._held = None
            return self._release(item, stamp, int(episode))
        return None

    def image(self, item: Any, stamp_ns: int) -> Release | None:
        """An image arrived: its release now, or None (held until its status arrives or :meth:`expire`)."""
        stamp_ns = int(stamp_ns)
        if stamp_ns == self.last_stamp_ns:
            return Release(item, stamp_ns, new_episode=False, repeat=True)
        if not self.enabled:
            return self._release(item, stamp_ns, self.episode)
        episode = self._episode_of.get(stamp_ns)
        if episode is not None:
            if self._held is not None:
                self.superseded += 1
                self._held = None
            return self._release(item, stamp_ns, episode)
        if self._held is not None:
            self.superseded += 1
        self._held = (item, stamp_ns)
        return None

    def expire(self) -> Release | None:
        """The held image (None if none), released without its status: estimated as part of the current episode."""
        if self._held is None:
            return None
        item, stamp = self._held
        self._held = None
        return self._release(item, stamp, self.episode)

    def _release(self, item: Any, stamp_ns: int, episode: int | None) -> Release:
        new = episode is not None and episode != self.episode
        if episode is not None:
            self.episode = episode
        self.last_stamp_ns = stamp_ns
        return Release(item, stamp_ns, new_episode=new, repeat=False)
