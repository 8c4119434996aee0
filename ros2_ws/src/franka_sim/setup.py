from setuptools import find_packages, setup

package_name = "franka_sim"

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
        "MuJoCo Franka simulator: robot model, Cartesian controller, five task scenes, gymnasium "
        "environments, scripted experts, offscreen camera; plus the sim ROS node."
    ),
    license="Apache-2.0",
    entry_points={"console_scripts": ["franka-sim-node = franka_sim.sim_node:main"]},
)
