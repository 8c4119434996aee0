"""The arbiter's decision: composition, residual statuses, watchdogs, NaN handling, markers, diagnostics."""

from __future__ import annotations

import numpy as np
import pytest
from action_arbiter.arbiter import (
    Arbiter,
    ArbiterConfig,
    ArbiterStats,
    base_is_stale,
    poses_are_stale,
)
from action_arbiter.visuals import action_arrows, command_msg, correction_msg, diagnostics, object_markers
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus
from residual_core.observation import PoseFreshness
from residual_core.pipeline import ActionPipeline
from residual_core.safety import EnvelopeConfig
from scipy.spatial.transform import Rotation

TCP = np.array([0.5, 0.0, 0.3])
DOWN = Rotation.from_euler("x", np.pi).as_quat()  # gripper pointing down
BASE = np.array([0.01, 0.0, -0.01, 0.0, 0.0, 0.0, 1.0])
RES = np.array([0.0, 0.005, 0.0, 0.0, 0.0, 0.02, 0.0])


def test_ok_composes_base_and_scaled_residual():
    d = Arbiter().decide(7, BASE, RES, TCP, DOWN)
    assert d.residual_status == "ok" and d.residual_applied and not d.clipped and d.step == 7
    np.testing.assert_allclose(d.final[0:3], [0.01, 0.005, -0.01])
    np.testing.assert_allclose(d.final[3:6], [0, 0, 0.02], atol=1e-12)
    np.testing.assert_allclose(d.target_pos, TCP + [0.01, 0.005, -0.01])
    expected_q = (Rotation.from_rotvec([0, 0, 0.02]) * Rotation.from_quat(DOWN)).as_quat()
    assert abs(np.dot(d.target_quat, expected_q)) == pytest.approx(1.0)
    assert d.gripper == 1.0
    np.testing.assert_allclose(d.residual, RES)


def test_residual_clamped_to_bound_and_reported():
    d = Arbiter().decide(0, BASE, np.array([0.5, 0, 0, 0, 0, 0, 0]), TCP, DOWN)  # 50 cm "residual"
    assert d.residual[0] == pytest.approx(0.01) and d.final[0] == pytest.approx(0.02)
    assert d.clipped and "action_bounds" in d.clip_reasons


@pytest.mark.parametrize(
    ("residual", "enabled", "poses_stale", "policy", "status"),
    [
        (None, True, False, "mask", "late"),
        (RES, False, False, "mask", "disabled"),
        (RES, True, True, "mask", "masked"),
        (RES, True, True, "ignore", "ok"),
        (np.full(7, np.nan), True, False, "mask", "rejected_nan"),
    ],
)
def test_residual_statuses(residual, enabled, poses_stale, policy, status):
    arb = Arbiter(ArbiterConfig(stale_pose_policy=policy), residual_enabled=enabled)
    d = arb.decide(1, BASE, residual, TCP, DOWN, poses_stale=poses_stale)
    assert d.residual_status == status
    assert d.residual_applied == (status == "ok")
    if status != "ok":  # base alone
        np.testing.assert_allclose(d.final, BASE)
        np.testing.assert_array_equal(d.residual, np.zeros(7))


def test_stale_poses_disable_policy_latches_until_reenabled():
    arb = Arbiter(ArbiterConfig(stale_pose_policy="disable"))
    assert arb.decide(0, BASE, RES, TCP, DOWN, poses_stale=True).residual_status == "disabled"
    assert arb.decide(1, BASE, RES, TCP, DOWN, poses_stale=False).residual_status == "disabled"
    assert arb.set_residual_enabled(True) is False
    assert arb.decide(2, BASE, RES, TCP, DOWN).residual_status == "ok"


def test_nan_base_never_reaches_the_command():
    arb = Arbiter()
    arb.decide(0, BASE, RES, TCP, DOWN)  # gripper command 1.0
    bad = BASE.copy()
    bad[2] = np.nan
    d = arb.decide(1, bad, RES, TCP, DOWN)
    assert "nan_rejected" in d.clip_reasons
    assert np.all(np.isfinite(d.final)) and np.all(np.isfinite(d.target_pos)) and np.all(np.isfinite(d.target_quat))
    np.testing.assert_allclose(d.target_pos, TCP)  # hold the pose
    assert d.gripper == 1.0  # keep the last gripper command


