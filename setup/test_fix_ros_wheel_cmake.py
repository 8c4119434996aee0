"""Tests of the CMake include-path repair for the ROS 2 PyPI wheels (setup/fix_ros_wheel_cmake.py)."""

import importlib.util
import sysconfig
from pathlib import Path

import numpy

_here = Path(__file__).with_name("fix_ros_wheel_cmake.py")
_spec = importlib.util.spec_from_file_location("fix_ros_wheel_cmake", _here)
fix = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fix)

BROKEN = (
    'set_target_properties(std_msgs::std_msgs__rosidl_generator_py PROPERTIES\n'
    '  INTERFACE_INCLUDE_DIRECTORIES "/opt/python/cp311-cp311/include/python3.11;'
    '/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include;${_IMPORT_PREFIX}/include"\n)\n'
)


def test_rewrites_container_paths_and_is_idempotent(tmp_path):
    f = tmp_path / "share" / "std_msgs" / "cmake" / "export_std_msgs__rosidl_generator_pyExport.cmake"
    f.parent.mkdir(parents=True)
    f.write_text(BROKEN)
    assert fix.main(["--prefix", str(tmp_path)]) == 0
    text = f.read_text()
    assert "/opt/python" not in text
    assert sysconfig.get_paths()["include"] in text
    assert numpy.get_include() in text
    assert "${_IMPORT_PREFIX}/include" in text  # other entries untouched
    assert fix.main(["--prefix", str(tmp_path)]) == 0
    assert f.read_text() == text


def test_dry_run_changes_nothing(tmp_path):
    f = tmp_path / "share" / "x" / "xExport.cmake"
    f.parent.mkdir(parents=True)
    f.write_text(BROKEN)
    assert fix.main(["--prefix", str(tmp_path), "--dry-run"]) == 0
    assert f.read_text() == BROKEN


def test_missing_share_is_a_clear_error(tmp_path, capsys):
    assert fix.main(["--prefix", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_venv_is_usable_without_sourcing():
    """The set-up's promise: rclpy, our messages and the core import in .venv with nothing sourced."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", "import rclpy, residual_interfaces.msg, residual_core; print('ok')"],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
