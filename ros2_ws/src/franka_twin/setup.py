from setuptools import find_packages, setup

package_name = "franka_twin"

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
        "franka_ros2 twin: a real-time MuJoCo node serving franka_bringup's, franka_gripper's, the tracking "
        "controller's and the RealSense node's interfaces (robot:=twin)."
    ),
    license="Apache-2.0",
    entry_points={"console_scripts": ["franka-twin-node = franka_twin.twin_node:main"]},
)