def test_nan_tcp_pose_gives_no_command():
    arb = Arbiter()
    d = arb.decide(0, BASE, RES, np.array([np.nan, 0, 0]), DOWN)
    assert not d.has_command and d.target_pos is None
    assert arb.last_gripper == 0.0  # an action that was never commanded does not change the gripper state


def test_stale_base_holds_the_latched_pose_and_last_gripper():
    arb = Arbiter()
    arb.decide(0, BASE, RES, TCP, DOWN)
    d1 = arb.decide(1, None, None, TCP, DOWN, base_stale=True)
    drifted = TCP + [0.0, 0.0, -0.003]  # the arm sags a little while holding
    d2 = arb.decide(2, None, None, drifted, DOWN, base_stale=True)
    for d in (d1, d2):
        assert d.holding and d.clip_reasons == ("base_stale_hold",) and not d.residual_applied
        np.testing.assert_allclose(d.target_pos, TCP)  # the pose at the moment the base went stale
        assert d.gripper == 1.0 and d.final[6] == 1.0 and not np.any(d.final[:6])
    d3 = arb.decide(3, BASE, RES, drifted, DOWN)  # base is back: the hold is released
    assert not d3.holding and arb.hold_pose is None


def test_a_hold_forgets_its_pose_when_the_tcp_is_no_longer_known():
    """Soak (real time, base killed 9 s): the episode ended under the hold, the simulator reset the arm 0.53 m away,
    and the hold kept commanding the pose latched before the reset (22 commands, dragging the arm back). A TCP pose
    that is not usable (the node passes NaN: it jumped, is stale or awaited) ends the latched hold: no target, then a
    hold of the pose the arm has when it is known again."""
    arb = Arbiter()
    arb.decide(0, BASE, RES, TCP, DOWN)
    arb.decide(1, None, None, TCP, DOWN, base_stale=True)
    d = arb.decide(2, None, None, np.full(3, np.nan), DOWN, base_stale=True)
    assert d.holding and not d.has_command and "tcp_pose_invalid" in d.clip_reasons and arb.hold_pose is None
    reset = TCP + [0.0, 0.2, 0.05]
    d = arb.decide(3, None, None, reset, DOWN, base_stale=True)
    np.testing.assert_allclose(d.target_pos, reset)
    assert d.gripper == 1.0  # the last gripper command is kept throughout


def test_a_hold_follows_the_arm_when_it_was_moved_further_than_one_step():
    """Soak (real time, base killed, the episode ended under the hold): the simulator's reset took long enough that
    the reset pose was not a jump for the TCP gate, and the hold kept commanding the pose latched before, 0.29-0.35 m
    from the arm. A small sag is held against (the latched pose); a displacement beyond one envelope step is not."""
    arb = Arbiter()
    step = arb.cfg.pipeline.envelope.max_translation_step
    arb.decide(0, BASE, RES, TCP, DOWN)
    arb.decide(1, None, None, TCP, DOWN, base_stale=True)
    sag = TCP + [0.0, 0.0, -0.5 * step]
    np.testing.assert_allclose(arb.decide(2, None, None, sag, DOWN, base_stale=True).target_pos, TCP)
    moved = TCP + [0.0, 0.2, 0.05]
    d = arb.decide(3, None, None, moved, DOWN, base_stale=True)
    np.testing.assert_allclose(d.target_pos, moved)
    np.testing.assert_allclose(arb.decide(4, None, None, moved + [0, 0, -0.003], DOWN, base_stale=True).target_pos,
                               moved)  # latched again
    turned = Rotation.from_rotvec([0.0, 0.0, 0.5]) * Rotation.from_quat(DOWN)
    d = arb.decide(5, None, None, moved, turned.as_quat(), base_stale=True)  # turned by more than one step
    np.testing.assert_allclose(d.target_quat, turned.as_quat(), atol=1e-9)


