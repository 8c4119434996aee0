"""The real-mode contract with franka_ros2 v3.4 (Jazzy), the tracking controller and RealSense 4.x.

One table, :mod:`residual_ros.franka_interfaces`, names every topic, action, service, frame and QoS on the robot side.
This file checks

1. the table against the upstream facts, hard-coded below with their sources (shared/notes/franka-ros2-jazzy.md, read
   from frankarobotics/franka_ros2 tag v3.4.0, IntelRealSense/realsense-ros 4.56, utiasDSL/crisp_controllers v1.0.0,
   ros/joint_state_publisher jazzy);
2. config/franka_controllers.yaml against the table (controller name, type, law);
3. the real-mode graph description against the table (franka_bringup's arguments, the spawner, the RealSense node's
   namespace, name and TF, the hand-eye frames);
4. the real-mode graph's own nodes, built in-process from the graph description (parameters from config/real.yaml and
   the graph, remappings as the graph gives them): every topic they read that no node of ours publishes is in the
   table, with its type and a QoS that receives from the table's publisher; what they publish to the robot side has
   the table's type and a QoS the robot side's subscriber receives; the gripper bridge's action clients have the
   table's names and types; the TCP-pose readers accept the frame ``base``.

``test_the_check_reports_a_wrong_name_type_or_qos`` shows that part 4 fails on each kind of drift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from residual_bringup.graph import IncludeSpec, NodeSpec, describe_graph
from residual_bringup.supervisor import node_parameters
from residual_ros import franka_interfaces as fi

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config"
HAND_EYE = (0.55, -0.1, 0.7, 0.0, 0.9238795, -0.3826834, 0.0)

# --- 1. the upstream facts ----------------------------------------------------------------------------------------

FR = "franka_ros2 v3.4.0"
# topic: (type, publisher reliability, publisher depth (None: not stated), rate Hz (None: not stated), frame_id, source)
FACT_TOPICS = {
    "/franka_robot_state_broadcaster/current_pose": (
        "geometry_msgs/msg/PoseStamped", "best_effort", 1, 1000.0, "base",
        f"{FR} franka_robot_state_broadcaster.cpp: QoS(1).best_effort() since v3.3.0; convenience_publish_rate 1000"),
    "/franka_robot_state_broadcaster/robot_state": (
        "franka_msgs/msg/FrankaRobotState", "system_default", None, 1000.0, "base",
        f"{FR} franka_robot_state_broadcaster.cpp: '~/' + 'robot_state', SystemDefaultsQoS; at the update rate"),
    "/joint_states": (
        "sensor_msgs/msg/JointState", "reliable", 10, 30.0, None,
        f"{FR} franka.launch.py joint_state_publisher (source_list franka/joint_states, franka_gripper/joint_states; "
        "joint_state_rate 30); joint_state_publisher jazzy: create_publisher(JointState, 'joint_states', 10)"),
    "/franka/joint_states": (
        "sensor_msgs/msg/JointState", "system_default", None, None, None,
        f"{FR} franka.launch.py: joint_state_broadcaster remapped joint_states:=franka/joint_states"),
    "/franka_gripper/joint_states": (
        "sensor_msgs/msg/JointState", "reliable", 1, 15.0, None,
        f"{FR} gripper_action_server.cpp '~/joint_states' depth 1; franka_gripper_node.yaml state_publish_rate 15"),
    "/camera/camera/color/image_raw": (
        "sensor_msgs/msg/Image", "system_default", None, None, "camera_color_optical_frame",
        "realsense-ros 4.56 rs_launch.py camera_namespace 'camera', camera_name 'camera'; image QoS SYSTEM_DEFAULT"),
    "/camera/camera/color/camera_info": (
        "sensor_msgs/msg/CameraInfo", "reliable", 10, None, "camera_color_optical_frame",
        "realsense-ros 4.56: camera_info QoS DEFAULT (rmw_qos_profile_default)"),
    "/target_pose": (
        "geometry_msgs/msg/PoseStamped", "reliable", 1, None, None,
        "crisp_controllers v1.0.0 cartesian_controller.cpp: create_subscription('target_pose', rclcpp::QoS(1)), a "
        "relative name of a controller in the controller manager's (root) namespace"),
}
FACT_ACTIONS = {  # name: type (franka_gripper's gripper_action_server.cpp, franka_hardware's franka_action_server.cpp)
    "/franka_gripper/homing": "franka_msgs/action/Homing",
    "/franka_gripper/move": "franka_msgs/action/Move",
    "/franka_gripper/grasp": "franka_msgs/action/Grasp",
    "/franka_gripper/gripper_action": "control_msgs/action/GripperCommand",
    "/action_server/error_recovery": "franka_msgs/action/ErrorRecovery",
    "/action_server/ptp_motion": "franka_msgs/action/PTPMotion",
}
FACT_SERVICES = {  # franka_gripper, franka_hardware's franka_param_service_server.cpp, ros2_control
    "/franka_gripper/stop": "std_srvs/srv/Trigger",
    "/service_server/set_cartesian_stiffness": "franka_msgs/srv/SetCartesianStiffness",
    "/service_server/set_full_collision_behavior": "franka_msgs/srv/SetFullCollisionBehavior",
    "/service_server/set_load": "franka_msgs/srv/SetLoad",
    "/controller_manager/set_hardware_component_state": "controller_manager_msgs/srv/SetHardwareComponentState",
    "/controller_manager/switch_controller": "controller_manager_msgs/srv/SwitchController",
}
FACT_ROBOT_MODES = {"OTHER": 0, "IDLE": 1, "MOVE": 2, "GUIDING": 3, "REFLEX": 4, "USER_STOPPED": 5,
                    "AUTOMATIC_ERROR_RECOVERY": 6}  # franka_msgs/msg/FrankaRobotState.msg v3.4.0
# franka.launch.py v3.4.0: its declared arguments (no use_rviz) and robot_type's default '' (no description then)
FACT_FRANKA_LAUNCH_ARGS = {"robot_type", "arm_prefix", "namespace", "robot_ip", "load_gripper", "use_fake_hardware",
                           "fake_sensor_commands", "joint_state_rate", "load_franka_robot_state_broadcaster",
                           "controllers_yaml"}


def test_the_table_matches_the_upstream_facts():
    assert {t.name for t in fi.TOPICS} == set(FACT_TOPICS)
    for t in fi.TOPICS:
        type_, reliability, depth, rate, frame, source = FACT_TOPICS[t.name]
        assert (t.type, t.qos.reliability) == (type_, reliability), (t.name, source)
        if depth is not None:
            assert t.qos.depth == depth, (t.name, source)
        if rate is not None:
            assert t.rate_hz == rate, (t.name, source)
        if frame is not None:
            assert t.frame_id == frame, (t.name, source)
    assert {a.name: a.type for a in fi.ACTIONS} == FACT_ACTIONS
    assert {s.name: s.type for s in fi.SERVICES} == FACT_SERVICES
    assert fi.ROBOT_MODES == FACT_ROBOT_MODES
    assert fi.HARDWARE_COMPONENT == "FrankaHardwareInterface"
    # franka_description (fr3): base -> fr3_link0 identity ... fr3_link8 -> fr3_hand (rpy 0 0 -pi/4) -> fr3_hand_tcp
    f = fi.FRAMES
    assert (f.root, f.arm_base, f.flange, f.hand, f.tcp) == ("base", "fr3_link0", "fr3_link8", "fr3_hand",
                                                              "fr3_hand_tcp")
    assert fi.HAND_TCP_OFFSET_M == 0.1034
    assert fi.HAND_TCP_QUAT_XYZW == pytest.approx((0.0, 0.0, -math.sin(math.pi / 8), math.cos(math.pi / 8)))
    assert fi.ARM_JOINTS == tuple(f"fr3_joint{i}" for i in range(1, 8))
    assert fi.FINGER_JOINTS == ("fr3_finger_joint1", "fr3_finger_joint2")
    # realsense2_camera 4.x: camera_link -> ... -> camera_color_optical_frame
    assert (f.camera_link, f.camera_optical) == ("camera_link", "camera_color_optical_frame")
    assert set(fi.FRANKA_BRINGUP.declared) == FACT_FRANKA_LAUNCH_ARGS
    assert fi.FRANKA_BRINGUP.arguments["robot_type"] == "fr3" and "use_rviz" not in fi.FRANKA_BRINGUP.arguments
    # the stock cartesian_impedance_example_controller overwrites its target (notes): the table names another one
    assert fi.TRACKING_CONTROLLER.name != "cartesian_impedance_example_controller"
    assert fi.TRACKING_CONTROLLER.type == "crisp_controllers/CartesianController"


def test_desk_end_effector_check():
    assert fi.desk_end_effector_reason((0.0, 0.0, 0.1034), fi.HAND_TCP_QUAT_XYZW) == ""
    assert "Desk" in fi.desk_end_effector_reason((0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0))  # flange: no hand set
    assert "rotation" in fi.desk_end_effector_reason((0.0, 0.0, 0.1034), (0.0, 0.0, 0.0, 1.0))
    assert "orientation" in fi.desk_end_effector_reason((0.0, 0.0, 0.1034), (0.0, 0.0, 0.0, 0.0))


# --- 2. the controllers file -----------------------------------------------------------------------------------------


def test_controllers_file_declares_the_table_controller_with_its_law():
    doc = yaml.safe_load((CONFIG / fi.CONTROLLERS_YAML).read_text())["/**"]
    cm = doc["controller_manager"]["ros__parameters"]
    ctl = fi.TRACKING_CONTROLLER
    assert cm["update_rate"] == ctl.law["update_rate_hz"]
    assert cm[ctl.name]["type"] == ctl.type
    # franka.launch.py spawns these two itself: with our file in place of franka's they must still be declared
    assert cm["joint_state_broadcaster"]["type"] == "joint_state_broadcaster/JointStateBroadcaster"
    assert cm["franka_robot_state_broadcaster"]["type"] == "franka_robot_state_broadcaster/FrankaRobotStateBroadcaster"
    rate = doc["franka_robot_state_broadcaster"]["ros__parameters"]["convenience_publish_rate"]
    assert rate == fi.CURRENT_POSE.rate_hz
    p = doc[ctl.name]["ros__parameters"]
    assert tuple(p["joints"]) == fi.ARM_JOINTS
    assert (p["end_effector_frame"], p["base_frame"]) == (fi.FRAMES.tcp, fi.FRAMES.root)
    task, law = p["task"], ctl.law
    assert {task[f"k_pos_{a}"] for a in "xyz"} == {law["k_pos"]}
    assert {task[f"k_rot_{a}"] for a in "xyz"} == {law["k_rot"]}
    clip = task["error_clip"]
    assert {clip[a] for a in ("x", "y", "z")} == {law["error_clip_pos_m"]} and p["limit_error"] is True
    assert {clip[a] for a in ("rx", "ry", "rz")} == {law["error_clip_rot_rad"]}
    assert p["filter"]["target_pose"] == law["target_filter_alpha"]
    assert p["nullspace"]["stiffness"] == law["nullspace_stiffness"]
    assert p["max_delta_tau"] == law["max_delta_tau_nm"] and p["use_gravity_compensation"] is False


# --- 3. the graph description ---------------------------------------------------------------------------------


def real_graph(robot: str) -> list:
    kwargs = {"robot_ip": "172.16.0.2"} if robot == "franka" else {}
    return describe_graph("real", "cube_lift", hand_eye=HAND_EYE, robot=robot, use_rviz=True, config_dir=CONFIG,
                          **kwargs)


def test_the_real_graph_launches_the_robot_side_from_the_table():
    graph = real_graph("franka")
    (include,) = [e for e in graph if isinstance(e, IncludeSpec)]
    assert (include.package, include.launch_file) == (fi.FRANKA_BRINGUP.package, fi.FRANKA_BRINGUP.launch_file)
    assert set(include.arguments) <= FACT_FRANKA_LAUNCH_ARGS  # ros2 launch ignores an undeclared argument silently
    assert include.arguments["robot_type"] == "fr3" and include.arguments["load_gripper"] == "true"
    assert Path(include.arguments["controllers_yaml"]) == CONFIG / fi.CONTROLLERS_YAML
    nodes = {e.name: e for e in graph if isinstance(e, NodeSpec)}
    spawner = nodes[fi.CONTROLLER_SPAWNER.name]
    assert (spawner.package, spawner.executable, spawner.arguments[0]) == ("controller_manager", "spawner",
                                                                           fi.TRACKING_CONTROLLER.name)
    cam = nodes["camera"]
    assert (cam.package, cam.executable) == ("realsense2_camera", "realsense2_camera_node")
    # realsense2_camera publishes ~/color/image_raw and ~/color/camera_info
    assert f"/{cam.namespace}/{cam.name}/color/image_raw" == fi.COLOR_IMAGE.name
    assert f"/{cam.namespace}/{cam.name}/color/camera_info" == fi.COLOR_INFO.name
    # one parent for the optical frame: the driver's TF off, the hand-eye transform from the robot base
    assert cam.parameters["publish_tf"] is False
    args = nodes["hand_eye_tf"].arguments
    assert args[args.index("--frame-id") + 1] == fi.FRAMES.arm_base
    assert args[args.index("--child-frame-id") + 1] == fi.FRAMES.camera_optical
    estimator = nodes["pose_estimator"].parameters
    assert (tuple(estimator["camera_pos"]), tuple(estimator["camera_quat_xyzw"])) == (HAND_EYE[:3], HAND_EYE[3:])
    twin = {e.name: e for e in real_graph("twin")}
    assert (twin[fi.TWIN.name].package, twin[fi.TWIN.name].executable) == (fi.TWIN.package, fi.TWIN.executable)


# --- 4. the graph's own nodes against the table ---------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """One publisher, subscription or action client of a node, as the check reads it."""

    node: str
    topic: str
    type: str
    reliability: str = ""
    durability: str = ""


def type_name(cls) -> str:
    """``pkg/msg/Type`` (or ``pkg/action/Type``) of a generated rclpy message / action class."""
    pkg, kind = cls.__module__.split(".")[:2]
    return f"{pkg}/{kind}/{cls.__name__}"


def contract_problems(subs: list[Endpoint], pubs: list[Endpoint], action_clients: list[Endpoint]) -> list[str]:
    """Every difference between the graph's endpoints and the table, as readable lines."""
    problems = []
    ours = {p.topic for p in pubs}
    robot_side = {t.name: t for t in fi.TOPICS}
    for s in subs:
        if s.topic in ours:
            continue
        spec = robot_side.get(s.topic)
        if spec is None or spec.direction != "to_graph":
            problems.append(f"{s.node} reads {s.topic}, which nothing of ours publishes and the robot side does not "
                            "(not in residual_ros.franka_interfaces)")
            continue
        if s.type != spec.type:
            problems.append(f"{s.node} reads {s.topic} as {s.type}, the robot side publishes {spec.type}")
        why = fi.reader_incompatibility(spec.qos, s.reliability, s.durability)
        if why:
            problems.append(f"{s.node} reads {s.topic} {s.reliability}/{s.durability}: {why}")
    for p in pubs:
        spec = robot_side.get(p.topic)
        if spec is None:
            continue
        if spec.direction != "from_graph":
            problems.append(f"{p.node} publishes {p.topic}, which the robot side publishes")
            continue
        if p.type != spec.type:
            problems.append(f"{p.node} publishes {p.topic} as {p.type}, the robot side reads {spec.type}")
        writer = fi.QosSpec(p.reliability, 1, p.durability)
        why = fi.reader_incompatibility(writer, spec.qos.writer_reliability(), spec.qos.durability)
        if why:
            problems.append(f"{p.node} publishes {p.topic} {p.reliability}: the robot side's reader: {why}")
    actions = {a.name: a.type for a in fi.ACTIONS}
    for a in action_clients:
        if actions.get(a.topic) != a.type:
            problems.append(f"{a.node} calls action {a.topic} ({a.type}); the table has "
                            f"{a.topic}: {actions.get(a.topic)}")
    return problems


