"""The gripper bridge's pure logic (action_arbiter.gripper_core): width clamp, finger width, the homing sequence and
the book of goal results. No rclpy."""

from __future__ import annotations

import math

import pytest
from action_arbiter.gripper_core import (
    GoalResult,
    GripperBridge,
    GripperBridgeConfig,
    HomingSequence,
    ResultBook,
    clamp_width,
    finger_width,
)


def test_clamp_width_applies_the_measured_max_and_says_so():
    assert clamp_width(0.08, None).value == 0.08 and clamp_width(0.08, None).why == ""  # not homed: as configured
    w = clamp_width(0.1, 0.0785)
    assert (w.value, w.asked) == (0.0785, 0.1) and "clamped to the measured max width 0.0785" in w.why
    assert clamp_width(0.05, 0.0785).value == 0.05 and clamp_width(0.05, 0.0785).why == ""


def test_bridge_requests_use_the_max_width_once_known():
    bridge = GripperBridge(GripperBridgeConfig(open_width=0.1, grasp_width=0.09, min_interval_s=0.01))
    assert bridge.update(0.0, 0.0).width == 0.1  # before homing: the configured width
    bridge.max_width = 0.0785
    req = bridge.update(1.0, 1.0)
    assert req.kind == "grasp" and req.width == 0.0785 and "clamped" in req.note
    req = bridge.update(0.0, 2.0)
    assert req.kind == "move" and req.width == 0.0785
    assert bridge.request("move") == req


def test_a_failed_goal_leaves_the_state_the_fingers_show():
    """A grasp aborted by a reset (fingers open) is asked again by the next closing command; a grasp that closed on
    nothing is not retried; a cancelled or successful goal and unknown fingers change nothing."""
    bridge = GripperBridge(GripperBridgeConfig(min_interval_s=0.5))
    bridge.max_width = 0.08
    assert bridge.update(1.0, 0.0).kind == "grasp" and bridge.state == "closed"
    bridge.goal_ended("grasp", "failed", 0.0800)  # the episode reset opened the fingers and aborted the goal
    assert bridge.state == "open"
    assert bridge.update(1.0, 0.2) is None  # within min_interval_s
    assert bridge.update(1.0, 0.6).kind == "grasp"
    bridge.goal_ended("grasp", "failed", 0.0002)  # closed on nothing
    assert bridge.state == "closed" and bridge.update(1.0, 2.0) is None
    for outcome, width in (("canceled", 0.08), ("succeeded", 0.08), ("failed", None)):
        bridge.goal_ended("grasp", outcome, width)
        assert bridge.state == "closed"
    assert bridge.update(0.0, 3.0).kind == "move"
    bridge.goal_ended("move", "failed", 0.03)  # the fingers did not open (an object held)
    assert bridge.state == "closed" and bridge.update(0.0, 4.0).kind == "move"
    bridge.goal_ended("homing", "failed", 0.0)
    assert bridge.state == "open"


def test_fingers_moved_by_something_else_become_the_state_while_idle():
    """A close on nothing leaves "closed"; an episode reset opens the fingers: after resync_after_s of open fingers with
    no goal running the state is "open" and the next closing command grasps again. Not while a goal runs, not for a
    reading shorter than resync_after_s, not from an unknown state; fingers closed by something else while "open" ->
    "closed", and the next open command is sent."""
    bridge = GripperBridge(GripperBridgeConfig(min_interval_s=0.1, resync_after_s=0.3))
    bridge.max_width = 0.08
    assert bridge.observe(0.08, 0.0, idle=True) is None and bridge.state == "unknown"
    assert bridge.update(1.0, 0.0).kind == "grasp"
    bridge.goal_ended("grasp", "failed", 0.0002)
    assert bridge.state == "closed" and bridge.observe(0.0002, 1.0, idle=True) is None
    assert bridge.observe(0.08, 2.0, idle=False) is None and bridge.observe(0.08, 2.5, idle=False) is None  # a goal
    assert bridge.observe(0.08, 3.0, idle=True) is None
    assert bridge.observe(0.0002, 3.2, idle=True) is None  # a short reading: the count starts again
    assert bridge.observe(0.0785, 3.3, idle=True) is None and bridge.observe(0.079, 3.5, idle=True) is None
    assert bridge.state == "closed" and bridge.update(1.0, 3.55) is None
    assert bridge.observe(0.0785, 3.6, idle=True) == "open" and bridge.state == "open"
    assert bridge.update(1.0, 3.7).kind == "grasp"
    bridge.goal_ended("grasp", "succeeded", 0.04)
    assert bridge.observe(0.04, 5.0, idle=True) is None and bridge.observe(0.04, 6.0, idle=True) is None
    assert bridge.update(0.0, 6.1).kind == "move"
    bridge.goal_ended("move", "succeeded", 0.08)
    assert bridge.observe(0.05, 7.0, idle=True) is None and bridge.observe(0.05, 7.4, idle=True) == "closed"
    assert bridge.update(0.0, 7.5).kind == "move"
    with pytest.raises(ValueError, match="resync_after_s"):
        GripperBridgeConfig(resync_after_s=0.0)