def test_workspace_clip_from_envelope_is_reported():
    cfg = ArbiterConfig(pipeline=ActionPipeline(envelope=EnvelopeConfig(workspace_max=(0.8, 0.4, 0.295))))
    d = Arbiter(cfg).decide(0, np.array([0, 0, 0.02, 0, 0, 0, 0]), None, TCP, DOWN)
    assert d.clipped and "workspace_z_max" in d.clip_reasons and d.target_pos[2] == pytest.approx(0.295)


def test_watchdog_helpers():
    cfg = ArbiterConfig(control_dt=0.05, base_stale_periods=3, freshness=PoseFreshness(timeout_s=0.2))
    assert base_is_stale(1.0, None, cfg) and not base_is_stale(1.0, 0.86, cfg) and base_is_stale(1.0, 0.84, cfg)
    assert poses_are_stale(1.0, None, cfg) and not poses_are_stale(1.0, 0.81, cfg) and poses_are_stale(1.0, 0.79, cfg)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"control_dt": 0}, "control_dt"), ({"stale_pose_policy": "drop"}, "stale_pose_policy"),
     ({"base_stale_periods": 0}, "base_stale_periods")],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ArbiterConfig(**kwargs)


def test_pipeline_config_errors():
    with pytest.raises(ValueError, match="residual_scale"):
        ArbiterConfig(pipeline=ActionPipeline(residual_scale=(0.01,) * 6))


def test_arrows_from_tcp_scaled_and_namespaced():
    d = Arbiter().decide(0, BASE, RES, TCP, DOWN)
    arr = action_arrows(d, TCP, "fr3_link0", Time(sec=3), lifetime_s=0.1, length_gain=10.0)
    assert [m.ns for m in arr.markers] == ["base", "residual", "final"]
    colours = {(m.color.r, m.color.g, m.color.b) for m in arr.markers}
    assert len(colours) == 3
    for m, vec in zip(arr.markers, (d.base, d.residual, d.final), strict=True):
        start, end = m.points
        assert (start.x, start.y, start.z) == tuple(TCP)
        np.testing.assert_allclose([end.x - start.x, end.y - start.y, end.z - start.z], 10.0 * vec[:3])
        assert m.header.frame_id == "fr3_link0" and m.lifetime.nanosec == 100_000_000
    residual_arrow = arr.markers[1]
    assert residual_arrow.points[1].y - residual_arrow.points[0].y == pytest.approx(0.05)  # 5 mm -> 5 cm
    assert action_arrows(d, [np.nan, 0, 0], "f", Time()).markers == []


def test_correction_record_carries_the_decision():
    arb = Arbiter()
    d = arb.decide(42, BASE, RES, TCP, DOWN)
    msg = correction_msg(d, "fr3_link0", Time(sec=1))
    assert msg.step == 42 and msg.residual_status == "ok" and msg.residual_applied
    np.testing.assert_allclose(msg.final, d.final)
    assert msg.target.position.x == pytest.approx(d.target_pos[0])
    held = correction_msg(arb.decide(43, BASE, None, [np.nan] * 3, DOWN), "fr3_link0", Time())
    assert held.target.orientation.w == 1.0 and held.target.position.x == 0.0  # no command: default pose
    assert correction_msg(d, "f", Time(), episode=3).episode == 3


def test_command_carries_episode_step_target_gripper_and_validity():
    arb = Arbiter()
    d = arb.decide(42, BASE, RES, TCP, DOWN)
    msg = command_msg(d, 7, "fr3_link0", Time(sec=1))
    assert (msg.episode, msg.step, msg.valid, msg.header.frame_id) == (7, 42, True, "fr3_link0")
    p, q = msg.target.position, msg.target.orientation
    np.testing.assert_allclose([p.x, p.y, p.z], d.target_pos)
    np.testing.assert_allclose([q.x, q.y, q.z, q.w], d.target_quat)
    assert msg.gripper == pytest.approx(d.gripper) == pytest.approx(d.final[6])
    invalid = command_msg(arb.decide(43, BASE, None, [np.nan] * 3, DOWN), 7, "fr3_link0", Time())
    assert not invalid.valid and invalid.step == 43 and invalid.gripper == pytest.approx(d.gripper)  # last gripper
    t = invalid.target
    assert (t.position.x, t.position.y, t.position.z, t.orientation.x, t.orientation.y, t.orientation.z,
            t.orientation.w) == (0.0,) * 7  # no target: all zeros
    hold = command_msg(arb.decide(44, None, None, TCP, DOWN, base_stale=True), 7, "fr3_link0", Time())
    assert hold.valid and hold.step == 44  # a hold for a stale base is a valid command (the latched pose)


