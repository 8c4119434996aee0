"""The one DiagnosticStatus a node publishes on /diagnostics, with the input messages it dropped
(:class:`residual_ros.validate.DropCounter`): every node reports its drops the same way."""

from __future__ import annotations

from collections.abc import Mapping

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from residual_ros.validate import DropCounter


def node_status(name: str, message: str, values: Mapping[str, object], drops: DropCounter | None = None,
                level: bytes = DiagnosticStatus.OK) -> DiagnosticStatus:
    """``values`` as KeyValues, then the drop counts (``dropped total``, ``dropped <topic>/<reason>``); a period in
    which messages were dropped raises ``level`` to WARN and says how many."""
    kv = [KeyValue(key=str(k), value=str(v)) for k, v in values.items()]
    if drops is not None:
        kv += [KeyValue(key=k, value=v) for k, v in drops.key_values()]
        new = drops.take_new()
        if new:
            message = f"{message}; dropped {new} unusable input message(s) since the last report"
            level = max(level, DiagnosticStatus.WARN)
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id="residual_vla", values=kv)


def diagnostic_array(status: DiagnosticStatus, stamp) -> DiagnosticArray:
    arr = DiagnosticArray(status=[status])
    arr.header.stamp = stamp
    return arr
