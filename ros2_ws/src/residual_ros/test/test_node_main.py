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


def test_fastdds_profile_is_set_unless_one_is_given():
    from residual_ros.node_main import FASTDDS_PROFILE, FASTDDS_PROFILE_ENVS, use_fastdds_profile

    env: dict[str, str] = {}
    assert use_fastdds_profile(env) == str(FASTDDS_PROFILE) and FASTDDS_PROFILE.is_file()
    assert all(env[name] == str(FASTDDS_PROFILE) for name in FASTDDS_PROFILE_ENVS)
    lab = {"FASTDDS_DEFAULT_PROFILES_FILE": "/lab/dds.xml"}
    assert use_fastdds_profile(lab) == "/lab/dds.xml" and "FASTRTPS_DEFAULT_PROFILES_FILE" not in lab


def test_fastdds_profile_is_read_by_this_fast_dds(tmp_path):
    """Fast DDS rejects a whole profile file it cannot parse, silently: so the stack's profile with its participant's
    transports removed must make participant creation fail (the file was read and parsed, and its participant
    profile is the default), while the profile itself creates nodes."""
    import os

    from residual_ros.node_main import FASTDDS_PROFILE

    text = FASTDDS_PROFILE.read_text()
    broken = tmp_path / "no_transport.xml"
    start, end = text.index("<userTransports>"), text.index("</userTransports>") + len("</userTransports>")
    broken.write_text(text[:start] + text[end:])
    code = "import rclpy\nrclpy.init()\nrclpy.create_node('profile_probe')\nprint('created')\n"

    def create(profile):
        env = dict(os.environ, FASTRTPS_DEFAULT_PROFILES_FILE=str(profile), ROS_DOMAIN_ID="231",
                   ROS_LOG_DIR=str(tmp_path))
        # (a discovery range makes rmw_fastrtps set the participant's transports itself, over the profile's)
        for name in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_STATIC_PEERS", "ROS_LOCALHOST_ONLY"):
            env.pop(name, None)
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)

    assert "created" in create(FASTDDS_PROFILE).stdout
    assert "created" not in create(broken).stdout