def test_diagnostics_levels():
    arb, total, window = Arbiter(), ArbiterStats(), ArbiterStats()
    for t in range(10):
        d = arb.decide(t, BASE, RES if t % 2 else None, TCP, DOWN)
        total.add(d)
        window.add(d)
    assert total.by_status == {"ok": 5, "disabled": 0, "late": 5, "masked": 0, "rejected_nan": 0}
    diag = diagnostics(total, window, Time(), residual_enabled=True, base_stale=False)
    assert diag.status[0].level == DiagnosticStatus.WARN and "50%" in diag.status[0].message
    assert diagnostics(total, window, Time(), True, base_stale=True).status[0].level == DiagnosticStatus.ERROR
    assert diagnostics(total, ArbiterStats(), Time(), True, False).status[0].level == DiagnosticStatus.OK
    keys = {kv.key for kv in diag.status[0].values}
    assert {"late_ratio_recent", "status_ok_total", "holds_total"} <= keys


def test_object_markers():
    objs = [("cube", np.array([0.5, 0.0, 0.02, 0, 0, 0, 1.0]), 0.93), ("base_cube", np.zeros(7), 0.0),
            ("target", np.array([0.4, 0.1, 0.0, 0, 0, 0, 1.0]), 0.0)]
    arr = object_markers(objs, "fr3_link0", Time(sec=2))
    assert [(m.ns, m.id) for m in arr.markers] == [("objects", 0), ("object_labels", 0), ("objects", 2),
                                                    ("object_labels", 2)]  # zero quaternion skipped
    assert arr.markers[1].text == "cube 0.93" and arr.markers[0].pose.position.x == 0.5
    assert arr.markers[2].color.a < arr.markers[0].color.a  # unseen objects drawn faint


def test_gripper_bridge_hysteresis_and_rate_limit():
    from action_arbiter.gripper_bridge import GripperBridge, GripperBridgeConfig

    bridge = GripperBridge(GripperBridgeConfig(min_interval_s=0.5))
    assert bridge.update(0.5, 0.0) is None  # inside the band: no opinion yet
    req = bridge.update(0.0, 0.0)
    assert req.kind == "move" and req.width == 0.08
    assert bridge.update(0.0, 0.05) is None and bridge.update(0.55, 0.1) is None  # unchanged / inside the band
    assert bridge.update(1.0, 0.2) is None  # too soon after the last request
    req = bridge.update(1.0, 0.6)
    assert req.kind == "grasp" and bridge.state == "closed"
    assert bridge.update(float("nan"), 2.0) is None
    assert bridge.update(0.45, 2.0) is None and bridge.update(0.3, 2.0).kind == "move"
    with pytest.raises(ValueError, match="open_below"):
        GripperBridgeConfig(open_below=0.7, close_above=0.6)


def test_step_matcher_pairs_supersedes_and_ignores_old_steps():
    from action_arbiter.arbiter import StepMatcher

    m = StepMatcher()
    assert m.add_residual(1, 5, RES, "r5") and not m.has_base(5) and not m.has_residual(5)  # episode 1 not started
    assert m.add_base(1, 5, BASE, "b5") == "new_episode" and m.base_stamp(5) == "b5" and m.episode == 1
    assert m.has_residual(5)  # the residual that came first is kept for its episode
    assert m.add_base(1, 4, BASE, "b4") == "added"  # an older step still undecided
    m.pending = 5
    got = m.take(5)
    np.testing.assert_array_equal(got.base, BASE)
    np.testing.assert_array_equal(got.residual, RES)
    assert (got.base_stamp, got.residual_stamp) == ("b5", "r5")
    assert m.last_decided == 5 and m.pending is None and not m.has_base(4)  # step 4 superseded
    assert m.add_base(1, 5, BASE) == "duplicate" and not m.has_base(5)
    assert not m.add_residual(1, 5, RES) and m.late_residuals == 1  # late: its step was decided
    assert m.add_base(1, 3, BASE) == "stale" and m.stale_bases == 1 and not m.has_base(3)  # never a new episode
    assert m.episode == 1 and m.last_decided == 5
    m.add_base(1, 6, BASE)
    m.pending = 7
    m.take(6)
    assert m.pending == 7  # a newer waiting step keeps its deadline


