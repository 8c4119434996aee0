"""residual-launch starts the graph's existing nodes, relays their output, and stops them all by PID."""

from __future__ import annotations

import io
import os
import re
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_robot import FakeRobot
from geometry_msgs.msg import PoseStamped
from residual_bringup.graph import NodeSpec
from residual_bringup.supervisor import run_graph
from residual_interfaces.msg import Correction, EefAction
from rostest_utils import console_script, wait_for
from vla_base_node.loopback_servers import OpenPILoopbackServer, reach_policy

pytestmark = pytest.mark.ros

TCP = (0.45, 0.0, 0.25)


def pids_started(output: str) -> dict[str, int]:
    return {m[0]: int(m[1]) for m in re.findall(r"started (\w+) \(pid (\d+)\)", output)}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); the supervisor reaps its children, so check the state too.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_supervisor_runs_base_and_arbiter_then_stops_them(launch_node, ros_probe):
    with OpenPILoopbackServer(reach_policy((0.5, 0.0, 0.3), horizon=8)) as server:
        FakeRobot(ros_probe, tcp_pos=TCP)
        targets = ros_probe.collect(PoseStamped, "/arbiter/target_pose")
        corrections = ros_probe.collect(Correction, "/arbiter/correction")
        residual_pub = ros_probe.node.create_publisher(EefAction, "/residual/action", 10)
        sup = launch_node(
            [console_script("residual-launch")],
            ["--only", "base", "arbiter", "--no-lockstep", "--no-use-sim-time", "--base-backend", "openpi",
             "--set", f"base.server_port={server.port}", "--set", "base.image_keys=[none]",
             "--set", "arbiter.residual_deadline_s=0.045",
             # No simulator here: the base node counts episodes itself (as on the robot).
             "--set", "base.episode_topic=none"],
            name="residual-launch",
        )
        base_actions = ros_probe.collect(EefAction, "/base/action")

        def echo_residual():  # stand-in residual node: a fixed 3 mm +y correction for every base step
            for a in base_actions[len(echo_residual.sent):]:
                residual_pub.publish(EefAction(episode=a.episode, step=a.step, action=[0, 0.003, 0, 0, 0, 0, 0],
                                               source="residual"))
                echo_residual.sent.append(a.step)
        echo_residual.sent = []
        ros_probe.node.create_timer(0.01, echo_residual)

        ros_probe.spin_until(lambda: sum(c.residual_status == "ok" and c.final[0] > 0 for c in corrections) >= 10,
                             timeout=40.0, what="10 composed commands through the supervised graph")
        assert sup.running(), sup.output()
    ok = [c for c in corrections if c.residual_status == "ok" and c.final[0] > 0]
    np.testing.assert_allclose([c.residual[1] for c in ok], 0.003)
    assert targets and all(np.isfinite(t.pose.position.x) for t in targets)
    started = pids_started(sup.output())
    assert set(started) == {"base", "arbiter"}
    assert all(alive(pid) for pid in started.values())
    output = sup.output()
    assert re.search(r"^\[base\] .*backend=openpi", output, re.M), output  # node output relayed with a prefix

    os.kill(sup.pid, signal.SIGINT)
    assert sup.popen.wait(timeout=30) == 0, sup.output()
    assert "all nodes stopped: base=0, arbiter=0" in sup.output()
    for pid in started.values():
        wait_for(lambda p=pid: not alive(p), 5.0, f"node pid {pid} gone")


def test_supervisor_stops_the_graph_when_a_node_dies(launch_node):
    sup = launch_node([console_script("residual-launch")],
                      ["--only", "base", "arbiter", "--set", "base.backend=no_such_backend"], name="residual-launch")
    assert sup.popen.wait(timeout=40) == 2, sup.output()  # the base node's configuration error
    out = sup.output()
    assert "node base (pid" in out and "exited with status 2 (a configuration error)" in out
    assert "unknown backend 'no_such_backend'" in out
    started = pids_started(out)
    assert not any(alive(pid) for pid in started.values())


def python_node(name: str, code: str) -> NodeSpec:
    """A stand-in node: this interpreter running ``code`` (no ROS arguments)."""
    return NodeSpec("none", Path(sys.executable).name, name, arguments=("-c", code), ros_node=False)


@pytest.mark.parametrize(("status", "expected"), [(2, 2), (1, 1), (3, 1), (-signal.SIGKILL, 1)])
def test_exit_status_says_whether_the_dead_node_had_a_configuration_error(status, expected):
    """A node exits with status 2 on a configuration error (residual_ros.node_main.run_node): residual-launch then
    exits with 2 as for its own configuration problems; any other death of a node gives 1."""
    die = f"import sys; print('giving up', flush=True); sys.exit({status})" if status >= 0 else \
        f"import os; print('giving up', flush=True); os.kill(os.getpid(), {-status})"
    specs = [python_node("steady", "import time; time.sleep(60)"), python_node("fragile", die)]
    out = io.StringIO()
    assert run_graph(specs, {}, out=out, stop_timeout=5.0, install_signals=False) == expected, out.getvalue()
    text = out.getvalue()
    why = " (a configuration error)" if status == 2 else ""
    assert f"exited with status {status}{why}; stopping the graph" in text and "fragile: giving up" in text, text
    assert not any(alive(pid) for pid in pids_started(text).values())


def test_missing_executable_is_reported_before_anything_starts(ros_env):
    out = io.StringIO()
    specs = [NodeSpec("action_arbiter", "action-arbiter", "arbiter"),
             NodeSpec("franka_sim", "no-such-sim-node-xyz", "sim")]
    assert run_graph(specs, {}, out=out, install_signals=False) == 2
    text = out.getvalue()
    assert "missing executable(s): no-such-sim-node-xyz (package franka_sim, node sim)" in text
    assert "started" not in text
    assert run_graph(specs[:1], {"base": {"x": 1}}, out=out, install_signals=False) == 2
    assert "--set names node(s) not in the graph: ['base']" in out.getvalue()


def test_real_mode_is_refused_with_a_pointer_to_ros2_launch(launch_node):
    proc = launch_node([console_script("residual-launch")], ["--mode", "real"], name="residual-launch-real")
    assert proc.popen.wait(timeout=20) == 2
    assert "ros2 launch residual_bringup residual_bringup.launch.py mode:=real" in proc.output()
