"""InputCache (latest inputs -> observation dict) and the sensor_msgs/Image buffer conversion."""

from __future__ import annotations

import numpy as np
import pytest
from residual_core.observation import PoseFreshness
from residual_ros.conversions import image_to_rgb
from vla_base_node.chunk_broker import ChunkBroker
from vla_base_node.inputs import InputCache

ARM = [f"fr3_joint{i}" for i in range(1, 8)]


def test_snapshot_waits_for_required_inputs_then_reports_all_fields():
    cache = InputCache(instruction="close the drawer", object_names=("drawer_handle", "cup"),
                       freshness=PoseFreshness(timeout_s=0.5, min_confidence=0.5))
    assert cache.snapshot(0, 0.0) is None and cache.missing() == ["tcp_pose", "joint_states"]
    # Joint order in the message differs from the arm order; fingers give the width.
    names = ["fr3_finger_joint2", *reversed(ARM), "fr3_finger_joint1"]
    cache.update_joint_state(names, [0.03, *reversed(range(7)), 0.01], [0.0, *(-v for v in reversed(range(7))), 0.0])
    cache.update_tcp_pose([0.4, 0.0, 0.3], [1, 0, 0, 0], 1.0)
    cache.update_objects([("drawer_handle", [0.6, 0.1, 0.2, 0, 0, 0, 1], 0.8), ("cup", [0.5, 0, 0, 0, 0, 0, 1], 0.0)],
                         1.0)
    obs = cache.snapshot(12, now_s=1.2)
    assert obs["instruction"] == "close the drawer" and obs["step"] == 12 and obs["image"] is None
    st = obs["state"]
    np.testing.assert_array_equal(st["joint_pos"], np.arange(7))
    np.testing.assert_array_equal(st["joint_vel"], -np.arange(7))
    assert st["gripper_width"][0] == pytest.approx(0.04)
    assert st["object_present"] == {"drawer_handle": True, "cup": False}  # confidence 0 < min_confidence
    np.testing.assert_array_equal(st["objects"]["cup"], np.zeros(7))
    assert cache.snapshot(13, now_s=1.6)["state"]["object_present"]["drawer_handle"] is False  # too old


def test_joint_state_without_names_uses_first_seven():
    cache = InputCache(instruction="x")
    assert cache.update_joint_state([], [*range(7), 0.01, 0.01], []) == ""
    assert cache.update_joint_state([], [0.0] * 3, []) == "too_few_joints"
    cache.update_tcp_pose([0, 0, 0], [0, 0, 0, 1], 0.0)
    np.testing.assert_array_equal(cache.snapshot(0, 0.0)["state"]["joint_pos"], np.arange(7))


def test_hostile_values_are_refused_with_a_reason_and_the_previous_ones_stand():
    """The fault tester's messages, as values: fewer positions than names (was an IndexError), NaN, 1e200, a 1e200
    quaternion, a bad object among good ones."""
    cache = InputCache(instruction="x", object_names=("cube",))
    names = [*ARM, "fr3_finger_joint1", "fr3_finger_joint2"]
    good = [0.0, -0.5, 0.0, -2.0, 0.0, 1.5, 0.8, 0.02, 0.02]
    assert cache.update_joint_state(names, good, [0.0] * 9) == ""
    assert cache.update_joint_state(names, good[:3], []) == "length_mismatch"
    assert cache.update_joint_state(names, [np.nan] + good[1:], []) == "not_finite"
    assert cache.update_joint_state(names, [1e200] + good[1:], []) == "out_of_range"
    assert cache.update_tcp_pose([0.4, 0.0, 0.3], [1, 0, 0, 0], 1.0) == ""
    assert cache.update_tcp_pose([0.4, 0.0, 0.3], [1e200, 1e200, 0, 0], 1.0) == "bad_quaternion"
    assert cache.update_tcp_pose([np.nan, 0.0, 0.3], [1, 0, 0, 0], 1.0) == "not_finite"
    cube = [0.5, 0.0, 0.02, 0, 0, 0, 1]
    assert cache.update_objects([("cube", cube, 1.0)], 1.0) == {}
    assert cache.update_objects([("cube", cube[:3] + [1e155, 0, 0, 0], 1.0), ("mug", cube, 1.0)], 1.0) == {
        "cube": "bad_quaternion"}  # mug: not a task object, skipped
    obs = cache.snapshot(1, 1.0)["state"]
    np.testing.assert_array_equal(obs["joint_pos"], good[:7])
    np.testing.assert_array_equal(obs["tcp_quat"], [1, 0, 0, 0])
    assert obs["object_present"] == {"cube": True} and list(obs["objects"]["cube"]) == cube


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_image_to_rgb(encoding):
    rgb = np.array([[[10, 20, 30], [40, 50, 60]]], dtype=np.uint8)  # 1 x 2
    if encoding == "mono8":
        buf, ch = rgb[:, :, 0], 1
    else:
        order = [2, 1, 0] if encoding.startswith("bgr") else [0, 1, 2]
        buf = rgb[:, :, order]
        if encoding.endswith("a8"):
            buf = np.concatenate([buf, np.full((1, 2, 1), 255, np.uint8)], axis=2)
        ch = buf.shape[2] if buf.ndim == 3 else 1
    padded = np.zeros((1, 2 * ch + 3), np.uint8)  # row padding
    padded[0, : 2 * ch] = buf.reshape(-1)
    out = image_to_rgb(padded.tobytes(), 1, 2, encoding, 2 * ch + 3)
    expected = np.repeat(rgb[:, :, :1], 3, axis=2) if encoding == "mono8" else rgb
    np.testing.assert_array_equal(out, expected)


def test_image_to_rgb_errors():
    with pytest.raises(ValueError, match="unsupported image encoding '16UC1'"):
        image_to_rgb(b"", 1, 1, "16UC1", 2)
    with pytest.raises(ValueError, match="does not hold"):
        image_to_rgb(b"\x00" * 5, 2, 1, "rgb8", 3)


def test_wants_replan_matches_next_action():
    b = ChunkBroker(horizon=4, control_dt=0.05, replan_threshold=0)
    assert b.wants_replan(0)  # nothing covers step 0
    b.add_chunk(0, np.zeros((4, 7)))
    assert [b.wants_replan(t) for t in range(5)] == [False, False, False, False, True]
    b.replan_started(0)
    assert not b.wants_replan(9)  # a request is in flight