def test_default_stale_pose_policy_is_as_trained():
    """Stale poses do not drop the residual by default: the residual node encodes them as dropouts, as in training."""
    d = Arbiter().decide(1, BASE, RES, TCP, DOWN, poses_stale=True)
    assert ArbiterConfig().stale_pose_policy == "ignore" and d.residual_status == "ok" and d.residual_applied


def test_arbiter_runs_the_shared_pipeline():
    """The arbiter's command is ActionPipeline.step's (the function training and residual-eval call), bound included."""
    pipe = ActionPipeline(residual_scale=(0.002,) * 3 + (0.01,) * 3 + (0.2,))
    arb = Arbiter(ArbiterConfig(pipeline=pipe), initial_gripper=0.3)
    res = np.array([0.03, -0.03, 0.0, 0.1, 0.0, 0.0, 0.9])
    d = arb.decide(0, BASE, res, TCP, DOWN)
    want = pipe.step(BASE, res, TCP, DOWN, 0.3)
    np.testing.assert_array_equal(d.final, want.action)
    np.testing.assert_array_equal(d.residual, want.residual)
    assert d.clip_reasons == want.reasons and d.residual[0] == pytest.approx(0.002) and d.residual[6] == 0.2


def test_step_matcher_starts_an_episode_only_on_another_episode_id():
    from action_arbiter.arbiter import StepMatcher

    m = StepMatcher()
    assert m.add_base(1, 0, BASE) == "new_episode"
    for t in range(1, 4):
        assert m.add_base(1, t, BASE) == "added"
        m.take(t)
    m.add_residual(1, 4, RES)
    m.pending = 4
    # A reset that keeps the step counter going (or a counter that wraps): the episode id says what it is.
    assert m.add_base(2, 7, BASE, "b7") == "new_episode"
    assert (m.episode, m.previous_episode, m.last_decided, m.pending) == (2, 1, None, None)
    assert m.has_base(7) and not m.has_residual(4) and m.steps.keys() == {(2, 7)}  # episode 1's state dropped
    assert not m.add_residual(1, 4, RES) and m.late_residuals == 1  # a residual of the finished episode is late
    m.take(7)
    # A new episode whose steps restart below the last decided one: a new episode, not a stale step.
    assert m.add_base(3, 0, BASE) == "new_episode" and m.has_base(0) and m.last_decided is None
    assert m.add_residual(3, 0, RES) and m.has_residual(0)
    # The same step index in the old episode is not the new episode's.
    assert not m.add_residual(2, 0, RES) and m.late_residuals == 2
    assert m.add_base(3, 0, BASE) == "added"  # not decided yet: stored again


def test_step_matcher_takes_only_announced_episodes_once_the_simulator_announces_them():
    """A forged action of another episode id flipped the current episode (soak: a flood of 500 random EefActions
    delayed a command by 54-150 ms); with the simulator's announcements it is dropped and counted."""
    from action_arbiter.arbiter import StepMatcher

    m = StepMatcher()
    assert m.add_base(41, 0, BASE) == "new_episode"  # before any announcement every id is taken
    m.take(0)
    m.announce(7)
    assert m.add_base(41, 1, BASE) == "added"  # the current episode stays while it runs
    assert m.add_base(3, 0, BASE) == "foreign" and m.add_base(9, 5, BASE) == "foreign"
    assert not m.add_residual(12, 1, RES) and m.foreign == 3
    assert (m.episode, m.last_decided) == (41, 0) and m.has_base(1)  # nothing of the current episode was lost
    assert m.add_base(7, 0, BASE) == "new_episode"  # the announced episode starts
    m.take(0)
    # the next episode's first actions may arrive before its announcement (its first steps only)
    assert m.add_base(8, 40, BASE) == "foreign"
    assert m.add_residual(8, 0, RES) and m.add_base(8, 0, BASE) == "new_episode"
    m.announce(8)
    assert m.add_base(7, 3, BASE) == "foreign"  # the previous one is over for good
    assert m.foreign == 5


