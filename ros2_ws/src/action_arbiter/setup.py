from setuptools import find_packages, setup

package_name = "action_arbiter"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="residual-vla developers",
    maintainer_email="dev@residual-vla.invalid",
    description=(
        "ROS 2 node: base + residual -> safety envelope -> controller command, correction records, "
        "rviz2 markers."
    ),
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "action-arbiter = action_arbiter.node:main",
            "franka-gripper-bridge = action_arbiter.gripper_bridge:main",
            "residual-lab = action_arbiter.lab_cli:main",
        ]
    },
)
