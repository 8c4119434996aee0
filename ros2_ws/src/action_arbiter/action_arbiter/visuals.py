"""Messages built from a decision: the ArbiterCommand, rviz2 arrows, diagnostics, the Correction record (message
types only, no rclpy).

Three arrows start at the TCP: base (blue), residual (orange), final (green), one namespace each, showing the
translation of each action scaled by ``length_gain`` (default 10: a 1 cm step draws a 10 cm arrow). They live
~2 control periods, so they vanish when the arbiter stops deciding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from residual_interfaces.msg import ArbiterCommand, Correction
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from action_arbiter.arbiter import ArbiterStats, Decision

ARROWS: tuple[tuple[str, tuple[float, float, float, float]], ...] = (
    ("base", (0.2, 0.4, 1.0, 0.9)),
    ("residual", (1.0, 0.55, 0.0, 0.9)),
    ("final", (0.1, 0.85, 0.2, 0.9)),
)
"""Namespace and RGBA colour of each arrow."""


def _duration(seconds: float) -> Duration:
    sec = int(np.floor(seconds))
    return Duration(sec=sec, nanosec=int(round((seconds - sec) * 1e9)))


def action_arrows(
    decision: Decision,
    tcp_pos: np.ndarray,
    frame_id: str,
    stamp: Time,
    lifetime_s: float = 0.1,
    length_gain: float = 10.0,
    shaft_diameter: float = 0.004,
) -> MarkerArray:
    """Base / residual / final translation arrows from ``tcp_pos``; empty if the TCP pose is not finite."""
    out = MarkerArray()
    tcp = np.asarray(tcp_pos, dtype=np.float64)
    if not np.all(np.isfinite(tcp)):
        return out
    vectors = {"base": decision.base[0:3], "residual": decision.residual[0:3], "final": decision.final[0:3]}
    for ns, rgba in ARROWS:
        vec = np.nan_to_num(np.asarray(vectors[ns], dtype=np.float64)) * length_gain
        m = Marker(header=Header(frame_id=frame_id, stamp=stamp), ns=ns, id=0, type=Marker.ARROW, action=Marker.ADD)
        m.pose = Pose(orientation=Quaternion(w=1.0))
        m.points = [Point(x=tcp[0], y=tcp[1], z=tcp[2]),
                    Point(x=tcp[0] + vec[0], y=tcp[1] + vec[1], z=tcp[2] + vec[2])]
        m.scale = Vector3(x=shaft_diameter, y=2.0 * shaft_diameter, z=3.0 * shaft_diameter)
        m.color = ColorRGBA(r=rgba[0], g=rgba[1], b=rgba[2], a=rgba[3])
        m.lifetime = _duration(lifetime_s)
        out.markers.append(m)
    return out


def object_markers(
    objects: list[tuple[str, np.ndarray, float]], frame_id: str, stamp: Time, lifetime_s: float = 0.5,
    size: float = 0.03,
) -> MarkerArray:
    """Per object (name, pose (7,) pos + quat xyzw, confidence): a box at the pose (ns "objects", red when seen,
    grey when confidence is 0) and a label "name 0.93" above it (ns "object_labels"). Non-finite poses are skipped."""
    out = MarkerArray()
    for i, (name, pose, confidence) in enumerate(objects):
        pose = np.asarray(pose, dtype=np.float64)
        if pose.shape != (7,) or not np.all(np.isfinite(pose)) or np.linalg.norm(pose[3:]) < 1e-9:
            continue
        seen = confidence > 0.0
        header = Header(frame_id=frame_id, stamp=stamp)
        box = Marker(header=header, ns="objects", id=i, type=Marker.CUBE, action=Marker.ADD)
        box.pose = Pose(position=Point(x=pose[0], y=pose[1], z=pose[2]),
                        orientation=Quaternion(x=pose[3], y=pose[4], z=pose[5], w=pose[6]))
        box.scale = Vector3(x=size, y=size, z=size)
        box.color = ColorRGBA(r=0.9, g=0.15, b=0.1, a=0.8) if seen else ColorRGBA(r=0.5, g=0.5, b=0.5, a=0.4)
        box.lifetime = _duration(lifetime_s)
        label = Marker(header=header, ns="object_labels", id=i, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD)
        label.pose = Pose(position=Point(x=pose[0], y=pose[1], z=pose[2] + 1.5 * size), orientation=Quaternion(w=1.0))
        label.scale = Vector3(z=0.025)
        label.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=0.9)
        label.text = f"{name} {confidence:.2f}"
        label.lifetime = _duration(lifetime_s)
        out.markers += [box, label]
    return out


def _target_pose(decision: Decision) -> Pose:
    """The decision's target pose (all zeros when it has none)."""
    if not decision.has_command:
        return Pose(orientation=Quaternion(x=0.0, y=0.0, z=0.0, w=0.0))
    p, q = decision.target_pos, decision.target_quat
    return Pose(position=Point(x=float(p[0]), y=float(p[1]), z=float(p[2])),
                orientation=Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])))


