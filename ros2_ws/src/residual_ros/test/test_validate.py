"""residual_ros.validate: every hostile-but-well-typed input the fault tester sent is named, nothing raises."""

from __future__ import annotations

import math

import pytest
from geometry_msgs.msg import PoseStamped
from residual_interfaces.msg import ArbiterCommand, EefAction, ObjectPose, ObjectPoseArray
from residual_ros import validate as v
from sensor_msgs.msg import CameraInfo, Image, JointState

NOW = 100 * 1_000_000_000
ARM = [f"fr3_joint{i}" for i in range(1, 8)]


def _pose_stamped(frame="fr3_link0", pos=(0.4, 0.0, 0.3), quat=(1.0, 0.0, 0.0, 0.0), sec=100) -> PoseStamped:
    msg = PoseStamped()
    msg.header.frame_id, msg.header.stamp.sec = frame, sec
    msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = pos
    o = msg.pose.orientation
    o.x, o.y, o.z, o.w = quat
    return msg


def test_a_good_pose_passes_and_each_bad_one_is_named():
    assert v.pose_stamped_reason(_pose_stamped(), "fr3_link0", NOW, 0.5) == ""
    assert v.pose_stamped_reason(_pose_stamped(frame="camera"), "fr3_link0") == "wrong_frame"
    assert v.pose_stamped_reason(_pose_stamped(frame="camera"), None) == ""  # any frame when none is expected
    # The real robot's TCP pose comes in the URDF root "base", identical to fr3_link0.
    assert v.same_frames("fr3_link0") == ("fr3_link0", "base") and v.same_frames("world") == ("world",)
    assert v.pose_stamped_reason(_pose_stamped(frame="base"), v.same_frames("fr3_link0")) == ""
    assert v.pose_stamped_reason(_pose_stamped(frame="base"), "fr3_link0") == "wrong_frame"
    assert v.object_pose_array_reason(_objects(_obj(), frame="map"), v.same_frames("fr3_link0")) == "wrong_frame"
    assert v.pose_stamped_reason(_pose_stamped(pos=(math.nan, 0, 0)), "fr3_link0") == "not_finite"
    assert v.pose_stamped_reason(_pose_stamped(pos=(1e3, 0, 0)), "fr3_link0") == "out_of_range"
    for quat in [(1e200, 0, 0, 0), (1e155, 1e155, 0, 0), (0, 0, 0, 0), (0.5, 0, 0, 0), (math.inf, 0, 0, 1)]:
        assert v.pose_stamped_reason(_pose_stamped(quat=quat), "fr3_link0") in ("bad_quaternion", "not_finite"), quat
    assert v.pose_stamped_reason(_pose_stamped(sec=3700), "fr3_link0", NOW) == "stamp_future"
    assert v.pose_stamped_reason(_pose_stamped(sec=99), "fr3_link0", NOW, max_age_s=0.5) == "stamp_old"
    assert v.pose_stamped_reason(_pose_stamped(sec=99), "fr3_link0", NOW) == ""  # no age limit given


def _joints(names, pos, vel=None) -> JointState:
    return JointState(name=names, position=pos, velocity=vel if vel is not None else [])


def test_joint_states_with_fewer_positions_than_names_are_refused_not_indexed():
    good = [0.0, -0.5, 0.0, -2.0, 0.0, 1.5, 0.8]
    assert v.joint_state_reason(_joints(ARM, good, [0.0] * 7), ARM) == ""
    assert v.joint_state_reason(_joints(ARM, good[:3]), ARM) == "length_mismatch"
    assert v.joint_state_reason(_joints(ARM, good, [0.0] * 3), ARM) == "length_mismatch"
    assert v.joint_state_reason(_joints([], good[:5]), ARM) == "too_few_joints"
    assert v.joint_state_reason(_joints(["a"] * 7, good), ARM) == "too_few_joints"  # the arm joints not named
    assert v.joint_state_reason(_joints([], good), ARM) == ""  # unnamed: the first 7, in order
    assert v.joint_state_reason(_joints(ARM, [math.nan] + good[1:]), ARM) == "not_finite"
    assert v.joint_state_reason(_joints(ARM, [1e200] + good[1:]), ARM) == "out_of_range"
    assert v.joint_state_reason(_joints(ARM, good, [1e3] + [0.0] * 6), ARM) == "out_of_range"


def _objects(*objs, frame="fr3_link0") -> ObjectPoseArray:
    msg = ObjectPoseArray(objects=list(objs))
    msg.header.frame_id, msg.header.stamp.sec = frame, 100
    return msg