def test_finger_width_is_the_sum_of_the_two_half_width_joints():
    assert finger_width(["fr3_finger_joint1", "fr3_finger_joint2"], [0.02, 0.02]) == pytest.approx(0.04)
    assert finger_width(["fr3_finger_joint2", "x", "fr3_finger_joint1"], [0.01, 5.0, 0.011]) == pytest.approx(0.021)
    assert finger_width(["fr3_finger_joint1"], [0.02]) is None
    assert finger_width(["fr3_finger_joint1", "fr3_finger_joint2"], [0.02]) is None  # malformed
    assert finger_width(["fr3_finger_joint1", "fr3_finger_joint2"], [0.02, math.nan]) is None


def test_homing_takes_the_max_width_from_a_joint_state_after_the_result():
    h = HomingSequence(enabled=True, width_timeout_s=3.0)
    assert h.state == "waiting" and h.busy
    assert h.joint_width(0.05) is None  # before the homing: not the max width
    h.sent()
    assert h.joint_width(0.03) is None and h.busy  # still running
    h.result(True, "", now_s=10.0)
    assert h.state == "measuring" and h.busy
    assert h.joint_width(0.06) is None  # the first message after the result may predate it
    assert h.joint_width(0.07856) == pytest.approx(0.0785)  # rounded down to 0.1 mm
    assert h.state == "done" and not h.busy and h.max_width == pytest.approx(0.0785)
    assert h.joint_width(0.01) is None and h.max_width == pytest.approx(0.0785)  # later readings change nothing


def test_homing_failure_timeout_and_off():
    h = HomingSequence(enabled=True, width_timeout_s=3.0)
    h.sent()
    h.result(False, "", now_s=0.0)
    assert h.state == "failed" and not h.busy and h.max_width is None and "homing failed" in h.error
    h = HomingSequence(enabled=True, width_timeout_s=3.0)
    h.sent()
    h.result(True, "", now_s=0.0)
    assert not h.timed_out(2.9) and h.busy
    assert h.timed_out(3.1) and h.state == "done" and h.max_width is None and "max width unknown" in h.error
    assert not h.timed_out(10.0)  # once
    h = HomingSequence(enabled=True, width_timeout_s=3.0)
    h.sent()
    h.result(False, "no answer", now_s=0.0, retry=True)  # the goal was never answered: send it again
    assert h.state == "waiting" and h.busy
    off = HomingSequence(enabled=False, width_timeout_s=3.0)
    assert off.state == "off" and not off.busy


def test_result_book_reports_a_failed_grasp_with_its_error_and_counts():
    book = ResultBook()
    msg, level = book.add(GoalResult("move", 0.08, "succeeded", True), width_now=0.0799)
    assert level == "info" and "move to 0.0800 m succeeded" in msg
    msg, level = book.add(GoalResult("grasp", 0.03, "aborted", False, ""), width_now=0.0)
    assert level == "warn" and msg.startswith("grasp failed: nothing grasped within the epsilon")
    msg, _ = book.add(GoalResult("grasp", 0.03, "aborted", False, "libfranka: gripper command failed"))
    assert msg == "grasp failed: libfranka: gripper command failed"
    msg, level = book.add(GoalResult("move", 0.08, "canceled", False, ""))
    assert level == "info" and "cancelled" in msg  # a cancel on purpose is no failure
    msg, level = book.add(GoalResult("homing", 0.0, "aborted", False, "no gripper"))
    assert level == "error" and "homing failed (aborted): no gripper" in msg
    assert book.failures == 3 and book.take_new_failures() == 3 and book.take_new_failures() == 0
    kv = book.key_values()
    assert kv["failures total"] == "3" and kv["results grasp failed"] == "2" and kv["results move canceled"] == "1"
    assert kv["last result"] == msg


def test_config_rejects_negative_widths_and_timeouts():
    with pytest.raises(ValueError, match="grasp_width"):
        GripperBridgeConfig(grasp_width=-0.01)
    with pytest.raises(ValueError, match="cancel_timeout_s"):
        GripperBridgeConfig(cancel_timeout_s=0.0)
