"""run_node's executor choice and thread limits (the node processes themselves are exercised in tests/)."""

import subprocess
import sys

import pytest
from residual_ros.node_main import EXECUTOR_ENV, make_executor


def test_executor_choice_and_override(monkeypatch):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    rclpy.init()
    try:
        monkeypatch.delenv(EXECUTOR_ENV, raising=False)
        assert isinstance(make_executor("single"), SingleThreadedExecutor)
        assert not isinstance(make_executor("events"), SingleThreadedExecutor)
        monkeypatch.setenv(EXECUTOR_ENV, "single")
        assert isinstance(make_executor("events"), SingleThreadedExecutor)
        monkeypatch.setenv(EXECUTOR_ENV, "multi")
        with pytest.raises(ValueError, match="events, single"):
            make_executor("events")
    finally:
        rclpy.try_shutdown()


def test_limit_compute_threads_sets_torch_and_blas():
    code = ("import numpy, torch\nfrom threadpoolctl import threadpool_info\n"
            "from residual_core.runtime import limit_compute_threads\n"
            "print(limit_compute_threads(1), torch.get_num_threads(), "
            "{p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas'})")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["{'threadpoolctl':", "1,", "'torch':", "1}", "1", "{1}"]
