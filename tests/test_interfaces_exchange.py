"""Our messages and service cross a process boundary intact (every field, arrays, nested poses, string[])."""

from __future__ import annotations

from pathlib import Path

import pytest
from interface_peer import reset_response, samples
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from residual_interfaces.srv import ResetEpisode
from rostest_utils import msg_to_dict

pytestmark = pytest.mark.ros

PEER = str(Path(__file__).with_name("interface_peer.py"))
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


@pytest.fixture
def peer(launch_node):
    return launch_node(PEER, name="interface_peer")


def test_samples_are_fully_populated():
    # Guard against a sample that leaves a field at its default: then "arrived intact" would prove little.
    for name, msg in samples().items():
        for field, value in msg_to_dict(msg).items():
            assert value not in (0, 0.0, "", [], None), f"{name}.{field} is left at its default"


def test_messages_from_other_process_arrive_intact(peer, ros_probe):
    expected = samples()
    for name, msg in expected.items():
        ros_probe.collect(type(msg), f"/exchange/{name}", LATCHED)
    for name, msg in expected.items():
        got = ros_probe.wait_for_message(type(msg), f"/exchange/{name}", timeout=15.0)
        assert msg_to_dict(got) == msg_to_dict(msg), name
        assert got == msg, name


def test_messages_to_other_process_come_back_intact(peer, ros_probe):
    expected = samples()
    publishers = {}
    for name, msg in expected.items():
        ros_probe.collect(type(msg), f"/exchange/echo/{name}", LATCHED)
        publishers[name] = ros_probe.node.create_publisher(type(msg), f"/exchange/in/{name}", 10)
    for name, msg in expected.items():
        ros_probe.wait_for_subscribers(publishers[name], timeout=15.0)
        publishers[name].publish(msg)
        got = ros_probe.wait_for_message(type(msg), f"/exchange/echo/{name}", timeout=10.0)
        assert msg_to_dict(got) == msg_to_dict(msg), name


@pytest.mark.parametrize(("task", "seed"), [("stack_cube", -1), ("cube_lift", 2**62), ("no_such_task", 0)])
def test_reset_episode_service(peer, ros_probe, task, seed):
    client = ros_probe.node.create_client(ResetEpisode, "/exchange/reset")
    request = ResetEpisode.Request(task=task, seed=seed)
    response = ros_probe.call(client, request, timeout=15.0)
    assert msg_to_dict(response) == msg_to_dict(reset_response(request))
    assert response.success == (task != "no_such_task")
    assert response.message == f"task={task} seed={seed}"
