"""Repair the exported CMake files of the ROS 2 Jazzy PyPI wheels so colcon/CMake can build against them.

The message wheels (ros-jazzy-*-msgs, rosidl_*) were built in a manylinux container whose Python lived at
/opt/python/cp311-cp311. Their exported CMake files (``*Export*.cmake``, ``*Config*.cmake`` under
``$VIRTUAL_ENV/share``) still name that container's Python include directory and its NumPy include
directory, which do not exist here, so ``rosidl_generate_interfaces`` fails at configure time. This script
rewrites those paths to this interpreter's include directory and NumPy's. It is idempotent: run it again
after installing more message wheels.

Usage: python setup/fix_ros_wheel_cmake.py [--prefix PREFIX] [--dry-run]
"""

from __future__ import annotations

import argparse
import re
import sys
import sysconfig
from pathlib import Path

# Anything under the wheels' build-container Python, e.g.
#   /opt/python/cp311-cp311/include/python3.11
#   /opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include
_CONTAINER_PY = re.compile(r"/opt/python/cp3\d+-cp3\d+[^\s;\"')]*")


def replacement_for(path: str, py_include: str, np_include: str) -> str | None:
    """Return what a build-container path should become here, or None to leave it alone."""
    if "numpy" in path:
        return np_include
    if re.search(r"/include/python3\.\d+$", path):
        return py_include
    return None


def fix_file(file: Path, py_include: str, np_include: str, dry_run: bool) -> int:
    text = file.read_text()
    count = 0

    def sub(m: re.Match[str]) -> str:
        nonlocal count
        new = replacement_for(m.group(0), py_include, np_include)
        if new is None:
            return m.group(0)
        count += 1
        return new

    new_text = _CONTAINER_PY.sub(sub, text)
    if count and not dry_run:
        file.write_text(new_text)
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", default=sys.prefix, help="install prefix holding share/ (default: this venv)")
    parser.add_argument("--dry-run", action="store_true", help="only report what would change")
    args = parser.parse_args(argv)

    import numpy

    py_include = sysconfig.get_paths()["include"]
    np_include = numpy.get_include()
    share = Path(args.prefix) / "share"
    if not share.is_dir():
        print(f"fix_ros_wheel_cmake: {share} does not exist: are the ROS 2 wheels installed?", file=sys.stderr)
        return 2
    total = files = 0
    for file in sorted(share.rglob("*.cmake")):
        n = fix_file(file, py_include, np_include, args.dry_run)
        if n:
            files += 1
            total += n
    verb = "would rewrite" if args.dry_run else "rewrote"
    print(f"fix_ros_wheel_cmake: {verb} {total} path(s) in {files} file(s) under {share} "
          f"(python include -> {py_include}, numpy include -> {np_include})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
