"""The gripper bridge (action_arbiter.gripper_bridge) under hostile commands: a value outside [0, 1] is no request
(its other tests live in action_arbiter/test/test_arbiter_logic.py)."""

from __future__ import annotations

import math

from action_arbiter.gripper_bridge import GripperBridge, GripperBridgeConfig


def test_a_gripper_command_outside_zero_one_is_never_a_request():
    bridge = GripperBridge(GripperBridgeConfig(min_interval_s=0.5))
    assert bridge.update(7.0, 0.0) is None and bridge.state == "unknown"  # was a grasp
    assert bridge.update(-3.0, 1.0) is None and bridge.update(math.inf, 2.0) is None  # -3 was an open move
    assert bridge.update(1e300, 3.0) is None and bridge.update(math.nan, 3.0) is None
    assert bridge.update(1.0, 4.0).kind == "grasp" and bridge.state == "closed"
