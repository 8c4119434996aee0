import os
from glob import glob

from setuptools import find_packages, setup

package_name = "residual_bringup"
HERE = os.path.dirname(os.path.abspath(__file__))
# The repository's launch/ and config/ folders (this file is ros2_ws/src/residual_bringup/setup.py); setuptools wants
# data_files relative to this directory.
REPO = os.path.join(HERE, "..", "..", "..")


def repo_files(*patterns: str) -> list[str]:
    """The files matching ``patterns`` under the repository root, relative to this directory. Refuses to return
    nothing: a copy of this package without the repository's launch/ and config/ three levels up (another checkout
    depth, a Docker COPY of ros2_ws/src alone) would otherwise install no launch file, silently."""
    found = sorted(os.path.relpath(p, HERE) for pattern in patterns for p in glob(os.path.join(REPO, pattern)))
    if not found:
        raise FileNotFoundError(f"residual_bringup/setup.py: nothing matches {patterns} under {os.path.abspath(REPO)} "
                                "(launch/ and config/ must sit at the repository root, three levels above this file)")
    return found


setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        # The repository-level launch/ and config/ folders, installed into this package's share directory.
        ("share/" + package_name + "/launch", repo_files("launch/*.launch.py")),
        ("share/" + package_name + "/config", repo_files("config/*.yaml", "config/*.rviz")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="residual-vla developers",
    maintainer_email="dev@residual-vla.invalid",
    description=(
        "Graph description of the residual-VLA stack (sim and real mode), shared by the ROS 2 launch file and the "
        "residual-launch supervisor."
    ),
    license="Apache-2.0",
    entry_points={"console_scripts": ["residual-launch = residual_bringup.supervisor:main",
                                      "residual-demo = residual_bringup.demo.cli:main"]},
)