def test_step_matcher_in_real_time_drops_base_steps_further_ahead_than_the_time_since_allows():
    """A forged action of the current episode a few steps ahead was decided and made the real steps stale: 257 ms
    without a command in the soak. A step may be ahead by the periods since the last decision plus early_slack."""
    from action_arbiter.arbiter import StepMatcher

    m = StepMatcher()
    assert m.add_base(1, 0, BASE, periods_since_decision=None) == "new_episode"
    m.take(0)
    assert m.add_base(1, 9, BASE, periods_since_decision=0) == "early" and m.early == 1
    assert m.add_base(1, 3, BASE, periods_since_decision=0) == "early"
    assert m.add_base(1, 1, BASE, periods_since_decision=0) == "added"
    assert m.add_base(1, 2, BASE, periods_since_decision=0) == "added"  # within the slack (delivery jitter)
    m.take(2)
    assert m.add_base(1, 40, BASE, periods_since_decision=0) == "impossible"  # max_step_gap first: not "early"
    assert m.add_base(1, 50, BASE, periods_since_decision=40) == "impossible"
    assert m.add_base(1, 12, BASE, periods_since_decision=10) == "added"  # e.g. after a 0.5 s freeze
    assert m.add_base(1, 13, BASE) == "added"  # lockstep: no time rule
    assert not m.has_base(9) and not m.has_base(3) and m.early == 2


def test_hold_of_a_tcp_outside_the_workspace_is_inside_the_box():
    """Defect 4: the stale-base hold published the raw latched TCP, once outside the workspace box."""
    env = EnvelopeConfig()
    outside = np.array([0.5, 0.0, env.workspace_max[2] + 0.1])
    d = Arbiter().decide(3, None, None, outside, DOWN, base_stale=True)
    assert d.holding and d.has_command and "tcp_outside_workspace" in d.clip_reasons
    assert d.target_pos[2] == pytest.approx(env.workspace_max[2])
    assert np.all(d.target_pos >= env.workspace_min) and np.all(d.target_pos <= env.workspace_max)
    d2 = Arbiter().decide(3, None, None, np.array([np.nan, 0, 0]), DOWN, base_stale=True)
    assert d2.holding and not d2.has_command and "tcp_pose_invalid" in d2.clip_reasons


def test_step_matcher_drops_impossible_steps_unless_a_sequence_confirms_them():
    """Defect 1: a forged far-future base step was decided and every real step after it was 'stale': a stall."""
    from action_arbiter.arbiter import StepMatcher

    m = StepMatcher(max_step_gap=20)
    m.add_base(1, 0, BASE)
    m.take(0)
    assert m.add_base(1, 10**9, BASE) == "impossible" and m.impossible == 1 and not m.has_base(10**9)
    assert not m.add_residual(1, 500, RES) and m.impossible == 2  # a residual that far ahead too
    assert m.add_base(1, 1, BASE) == "added"  # the real next step is untouched
    m.take(1)
    # This node was frozen for 3 s: the base is at step 61 and 62 when it resumes; the second confirms the first.
    assert m.add_base(1, 61, BASE) == "impossible"
    assert m.add_base(1, 62, BASE) == "added"
    m.take(62)
    assert m.last_decided == 62


def test_step_matcher_rewinds_to_a_step_its_sender_re_sends():
    """Defect 1: a decision for a step the simulator is not at must not stall lockstep: the re-sent step is taken."""
    from action_arbiter.arbiter import StepMatcher

    m = StepMatcher()
    m.add_base(1, 4, BASE)
    m.take(4)
    m.add_base(1, 9, BASE)  # forged (within the gap) and decided
    m.take(9)
    assert m.add_base(1, 5, BASE) == "stale" and m.stale_bases == 1  # the simulator's real step 5: once is stale
    assert m.add_base(1, 5, BASE) == "rewound" and m.rewinds == 1 and m.has_base(5)  # re-sent: it is waited on
    m.take(5)
    assert m.add_base(1, 6, BASE) == "added"


