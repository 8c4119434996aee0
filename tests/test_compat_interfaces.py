"""The interface packages real mode talks in (franka_msgs, control_msgs, tf2_msgs, controller_manager_msgs): built
by the set-up from our own definitions in ros2_ws/compat where the real ones are absent (ros2_ws/compat/README.md),
importable, wire-compatible with the upstream definitions, and round-tripping through rclpy's serialization with the
real field names.

Wire compatibility is checked through ROS 2 Jazzy's type hash (RIHS01: package, type, field names and types, nested
types; not comments or defaults), which DDS discovery compares. The expected hashes below were computed with Jazzy's
rosidl_generator_type_description 4.6.6 from the upstream files: franka_ros2 tag v3.4.0 franka_msgs/{msg,action,srv},
control_msgs branch jazzy control_msgs/{msg,action}/GripperCommand, geometry2 branch jazzy tf2_msgs/msg/TFMessage.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

import pytest

UPSTREAM_HASHES = {
    "franka_msgs/msg/CollisionIndicators": "RIHS01_17d02113f0e8ec3768433baafd4f27fe5eaacf95d6c21f591bf3473e541e0840",
    "franka_msgs/msg/Elbow": "RIHS01_f54141b92a05447bfa2f993ac28c289b477358a3d543ad099e1a34c10d70d9bb",
    "franka_msgs/msg/Errors": "RIHS01_eaf7a9752f64efac239306101020545cebebff8b5130875d95bf0ed4d8bb774d",
    "franka_msgs/msg/FrankaRobotState": "RIHS01_fd225b337bab54d06047858c866442b98e3a882a4717cefc6ddd783fcbf17332",
    "franka_msgs/msg/GraspEpsilon": "RIHS01_387fda91ae7324c144958fa617e7d5dc21f99d6b054b141b073ead3d082f46d3",
    "franka_msgs/msg/TargetStatus": "RIHS01_7fee694ce8c9efcf798c0c4bb32b7f861ec90f2d954eca624a48b268241d64df",
    "franka_msgs/action/ErrorRecovery": "RIHS01_6c5dbf0517672f7127a92796e6a162d096e286c26f88c96177cb4c5448dfc5f5",
    "franka_msgs/action/Grasp": "RIHS01_8e8a4bb9d96564ae56fb2d47e932c65656316f5c10365958a26df3517a06bb92",
    "franka_msgs/action/Homing": "RIHS01_2156a4bd902561e59e6081ba94428daf9a453f960596f8b7ca12e8281e0caeeb",
    "franka_msgs/action/Move": "RIHS01_ff1f93537cae0ce92792433e368199606771ad62bb819d78078bfe37144d3ef1",
    "franka_msgs/action/PTPMotion": "RIHS01_79730b8e281bb30fba9c38c0cd6d59a3ec44e5ec8ea692dd8817087fc4b12b8c",
    "franka_msgs/srv/SetCartesianStiffness": "RIHS01_2cb30af54fcef0eba44d4736f92d42256099c62ffd00fad8d113214904aa4766",
    "franka_msgs/srv/SetFullCollisionBehavior":
        "RIHS01_43a5dafbb96eb1bd70872cdd6db23d4bf81bfb7a03e563349974f37e89cded15",
    "franka_msgs/srv/SetLoad": "RIHS01_e1f4caf6d410a1deaf51380d2180e341e68c9da27d1885aa10d5da9f79551db7",
    "control_msgs/msg/GripperCommand": "RIHS01_57eb8f326c9889ca8bb34ead82cc94cc09bf6bc5c3b6c09546dca3a00b589890",
    "control_msgs/action/GripperCommand": "RIHS01_e17c0e644eccf14bea84a0a93e0977182872c2eb7873ca6694900059b46dbc84",
    "tf2_msgs/msg/TFMessage": "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087",
}
OWN_HASHES = {
    # controller_manager_msgs: written from the field lists on docs.ros.org (jazzy) and ros-controls/ros2_control; no
    # upstream file was hashed here, so these are our definitions' hashes (a change to them fails this test). On a
    # robot the real package is installed and ours is never built.
    "controller_manager_msgs/srv/SetHardwareComponentState":
        "RIHS01_940b15846ed3e1fb561ab45edf77a992b811fd59c574f45d5205a84a0deb2f65",
    "controller_manager_msgs/srv/SwitchController":
        "RIHS01_86024c2b173a21e59e6dd474331f1f6380449f806b7466bc8289c79a7baffbe7",
}
COMPAT = Path(__file__).resolve().parents[1] / "ros2_ws" / "compat"
PACKAGES = ("franka_msgs", "control_msgs", "tf2_msgs")


def share_dirs(package: str) -> list[Path]:
    """The package's share directories on AMENT_PREFIX_PATH and in this interpreter's prefix (the set-up's .venv)."""
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    return [Path(p) / "share" / package for p in prefixes if (Path(p) / "share" / package).is_dir()]


def type_class(type_name: str):
    pkg, kind, name = type_name.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


def test_every_compat_definition_is_one_of_the_checked_types():
    ours = {f"{p.parent.parent.name}/{p.parent.name}/{p.stem}" for p in COMPAT.glob("*/*/*")
            if p.suffix in (".msg", ".srv", ".action")}
    assert ours == set(UPSTREAM_HASHES) | set(OWN_HASHES)


def test_the_recovery_services_are_installed_with_our_definitions():
    dirs = share_dirs("controller_manager_msgs")
    assert dirs, "no share/controller_manager_msgs: run make setup"
    if not (dirs[0] / "RESIDUAL_COMPAT").is_file():
        pytest.skip("the real controller_manager_msgs is installed")
    for type_name, expected in OWN_HASHES.items():
        _pkg, kind, name = type_name.split("/")
        type_class(type_name)
        description = json.loads((dirs[0] / kind / f"{name}.json").read_text())
        assert description["type_hashes"][0] == {"type_name": type_name, "hash_string": expected}, type_name
    from controller_manager_msgs.srv import SetHardwareComponentState, SwitchController

    assert set(SwitchController.Request.get_fields_and_field_types()) == {
        "activate_controllers", "deactivate_controllers", "strictness", "activate_asap", "timeout"}
    assert SwitchController.Request.STRICT == 2 and "ok" in SwitchController.Response.get_fields_and_field_types()
    assert set(SetHardwareComponentState.Request.get_fields_and_field_types()) == {"name", "target_state"}
    assert set(SetHardwareComponentState.Response.get_fields_and_field_types()) == {"ok", "state"}


@pytest.mark.parametrize("package", PACKAGES)
def test_the_package_is_installed_and_its_types_hash_as_upstream(package):
    """Importable (the real package, or ours built by the set-up), and each type's installed type description carries
    the upstream definition's hash."""
    importlib.import_module(f"{package}.msg")
    dirs = share_dirs(package)
    assert dirs, f"no share/{package} on AMENT_PREFIX_PATH or in {sys.prefix}: run make setup"
    share = dirs[0]
    for type_name, expected in UPSTREAM_HASHES.items():
        pkg, kind, name = type_name.split("/")
        if pkg != package:
            continue
        type_class(type_name)  # the generated Python class imports
        description = json.loads((share / kind / f"{name}.json").read_text())
        assert description["type_hashes"][0] == {"type_name": type_name, "hash_string": expected}, type_name


def test_a_compat_build_is_marked_as_ours():
    """What the set-up built carries the RESIDUAL_COMPAT marker (that is how it knows to rebuild it); a real package
    (a full ROS install on the path) does not, and then nothing of ours was built for it."""
    for package in PACKAGES:
        marked = [d for d in share_dirs(package) if (d / "RESIDUAL_COMPAT").is_file()]
        if marked:
            assert marked[0].parent.parent == Path(sys.prefix), marked


def _round_trip(msg):
    from rclpy.serialization import deserialize_message, serialize_message

    data = serialize_message(msg)
    assert isinstance(data, bytes) and data  # (CDR alignment padding is not zeroed: compare messages, not bytes)
    back = deserialize_message(data, type(msg))
    assert back == msg
    return back


def test_franka_robot_state_round_trips_with_the_real_field_names():
    from franka_msgs.msg import FrankaRobotState

    fields = FrankaRobotState.get_fields_and_field_types()
    assert {"robot_mode": "uint8", "current_errors": "franka_msgs/Errors", "last_motion_errors": "franka_msgs/Errors",
            "o_t_ee": "geometry_msgs/PoseStamped", "f_t_ee": "geometry_msgs/PoseStamped",
            "measured_joint_state": "sensor_msgs/JointState"}.items() <= fields.items()
    msg = FrankaRobotState(robot_mode=FrankaRobotState.ROBOT_MODE_REFLEX)
    msg.header.frame_id = "base"
    msg.current_errors.joint_reflex = True
    msg.last_motion_errors.cartesian_reflex = True
    msg.o_t_ee.header.frame_id = "base"
    msg.o_t_ee.pose.position.z = 0.4
    msg.measured_joint_state.name = [f"fr3_joint{i}" for i in range(1, 8)]
    msg.measured_joint_state.position = [0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785]
    msg.collision_indicators.is_joint_contact[3] = 1.0
    back = _round_trip(msg)
    assert back.robot_mode == 4 and back.current_errors.joint_reflex and not back.current_errors.cartesian_reflex
    assert back.o_t_ee.pose.position.z == 0.4 and back.measured_joint_state.position[3] == -2.356
    assert [getattr(FrankaRobotState, f"ROBOT_MODE_{m}") for m in ("OTHER", "IDLE", "MOVE", "GUIDING", "REFLEX",
                                                                   "USER_STOPPED", "AUTOMATIC_ERROR_RECOVERY")] == list(
        range(7))


def test_gripper_and_recovery_goals_round_trip():
    from control_msgs.action import GripperCommand
    from franka_msgs.action import ErrorRecovery, Grasp, Homing, Move

    grasp = Grasp.Goal(width=0.02, speed=0.05, force=20.0)
    assert (grasp.epsilon.inner, grasp.epsilon.outer) == (0.005, 0.005)  # franka_msgs' defaults
    grasp.epsilon.outer = 0.08
    assert _round_trip(grasp).epsilon.outer == 0.08
    assert _round_trip(Grasp.Result(success=False, error="object lost")).error == "object lost"
    assert _round_trip(Grasp.Feedback(current_width=0.031)).current_width == 0.031
    assert _round_trip(Move.Goal(width=0.08, speed=0.1)).width == 0.08
    assert _round_trip(Homing.Result(success=True)).success
    assert list(ErrorRecovery.Goal.get_fields_and_field_types()) == []  # empty goal, result and feedback
    _round_trip(ErrorRecovery.Goal())
    goal = GripperCommand.Goal()
    goal.command.position, goal.command.max_effort = 0.04, 30.0  # position: half the finger width
    assert _round_trip(goal).command.max_effort == 30.0
    result = _round_trip(GripperCommand.Result(position=0.01, effort=30.0, stalled=True, reached_goal=False))
    assert result.stalled and not result.reached_goal


def test_tf_message_round_trips():
    from geometry_msgs.msg import TransformStamped
    from tf2_msgs.msg import TFMessage

    t = TransformStamped()
    t.header.frame_id, t.child_frame_id = "fr3_link0", "camera_color_optical_frame"
    t.transform.translation.x, t.transform.rotation.w = 0.5, 1.0
    back = _round_trip(TFMessage(transforms=[t]))
    assert back.transforms[0].child_frame_id == "camera_color_optical_frame"