def _policy(enum_value) -> str:
    return enum_value.name.lower()


def build_real_graph_nodes(robot: str, context):
    """The real-mode graph's nodes of ours, in-process (not spun), with the graph's parameters and remappings."""
    from action_arbiter.gripper_bridge import GripperBridgeNode
    from action_arbiter.node import ArbiterNode
    from pose_estimator_node.node import PoseEstimatorNode
    from rclpy.parameter import Parameter
    from residual_policy_node.node import ResidualPolicyNode
    from vla_base_node.node import VlaBaseNode

    classes = {"pose_estimator": PoseEstimatorNode, "base": VlaBaseNode, "residual": ResidualPolicyNode,
               "arbiter": ArbiterNode, "gripper_bridge": GripperBridgeNode}
    specs = {e.name: e for e in real_graph(robot) if isinstance(e, NodeSpec) and e.name in classes}
    assert set(specs) == set(classes), "the real graph's nodes of ours changed: update this test"
    nodes = []
    for name, spec in specs.items():
        params = {k: v for k, v in node_parameters(spec).items() if k != "use_sim_time"}
        remaps = [arg for src, dst in spec.remappings for arg in ("-r", f"{src}:={dst}")]
        overrides = [Parameter(k, value=v) for k, v in params.items()]
        overrides.append(Parameter("use_sim_time", value=spec.parameters["use_sim_time"]))
        nodes.append(classes[name](context=context, parameter_overrides=overrides,
                                   cli_args=["--ros-args", *remaps] if remaps else None))
    return nodes