def test_step_matcher_store_is_bounded():
    """Defect 2: the pending-step store grew without bound."""
    from action_arbiter.arbiter import StepMatcher

    m = StepMatcher(max_pending=8)
    for episode in range(100, 1100):  # residuals of episodes that never start
        m.add_residual(episode, 0, RES)
    assert len(m.steps) == 8 and m.evicted == 992
    m.add_base(1, 0, BASE)
    for t in range(1, 15):
        m.add_residual(1, t, RES)
    assert len(m.steps) <= 8


def test_tcp_gate_rejects_jumps_and_out_of_order_poses_and_reanchors_on_agreement():
    """Defect 4: a /tcp_pose with one wrong field gave commands 0.2-0.56 m from the true TCP."""
    from action_arbiter.tcp_gate import TcpGate, TcpLimits

    ms = 1_000_000
    gate = TcpGate(TcpLimits(max_age_s=0.15))
    assert gate.offer(TCP, DOWN, 1000 * ms) == ""
    assert gate.offer(TCP + [0.003, 0, 0], DOWN, 1001 * ms) == ""  # a real move
    assert gate.offer(TCP + [0.3, 0, 0], DOWN, 1002 * ms) == "jump" and gate.jumps == 1
    assert gate.offer(TCP, Rotation.from_euler("x", 3.0).as_quat(), 1003 * ms) == "jump"  # 3 rad in 2 ms
    assert gate.offer(TCP, DOWN, 999 * ms) == "out_of_order"
    # The newest pose jumped: until one confirms or contradicts it, nothing is composed from the old pose.
    assert gate.current(1003 * ms) == (None, "tcp_jumped")
    assert gate.offer(TCP + [0.003, 0, 0], DOWN, 1003 * ms) == ""  # agrees with the accepted pose: the jump was false
    pose, why = gate.current(1003 * ms)
    assert why == "" and pose[0][0] == pytest.approx(TCP[0] + 0.003)
    assert gate.current(1200 * ms) == (None, "tcp_stale")  # 197 ms old in real time
    assert gate.offer(TCP, DOWN, 1003 * ms) == ""
    # The arm really is somewhere else (two poses agree): re-anchored.
    assert gate.offer(TCP + [0.2, 0, 0], DOWN, 1004 * ms) == "jump"
    assert gate.current(None) == (None, "tcp_jumped")
    assert gate.offer(TCP + [0.201, 0, 0], DOWN, 1005 * ms) == "" and gate.reanchors == 1
    assert gate.current(None)[0][0][0] == pytest.approx(TCP[0] + 0.201)
    # Over a longer time the arm may move further (3 m/s x 0.1 s + 2 cm).
    assert gate.offer(TCP + [0.5, 0, 0], DOWN, 1105 * ms) == ""
    # A flood of forged poses 0.2-0.5 m off, between the real ones (every 5 ms): the gate never moves to one.
    rng = np.random.default_rng(0)
    real = TCP + [0.5, 0, 0]
    for k in range(1, 201):
        offset = rng.normal(size=3)
        assert gate.offer(real + offset * rng.uniform(0.2, 0.5) / np.linalg.norm(offset), DOWN,
                          (1105 + k) * ms) == "jump"
        if k % 5 == 0:
            assert gate.offer(real, DOWN, (1105 + k) * ms) == ""
    assert gate.current(None)[0][0] == pytest.approx(real)


