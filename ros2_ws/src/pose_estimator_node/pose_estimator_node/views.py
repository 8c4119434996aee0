"""Joins the images of several cameras of one instant by stamp (pure, no rclpy): the estimator answers a stamp once
every camera's image of it is in (the sim publishes the scene and the front camera's images with one stamp, on two
topics, so either may arrive first).

A set is complete when each camera's image of one stamp has arrived (a camera's newer image of the same stamp
replaces its older one); it is then handed out, and incomplete sets of older stamps are dropped (counted: a lost
image). Only the newest ``memory`` incomplete stamps are kept. A set re-published by the simulator (same stamp) is
joined and handed out again: the episode logic (:mod:`pose_estimator_node.episodes`) answers it as a repeat.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class ImageSets:
    """Images of ``cameras`` cameras joined by stamp; see the module docstring."""

    def __init__(self, cameras: int, memory: int = 8):
        if cameras < 1 or memory < 1:
            raise ValueError(f"need cameras >= 1 and memory >= 1, got {cameras}, {memory}")
        self.cameras = int(cameras)
        self.memory = int(memory)
        self._pending: OrderedDict[int, dict[int, Any]] = OrderedDict()
        self.dropped = 0
        """Incomplete sets given up (a newer stamp completed first, or more than ``memory`` were waiting)."""

    def add(self, camera: int, stamp_ns: int, item: Any) -> list[Any] | None:
        """Camera ``camera``'s (0-based) image of ``stamp_ns``: the complete set (items in camera order) or None."""
        if not 0 <= camera < self.cameras:
            raise ValueError(f"camera must be in [0, {self.cameras}), got {camera}")
        stamp_ns = int(stamp_ns)
        images = self._pending.setdefault(stamp_ns, {})
        images[camera] = item
        if len(images) < self.cameras:
            while len(self._pending) > self.memory:
                self._pending.popitem(last=False)
                self.dropped += 1
            return None
        del self._pending[stamp_ns]
        for older in [s for s in self._pending if s < stamp_ns]:
            del self._pending[older]
            self.dropped += 1
        return [images[i] for i in range(self.cameras)]