def endpoints(nodes) -> tuple[list[Endpoint], list[Endpoint], list[Endpoint]]:
    from rclpy.action import ActionClient

    subs, pubs, clients = [], [], []
    for node in nodes:
        name = node.get_name()
        for s in node.subscriptions:
            subs.append(Endpoint(name, s.topic_name, type_name(s.msg_type), _policy(s.qos_profile.reliability),
                                 _policy(s.qos_profile.durability)))
        for p in node.publishers:
            pubs.append(Endpoint(name, p.topic_name, type_name(p.msg_type), _policy(p.qos_profile.reliability),
                                 _policy(p.qos_profile.durability)))
        for w in node.waitables:
            if isinstance(w, ActionClient):  # (rclpy keeps the name and type only privately)
                clients.append(Endpoint(name, w._action_name, type_name(w._action_type)))
    return subs, pubs, clients


@pytest.mark.ros
@pytest.mark.parametrize("robot", ["franka", "twin"])
def test_the_real_graph_meets_the_robot_side_as_the_table_says(robot, ros_env):
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    nodes = []
    try:
        nodes = build_real_graph_nodes(robot, context)
        subs, pubs, clients = endpoints(nodes)
        assert contract_problems(subs, pubs, clients) == []
        external = {s.topic for s in subs} - {p.topic for p in pubs}
        assert external == {fi.CURRENT_POSE.name, fi.JOINT_STATES.name, fi.COLOR_IMAGE.name, fi.COLOR_INFO.name,
                            fi.ROBOT_STATE.name, fi.GRIPPER_JOINT_STATES.name}  # + the bridge's max width
        # the arbiter arms on franka's robot state (robot_mode, errors, F_T_EE)
        assert {s.node for s in subs if s.topic == fi.ROBOT_STATE.name} == {"arbiter"}
        readers = {s.node for s in subs if s.topic == fi.CURRENT_POSE.name}
        assert readers == {"base", "residual", "arbiter"}
        # the arbiter feeds the tracking controller; the gripper bridge calls franka_gripper's homing, grasp and move
        assert Endpoint("arbiter", fi.TRACKING_CONTROLLER.target.name, "geometry_msgs/msg/PoseStamped", "reliable",
                        "volatile") in pubs
        assert {c.topic for c in clients} == {fi.GRIPPER_HOMING.name, fi.GRIPPER_GRASP.name, fi.GRIPPER_MOVE.name}
        # current_pose is stamped "base": every reader accepts it as its fr3_link0
        by_name = {n.get_name(): n for n in nodes}
        assert fi.CURRENT_POSE.frame_id in by_name["arbiter"]._frames
        for name in ("base", "residual"):
            assert fi.CURRENT_POSE.frame_id in by_name[name].pose_frames, name
    finally:
        for node in nodes:
            node.destroy_node()
        rclpy.shutdown(context=context)


