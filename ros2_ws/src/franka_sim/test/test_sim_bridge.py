"""sim_bridge: configuration checks, the episode / lockstep state machine, commands, message field values."""

from __future__ import annotations

import json

import numpy as np
import pytest
from franka_sim import sim_bridge as sb
from franka_sim.sim_bridge import EpisodeMachine, EpisodeStatus, Phase, SimNodeConfig


def test_config_defaults_and_errors():
    cfg = SimNodeConfig()
    assert cfg.lockstep and cfg.pose_topic is None and (cfg.image_width, cfg.image_height) == (640, 480)
    assert SimNodeConfig(lockstep_pose_topic="/objects/poses").pose_topic == "/objects/poses"
    for kwargs, match in (({"task": "juggle"}, "unknown task 'juggle'"), ({"max_steps": -1}, "max_steps"),
                          ({"camera_rate_hz": 0.0}, "camera_rate_hz"), ({"image_width": 0}, "image size"),
                          ({"control_dt": float("nan")}, "control_dt"), ({"resend_period_s": 0.0}, "resend_period_s")):
        with pytest.raises(ValueError, match=match):
            SimNodeConfig(**kwargs)


def test_control_dt_must_match_the_simulator():
    assert sb.check_control_dt(0.05, 0.05) == 0.05
    with pytest.raises(ValueError, match="control_dt 0.1 does not match the simulator's control period 0.05"):
        sb.check_control_dt(0.1, 0.05)


def test_camera_decimation_and_seeds():
    assert [sb.camera_every(r, 0.05) for r in (20.0, 10.0, 5.0, 100.0, 7.0)] == [1, 2, 4, 1, 3]
    rng = np.random.default_rng(0)
    assert sb.resolve_seed(12, rng) == 12
    drawn = sb.resolve_seed(-1, rng)
    assert 0 <= drawn < 2**31 - 1 and drawn != sb.resolve_seed(-1, rng)


def test_lockstep_episode_runs_to_the_horizon():
    m = EpisodeMachine(lockstep=True)
    assert m.phase == Phase.IDLE and not m.running and m.check_command(0, 0).reason == "not_waiting"
    m.begin("cube_lift", 7, horizon=3)
    assert m.state_published(now=0.0) is True  # /sim/step 0 follows at once
    assert m.check_command(1, 1).reason == "future_step"
    for t in range(3):
        assert m.check_command(1, t).accepted
        done = m.advanced(success=False)
        assert done == (t == 2)
        assert m.state_published(now=float(t)) is (t < 2)
        if t < 2:
            assert m.check_command(1, t).reason == "old_step"
    s = m.status(1.5)
    assert (s.step, s.done, s.success, s.reason, s.seed, s.episode) == (3, True, False, "horizon", 7, 1)
    assert s.stamp_ns == 1_500_000_000 and m.status(1.5, stamp_ns=42).stamp_ns == 42
    assert m.check_command(1, 3).reason == "not_waiting"  # holds until reset
    with pytest.raises(RuntimeError, match="without a running episode"):
        m.advanced(success=True)
    m.begin("cube_lift", 8, horizon=3)
    assert (m.episode, m.step, m.status(0.0).done) == (2, 0, False)


def test_success_ends_the_episode_at_that_step():
    m = EpisodeMachine()
    m.begin("pick_place", 0, horizon=200)
    m.state_published(0.0)
    assert m.advanced(success=False) is False
    m.state_published(0.0)
    assert m.advanced(success=True) is True
    s = m.status(0.1)
    assert (s.step, s.done, s.success, s.reason) == (2, True, True, "success")
    with pytest.raises(ValueError, match="horizon must be >= 1"):
        m.begin("pick_place", 0, horizon=0)


