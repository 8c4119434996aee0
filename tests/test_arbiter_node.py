"""action-arbiter as a process: matching steps, late residual, switch, watchdog hold, NaN, markers, diagnostics."""

from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from fake_robot import FakeRobot
from geometry_msgs.msg import PoseStamped
from rclpy.parameter import Parameter
from residual_interfaces.msg import ArbiterCommand, Correction, EefAction
from rostest_utils import console_script
from std_msgs.msg import Float64
from std_srvs.srv import SetBool
from visualization_msgs.msg import MarkerArray

pytestmark = pytest.mark.ros

TCP = (0.45, 0.0, 0.25)
BASE = [0.01, 0.0, -0.01, 0.0, 0.0, 0.0, 1.0]
RESIDUAL = [0.0, 0.004, 0.0, 0.0, 0.0, 0.0, 0.0]


@pytest.fixture
def arbiter(launch_node, ros_probe):
    robot = FakeRobot(ros_probe, tcp_pos=TCP)
    proc = launch_node([console_script("action-arbiter")],
                       ["--ros-args", "-p", "residual_deadline_s:=0.05", "-p", "diagnostics_period_s:=0.2"],
                       name="arbiter")
    ros_probe.base_pub = ros_probe.node.create_publisher(EefAction, "/base/action", 10)
    ros_probe.res_pub = ros_probe.node.create_publisher(EefAction, "/residual/action", 10)
    ros_probe.corrections = ros_probe.collect(Correction, "/arbiter/correction")
    ros_probe.commands = ros_probe.collect(ArbiterCommand, "/arbiter/command")
    ros_probe.wait_for_subscribers(ros_probe.base_pub, timeout=20.0)
    ros_probe.wait_for_subscribers(ros_probe.res_pub, timeout=20.0)
    # The node starts in "base stale: hold" (no base yet); wait until it has seen the fake robot.
    ros_probe.spin_until(lambda: any(c.clip_reasons == ["base_stale_hold"] for c in ros_probe.corrections),
                         15.0, "the watchdog's first hold")
    yield proc
    assert proc.running(), proc.output()
    robot.timer.cancel()
    stopped = proc.stop()
    assert (stopped.returncode, stopped.signal_used) == (0, "SIGINT"), proc.output()


def send(probe, pub, step, action, source, stamp_ns=0, episode=0):
    msg = EefAction(episode=episode, step=step, action=action, source=source)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    pub.publish(msg)


def correction_for(probe, step, timeout=5.0):
    return probe.spin_until(lambda: next((c for c in probe.corrections if c.step == step and
                                          "base_stale_hold" not in c.clip_reasons), None),
                            timeout, f"correction of step {step}")


def test_base_and_residual_of_the_same_step_are_composed(arbiter, ros_probe):
    targets = ros_probe.collect(PoseStamped, "/arbiter/target_pose")
    grippers = ros_probe.collect(Float64, "/arbiter/gripper")
    markers = ros_probe.collect(MarkerArray, "/arbiter/markers")
    send(ros_probe, ros_probe.base_pub, 100, BASE, "openpi", stamp_ns=5_000_000_123)
    send(ros_probe, ros_probe.res_pub, 100, RESIDUAL, "residual", stamp_ns=5_000_400_456)
    c = correction_for(ros_probe, 100)
    assert c.residual_status == "ok" and c.residual_applied and not c.clipped
    # The record carries both inputs' stamps (per-hop latency from a recording).
    assert (c.base_stamp.sec, c.base_stamp.nanosec, c.residual_stamp.sec, c.residual_stamp.nanosec) == \
        (5, 123, 5, 400_456)
    np.testing.assert_allclose(c.final, [0.01, 0.004, -0.01, 0, 0, 0, 1.0], atol=1e-12)
    np.testing.assert_allclose([c.target.position.x, c.target.position.y, c.target.position.z],
                               np.add(TCP, [0.01, 0.004, -0.01]), atol=1e-9)
    ros_probe.spin_until(lambda: any(abs(t.pose.position.y - 0.004) < 1e-9 for t in targets), 5.0, "target pose")
    ros_probe.spin_until(lambda: any(g.data == 1.0 for g in grippers), 5.0, "gripper command 1.0")
    arrows = ros_probe.spin_until(lambda: next((m for m in markers if m.markers and
                                                abs(m.markers[1].points[1].y - 0.04) < 1e-9), None),
                                  5.0, "marker arrows of step 100")
    assert [m.ns for m in arrows.markers] == ["base", "residual", "final"]


