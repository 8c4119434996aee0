"""The gripper bridge (action_arbiter.gripper_bridge, its real action client) against the franka twin's gripper action
servers (franka-twin-node as a process): homing at start-up gives the max width, widths are clamped to it, a grasp
on nothing with a tight epsilon is reported as failed (log, count, /diagnostics), fingers the twin's episode reset
reopened become the bridge's state (the next closing command grasps again), and a reverse command while a goal runs
cancels that goal before the new one is sent. Against in-process franka_gripper stand-ins: a grasp that ignores
its cancel gets the stop service after cancel_timeout_s; a failed homing is reported and the waiting command goes out
with the configured width."""

from __future__ import annotations

import time

import pytest
from action_arbiter.gripper_bridge import GripperBridgeNode
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.parameter import Parameter
from rostest_utils import console_script, wait_for
from std_msgs.msg import Float64

pytestmark = pytest.mark.ros

TWIN_MAX_WIDTH = 0.08
"""franka_twin.twin_core.MAX_WIDTH: the twin's Franka Hand stroke."""


def _twin_args(*params: str) -> list[str]:
    # the camera is not needed here: rendered rarely and small to leave the CPU to the physics
    cheap = ("camera_rate_hz:=1.0", "image_width:=64", "image_height:=48")
    return ["--ros-args", *(a for p in (*cheap, *params) for a in ("-p", p))]