def test_pose_barrier_holds_the_step_until_poses_or_timeout():
    m = EpisodeMachine(lockstep=True, wait_for_poses=True)
    m.begin("cube_lift", 0, horizon=10)
    assert m.state_published(now=10.0) is False and m.phase == Phase.WAIT_POSES
    assert m.check_command(1, 0).reason == "not_waiting"  # no /sim/step yet, so no command can be for it
    assert m.poses_arrived() is True and m.poses_arrived() is False  # only once
    assert m.check_command(1, 0).accepted
    m.advanced(False)
    assert m.state_published(now=20.0) is False
    assert not m.pose_wait_expired(now=20.5, timeout=1.0)
    assert m.pose_wait_expired(now=21.0, timeout=1.0) and m.phase == Phase.WAIT_COMMAND
    # A step whose state the estimator does not answer (camera not rendered) is not held.
    m.advanced(False)
    assert m.state_published(now=30.0, poses_expected=False) is True
    # Real-time mode never waits for poses.
    assert EpisodeMachine(lockstep=False, wait_for_poses=True).wait_for_poses is False


def test_pose_wait_is_short_while_the_estimator_is_down():
    """10-minute lockstep soak: with the pose estimator killed, every step waited the full 1 s for poses (three
    gaps of 1.05 s between commands); after one expired wait the next steps wait only the retry time."""
    m = EpisodeMachine(lockstep=True, wait_for_poses=True)
    m.begin("cube_lift", 0, horizon=10)
    assert m.pose_timeout(1.0, 0.1) == 1.0
    m.state_published(now=0.0)
    assert m.pose_wait_expired(now=1.0, timeout=m.pose_timeout(1.0, 0.1))
    m.advanced(False)
    m.state_published(now=2.0)
    assert m.pose_timeout(1.0, 0.1) == 0.1 and m.pose_wait_expired(now=2.1, timeout=m.pose_timeout(1.0, 0.1))
    m.advanced(False)
    m.state_published(now=3.0)
    assert m.poses_arrived() and m.pose_timeout(1.0, 0.1) == 1.0  # the estimator is back: the full wait again
    with pytest.raises(ValueError, match="lockstep_pose_retry_s"):
        SimNodeConfig(lockstep_pose_retry_s=2.0)


def test_resend_is_due_after_the_period_without_a_command():
    m = EpisodeMachine(lockstep=True)
    m.begin("cube_lift", 0, horizon=10)
    m.state_published(now=100.0)
    assert not m.resend_due(101.9, period=2.0)
    assert m.resend_due(102.0, period=2.0) and m.resends == 1
    assert not m.resend_due(103.0, period=2.0)  # counted from the resend
    assert m.resend_due(104.0, period=2.0) and m.resends == 2
    m.advanced(False)
    assert m.resends == 0
    rt = EpisodeMachine(lockstep=False)
    rt.begin("cube_lift", 0, horizon=10)
    rt.state_published(now=0.0)
    assert not rt.resend_due(1e6, period=2.0)


def test_episode_status_json_round_trip():
    s = EpisodeStatus(episode=3, task="stack_cube", seed=2, step=57, horizon=200, sim_time=12.35,
                      stamp_ns=12_350_000_000, success=True, done=True, reason="success")
    data = json.loads(s.to_json())
    assert data == {"episode": 3, "task": "stack_cube", "seed": 2, "step": 57, "horizon": 200, "sim_time": 12.35,
                    "stamp_ns": 12_350_000_000, "success": True, "done": True, "reason": "success"}
    assert EpisodeStatus.from_json(s.to_json()) == s
    with pytest.raises(ValueError, match=r"lacks \['reason'\]"):
        EpisodeStatus.from_json(json.dumps({k: v for k, v in data.items() if k != "reason"}))


def test_commands_from_targets():
    cmd, why = sb.command_from_target([0.5, 0.0, 0.2], [0.0, 0.0, 0.0, 1.05], 1.7)
    assert why == "ok" and cmd.gripper == 1.0 and cmd.source == "arbiter"
    np.testing.assert_array_equal(cmd.quat, [0, 0, 0, 1.05])  # passed on as sent: the simulator normalises
    cmd, why = sb.command_from_target([0.5, 0.0, 0.2], [1.0, 0.0, 0.0, 0.02], -0.5)
    assert why == "ok" and cmd.gripper == 0.0
    assert sb.command_from_target([0.5, 0, 0.2], [0, 0, 0, 0], 0.0) == (None, "no_target")
    assert sb.command_from_target([np.nan, 0, 0.2], [0, 0, 0, 1], 0.0) == (None, "non_finite")
    assert sb.command_from_target([0.5, 0, 0.2], [0, 0, 0, 1], np.inf) == (None, "non_finite")
    assert sb.command_from_target([0.5, 0, 0.2], [0, 0, 0, 0.5], 0.0) == (None, "bad_quaternion")
    assert sb.command_from_target([0.5, 0, 0.2], [1e200, 1e200, 0, 0], 0.0) == (None, "bad_quaternion")
    assert sb.command_from_target([0.5, 1e200, 0.2], [0, 0, 0, 1], 0.0) == (None, "out_of_range")  # was taken
    hold = sb.hold_command([0.3, 0.0, 0.5], [1.0, 0.0, 0.0, 0.0], 0.4)
    assert hold.source == "hold" and hold.gripper == 0.4 and list(hold.pos) == [0.3, 0.0, 0.5]