def test_tcp_gate_new_episode_takes_the_reset_pose_or_waits_for_one():
    from action_arbiter.tcp_gate import TcpGate

    gate = TcpGate()
    gate.offer(TCP, DOWN, 100)
    assert gate.offer(TCP + [0, 0.4, 0], DOWN, 200) == "jump"  # the simulator reset the arm
    # Until the reset is confirmed (a second pose, or the new episode's base action), no hold from the old pose:
    # with the base down across a reset, a hold from it was 0.49 m from the true TCP (10-minute soak).
    assert gate.current(None) == (None, "tcp_jumped")
    gate.new_episode(since_ns=200)
    assert gate.current(None)[0][0][1] == pytest.approx(0.4)
    gate.new_episode(since_ns=300)  # an episode whose state is newer than the pose held
    assert gate.current(None) == (None, "tcp_awaited") and gate.stamp_ns == -1
    assert gate.offer(TCP, DOWN, 300) == "" and gate.current(None)[0] is not None  # taken without the jump check
    gate.new_episode(since_ns=300)  # the pose is the new episode's: kept
    assert gate.current(None)[1] == ""


def test_tcp_gate_in_lockstep_never_takes_a_pre_reset_pose_still_queued_for_a_new_episode():
    """Lockstep state inputs are queued deep (a burst of forged poses overran depth 10 and stalled the graph); a new
    episode's first pose must then be one of the new episode, not a pre-reset pose read late."""
    from action_arbiter.tcp_gate import TcpGate

    gate = TcpGate()
    gate.offer(TCP, DOWN, 100)
    gate.new_episode(since_ns=300, refuse_older=True)
    assert gate.offer(TCP + [0, 0.4, 0], DOWN, 200) == "out_of_order"  # queued before the reset
    assert gate.current(None) == (None, "tcp_awaited") and not gate.ready_for(300)
    assert gate.offer(TCP + [0, 0.1, 0], DOWN, 300) == "" and gate.ready_for(300)  # the reset pose, unchecked
    assert gate.current(None)[0][0][1] == pytest.approx(0.1)
    gate.new_episode(since_ns=500)  # real time (stamps of other clocks): the next pose, whatever its stamp
    assert gate.offer(TCP, DOWN, 400) == ""


def test_tcp_gate_ready_for_a_step_by_stamp_or_while_no_new_pose_is_awaited():
    from action_arbiter.tcp_gate import TcpGate

    gate = TcpGate()
    gate.offer(TCP, DOWN, 100)
    assert gate.ready_for(100) and not gate.ready_for(101) and gate.ready_for(None)
    gate.new_episode(since_ns=150)  # real time: the first base action of an episode, sent after the pose held
    assert not gate.ready_for(None) and not gate.ready_for(100)
    gate.offer(TCP, DOWN, 160)
    assert gate.ready_for(None) and gate.ready_for(160)


def test_compose_from_target_follows_the_commanded_path_while_the_arm_lags_it():
    """An arm that lags its targets (latency, a compliant controller) measured behind the last command: composed from
    the measured pose each step moves it less than asked (residual-eval, one step of latency: the base 8.6 -> 1.0/20);
    composed from the tracked target the commanded path is the policy's."""
    step = np.array([0.0, 0.02, 0.0, 0.0, 0.0, 0.0, 1.0])
    lagging = Arbiter(ArbiterConfig(compose_from="target"))
    measured = Arbiter()
    for k in range(1, 4):  # the arm has not moved yet (it lags): the measured TCP stays at TCP
        t = lagging.decide(k, step, None, TCP, DOWN)
        m = measured.decide(k, step, None, TCP, DOWN)
        np.testing.assert_allclose(t.target_pos, TCP + [0.0, 0.02 * k, 0.0])
        np.testing.assert_allclose(m.target_pos, TCP + [0.0, 0.02, 0.0])
    # the arm is no longer tracking (blocked, moved by a reflex or a person): composed from where it is
    far = TCP + [0.0, 0.0, 0.2]
    np.testing.assert_allclose(lagging.decide(4, step, None, far, DOWN).target_pos, far + [0.0, 0.02, 0.0])
    # a new episode (the arm was reset) starts from the measured pose
    lagging.forget_target()
    np.testing.assert_allclose(lagging.decide(0, step, None, TCP, DOWN).target_pos, TCP + [0.0, 0.02, 0.0])
    # no usable measured TCP: no target, and the next command is composed from the measured pose again
    assert not lagging.decide(1, step, None, np.full(3, np.nan), DOWN).has_command
    assert lagging.last_target is None
    with pytest.raises(ValueError, match="compose_from"):
        ArbiterConfig(compose_from="tcp")
