"""ResidualComputer: checkpoint validation, observation building (dropouts), proprio checks, NaN safety."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from residual_core.checkpoint import LayoutMismatchError, Manifest, TaskMismatchError
from residual_core.observation import PoseFreshness, Proprio, build_observation, layout_for_task, make_layout
from residual_core.residual_policy import NumpyPolicy, ResidualPolicy
from residual_learning.networks import ResidualActor, save_residual_checkpoint
from residual_policy_node.core import (
    FR3_ARM_JOINTS,
    FR3_FINGER_JOINTS,
    ComputeStats,
    ObjectInput,
    ObjectPoseInputs,
    OcclusionTracking,
    ResidualComputer,
    ResidualComputerConfig,
)
from safetensors.numpy import load_file

SCALE = (0.01, 0.01, 0.01, 0.05, 0.05, 0.05, 1.0)
JOINTS = [0.1, -0.3, 0.05, -2.2, 0.02, 1.9, 0.8]
JOINT_VEL = [0.01, 0.0, -0.02, 0.0, 0.03, 0.0, 0.0]
FINGERS = [0.015, 0.017]
TCP_POS = [0.45, 0.02, 0.25]
TCP_QUAT = [1.0, 0.0, 0.0, 0.0]
BASE = np.array([0.01, -0.005, -0.01, 0.0, 0.02, 0.0, 1.0])
CUBE = ([0.5, 0.05, 0.02], [0.0, 0.0, 0.3826834, 0.9238795])
TARGET = ([0.55, -0.1, 0.0], [0.0, 0.0, 0.0, 1.0])


def write_checkpoint(tmp_path, task: str = "pick_place", layout=None, name: str = "res") -> str:
    """A small residual whose last layer is not zero (so the residual is nonzero and checkable)."""
    layout = layout or layout_for_task(task)
    torch.manual_seed(0)
    actor = ResidualActor(layout.size, hidden=(32, 32))
    with torch.no_grad():
        torch.nn.init.uniform_(actor.mlp.linears[-1].weight, -0.3, 0.3)
        torch.nn.init.uniform_(actor.mlp.linears[-1].bias, -0.3, 0.3)
    actor.set_normalization(np.linspace(-0.1, 0.1, layout.size), np.full(layout.size, 0.5))
    save_residual_checkpoint(tmp_path / name, actor, layout, task, SCALE, {"test": True}, 10, {})
    return str(tmp_path / name)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("ckpt"))


def fed(computer: ResidualComputer, now: float = 10.0, objects=None) -> ResidualComputer:
    """Give ``computer`` proprioception and (by default) both pick_place objects at time ``now``."""
    computer.update_joint_state(FR3_ARM_JOINTS + FR3_FINGER_JOINTS, JOINTS + FINGERS, JOINT_VEL + [0.0, 0.0], now)
    computer.update_tcp_pose(TCP_POS, TCP_QUAT, now)
    if objects is None:
        objects = [ObjectInput("cube", *CUBE, 0.9, now), ObjectInput("target", *TARGET, 1.0, now)]
    computer.update_objects(objects, now)
    return computer


def expected(ckpt: str, poses: dict, base=BASE) -> tuple[np.ndarray, np.ndarray]:
    """(observation, residual) computed straight with residual_core, as the trainer would."""
    policy = ResidualPolicy.from_checkpoint(ckpt)
    proprio = Proprio(np.array(JOINTS), np.array(JOINT_VEL), sum(FINGERS), np.array(TCP_POS), np.array(TCP_QUAT))
    obs = build_observation(layout_for_task("pick_place"), poses, proprio, base)
    return obs, policy(obs)


def computer_for(ckpt, **kw) -> ResidualComputer:
    return ResidualComputer.from_checkpoint(ckpt, ResidualComputerConfig(task="pick_place", **kw))


def test_residual_matches_the_policy_on_the_trainers_observation(ckpt):
    c = fed(computer_for(ckpt))
    residual, status, info = c.compute(7, BASE, now_s=10.02)
    obs, want = expected(ckpt, {"cube": CUBE, "target": TARGET})
    assert status == "ok" and info.detail == "" and info.step == 7
    np.testing.assert_array_equal(info.observation, obs)
    np.testing.assert_allclose(residual, want, rtol=1e-6)
    assert np.abs(residual).max() > 1e-3, "the test checkpoint must give a nonzero residual"
    assert np.all(np.abs(residual) <= np.asarray(SCALE) + 1e-12)
    split = c.layout.split(obs)
    assert split["proprio/gripper_width"][0] == pytest.approx(sum(FINGERS))
    np.testing.assert_allclose(split["proprio/joint_vel"], JOINT_VEL, rtol=1e-6)
    assert info.present == {"cube": True, "target": True} and info.absent_reason == {}
    assert info.pose_age_s["cube"] == pytest.approx(0.02) and info.proprio_age_s == pytest.approx(0.02)
    assert info.compute_s > 0


def test_wrong_task_is_refused(tmp_path):
    path = write_checkpoint(tmp_path, task="stack_cube")  # same layout size (57) as pick_place, other task
    with pytest.raises(TaskMismatchError, match="stack_cube"):
        ResidualComputer.from_checkpoint(path, ResidualComputerConfig(task="pick_place"))
    with pytest.raises(ValueError, match="trained for task 'stack_cube'"):
        ResidualComputer(ResidualPolicy.from_checkpoint(path), ResidualComputerConfig(task="pick_place"))


def test_layout_mismatch_is_refused(tmp_path):
    swapped = make_layout(["target", "cube"])  # right task and size, objects in the wrong order
    path = write_checkpoint(tmp_path, task="pick_place", layout=swapped)
    with pytest.raises(LayoutMismatchError, match="field #0 differs: expected 'obj/cube/pos'"):
        ResidualComputer.from_checkpoint(path, ResidualComputerConfig(task="pick_place"))
    # Every checkpoint loader refuses it (its layout is not its own task's), so the computer's own check is reached
    # only by a policy built in memory.
    with pytest.raises(LayoutMismatchError, match="names task 'pick_place', but its observation layout"):
        ResidualPolicy.from_checkpoint(path)
    manifest = Manifest.from_dict(json.loads(Path(path + ".json").read_text()))
    policy = ResidualPolicy(NumpyPolicy(load_file(path + ".safetensors")), manifest)
    with pytest.raises(ValueError, match="the residual checkpoint's observation layout .* is not pick_place's"):
        ResidualComputer(policy, ResidualComputerConfig(task="pick_place"))


def test_stale_low_confidence_and_missing_objects_are_dropouts(ckpt):
    c = computer_for(ckpt, pose_timeout=0.25, min_confidence=0.5)
    fed(c, now=10.0, objects=[ObjectInput("cube", *CUBE, 0.9, 9.70),     # measured 0.3 s before arrival: stale
                              ObjectInput("target", *TARGET, 1.0, 10.0)])
    residual, status, info = c.compute(1, BASE, 10.01)
    assert status == "ok" and info.present == {"cube": False, "target": True}
    assert info.absent_reason == {"cube": "stale"} and info.pose_age_s["cube"] == pytest.approx(0.31)
    split = c.layout.split(info.observation)
    assert split["obj/cube/present"][0] == 0.0 and not np.any(split["obj/cube/pos"])
    assert split["obj/target/present"][0] == 1.0
    _, want = expected(ckpt, {"target": TARGET})
    np.testing.assert_allclose(residual, want, rtol=1e-6)

    c.update_objects([ObjectInput("cube", *CUBE, 0.3, 10.2)], 10.2)  # fresh but unsure
    assert c.compute(2, BASE, 10.21).info.absent_reason == {"cube": "low_confidence"}
    _, _, info = c.compute(3, BASE, 10.30)  # target now 0.3 s old too
    assert info.absent_reason == {"cube": "low_confidence", "target": "stale"}

    c2 = fed(computer_for(ckpt), objects=[ObjectInput("target", *TARGET, 1.0, 10.0), ObjectInput("mug", *CUBE, 1, 10)])
    assert c2.compute(1, BASE, 10.0).info.absent_reason == {"cube": "missing"}
    assert c2.update_objects([ObjectInput("mug", *CUBE, 1.0, 10.0)], 10.0) == {"mug": "unknown_object"}


def test_pose_age_uses_arrival_when_the_measurement_time_is_unknown_or_ahead(ckpt):
    c = fed(computer_for(ckpt), now=10.0, objects=[ObjectInput("cube", *CUBE, 1.0, 0.0),     # unknown
                                                   ObjectInput("target", *TARGET, 1.0, 12.0)])  # other clock, ahead
    info = c.compute(1, BASE, 10.1).info
    assert info.pose_age_s == {"cube": pytest.approx(0.1), "target": pytest.approx(0.1)}
    assert all(info.present.values())


def test_missing_or_stale_proprio_gives_no_residual(ckpt):
    c = computer_for(ckpt, proprio_timeout=0.2)
    residual, status, info = c.compute(1, BASE, 1.0)
    assert status == "no_proprio" and not np.any(residual) and info.observation is None
    assert "joint_states (arm), joint_states (fingers), tcp_pose" in info.detail
    c.update_joint_state(FR3_ARM_JOINTS, JOINTS, [], 1.0)  # arm only, no velocities
    assert c.compute(1, BASE, 1.0).info.detail == "no joint_states (fingers), tcp_pose received yet"
    c.update_joint_state(FR3_FINGER_JOINTS, FINGERS, [], 1.0)  # e.g. a separate gripper joint state
    c.update_tcp_pose(TCP_POS, TCP_QUAT, 1.1)
    residual, status, info = c.compute(2, BASE, 1.15)
    assert status == "ok" and info.proprio_age_s == pytest.approx(0.15)
    assert not np.any(c.layout.split(info.observation)["proprio/joint_vel"])  # missing velocities -> zeros
    residual, status, info = c.compute(3, BASE, 1.25)
    assert status == "stale_proprio" and "joint_states (arm), joint_states (fingers)" in info.detail
    assert not np.any(residual)
    assert c.compute(4, BASE, 0.5).status == "stale_proprio"  # the clock went back (new sim episode)


def test_nan_in_any_input_never_gives_a_nan_residual(ckpt):
    nan_base = BASE.copy()
    nan_base[2] = np.nan
    residual, status, info = fed(computer_for(ckpt)).compute(1, nan_base, 10.0)
    assert status == "rejected_nan" and "base action" in info.detail and np.array_equal(residual, np.zeros(7))

    # NaN proprioception or object poses are refused on input: the previous values stand.
    good = fed(computer_for(ckpt)).compute(2, BASE, 10.0).residual
    c = fed(computer_for(ckpt))
    assert c.update_joint_state(FR3_ARM_JOINTS, [np.nan] + JOINTS[1:], JOINT_VEL, 10.0) == (False, False)
    assert c.update_tcp_pose(TCP_POS, [0.0, 0.0, 0.0, 0.0], 10.0) == "bad_quaternion"
    assert c.update_tcp_pose([np.inf, 0.0, 0.3], TCP_QUAT, 10.0) == "not_finite"
    residual, status, info = c.compute(2, BASE, 10.0)
    assert status == "ok" and np.array_equal(residual, good)

    # A NaN object pose is a dropout (like a failed detection), not a reason to drop the whole residual.
    c = computer_for(ckpt)
    assert c.update_objects([ObjectInput("cube", [np.nan, 0.0, 0.02], CUBE[1], 1.0, 10.0),
                             ObjectInput("target", TARGET[0], [0.0, 0.0, 0.0, 0.0], 1.0, 10.0)], 10.0) == {
        "cube": "not_finite", "target": "bad_quaternion"}
    residual, status, info = fed(c, objects=[]).compute(5, BASE, 10.0)
    assert status == "ok" and info.absent_reason == {"cube": "missing", "target": "missing"}
    assert np.all(np.isfinite(residual)) and np.all(np.isfinite(info.observation))
    np.testing.assert_allclose(residual, expected(ckpt, {})[1], rtol=1e-6)


def test_hostile_values_are_refused_and_the_residual_is_the_one_of_the_previous_inputs(ckpt):
    """The fault tester's values (finite but enormous quaternions and positions, fewer positions than names, a
    confidence outside [0, 1]) were taken, and the residual computed on them."""
    good = fed(computer_for(ckpt)).compute(1, BASE, 10.0)
    c = fed(computer_for(ckpt))
    assert c.update_tcp_pose(TCP_POS, [1e200, 1e200, 0.0, 0.0], 10.0) == "bad_quaternion"
    assert c.update_tcp_pose([1e200, 0.0, 0.3], TCP_QUAT, 10.0) == "out_of_range"
    names = FR3_ARM_JOINTS + FR3_FINGER_JOINTS
    assert c.update_joint_state(names, [1e200] * 9, [0.0] * 9, 10.0) == (False, False)
    assert c.update_joint_state(names, JOINTS[:3], [], 10.0) == (False, False)
    assert c.update_objects([ObjectInput("cube", CUBE[0], [1e155, 0.0, 0.0, 0.0], 1.0, 10.0),
                             ObjectInput("target", [0.0, 1e300, 0.0], TARGET[1], 1.0, 10.0)], 10.0) == {
        "cube": "bad_quaternion", "target": "out_of_range"}
    assert c.update_objects([ObjectInput("cube", *CUBE, float("nan"), 10.0)], 10.0) == {"cube": "bad_confidence"}
    result = c.compute(1, BASE, 10.0)
    assert result.status == "ok" and np.array_equal(result.residual, good.residual)
    assert result.info.present == {"cube": True, "target": True}


def test_reset_forgets_every_input(ckpt):
    c = fed(computer_for(ckpt))
    assert c.compute(0, BASE, 10.0).status == "ok"
    c.reset()
    residual, status, info = c.compute(1, BASE, 10.0)
    assert status == "no_proprio" and info.absent_reason == {"cube": "missing", "target": "missing"}


def test_config_and_inputs_are_validated(ckpt):
    with pytest.raises(ValueError, match="unknown task 'lift'"):
        ResidualComputerConfig(task="lift")
    with pytest.raises(ValueError, match="pose_timeout must be finite and > 0, got 0"):
        ResidualComputerConfig(pose_timeout=0)
    with pytest.raises(ValueError, match="min_confidence must be in"):
        ResidualComputerConfig(min_confidence=1.5)
    with pytest.raises(ValueError, match="base_action must have 7 values"):
        fed(computer_for(ckpt)).compute(1, BASE[:6], 10.0)
    c = computer_for(ckpt)
    assert c.update_joint_state(["a", "b"], [1.0], [], 0.0) == (False, False)  # inconsistent message


def test_stats_summary_counts_statuses_and_dropouts(ckpt):
    c = computer_for(ckpt)
    stats = ComputeStats()
    stats.add(c.compute(0, BASE, 10.0))
    fed(c, objects=[ObjectInput("cube", *CUBE, 1.0, 10.0)])
    stats.add(c.compute(1, BASE, 10.0))
    s = stats.summary()
    assert s["calls"] == 2 and s["status_no_proprio"] == 1 and s["status_ok"] == 1
    assert s["absent_target"] == 2 and s["absent_cube"] == 1 and s["compute_ms_max"] >= s["compute_ms_p50"] > 0


def _rotz(deg: float) -> np.ndarray:
    h = np.radians(deg) / 2
    return np.array([0.0, 0.0, np.sin(h), np.cos(h)])


def test_occlusion_tracking_carries_a_held_object_with_the_hand_and_leaves_others_where_they_were():
    tr = OcclusionTracking(max_age_s=2.0, hold_radius=0.05, held_width=(0.01, 0.07))
    obj, q_obj = np.array([0.52, 0.0, 0.02]), _rotz(30)
    tcp0, q0 = np.array([0.50, 0.0, 0.03]), _rotz(0)
    tcp1, q1 = np.array([0.40, 0.10, 0.20]), _rotz(90)  # the hand lifted, moved and turned 90 degrees about z
    pos, quat = tr.predict(obj, q_obj, tcp0, q0, tcp1, q1, 0.045)  # closed on the cube
    np.testing.assert_allclose(pos, tcp1 + [0.0, 0.02, -0.01], atol=1e-12)  # (0.02, 0, -0.01) in the hand, turned
    np.testing.assert_allclose(abs(np.dot(quat, _rotz(120))), 1.0, atol=1e-12)
    for width in (0.08, 0.005):  # open, or shut on nothing: not held
        pos, quat = tr.predict(obj, q_obj, tcp0, q0, tcp1, q1, width)
        assert np.array_equal(pos, obj) and np.array_equal(quat, q_obj)
    far = obj + [0.1, 0.0, 0.0]  # out of the hand when last seen
    assert np.array_equal(tr.predict(far, q_obj, tcp0, q0, tcp1, q1, 0.045)[0], far)
    with pytest.raises(ValueError):
        OcclusionTracking(max_age_s=0.0)


def test_object_inputs_track_a_missed_object_for_max_age_only_with_tracking_and_a_hand():
    fresh = PoseFreshness(timeout_s=0.25, min_confidence=0.5)
    hand0 = (np.array([0.5, 0.05, 0.03]), np.array([0.0, 0.0, 0.0, 1.0]), 0.045)
    hand1 = (np.array([0.5, 0.05, 0.23]), np.array([0.0, 0.0, 0.0, 1.0]), 0.045)  # lifted 0.2 m, still closed
    tracked = ObjectPoseInputs(("cube",), fresh, OcclusionTracking(max_age_s=1.0))
    plain = ObjectPoseInputs(("cube",), fresh)
    for inputs in (tracked, plain):
        inputs.update([ObjectInput("cube", *CUBE, 0.9, 10.0)], 10.0)
        assert inputs.view(10.0, hand0).present == {"cube": True}
        inputs.update([ObjectInput("cube", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0), 0.0, 10.05)], 10.05)  # a miss
    v = tracked.view(10.5, hand1)
    assert v.present == {"cube": True} and v.tracked == {"cube": True}
    np.testing.assert_allclose(v.poses["cube"][0], np.array(CUBE[0]) + [0.0, 0.0, 0.2], atol=1e-12)
    assert tracked.view(11.01, hand1).present == {"cube": False}  # 1.01 s after its last estimate
    assert plain.view(10.5, hand1).present == {"cube": False}  # no tracking: stale after 0.25 s
    assert tracked.view(10.5).present == {"cube": False}  # no hand given: as without tracking
    # a new confident estimate is present as estimated, and the tracking restarts from it
    tracked.update([ObjectInput("cube", *TARGET, 0.9, 12.0)], 12.0)
    v = tracked.view(12.0, hand1)
    assert v.tracked == {} and np.array_equal(v.poses["cube"][0], TARGET[0])
    tracked.update([ObjectInput("cube", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0), 0.0, 12.05)], 12.05)
    assert tracked.view(12.05, hand1).tracked == {"cube": True}
    tracked.forget_tracking()  # a new episode (the node, on its first base action): nothing carried over
    assert tracked.view(12.1, hand1).present == {"cube": False}
    tracked.reset()
    assert tracked.view(12.0, hand1).present == {"cube": False}


def test_a_late_estimate_is_carried_from_the_hand_of_its_own_time():
    """A real camera's estimate arrives 0.1 s after its image, while the hand lifts a grasped cube 1 cm per 50 ms: the
    cube is anchored to the hand at the image's time, so the tracked cube stays in the hand (anchored to the hand
    that first saw the estimate, it would sit 2 cm below it)."""
    fresh = PoseFreshness(timeout_s=0.25, min_confidence=0.5)
    inputs = ObjectPoseInputs(("cube",), fresh, OcclusionTracking(max_age_s=1.0))
    quat = np.array([0.0, 0.0, 0.0, 1.0])

    def hand(t):  # lifting at 0.2 m/s from z = 0.03, closed on the cube
        return np.array([0.5, 0.0, 0.03 + 0.2 * (t - 10.0)]), quat, 0.045

    for t in (10.0, 10.05):
        inputs.view(t, hand(t))
    # the image of t = 10.0 (cube 1 cm below the TCP then) arrives at 10.1
    inputs.update([ObjectInput("cube", (0.5, 0.0, 0.02), (0.0, 0.0, 0.0, 1.0), 0.9, 10.0)], 10.1)
    assert inputs.view(10.1, hand(10.1)).tracked == {}
    inputs.update([ObjectInput("cube", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0), 0.0, 10.05)], 10.15)  # a miss
    v = inputs.view(10.3, hand(10.3))
    assert v.tracked == {"cube": True}
    np.testing.assert_allclose(v.poses["cube"][0], hand(10.3)[0] - [0.0, 0.0, 0.01], atol=1e-9)
    # the clock going back (a new simulated episode) forgets the hands; forget_tracking too
    inputs.view(0.0, hand(10.0))
    assert list(inputs._hands)[0][0] == 0.0 and len(inputs._hands) == 1


def test_the_computer_tracks_through_misses_with_its_own_tcp_and_gripper(ckpt):
    c = fed(computer_for(ckpt, occlusion_tracking=True, tracking_max_age=1.0))
    assert c.compute(1, BASE, 10.0).info.present == {"cube": True, "target": True}
    fed(c, now=10.5, objects=[ObjectInput("cube", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0), 0.0, 10.5),
                              ObjectInput("target", *TARGET, 1.0, 10.5)])
    assert c.compute(2, BASE, 10.5).info.present == {"cube": True, "target": True}
    off = fed(computer_for(ckpt))
    off.compute(1, BASE, 10.0)
    fed(off, now=10.5, objects=[ObjectInput("target", *TARGET, 1.0, 10.5)])
    assert off.compute(2, BASE, 10.5).info.absent_reason == {"cube": "stale"}
    with pytest.raises(ValueError, match="tracking_max_age"):
        ResidualComputerConfig(task="pick_place", tracking_max_age=-1.0)
