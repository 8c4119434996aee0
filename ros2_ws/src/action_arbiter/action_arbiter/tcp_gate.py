"""The measured TCP pose the arbiter composes from (pure, no rclpy): :class:`TcpGate` and its :class:`TcpLimits`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from residual_core.rotations import quat_angle


@dataclass(frozen=True)
class TcpLimits:
    """When a measured TCP pose may be composed from (beyond residual_ros.validate's frame/finite/range checks)."""

    max_age_s: float = 0.15
    """Real time: a TCP pose older than this (s, by its stamp on the node's clock) at decision time is stale."""
    max_speed: float = 3.0
    """Fastest plausible TCP translation (m/s): the FR3's Cartesian limit (Franka FR3 datasheet, 3.0 m/s)."""
    max_rotation_speed: float = 10.0
    """Fastest plausible TCP rotation (rad/s): above the FR3's Cartesian limit (2.5 rad/s, Franka FR3 datasheet) and
    above what the default envelope lets a command ask for (max_rotation_step 0.25 rad per 0.05 s = 5 rad/s), so only
    poses no controller can produce are refused."""
    jump_margin_m: float = 0.02
    """Allowed on top of max_speed x (stamp difference) (m): measurement noise and stamp jitter."""
    jump_margin_rad: float = 0.1
    """Allowed on top of max_rotation_speed x (stamp difference) (rad)."""

    def __post_init__(self) -> None:
        for name in ("max_age_s", "max_speed", "max_rotation_speed", "jump_margin_m", "jump_margin_rad"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and > 0, got {value}")


class TcpGate:
    """The measured TCP pose the arbiter composes from: never one that jumped, arrived out of order, or is stale.

    :meth:`offer` takes a pose that passed residual_ros.validate (frame, finite, in range, unit quaternion) and
    judges it against the last accepted one: further than the FR3 can move in the stamps' difference (plus a
    margin) is a jump, rejected; a second pose that agrees with the rejected one (it too jumped from the accepted
    pose, but not from the first jump) re-anchors the gate: the arm really is there. A flood of forged poses that
    disagree with each other never re-anchors it (a real arm's consecutive poses always agree: the limits are far
    above what a controller can do). A new episode (the simulator
    reset the arm) re-anchors on the newest rejected pose, or on the next pose offered (:meth:`new_episode`); until
    then there is no TCP (the decision then has no target: the controller keeps its last one). Nor is there while
    the newest pose offered is an unconfirmed jump (see :meth:`current`). :meth:`current` also
    refuses a pose older than ``max_age_s`` (real time; ``now_ns`` None: not judged).
    """

    def __init__(self, limits: TcpLimits = TcpLimits()):
        self.limits = limits
        self.pose: tuple[np.ndarray, np.ndarray, int] | None = None
        self._candidate: tuple[np.ndarray, np.ndarray, int] | None = None
        self._accept_next = False
        self._since_ns = -1
        """With _accept_next: the oldest stamp the next pose may carry (the new episode's first action's)."""
        self.jumps = 0
        """Poses rejected as jumps."""
        self.reanchors = 0
        """Times the gate moved to a pose that jumped (confirmed by a second one, or a new episode)."""

    def _jumped(self, frm: tuple[np.ndarray, np.ndarray, int], pos: np.ndarray, quat: np.ndarray,
                stamp_ns: int) -> bool:
        lim = self.limits
        dt = max(stamp_ns - frm[2], 0) * 1e-9
        return (float(np.linalg.norm(pos - frm[0])) > lim.max_speed * dt + lim.jump_margin_m
                or float(quat_angle(quat, frm[1])) > lim.max_rotation_speed * dt + lim.jump_margin_rad)

    def offer(self, pos, quat, stamp_ns: int) -> str:
        """"" when the pose is taken, else "out_of_order" (older than the current one) or "jump"."""
        pos = np.asarray(pos, dtype=np.float64)
        quat = np.asarray(quat, dtype=np.float64)  # as measured: the pipeline normalises it (bit-for-bit as offline)
        new = (pos, quat, int(stamp_ns))
        if self._accept_next and stamp_ns < self._since_ns:
            return "out_of_order"  # queued before the episode started: the arm may have been reset since
        if self.pose is not None and not self._accept_next:
            if stamp_ns < self.pose[2]:
                return "out_of_order"
            if self._jumped(self.pose, pos, quat, stamp_ns):
                confirmed = self._candidate is not None and not self._jumped(self._candidate, pos, quat, stamp_ns)
                if not confirmed:
                    self._candidate = new
                    self.jumps += 1
                    return "jump"
                self.reanchors += 1
        self.pose, self._candidate, self._accept_next = new, None, False
        return ""

    def new_episode(self, since_ns: int | None = None, refuse_older: bool = False) -> None:
        """An episode starts; the arm may have been moved (simulator reset). Take the newest rejected pose. Else, with
        ``since_ns`` (the stamp of its first base action: lockstep with sim time, the stamp of the episode's first
        state; real time, when the base sent it, after it saw the new episode), keep the current pose only if it is
        at least that new, or wait for the next one offered (taken without the jump check: the reset may have moved
        the arm anywhere); with ``refuse_older`` (lockstep with sim time, where stamps are exact: a deep queue may
        still hold pre-reset poses) not one stamped before ``since_ns``; without ``since_ns``, keep the current pose."""
        if self._candidate is not None:
            self.pose, self._candidate = self._candidate, None
            self.reanchors += 1
        elif since_ns is not None and (self.pose is None or self.pose[2] < since_ns):
            self._accept_next, self._since_ns = True, int(since_ns) if refuse_older else -1

    def ready_for(self, base_stamp_ns: int | None) -> bool:
        """A decision may compose from the current pose: it is at least as new as ``base_stamp_ns`` (lockstep with
        sim time: the stamp of the state the step's base action was computed on), or, without one, no new episode's
        first pose is awaited (real time: a new episode's first target was once composed from the pre-reset pose,
        0.49 m from the arm, when the reset pose reached the arbiter after the base action)."""
        if base_stamp_ns is None:
            return not self._accept_next
        return self.stamp_ns >= base_stamp_ns

    @property
    def stamp_ns(self) -> int:
        """Stamp of the pose composed from (-1: none)."""
        return -1 if self.pose is None or self._accept_next else self.pose[2]

    def current(self, now_ns: int | None) -> tuple[tuple[np.ndarray, np.ndarray] | None, str]:
        """((pos, quat), "") or (None, why not: "no_tcp", "tcp_awaited" after a new episode, "tcp_jumped" while the
        newest pose offered was a jump not yet confirmed or contradicted, "tcp_stale").

        "tcp_jumped": the arm may really be where the jump says (a reset the base has not announced yet, e.g. while
        the base is down and the arbiter holds), so the last accepted pose is no longer known to be the arm's; a
        hold composed from it was measured 0.49 m from the true TCP. The next pose that agrees with the accepted one
        (the jump was forged) or with the jump (confirmed) ends it."""
        if self.pose is None:
            return None, "no_tcp"
        if self._accept_next:
            return None, "tcp_awaited"
        if self._candidate is not None:
            return None, "tcp_jumped"
        if now_ns is not None and now_ns - self.pose[2] > self.limits.max_age_s * 1e9:
            return None, "tcp_stale"
        return (self.pose[0], self.pose[1]), ""