def test_stamps_and_continuous_clock():
    assert sb.stamp_parts(0.0) == (0, 0)
    assert sb.stamp_parts(12.35) == (12, 350_000_000)
    assert sb.stamp_parts(1.4999999999999) == (1, 500_000_000)
    with pytest.raises(ValueError, match="time stamp"):
        sb.stamp_parts(-0.05)
    clock = sb.SimClock(0.05)
    assert clock.new_episode() == 0.0
    assert clock.now(0.0) == 0.0 and clock.now(2.5) == 2.5
    start = clock.new_episode()
    assert start == pytest.approx(2.55) and clock.now(0.0) == pytest.approx(2.55)
    assert clock.now(0.05) == pytest.approx(2.6)
    assert clock.new_episode() == pytest.approx(2.65)  # a reset right after a reset still moves forwards


def test_joint_state_and_camera_info_fields():
    names, pos, vel = sb.joint_state_fields(np.arange(7.0), -np.arange(7.0), [0.01, 0.02], [0.1, 0.2])
    assert names == [f"fr3_joint{i}" for i in range(1, 8)] + ["fr3_finger_joint1", "fr3_finger_joint2"]
    assert pos == [0, 1, 2, 3, 4, 5, 6, 0.01, 0.02] and vel[7:] == [0.1, 0.2] and vel[6] == -6.0
    f = sb.camera_info_fields(500.0, 501.0, 319.5, 239.5)
    assert np.array(f["k"]).reshape(3, 3).tolist() == [[500, 0, 319.5], [0, 501, 239.5], [0, 0, 1]]
    assert np.array(f["p"]).reshape(3, 4)[:, :3].tolist() == np.array(f["k"]).reshape(3, 3).tolist()
    assert f["d"] == [0.0] * 5 and f["distortion_model"] == "plumb_bob"


def test_an_invalid_command_is_not_a_target():
    # valid false: the arbiter formed no target this step (invalid TCP pose); whatever the pose fields hold.
    assert sb.command_from_arbiter(False, [0.4, 0, 0.3], [0, 0, 0, 1], 1.0) == (None, "invalid")
    cmd, why = sb.command_from_arbiter(True, [0.4, 0, 0.3], [0, 0, 0, 1], 1.0)
    assert why == "ok" and cmd.gripper == 1.0 and list(cmd.pos) == [0.4, 0, 0.3] and cmd.source == "arbiter"
    assert sb.command_from_arbiter(True, [0.4, 0, 0.3], [0, 0, 0, 0], 1.0) == (None, "no_target")
    assert not hasattr(sb, "command_from_correction") and not hasattr(sb, "NO_COMMAND_REASON")


def test_lockstep_takes_only_the_current_episode_and_step_and_counts_the_rest():
    m = EpisodeMachine(lockstep=True)
    m.begin("cube_lift", 0, horizon=10)
    m.state_published(now=0.0)
    assert m.accept_command(1, 0).accepted
    m.advanced(False)
    m.state_published(now=1.0)
    assert m.accept_command(2, 1).reason == "other_episode"  # right step, wrong episode
    assert m.accept_command(0, 1).reason == "other_episode"  # 0: the arbiter had seen no episode yet
    assert m.accept_command(1, 0).reason == "old_step" and m.accept_command(1, 2).reason == "future_step"
    assert m.step == 1 and m.accept_command(1, 1).accepted
    m.advanced(False)
    m.begin("cube_lift", 1, horizon=10)  # reset: episode 2, step 0
    m.state_published(now=2.0)
    assert m.accept_command(1, 0).reason == "other_episode"  # the old episode's step 0 is not this one's
    assert m.accept_command(2, 0).accepted
    assert m.dropped == {"not_waiting": 0, "other_episode": 3, "old_step": 1, "future_step": 1}


