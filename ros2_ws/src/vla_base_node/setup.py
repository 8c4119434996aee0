from setuptools import find_packages, setup

package_name = "vla_base_node"

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
        "ROS 2 node: base policy backends (sim BC policy, openpi, OpenVLA) and the chunk broker emitting one base "
        "action per control step."
    ),
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "vla-base-node = vla_base_node.node:main",
            "vla-loopback-server = vla_base_node.loopback_servers:main",
        ]
    },
)