def test_the_check_reports_a_wrong_name_type_or_qos():
    good_subs = [Endpoint("arbiter", fi.CURRENT_POSE.name, "geometry_msgs/msg/PoseStamped", "best_effort", "volatile"),
                 Endpoint("base", fi.COLOR_IMAGE.name, "sensor_msgs/msg/Image", "best_effort", "volatile")]
    good_pubs = [Endpoint("arbiter", "/target_pose", "geometry_msgs/msg/PoseStamped", "reliable", "volatile")]
    good_clients = [Endpoint("gripper_bridge", "/franka_gripper/grasp", "franka_msgs/action/Grasp")]
    assert contract_problems(good_subs, good_pubs, good_clients) == []
    cases = [
        # a reliable reader of the best-effort current_pose receives nothing
        ([Endpoint("arbiter", fi.CURRENT_POSE.name, "geometry_msgs/msg/PoseStamped", "reliable", "volatile")],
         good_pubs, good_clients, "a reliable reader gets nothing from a best_effort writer"),
        # the RealSense 3.x name (/camera/color/image_raw) is not what 4.x publishes
        ([Endpoint("base", "/camera/color/image_raw", "sensor_msgs/msg/Image", "best_effort", "volatile")],
         good_pubs, good_clients, "not in residual_ros.franka_interfaces"),
        ([Endpoint("base", fi.COLOR_IMAGE.name, "sensor_msgs/msg/CompressedImage", "best_effort", "volatile")],
         good_pubs, good_clients, "the robot side publishes sensor_msgs/msg/Image"),
        (good_subs, [Endpoint("arbiter", "/target_pose", "geometry_msgs/msg/PoseStamped", "best_effort", "volatile")],
         good_clients, "the robot side's reader"),
        (good_subs, good_pubs, [Endpoint("gripper_bridge", "/franka_gripper/grasp", "control_msgs/action/Grasp")],
         "calls action /franka_gripper/grasp"),
        (good_subs, good_pubs, [Endpoint("gripper_bridge", "/gripper/grasp", "franka_msgs/action/Grasp")],
         "the table has /gripper/grasp: None"),
    ]
    for subs, pubs, clients, expected in cases:
        problems = contract_problems(subs, pubs, clients)
        assert len(problems) == 1 and expected in problems[0], (expected, problems)
