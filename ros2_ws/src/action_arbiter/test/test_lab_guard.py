"""LabGuard (action_arbiter.lab): arming refused in each unready state with its reason, disarm on robot errors,
stale inputs and a silent deadman, the speed scale on the envelope's per-step limits."""

from __future__ import annotations

import numpy as np
import pytest
from action_arbiter.lab import LabConfig, LabGuard, RobotState, TcpView
from residual_core.safety import EnvelopeConfig
from residual_ros import franka_interfaces as fi

HAND = ((0.0, 0.0, fi.HAND_TCP_OFFSET_M), fi.HAND_TCP_QUAT_XYZW)
REAL = LabConfig(require_arming=True, robot_state_topic="/franka_robot_state_broadcaster/robot_state",
                 heartbeat_topic="/deadman", speed_scale=0.25)
GOOD_TCP = TcpView(np.array([0.5, 0.0, 0.3]), 0.01)


def state(mode="MOVE", errors=(), ee=HAND, at=0.0) -> RobotState:
    return RobotState(fi.ROBOT_MODES[mode], tuple(errors), ee[0], ee[1], at)


def ready_guard(cfg=REAL, now=10.0) -> LabGuard:
    env = EnvelopeConfig()
    g = LabGuard(cfg, env.workspace_min, env.workspace_max)
    g.on_robot_state(state(at=now))
    g.on_heartbeat(True, now)
    return g


def test_starts_disarmed_and_arms_when_ready():
    g = ready_guard()
    assert not g.armed and "not armed yet" in g.disarm_reason
    ok, msg = g.arm(10.05, GOOD_TCP)
    assert ok and g.armed and "speed scale 0.25" in msg, msg
    assert g.arm(10.06, GOOD_TCP) == (True, "already armed")
    assert g.arms == 1


@pytest.mark.parametrize("setup,expect", [
    (lambda g: g.on_robot_state(state("IDLE", at=10.0)), "robot_mode IDLE (needs MOVE)"),
    (lambda g: g.on_robot_state(state("REFLEX", at=10.0)), "robot_mode REFLEX"),
    (lambda g: g.on_robot_state(state(errors=("cartesian_reflex",), at=10.0)), "current errors: cartesian_reflex"),
    (lambda g: g.on_robot_state(state(ee=((0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0)), at=10.0)), "Desk"),
    (lambda g: setattr(g, "robot", None), "no robot state received"),
    (lambda g: g.on_robot_state(state(at=9.0)), "robot state stale"),
    (lambda g: g.on_heartbeat(False, 10.0), "deadman not held"),
    (lambda g: setattr(g, "last_heartbeat_s", 9.0), "deadman silent"),
])
def test_arming_is_refused_in_each_unready_state_with_its_reason(setup, expect):
    g = ready_guard()
    setup(g)
    ok, msg = g.arm(10.05, GOOD_TCP)
    assert not ok and not g.armed and expect in msg, msg
    assert g.refusals == 1


@pytest.mark.parametrize("tcp,expect", [
    (TcpView(None, None, "no_tcp"), "no usable measured TCP pose (no_tcp)"),
    (TcpView(np.array([0.5, 0.0, 0.3]), 0.6), "measured TCP pose stale"),
    (TcpView(None, 0.2, "tcp_stale"), "no usable measured TCP pose (tcp_stale)"),
    (TcpView(np.array([0.5, 0.0, 0.3]), 0.01, "tcp_jumped"), "tcp_jumped"),
    (TcpView(np.array([0.1, 0.0, 0.3]), 0.01), "outside the workspace box"),
])
def test_arming_is_refused_without_a_fresh_tcp_inside_the_box(tcp, expect):
    g = ready_guard()
    ok, msg = g.arm(10.05, tcp)
    assert not ok and expect in msg, msg


def test_every_reason_is_listed():
    g = ready_guard()
    g.on_robot_state(state("USER_STOPPED", at=10.0))
    g.on_heartbeat(False, 10.0)
    ok, msg = g.arm(10.05, TcpView(None, None, "no_tcp"))
    assert not ok and msg.count(";") == 2 and "USER_STOPPED" in msg and "deadman" in msg and "TCP" in msg, msg