def _obj(name="cube", pos=(0.5, 0.0, 0.02), quat=(0.0, 0.0, 0.0, 1.0), confidence=1.0) -> ObjectPose:
    o = ObjectPose(name=name, confidence=confidence)
    o.pose.position.x, o.pose.position.y, o.pose.position.z = pos
    o.pose.orientation.x, o.pose.orientation.y, o.pose.orientation.z, o.pose.orientation.w = quat
    return o


def test_object_arrays_and_objects():
    assert v.object_pose_array_reason(_objects(_obj()), "fr3_link0", NOW) == ""
    assert v.object_pose_array_reason(_objects(_obj(), frame="map"), "fr3_link0") == "wrong_frame"
    assert v.object_pose_array_reason(_objects(_obj(), _obj()), "fr3_link0") == "bad_name"  # a name twice
    assert v.object_pose_array_reason(_objects(*[_obj(f"o{i}") for i in range(65)]), None) == "too_many"
    assert v.object_pose_reason(_obj()) == ""
    assert v.object_pose_reason(_obj(name="")) == "bad_name"
    assert v.object_pose_reason(_obj(confidence=math.nan)) == "bad_confidence"
    assert v.object_pose_reason(_obj(confidence=2.0)) == "bad_confidence"
    assert v.object_pose_reason(_obj(quat=(1e200, 1e200, 0, 0))) == "bad_quaternion"
    assert v.object_pose_reason(_obj(pos=(0.0, -1e190, 0.0))) == "out_of_range"
    # "Not seen": confidence 0 with an all-zero pose (the pose estimator's entry) is usable; with garbage it is not.
    assert v.object_pose_reason(_obj(pos=(0.0, 0.0, 0.0), quat=(0.0, 0.0, 0.0, 0.0), confidence=0.0)) == ""
    assert v.object_pose_reason(_obj(pos=(0.0, 0.0, 0.0), quat=(0.0, 0.0, 0.0, 0.0), confidence=0.5)) == (
        "bad_quaternion")
    assert v.object_pose_reason(_obj(quat=(1e200, 0.0, 0.0, 0.0), confidence=0.0)) == "bad_quaternion"
    assert v.object_pose_reason(_obj(confidence=0.0)) == ""  # dropped by the noise model: its pose is still good


def test_actions_commands_images_and_camera_info():
    a = EefAction(step=3, action=[0.01, 0, 0, 0, 0, 0, 1.0])
    assert v.eef_action_reason(a) == ""
    a.action[4] = math.inf
    assert v.eef_action_reason(a) == "not_finite"
    a.action[4] = 1e6
    assert v.eef_action_reason(a) == "out_of_range"
    a.action[4], a.header.stamp.sec = 0.0, 10**6
    assert v.eef_action_reason(a, NOW) == "stamp_future"

    c = ArbiterCommand(valid=True, gripper=0.5)
    c.header.frame_id = "fr3_link0"
    c.target.orientation.w = 1.0
    c.target.position.x = 0.4
    assert v.arbiter_command_reason(c, "fr3_link0") == ""
    c.gripper = 7.0
    assert v.arbiter_command_reason(c, "fr3_link0") == "out_of_range"
    c.gripper, c.target.position.x = 0.5, 0.4e200
    assert v.arbiter_command_reason(c, "fr3_link0") == "out_of_range"
    c.valid = False  # a hold: target ignored
    assert v.arbiter_command_reason(c, "fr3_link0") == ""

    img = Image(height=4, width=5, encoding="rgb8", step=15)
    img.data = bytes(60)
    assert v.image_reason(img) == ""
    img.step = 14
    assert v.image_reason(img) == "bad_size"
    img.step, img.height = 15, 5
    assert v.image_reason(img) == "bad_size"  # 60 bytes do not hold 5 rows
    img.height, img.encoding = 4, "32FC1"
    assert v.image_reason(img) == "bad_encoding"

    info = CameraInfo(height=480, width=640, k=[600.0, 0, 320, 0, 600, 240, 0, 0, 1])
    assert v.camera_info_reason(info) == ""
    info.k[0] = 0.0
    assert v.camera_info_reason(info) == "bad_intrinsics"
    info.k[0], info.d = 600.0, [math.nan]
    assert v.camera_info_reason(info) == "bad_intrinsics"
    info.d, info.width = [], 0
    assert v.camera_info_reason(info) == "bad_size"