def test_missing_residual_sends_base_alone_after_deadline(arbiter, ros_probe):
    send(ros_probe, ros_probe.base_pub, 200, BASE, "openpi", stamp_ns=7_000_000_000)
    c = correction_for(ros_probe, 200)
    assert c.residual_status == "late" and not c.residual_applied
    assert c.base_stamp.sec == 7 and (c.residual_stamp.sec, c.residual_stamp.nanosec) == (0, 0)
    np.testing.assert_allclose(c.final, BASE, atol=1e-12)
    send(ros_probe, ros_probe.res_pub, 200, RESIDUAL, "residual")  # too late: must not produce a second record
    ros_probe.spin_for(0.3)
    assert sum(x.step == 200 for x in ros_probe.corrections) == 1
    # The one deadline timer is restarted for the next waiting step: late again, then in time again.
    send(ros_probe, ros_probe.base_pub, 201, BASE, "openpi")
    assert correction_for(ros_probe, 201).residual_status == "late"
    send(ros_probe, ros_probe.base_pub, 202, BASE, "openpi")
    send(ros_probe, ros_probe.res_pub, 202, RESIDUAL, "residual")
    assert correction_for(ros_probe, 202).residual_status == "ok"


def test_enable_residual_service(arbiter, ros_probe):
    client = ros_probe.node.create_client(SetBool, "/arbiter/enable_residual")
    resp = ros_probe.call(client, SetBool.Request(data=False), timeout=10.0)
    assert resp.success and resp.message == "residual disabled (was enabled)"
    send(ros_probe, ros_probe.base_pub, 300, BASE, "openpi")
    assert correction_for(ros_probe, 300).residual_status == "disabled"
    ros_probe.call(client, SetBool.Request(data=True), timeout=10.0)
    send(ros_probe, ros_probe.base_pub, 301, BASE, "openpi")
    send(ros_probe, ros_probe.res_pub, 301, RESIDUAL, "residual")
    assert correction_for(ros_probe, 301).residual_status == "ok"


def test_nan_base_never_reaches_the_command(arbiter, ros_probe):
    targets = ros_probe.collect(PoseStamped, "/arbiter/target_pose")
    send(ros_probe, ros_probe.base_pub, 400, [float("nan")] * 7, "openpi")
    send(ros_probe, ros_probe.res_pub, 400, RESIDUAL, "residual")
    c = correction_for(ros_probe, 400)
    assert "nan_rejected" in c.clip_reasons and np.all(np.isfinite(c.final))
    ros_probe.spin_for(0.2)
    assert targets and all(np.isfinite([t.pose.position.x, t.pose.position.y, t.pose.position.z]).all()
                           for t in targets)


def test_stale_base_holds_pose_and_reports_error(arbiter, ros_probe):
    diags = ros_probe.collect(DiagnosticArray, "/diagnostics")
    send(ros_probe, ros_probe.base_pub, 500, BASE, "openpi")
    send(ros_probe, ros_probe.res_pub, 500, RESIDUAL, "residual")
    correction_for(ros_probe, 500)
    n = len(ros_probe.corrections)
    hold = ros_probe.spin_until(
        lambda: next((c for c in ros_probe.corrections[n:] if "base_stale_hold" in c.clip_reasons), None),
        5.0, "a hold after the base stopped")
    assert hold.step == 501 and not hold.residual_applied and hold.final[6] == 1.0  # gripper kept
    np.testing.assert_allclose([hold.target.position.x, hold.target.position.y, hold.target.position.z], TCP)
    ros_probe.spin_until(lambda: any(d.status[0].level == DiagnosticStatus.ERROR for d in diags), 5.0,
                         "an ERROR diagnostic")


def command_for(probe, episode, step, timeout=5.0):
    return probe.spin_until(lambda: next((c for c in probe.commands if (c.episode, c.step) == (episode, step)), None),
                            timeout, f"command of episode {episode} step {step}")


def test_command_every_step_with_its_episode_and_episodes_by_id(arbiter, ros_probe):
    # Before any base action: watchdog holds, valid commands at the TCP pose, episode 0 (none seen yet).
    first = ros_probe.spin_until(lambda: ros_probe.commands and ros_probe.commands[0], 5.0, "a hold command")
    assert first.episode == 0 and first.valid and first.target.position.x == pytest.approx(TCP[0])
    send(ros_probe, ros_probe.base_pub, 100, BASE, "openpi", episode=1)
    send(ros_probe, ros_probe.res_pub, 100, RESIDUAL, "residual", episode=1)
    c = command_for(ros_probe, 1, 100)
    rec = correction_for(ros_probe, 100)
    assert c.valid and c.gripper == 1.0 and c.header.frame_id == "fr3_link0" and rec.episode == 1
    assert (c.target.position.x, c.target.position.y, c.target.position.z) == (
        rec.target.position.x, rec.target.position.y, rec.target.position.z)
    np.testing.assert_allclose([c.target.position.x, c.target.position.y, c.target.position.z],
                               np.add(TCP, [0.01, 0.004, -0.01]), atol=1e-9)
    # Episode 2 starts at step 0 (below the last decided step); the residual of episode 1's step 0 is not its.
    send(ros_probe, ros_probe.res_pub, 0, [0.0, -0.004, 0.0, 0.0, 0.0, 0.0, 0.0], "residual", episode=1)
    send(ros_probe, ros_probe.base_pub, 0, BASE, "openpi", episode=2)
    send(ros_probe, ros_probe.res_pub, 0, RESIDUAL, "residual", episode=2)
    c0 = command_for(ros_probe, 2, 0)
    assert c0.valid and c0.target.position.y == pytest.approx(TCP[1] + 0.004)  # episode 2's residual
    assert "episode 2 starts at step 0" in arbiter.output()
    # Within episode 2 an older step is stale: ignored, never a new episode.
    send(ros_probe, ros_probe.base_pub, 5, BASE, "openpi", episode=2)
    command_for(ros_probe, 2, 5)
    send(ros_probe, ros_probe.base_pub, 3, BASE, "openpi", episode=2)
    send(ros_probe, ros_probe.base_pub, 6, BASE, "openpi", episode=2)
    command_for(ros_probe, 2, 6)
    assert not any((c.episode, c.step) == (2, 3) for c in ros_probe.commands)
    assert arbiter.output().count("starts at step") == 2
    # The base stops: the holds are commands of episode 2 too, for the next step.
    hold = ros_probe.spin_until(lambda: next((c for c in ros_probe.commands if (c.episode, c.step) == (2, 7)), None),
                                5.0, "a hold command after the base stopped")
    assert hold.valid and hold.gripper == 1.0
    steps = [(c.episode, c.step) for c in ros_probe.commands if c.episode > 0]
    corrections = [(c.episode, c.step) for c in ros_probe.corrections if c.episode > 0]
    assert steps[:len(corrections)] == corrections[:len(steps)], "one command per decision, in order"


