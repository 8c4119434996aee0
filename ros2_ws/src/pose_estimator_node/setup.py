from setuptools import find_packages, setup

package_name = "pose_estimator_node"

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
        "ROS 2 node: object poses from camera images with fiducial markers, or a ground-truth "
        "pass-through in sim."
    ),
    license="Apache-2.0",
    entry_points={"console_scripts": [
        "pose-estimator-node = pose_estimator_node.node:main",
        "residual-handeye = pose_estimator_node.handeye_cli:main",
    ]},
)