def test_every_returned_reason_is_listed_and_the_counter_counts():
    counter = v.DropCounter(log_every=3)
    assert [counter.drop("/tcp_pose", "wrong_frame") for _ in range(4)] == [True, False, True, False]
    counter.drop("/joint_states", "length_mismatch")
    assert counter.total == 5
    assert dict(counter.key_values()) == {"dropped total": "5", "dropped /joint_states/length_mismatch": "1",
                                          "dropped /tcp_pose/wrong_frame": "4"}
    with pytest.raises(ValueError, match="max_future_s"):
        v.InputLimits(max_future_s=0.0)
    assert {"wrong_frame", "not_finite", "stamp_future", "bad_quaternion"} <= set(v.REASONS)


def test_the_value_level_checks_the_pure_parts_use_agree_with_the_message_checks():
    assert v.pose_values_reason((0.4, 0.0, 0.3), (0.0, 0.0, 0.0, 1.0)) == ""
    assert v.pose_values_reason((0.4, 0.0), (0.0, 0.0, 0.0, 1.0)) == "length_mismatch"
    assert v.pose_values_reason((0.4, 0.0, 0.3), (1e200, 1e200, 0.0, 0.0)) == "bad_quaternion"
    assert v.pose_values_reason((0.4, math.nan, 0.3), (0.0, 0.0, 0.0, 1.0)) == "not_finite"
    good = [0.0, -0.5, 0.0, -2.0, 0.0, 1.5, 0.8]
    assert v.joint_values_reason(ARM, good, []) == ""
    assert v.joint_values_reason(ARM + ["fr3_finger_joint1"], good, []) == "length_mismatch"
    assert v.joint_values_reason(ARM, good[:6] + [1e200], [], ARM) == "out_of_range"
    assert v.object_values_reason("cube", (0.5, 0.0, 0.02), (0.0, 0.0, 0.0, 1.0), 0.9) == ""
    assert v.object_values_reason("", (0.5, 0.0, 0.02), (0.0, 0.0, 0.0, 1.0), 0.9) == "bad_name"
    assert v.object_values_reason("cube", (0.5, 0.0, 0.02), (0.0, 0.0, 0.0, 1.0), math.nan) == "bad_confidence"
    assert v.object_values_reason("cube", (0.5, 0.0, 0.02), (1e155, 0.0, 0.0, 0.0), 1.0) == "bad_quaternion"
    assert v.action_values_reason([0.0] * 7) == "" and v.action_values_reason([0.0] * 6) == "length_mismatch"
    assert v.action_values_reason([0.0] * 6 + [1e6]) == "out_of_range"
    assert [v.gripper_reason(g) for g in (0.0, 1.0, 7.0, -0.1, math.nan)] == [
        "", "", "out_of_range", "out_of_range", "not_finite"]


def test_stamps_are_not_judged_before_a_sim_time_clock_has_started():
    assert v.judged_now(0) is None and v.judged_now(NOW) == NOW
    assert v.stamp_reason(_pose_stamped(sec=3700).header.stamp, v.judged_now(0)) == ""


def test_images_of_another_size_than_the_camera_info_and_distortions_opencv_refuses():
    img = Image(height=4, width=5, encoding="rgb8", step=15)
    img.data = bytes(60)
    assert v.image_reason(img, size=(5, 4)) == "" and v.image_reason(img, size=(640, 480)) == "bad_size"
    info = CameraInfo(height=480, width=640, k=[600.0, 0, 320, 0, 600, 240, 0, 0, 1])
    for n in v.DISTORTION_LENGTHS:
        info.d = [0.01] * n
        assert v.camera_info_reason(info) == "", n
    for n in (1, 3, 6, 16):
        info.d = [0.01] * n
        assert v.camera_info_reason(info) == "bad_intrinsics", n  # cv2.undistortPoints would raise


def test_refuse_counts_and_logs_throttled_and_the_period_count_restarts():
    counter, logged = v.DropCounter(log_every=2), []
    assert counter.refuse("/tcp_pose", "", logged.append) is False and counter.total == 0
    assert [counter.refuse("/tcp_pose", "wrong_frame", logged.append) for _ in range(3)] == [True] * 3
    assert len(logged) == 2 and "/tcp_pose: wrong_frame (1 so far" in logged[0]
    assert counter.refuse("/joint_states", "not_finite") and counter.take_new() == 4 and counter.take_new() == 0
    assert counter.refuse("/x", "bad_name", logged.append, "object 'cube'") and logged[-1].endswith(": object 'cube'")