def test_gripper_bridge_without_franka_ros2_exits_with_a_clear_message(launch_node):
    # Started through the shared run_node: a missing franka_msgs is a configuration error (status 2), no traceback.
    proc = launch_node([console_script("franka-gripper-bridge")], name="gripper_bridge")
    assert proc.popen.wait(timeout=30) == 2, proc.output()
    out = proc.output()
    assert "franka-gripper-bridge: franka_msgs is not installed" in out and "Traceback" not in out


def test_gripper_bridge_node_turns_the_command_stream_into_requests(ros_probe):
    from action_arbiter.gripper_bridge import GripperBridgeNode

    class Sender:  # stands in for franka_gripper's action clients; the first grasp finds no server
        def __init__(self, node, cfg):
            self.calls, self.ready = [], False

        def send(self, request):
            self.calls.append(request.kind)
            ready, self.ready = self.ready, True
            return ready

    bridge = GripperBridgeNode(make_sender=Sender, context=ros_probe.context,
                               parameter_overrides=[Parameter("min_interval_s", value=0.01)])
    ros_probe.executor.add_node(bridge)
    try:
        pub = ros_probe.node.create_publisher(Float64, "/arbiter/gripper", 10)
        ros_probe.wait_for_subscribers(pub, timeout=10.0)
        for value, kinds in ((1.0, ["grasp"]), (1.0, ["grasp", "grasp"]), (0.5, ["grasp", "grasp"]),
                             (0.0, ["grasp", "grasp", "move"])):
            pub.publish(Float64(data=value))
            ros_probe.spin_until(lambda k=kinds: bridge.sender.calls == k, 5.0, f"gripper requests {kinds}")
            ros_probe.spin_for(0.05)  # past min_interval_s
        assert [r.kind for r in bridge.requests] == ["grasp", "move"]  # the unanswered grasp was retried
        assert bridge.bridge.state == "open"
    finally:
        ros_probe.executor.remove_node(bridge)
        bridge.destroy_node()


def test_nested_config_parameters_reach_the_node_by_dotted_name(launch_node, ros_probe, tmp_path):
    """A params file's nested ``envelope:`` mapping and a dotted ``-p`` both set the envelope's parameters."""
    from rclpy.parameter_client import AsyncParameterClient

    params = tmp_path / "arbiter.yaml"
    params.write_text("arbiter:\n  ros__parameters:\n    envelope:\n      max_translation_step: 0.01\n")
    proc = launch_node([console_script("action-arbiter")],
                       ["--ros-args", "--params-file", str(params), "-p", "action.max_rotation:=0.2"], name="arbiter")
    client = AsyncParameterClient(ros_probe.node, "arbiter")
    ros_probe.spin_until(lambda: client.services_are_ready() or not proc.running(), 20.0, "the parameter services")
    assert proc.running(), proc.output()
    names = ["envelope.max_translation_step", "action.max_rotation", "envelope.max_rotation_step"]
    got = client.get_parameters(names)
    values = ros_probe.spin_until(lambda: got.done() and got.result().values, 5.0, "the parameter values")
    assert [v.double_value for v in values] == [0.01, 0.2, 0.25]  # the last: EnvelopeConfig's default
    described = client.describe_parameters(names[:1])
    (desc,) = ros_probe.spin_until(lambda: described.done() and described.result().descriptors, 5.0, "descriptors")
    assert desc.description.startswith("Largest TCP translation per control step")
    stopped = proc.stop()
    assert (stopped.returncode, stopped.signal_used) == (0, "SIGINT"), proc.output()
