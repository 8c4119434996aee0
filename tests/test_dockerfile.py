"""docker/Dockerfile.ros cannot be built here (no Docker engine); this checks the properties franka's build needs
(shared/notes/franka-ros2-jazzy.md), so an edit that loses one fails: franka_ros2 at a pinned tag >= v3.4.0 with its
dependency.repos imported, no apt ros2_control next to the source-built one, only the graph's packages built, numpy
held at the system's for the apt-built ROS extensions, the real-time limits in the documented run line, and our
packages named as they are."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = (ROOT / "docker" / "Dockerfile.ros").read_text()


def test_franka_ros2_is_pinned_and_its_dependencies_imported():
    tag = re.search(r"ARG FRANKA_ROS2_TAG=v(\d+)\.(\d+)\.(\d+)", TEXT)
    assert tag and tuple(map(int, tag.groups())) >= (3, 4, 0), "franka_ros2 must be pinned to a tag >= v3.4.0"
    assert "--branch ${FRANKA_ROS2_TAG}" in TEXT
    assert "vcs import . < franka_ros2/dependency.repos" in TEXT
    assert re.search(r"ARG CRISP_CONTROLLERS_TAG=v\d+\.\d+\.\d+", TEXT)


def test_no_apt_ros2_control_next_to_franka_source_build():
    apt_lines = " ".join(line for line in TEXT.splitlines() if "ros-jazzy-" in line)
    assert "ros-jazzy-ros2-control" not in apt_lines and "ros-jazzy-ros2-controllers" not in apt_lines


def test_only_the_graphs_packages_are_built_and_they_exist():
    build = TEXT[TEXT.index("colcon build"):]
    assert "--packages-up-to" in build
    # --cmake-args takes every argument after it: it must come last
    assert build.index("--packages-up-to") < build.index("--cmake-args")
    names = build[build.index("--packages-up-to") + len("--packages-up-to"):build.index("--cmake-args")]
    ours = {p.parent.name for p in (ROOT / "ros2_ws" / "src").glob("*/package.xml")}
    wanted = set(names.replace("\\", " ").split())
    assert {"residual_bringup", "action_arbiter", "franka_bringup", "crisp_controllers"} <= wanted
    assert {n for n in wanted if not n.startswith(("franka_", "crisp_"))} <= ours


def test_numpy_is_held_at_the_systems_version():
    assert "grep -v -e '^ros-jazzy-' -e '^numpy=='" in TEXT and "-c /tmp/constraints.txt" in TEXT
    assert "--system-site-packages" in TEXT


def test_the_run_line_has_the_real_time_limits():
    for flag in ("--network host", "--cap-add SYS_NICE", "--ulimit rtprio=99", "--ulimit rttime=-1",
                 "--ulimit memlock=-1"):
        assert flag in TEXT, flag