@pytest.fixture
def start_bridge(ros_probe):
    nodes = []

    def _start(**params) -> GripperBridgeNode:
        node = GripperBridgeNode(context=ros_probe.context,
                                 parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        ros_probe.executor.add_node(node)
        nodes.append(node)
        return node

    yield _start
    for node in nodes:
        ros_probe.executor.remove_node(node)
        node.destroy_node()


def _events(bridge) -> list[tuple[str, str, str]]:
    return list(bridge.sender.events)


def _stream(probe, pub, value: float, predicate, timeout: float, what: str):
    """Publish ``value`` at 20 Hz, as the arbiter does, until ``predicate()`` (a single message can fall within the
    bridge's min_interval_s of the previous request and be ignored)."""
    last = [-1.0]

    def check():
        if time.monotonic() - last[0] >= 0.05:
            pub.publish(Float64(data=value))
            last[0] = time.monotonic()
        return predicate()

    return probe.spin_until(check, timeout, what)


def test_homing_gives_the_max_width_widths_are_clamped_and_a_failed_grasp_is_reported(launch_node, ros_probe,
                                                                                       start_bridge):
    diagnostics = ros_probe.collect(DiagnosticArray, "/diagnostics", qos=50)
    # 10 cm is wider than the hand opens: unclamped, the twin (like franka_gripper) aborts the move
    bridge = start_bridge(open_width=0.1, grasp_width=0.03, epsilon_inner=0.005, epsilon_outer=0.005,
                          min_interval_s=0.01, diagnostics_period_s=0.2)
    pub = ros_probe.node.create_publisher(Float64, "/arbiter/gripper", 10)
    ros_probe.wait_for_subscribers(pub, timeout=10.0)
    pub.publish(Float64(data=0.0))  # open, while the homing has not even started (no gripper yet): it waits
    ros_probe.spin_until(lambda: bridge.pending == "move", 10.0, "the open command waiting for the homing")
    assert bridge.requests == []

    # the twin starts un-homed: every move / grasp goal aborts until the homing action ran
    twin = launch_node([console_script("franka-twin-node")], _twin_args("gripper_homed:=false"), name="twin")
    ros_probe.spin_until(lambda: bridge.homing.state not in ("waiting", "running", "measuring"), 90.0,
                         "the homing and the max width")
    assert bridge.homing.state == "done", (bridge.homing.state, bridge.homing.error, twin.output()[-2000:])
    max_width = bridge.bridge.max_width
    assert max_width is not None and TWIN_MAX_WIDTH - 0.002 <= max_width <= TWIN_MAX_WIDTH, max_width
    assert bridge.width == pytest.approx(max_width, abs=2e-4)  # the measured opening, rounded down to 0.1 mm

    # the waiting open move went out after the homing, clamped to the measured width, and succeeded
    ros_probe.spin_until(lambda: bridge.results.counts["move succeeded"] + bridge.results.counts["move failed"], 30.0,
                         "the open move's result")
    assert bridge.results.counts["move succeeded"] == 1, bridge.results.last
    move = bridge.requests[-1]
    assert (move.kind, move.width) == ("move", max_width) and "clamped to the measured max width" in move.note
    assert [e[:2] for e in _events(bridge)] == [("sent", "homing"), ("ended", "homing"), ("sent", "move"),
                                                ("ended", "move")]

    # close on nothing with a 3 cm +- 5 mm grasp: the fingers close to 0, outside the epsilon -> grasp failed
    pub.publish(Float64(data=1.0))
    ros_probe.spin_until(lambda: bridge.results.counts["grasp failed"] + bridge.results.counts["grasp succeeded"],
                         30.0, "the grasp's result")
    assert bridge.results.counts["grasp failed"] == 1 and bridge.results.failures == 1
    assert bridge.results.last.startswith("grasp failed: "), bridge.results.last
    assert "outside the grasp epsilon" in bridge.results.last  # the twin's error string is passed on

    def reported():
        for arr in diagnostics:
            for st in arr.status:
                values = {kv.key: kv.value for kv in st.values}
                if st.name == "gripper_bridge" and values.get("failures total") == "1":
                    return st
        return None

    st = ros_probe.spin_until(reported, 10.0, "the failed grasp on /diagnostics")
    values = {kv.key: kv.value for kv in st.values}
    assert st.level == DiagnosticStatus.WARN and "grasp failed" in st.message
    assert values["last result"].startswith("grasp failed") and values["homing"] == "done"
    assert float(values["max width"]) == pytest.approx(max_width)

    # the closed-on-nothing state is "closed"; the twin's episode reset opens the fingers behind the bridge's back:
    # with no goal running the bridge takes the state they show, and the next closing command grasps again (before,
    # "closed" stayed for good and no later episode's grasp was sent)
    from residual_interfaces.srv import ResetEpisode

    assert bridge.bridge.state == "closed" and bridge.width < 0.005
    reset = ros_probe.node.create_client(ResetEpisode, "/franka_twin/reset")
    assert reset.wait_for_service(timeout_sec=30.0)
    future = reset.call_async(ResetEpisode.Request(task="cube_lift", seed=0))
    assert ros_probe.spin_until(lambda: future.result(), 30.0, "the twin's reset").success
    ros_probe.spin_until(lambda: bridge.bridge.state == "open", 10.0, "the bridge taking the reopened fingers' state")
    assert bridge.width > max_width - 0.005
    sent = len(bridge.requests)
    _stream(ros_probe, pub, 1.0, lambda: len(bridge.requests) > sent, 10.0, "a grasp after the reset")
    assert bridge.requests[-1].kind == "grasp"


def test_a_reverse_command_cancels_the_running_goal_before_the_new_one(launch_node, ros_probe, start_bridge):
    twin = launch_node([console_script("franka-twin-node")], _twin_args(), name="twin")
    bridge = start_bridge(home_on_start=False, min_interval_s=0.01)
    assert bridge.homing.state == "off"
    pub = ros_probe.node.create_publisher(Float64, "/arbiter/gripper", 10)
    ros_probe.wait_for_subscribers(pub, timeout=10.0)
    ros_probe.spin_until(lambda: all(c.server_is_ready() for c in bridge.sender.clients.values()), 90.0,
                         "the twin's gripper action servers")

    # the fingers start open: a grasp closes them over ~the whole stroke; reverse as soon as it runs
    pub.publish(Float64(data=1.0))
    ros_probe.spin_until(lambda: bridge.sender.running is not None and bridge.sender.running.handle is not None,
                         30.0, "the grasp goal accepted")
    assert bridge.sender.running.req.kind == "grasp"
    _stream(ros_probe, pub, 0.0, lambda: bridge.results.counts["move succeeded"] + bridge.results.counts["move failed"],
            30.0, "the open move's result")

    # the grasp was cancelled (ended CANCELED by the server) before the move was sent; the move then ran
    assert _events(bridge) == [("sent", "grasp", "0.0400"), ("cancel", "grasp", "for move"),
                               ("ended", "grasp", "canceled"), ("sent", "move", "0.0800"),
                               ("ended", "move", "succeeded")], _events(bridge)
    assert bridge.results.counts["grasp canceled"] == 1 and bridge.results.failures == 0
    assert [r.kind for r in bridge.requests] == ["grasp", "move"]
    wait_for(lambda: "gripper grasp goal cancelled at" in twin.output(), 10.0, "the twin's log of the cancel")


def test_a_goal_that_ignores_its_cancel_is_stopped_and_the_next_goal_sent(ros_probe, start_bridge):
    """Against an in-process franka_gripper stand-in whose grasp accepts a cancel but never ends: after
    cancel_timeout_s the bridge calls the stop service, gives the grasp up ("abandoned", a failure) and sends the move;
    the grasp's late result changes nothing."""
    from franka_msgs.action import Grasp, Move
    from rclpy.action import ActionServer, CancelResponse
    from rclpy.task import Future
    from residual_ros import franka_interfaces as fi
    from std_srvs.srv import Trigger

    node = ros_probe.node
    release = Future()
    stops, moves = [], []

    async def grasp_until_released(handle):
        await release
        handle.abort()
        return Grasp.Result(success=False, error="released")

    def move(handle):
        moves.append(handle.request.width)
        handle.succeed()
        return Move.Result(success=True)

    def stop(request, response):
        stops.append(request)
        response.success = True
        return response

    ActionServer(node, Grasp, fi.GRIPPER_GRASP.name, grasp_until_released,
                 cancel_callback=lambda handle: CancelResponse.ACCEPT)
    ActionServer(node, Move, fi.GRIPPER_MOVE.name, move)
    node.create_service(Trigger, fi.GRIPPER_STOP.name, stop)
    bridge = start_bridge(home_on_start=False, min_interval_s=0.01, cancel_timeout_s=0.5)
    pub = node.create_publisher(Float64, "/arbiter/gripper", 10)
    ros_probe.wait_for_subscribers(pub, timeout=10.0)
    ros_probe.spin_until(lambda: bridge.sender.clients["grasp"].server_is_ready() and
                         bridge.sender.stop_client.service_is_ready(), 20.0, "the stand-in's servers")
    pub.publish(Float64(data=1.0))
    grasp = ros_probe.spin_until(lambda: bridge.sender.running is not None and bridge.sender.running.handle is not None
                                 and bridge.sender.running, 20.0, "the grasp goal accepted")
    _stream(ros_probe, pub, 0.0, lambda: moves and bridge.results.counts["move succeeded"], 20.0,
            "the move after the stop")
    assert len(stops) == 1 and moves == [pytest.approx(0.08)]
    assert [e[:2] for e in _events(bridge)] == [("sent", "grasp"), ("cancel", "grasp"), ("stop", "grasp"),
                                                ("ended", "grasp"), ("sent", "move"), ("ended", "move")]
    assert _events(bridge)[3][2] == "abandoned" and bridge.results.counts["grasp failed"] == 1
    # the grasp ends late: its result (answered before this second request's) changes nothing
    release.set_result(True)
    again = grasp.handle.get_result_async()
    ros_probe.spin_until(again.done, 10.0, "the abandoned grasp's result")
    assert again.result().result.error == "released"
    assert bridge.results.counts["grasp failed"] == 1 and len(_events(bridge)) == 6


def test_a_failed_homing_is_reported_and_waiting_commands_go_out_as_configured(ros_probe, start_bridge):
    """Against an in-process stand-in whose homing aborts: /diagnostics says ERROR "homing failed" with the server's
    error, and the command that waited for the homing goes out with the configured width (the max width is unknown)."""
    from franka_msgs.action import Homing, Move
    from rclpy.action import ActionServer
    from residual_ros import franka_interfaces as fi

    node = ros_probe.node
    moves = []

    def homing(handle):
        handle.abort()
        return Homing.Result(success=False, error="no gripper connected")

    def move(handle):
        moves.append(handle.request.width)
        handle.succeed()
        return Move.Result(success=True)

    diagnostics = ros_probe.collect(DiagnosticArray, "/diagnostics", qos=50)
    bridge = start_bridge(open_width=0.1, min_interval_s=0.01, diagnostics_period_s=0.2)
    pub = node.create_publisher(Float64, "/arbiter/gripper", 10)
    ros_probe.wait_for_subscribers(pub, timeout=10.0)
    pub.publish(Float64(data=0.0))
    ros_probe.spin_until(lambda: bridge.pending == "move", 10.0, "the open command waiting for the homing")
    ActionServer(node, Homing, fi.GRIPPER_HOMING.name, homing)
    ActionServer(node, Move, fi.GRIPPER_MOVE.name, move)
    ros_probe.spin_until(lambda: moves, 30.0, "the waiting move after the failed homing")
    assert bridge.homing.state == "failed" and bridge.bridge.max_width is None
    assert moves == [pytest.approx(0.1)] and bridge.requests[-1].note == ""  # not clamped: nothing measured

    def reported():
        return next((st for arr in diagnostics for st in arr.status
                     if st.name == "gripper_bridge" and st.level == DiagnosticStatus.ERROR), None)

    st = ros_probe.spin_until(reported, 10.0, "homing failed on /diagnostics")
    assert st.message == "homing failed: no gripper connected", st.message
    assert {kv.key: kv.value for kv in st.values}["homing"] == "failed"