@pytest.mark.parametrize("event,expect", [
    (lambda g: g.on_robot_state(state("REFLEX", ("cartesian_reflex",), at=10.2)), "robot_mode REFLEX"),
    (lambda g: g.on_robot_state(state("USER_STOPPED", at=10.2)), "robot_mode USER_STOPPED"),
    (lambda g: g.on_robot_state(state(errors=("power_limit_violation",), at=10.2)), "power_limit_violation"),
    (lambda g: g.on_heartbeat(False, 10.2), "deadman released"),
    (lambda g: g.tick(10.2 + REAL.heartbeat_timeout_s + 0.01, GOOD_TCP), "deadman silent"),
    (lambda g: g.tick(10.2, TcpView(np.array([0.5, 0.0, 0.3]), 0.6)), "measured TCP pose stale"),
    (lambda g: g.tick(10.2, TcpView(None, 0.6, "tcp_stale")), "measured TCP pose stale"),
])
def test_an_armed_guard_disarms_on_errors_stale_inputs_and_the_deadman(event, expect):
    g = ready_guard()
    assert g.arm(10.05, GOOD_TCP)[0]
    g.on_heartbeat(True, 10.15)
    g.on_robot_state(state(at=10.15))
    event(g)
    assert not g.armed and expect in g.disarm_reason, g.disarm_reason
    assert g.disarms == 1 and g.events[-1][1].startswith("disarmed")


def test_a_short_tcp_gap_gives_no_target_but_does_not_disarm():
    g = ready_guard()
    assert g.arm(10.05, GOOD_TCP)[0]
    assert g.tick(10.1, TcpView(None, 0.2, "tcp_stale")) == "" and g.armed


def test_a_reset_jump_gives_no_target_but_does_not_disarm():
    g = ready_guard()
    assert g.arm(10.05, GOOD_TCP)[0]
    assert g.tick(10.1, TcpView(None, 0.01, "tcp_awaited")) == "" and g.armed
    assert g.tick(10.1, TcpView(None, 0.01, "tcp_jumped")) == "" and g.armed


def test_a_robot_state_that_stops_coming_disarms():
    g = ready_guard()
    assert g.arm(10.05, GOOD_TCP)[0]
    g.on_heartbeat(True, 10.5)
    assert g.tick(10.5, GOOD_TCP) == "" and g.armed
    g.on_heartbeat(True, 10.6)
    assert "robot state stale" in g.tick(10.6, GOOD_TCP) and not g.armed


def test_without_arming_the_guard_is_always_armed_and_never_disarms():
    env = EnvelopeConfig()
    g = LabGuard(LabConfig(), env.workspace_min, env.workspace_max)
    assert g.armed and g.arm(0.0, TcpView(None, None, "no_tcp"))[0]
    assert not g.disarm("stop", 0.0) and g.armed
    assert g.tick(100.0, TcpView(None, None, "tcp_stale")) == "" and g.armed


def test_speed_scale_scales_the_per_step_limits_only():
    env = EnvelopeConfig()
    g = ready_guard()
    scaled = g.scaled_envelope(env)
    assert scaled.max_translation_step == pytest.approx(0.25 * env.max_translation_step)
    assert scaled.max_rotation_step == pytest.approx(0.25 * env.max_rotation_step)
    assert (scaled.workspace_min, scaled.workspace_max) == (env.workspace_min, env.workspace_max)
    g.set_speed_scale(1.0)
    assert g.scaled_envelope(env) == env
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="speed_scale"):
            g.set_speed_scale(bad)


def test_config_is_checked():
    with pytest.raises(ValueError, match="speed_scale"):
        LabConfig(speed_scale=2.0)
    with pytest.raises(ValueError, match="unknown robot modes"):
        LabConfig(arm_modes=("RUNNING",))
    with pytest.raises(ValueError, match="heartbeat_timeout_s"):
        LabConfig(heartbeat_timeout_s=0.0)


def test_robot_state_is_read_from_the_franka_message():
    from franka_msgs.msg import FrankaRobotState

    msg = FrankaRobotState(robot_mode=fi.ROBOT_MODES["REFLEX"])
    msg.current_errors.cartesian_reflex = True
    msg.f_t_ee.pose.position.z = fi.HAND_TCP_OFFSET_M
    s = LabGuard.robot_state(msg, 3.0)
    assert s.mode == fi.ROBOT_MODES["REFLEX"] and s.errors == ("cartesian_reflex",) and s.received_s == 3.0
    assert s.f_t_ee_pos == (0.0, 0.0, fi.HAND_TCP_OFFSET_M)