def test_real_time_takes_the_newest_command_of_the_current_episode():
    m = EpisodeMachine(lockstep=False)
    assert m.accept_command(1, 0).reason == "not_waiting"  # no episode yet
    m.begin("cube_lift", 0, horizon=100)
    m.state_published(now=0.0)
    # The base's step counter is its own in real time: any step, but never an older one than the newest taken.
    assert m.accept_command(1, 40).accepted and m.newest_command_step == 40
    assert m.accept_command(1, 40).accepted  # a repeated hold of the same step
    assert m.accept_command(1, 39).reason == "old_step"
    assert m.accept_command(2, 41).reason == "other_episode"
    m.advanced(False)  # the sim steps on its own timer: commands need not name its step
    m.state_published(now=0.05)
    assert m.accept_command(1, 41).accepted
    m.begin("cube_lift", 1, horizon=100)  # episode 2
    m.state_published(now=1.0)
    assert m.newest_command_step is None
    assert m.accept_command(1, 42).reason == "other_episode"  # in flight from the old episode
    assert m.accept_command(2, 0).accepted
    for _ in range(100):
        m.advanced(False)
    assert m.phase == Phase.DONE and m.accept_command(2, 1).reason == "not_waiting"
    assert m.dropped == {"not_waiting": 2, "other_episode": 2, "old_step": 1, "future_step": 0}


def test_a_step_the_episode_never_reaches_is_never_taken():
    """Real time took any step not older than the newest: one far-future command (a step of 10**12) made every
    later command of the episode an old step, so the sim held the forged target to the end. (Lockstep takes only
    the current step anyway.)"""
    for lockstep in (False, True):
        m = EpisodeMachine(lockstep=lockstep)
        m.begin("cube_lift", 0, horizon=100)
        m.state_published(now=0.0)
        for step in (100, 10**12, 2**64 - 1):
            assert m.accept_command(1, step).reason == "future_step", (lockstep, step)
        assert m.accept_command(1, 0).accepted and m.dropped["future_step"] == 3


def test_a_command_answering_the_first_step_message_is_taken_while_a_resend_waits_for_poses():
    m = EpisodeMachine(lockstep=True, wait_for_poses=True)
    m.begin("cube_lift", 0, horizon=10)
    m.state_published(now=0.0)
    assert m.check_command(1, 0).reason == "not_waiting"  # /sim/step 0 not out yet
    m.poses_arrived()
    assert m.resend_due(2.0, period=2.0)
    m.state_published(now=2.0)  # the re-published state waits for its poses again...
    assert m.phase == Phase.WAIT_POSES
    assert m.check_command(1, 0).accepted  # ...but the command for the first /sim/step 0 is still taken
    m.advanced(False)
    m.state_published(now=3.0)
    assert m.check_command(1, 1).reason == "not_waiting"


def test_what_a_command_names_is_judged_before_when_it_came():
    """A command of another episode (or of a step past the horizon) counts as that while the sim waits for poses
    too, not as "not_waiting": the count then does not depend on how fast the pose estimator answered (seen in CI:
    the fuzz test's forged-episode commands, arriving while the next step waited for its poses, were all counted
    not_waiting)."""
    m = EpisodeMachine(lockstep=True, wait_for_poses=True)
    m.begin("cube_lift", 0, horizon=10)
    m.state_published(now=0.0)
    assert m.phase == Phase.WAIT_POSES and not m.step_sent
    assert m.accept_command(1001, 0).reason == "other_episode"
    assert m.accept_command(1, 10**9).reason == "future_step"
    assert m.accept_command(1, 0).reason == "not_waiting"  # its own episode and a reachable step: just early
    assert m.dropped == {"not_waiting": 1, "other_episode": 1, "future_step": 1, "old_step": 0}
