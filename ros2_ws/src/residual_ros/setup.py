from setuptools import find_packages, setup

package_name = "residual_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    package_data={package_name: ["fastdds_profile.xml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="residual-vla developers",
    maintainer_email="dev@residual-vla.invalid",
    description="rclpy helpers shared by the stack's nodes: node runner, typed-config ROS parameters, Image to numpy.",
    license="Apache-2.0",
    entry_points={"console_scripts": []},
)
