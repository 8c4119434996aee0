"""Shared fixtures for cross-package tests, in particular tests that start ROS 2 processes.

A test that starts ROS processes is marked ``@pytest.mark.ros`` and uses ``ros_env`` (the isolated
environment) and ``launch_node`` (starts subprocesses and stops them all by PID at teardown).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # make rostest_utils importable from any rootdir

import rostest_utils  # noqa: E402


@pytest.fixture(scope="session")
def ros_domain_id() -> int:
    """This test process's own ROS_DOMAIN_ID (1-232), reserved for the whole session."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    seed = os.getpid() * 7 + sum(map(ord, worker))
    return rostest_utils.allocate_domain_id(seed)


@pytest.fixture(scope="session")
def ros_log_dir(tmp_path_factory) -> Path:
    """ROS_LOG_DIR for every ROS process of this session (also holds the subprocess output logs)."""
    return tmp_path_factory.mktemp("ros_log")


@pytest.fixture(scope="session")
def ros_env(ros_domain_id: int, ros_log_dir: Path) -> dict[str, str]:
    """Isolated ROS environment; also applied to this process so in-process rclpy nodes join the same domain."""
    env = rostest_utils.ros_test_env(ros_domain_id, ros_log_dir)
    saved = {k: os.environ.get(k) for k in ("ROS_DOMAIN_ID", "ROS_LOG_DIR", "ROS_AUTOMATIC_DISCOVERY_RANGE")}
    os.environ.pop("ROS_LOCALHOST_ONLY", None)
    for key in saved:
        os.environ[key] = env[key]
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def ros_probe(ros_env):
    """An in-process test node (own rclpy context) in the isolated domain."""
    probe = rostest_utils.RosProbe(name=f"probe_{os.getpid()}")
    yield probe
    probe.close()


@pytest.fixture
def launch_node(ros_env, ros_log_dir):
    """``launch_node(cmd_or_module, args=(), name=None) -> NodeProcess``; all are stopped by PID at teardown.

    ``cmd_or_module`` is a module name (``vla_base_node.node``), a script path (``*.py``) or a full command
    list. Teardown fails the test if a process could not be stopped.
    """
    started: list[rostest_utils.NodeProcess] = []

    def _launch(cmd_or_module, args=(), name=None, env=None):
        run_env = ros_env if env is None else env
        if isinstance(cmd_or_module, (list, tuple)):
            proc = rostest_utils.start_node_process([*cmd_or_module, *args], run_env, ros_log_dir, name)
        else:
            proc = rostest_utils.start_python_node(cmd_or_module, list(args), run_env, ros_log_dir, name)
        started.append(proc)
        return proc

    yield _launch
    leftovers = []
    for proc in reversed(started):
        proc.stop()
        if proc.running():
            leftovers.append(proc.pid)
    assert not leftovers, f"processes still running after stop: {leftovers}"