def command_msg(decision: Decision, episode: int, frame_id: str, stamp: Time) -> ArbiterCommand:
    """The command of the step: target pose and gripper, ``valid`` false (target all zeros) when the decision has
    no target (invalid TCP pose: the consumer holds)."""
    return ArbiterCommand(header=Header(frame_id=frame_id, stamp=stamp), episode=int(episode), step=decision.step,
                          target=_target_pose(decision), gripper=float(decision.gripper),
                          valid=decision.has_command)


def correction_msg(decision: Decision, frame_id: str, stamp: Time, base_stamp: Time | None = None,
                   residual_stamp: Time | None = None, episode: int = 0) -> Correction:
    """The per-step record; ``target`` is the commanded pose (all zeros when there was no command); the stamps of
    the step's base action and residual as received (zero when absent)."""
    msg = Correction(
        episode=int(episode),
        step=decision.step,
        base=[float(v) for v in decision.base],
        residual=[float(v) for v in decision.residual],
        final=[float(v) for v in decision.final],
        residual_applied=decision.residual_applied,
        residual_status=decision.residual_status,
        clipped=decision.clipped,
        clip_reasons=list(decision.clip_reasons),
    )
    msg.header = Header(frame_id=frame_id, stamp=stamp)
    if base_stamp is not None:
        msg.base_stamp = base_stamp
    if residual_stamp is not None:
        msg.residual_stamp = residual_stamp
    if decision.has_command:
        msg.target = _target_pose(decision)
    return msg


def diagnostics(
    stats: ArbiterStats, window: ArbiterStats, stamp: Time, residual_enabled: bool, base_stale: bool,
    name: str = "action_arbiter", late_warn_ratio: float = 0.2, late_ticks_recent: int = 0,
    extra: Sequence[tuple[str, str]] = (), disarmed: str = "",
) -> DiagnosticArray:
    """One DiagnosticStatus: ERROR while the base is stale, WARN when a control period recently passed without a
    command (``late_ticks_recent``), over ``late_warn_ratio`` of the recent steps had a late residual, an action was
    rejected, or no command could be formed; else OK. ``extra``: more (key, value) pairs (e.g. dropped inputs).
    ``disarmed``: why the arbiter is disarmed (WARN, before everything else: it publishes no target)."""
    recent = max(window.steps, 1)
    late_ratio = window.by_status["late"] / recent
    if disarmed:
        level, text = DiagnosticStatus.WARN, f"disarmed: {disarmed}"
    elif base_stale:
        level, text = DiagnosticStatus.ERROR, "base action stale: holding pose"
    elif late_ticks_recent:
        level, text = DiagnosticStatus.WARN, f"{late_ticks_recent} control ticks without a command"
    elif window.rejected or window.no_command:
        level, text = DiagnosticStatus.WARN, "non-finite action or TCP pose rejected"
    elif residual_enabled and late_ratio > late_warn_ratio:
        level, text = DiagnosticStatus.WARN, f"residual late in {late_ratio:.0%} of recent steps"
    else:
        level, text = DiagnosticStatus.OK, "ok"
    values = {
        "residual_enabled": residual_enabled, "steps_total": stats.steps, "steps_recent": window.steps,
        "late_ratio_recent": round(late_ratio, 3), "clipped_recent": window.clipped, "holds_total": stats.holds,
        "rejected_total": stats.rejected, "no_command_total": stats.no_command,
        **{f"status_{k}_total": v for k, v in stats.by_status.items()},
    }
    status = DiagnosticStatus(level=level, name=name, message=text, hardware_id="residual_vla",
                              values=[KeyValue(key=k, value=str(v)) for k, v in values.items()]
                              + [KeyValue(key=k, value=v) for k, v in extra])
    return DiagnosticArray(header=Header(stamp=stamp), status=[status])
