"""The demo session's executor thread (in-process rclpy, no ROS processes): it survives an entity destroyed while it
builds a wait set, and runs entity changes on its own thread."""

from __future__ import annotations

import threading

import pytest
from rclpy.exceptions import InvalidHandle
from rclpy.qos import QoSProfile, ReliabilityPolicy
from residual_bringup.demo.session import DemoSession
from residual_interfaces.msg import EefAction

pytestmark = pytest.mark.ros


@pytest.fixture
def session(ros_env):
    s = DemoSession(node_name="session_unit")
    yield s
    s.close()


def test_executor_thread_survives_an_invalid_handle(session):
    """rclpy raises InvalidHandle from spin_once when an entity is destroyed between listing and waiting (CI saw
    the thread die and every later service reply go untaken); the session's thread must go on spinning."""
    real = session.executor.spin_once
    raised = threading.Event()

    def flaky(timeout_sec=None):
        if not raised.is_set():
            raised.set()
            raise InvalidHandle("cannot use Destroyable because destruction was requested")
        return real(timeout_sec=timeout_sec)

    session.executor.spin_once = flaky
    assert raised.wait(10.0)
    assert session.run_in_executor(lambda: 42) == 42
    assert session._thread.is_alive()


def test_entities_change_on_the_executor_thread_while_messages_flow(session):
    pub = session.node.create_publisher(EefAction, "/base/action", 10)
    got = threading.Event()
    threads = set()

    def cb(_msg):
        threads.add(threading.get_ident())
        got.set()

    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    for _ in range(20):
        got.clear()
        sub = session.run_in_executor(lambda: session.node.create_subscription(EefAction, "/base/action", cb, qos))
        for _ in range(200):  # until the new subscription matched and a message arrived
            pub.publish(EefAction())
            if got.wait(0.05):
                break
        assert got.is_set()
        where = session.run_in_executor(threading.get_ident)
        assert session.run_in_executor(lambda s=sub: session.node.destroy_subscription(s)) is True
    assert threads == {where} == {session._thread.ident}
    assert session._thread.is_alive()
