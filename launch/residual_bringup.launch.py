"""Launch the residual-VLA stack on a full ROS 2 Jazzy install (launch, launch_ros; franka_ros2 for mode:=real).

    ros2 launch residual_bringup residual_bringup.launch.py mode:=sim task:=cube_lift checkpoint:=runs/x.safetensors
    ros2 launch residual_bringup residual_bringup.launch.py mode:=real robot_ip:=172.16.0.2 \
        hand_eye:="x y z qx qy qz qw" checkpoint:=...
    ros2 launch residual_bringup residual_bringup.launch.py mode:=real robot:=twin hand_eye:="x y z qx qy qz qw"

What is started comes from residual_bringup.graph.describe_graph, the same description ``residual-launch`` (the
supervisor for machines without ``ros2 launch``) reads, so both start the same nodes with the same parameters.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from residual_bringup.graph import IncludeSpec, describe_graph

from launch import LaunchDescription

# name, default, description
ARGUMENTS = (
    ("mode", "sim", "sim (MuJoCo) or real (FR3 via franka_ros2, RealSense camera)"),
    ("task", "cube_lift", "task: cube_lift, pick_place, stack_cube, close_drawer, stand_cup_up"),
    ("checkpoint", "", "residual checkpoint (.safetensors next to its .json manifest)"),
    ("use_rviz", "false", "start rviz2 with config/residual.rviz"),
    ("use_sim_time", "auto", "follow /clock: true, false, or auto (true in sim, false on the robot)"),
    ("robot", "franka", "mode:=real: franka (FR3 via franka_ros2, RealSense, tracking controller) or twin (the "
                        "franka_ros2 twin in their place)"),
    ("robot_ip", "", "FR3 address (mode:=real robot:=franka)"),
    ("base_backend", "", "vla_base_node backend (empty: sim_bc in sim, openpi on the robot)"),
    ("base_checkpoint", "", "checkpoint of the sim BC base policy"),
    ("lockstep", "true", "sim: advance only when the command of the current step has arrived"),
    ("pose_source", "estimator", "sim: object poses from the camera pose estimator or the sim's ground truth"),
    ("hand_eye", "", "real: calibrated pose 'x y z qx qy qz qw' of camera_color_optical_frame in fr3_link0"),
)


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false", "1", "0"):
        raise ValueError(f"expected true or false, got {text!r}")
    return value in ("true", "1")


def launch_setup(context, *args, **kwargs):
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    sim_time = arg("use_sim_time").strip().lower()
    hand_eye = tuple(float(v) for v in arg("hand_eye").split()) or None
    graph = describe_graph(
        mode=arg("mode"),
        task=arg("task"),
        checkpoint=arg("checkpoint"),
        use_sim_time=None if sim_time == "auto" else _flag(sim_time),
        use_rviz=_flag(arg("use_rviz")),
        robot_ip=arg("robot_ip"),
        robot=arg("robot"),
        base_backend=arg("base_backend") or None,
        base_checkpoint=arg("base_checkpoint"),
        lockstep=_flag(arg("lockstep")),
        pose_source=arg("pose_source"),
        hand_eye=hand_eye,
        config_dir=os.path.join(get_package_share_directory("residual_bringup"), "config"),
    )
    actions = []
    for entity in graph:
        if isinstance(entity, IncludeSpec):
            path = os.path.join(get_package_share_directory(entity.package), entity.launch_file)
            actions.append(IncludeLaunchDescription(PythonLaunchDescriptionSource(path),
                                                    launch_arguments=list(entity.arguments.items())))
        else:
            actions.append(Node(
                package=entity.package,
                executable=entity.executable,
                name=entity.name,
                namespace=entity.namespace or None,
                parameters=[*entity.params_files, entity.parameters],
                remappings=list(entity.remappings),
                arguments=list(entity.arguments),
                output="screen",
            ))
    return actions


def generate_launch_description():
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, default, text in ARGUMENTS]
    return LaunchDescription([*declared, OpaqueFunction(function=launch_setup)])
