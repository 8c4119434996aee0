from setuptools import find_packages, setup

package_name = "trainer"

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
        "Offline training and evaluation: base-policy behaviour cloning, residual RL, evaluation, "
        "PLD collect/distill, CLIs."
    ),
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "base-train = trainer.base_train:main",
            "residual-train = trainer.residual_train:main",
            "residual-dagger = trainer.residual_dagger:main",
            "residual-sweep = trainer.sweep:main",
            "residual-eval = trainer.evaluate:main",
            "residual-compare = trainer.compare:main",
            "residual-perception = trainer.perception_cli:main",
            "pld-collect = trainer.pld_collect:main",
            "pld-distill = trainer.pld_distill:main",
        ]
    },
)
