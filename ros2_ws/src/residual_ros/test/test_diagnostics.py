"""residual_ros.diagnostics: a node's status carries its drop counts; a period with drops is a warning."""

from __future__ import annotations

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus
from residual_ros.diagnostics import diagnostic_array, node_status
from residual_ros.validate import DropCounter


def test_drops_are_reported_and_warn_only_in_the_period_they_happen():
    drops = DropCounter()
    status = node_status("base", "ok", {"failures": 0}, drops)
    assert status.level == DiagnosticStatus.OK and status.message == "ok"
    assert {kv.key: kv.value for kv in status.values} == {"failures": "0", "dropped total": "0"}
    drops.drop("/tcp_pose", "wrong_frame")
    status = node_status("base", "ok", {}, drops)
    assert status.level == DiagnosticStatus.WARN and "dropped 1 unusable input message" in status.message
    assert {kv.key: kv.value for kv in status.values}["dropped /tcp_pose/wrong_frame"] == "1"
    assert node_status("base", "ok", {}, drops).level == DiagnosticStatus.OK  # nothing new
    assert node_status("x", "bad", {}, drops, level=DiagnosticStatus.ERROR).level == DiagnosticStatus.ERROR
    assert diagnostic_array(status, Time(sec=3)).header.stamp.sec == 3
