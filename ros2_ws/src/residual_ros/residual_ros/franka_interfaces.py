"""The robot side of real mode as the graph meets it: franka_ros2 (branch ``jazzy``, v3.4.0), the tracking controller
we run on it, and realsense2_camera (4.x). One table of names, message types, QoS, rates and frames.

Who reads it:

* ``residual_bringup.graph`` (the real-mode graph): franka_bringup's launch arguments, the controller to spawn and its
  target topic (the arbiter's ``controller_pose_topic``), the remappings of ``/tcp_pose`` and the camera topics, the
  gripper bridge's action names, the RealSense node's namespace and TF setting, the hand-eye frames;
* the gripper bridge's defaults (``action_arbiter.gripper_bridge``) and the pose-frame check of every node
  (:data:`residual_ros.validate.ROBOT_ROOT_FRAME`);
* the franka_ros2 twin (``robot:=twin``; a later package) publishes and serves exactly these;
* ``tests/test_franka_contract.py`` checks this table against the upstream facts (hard-coded there with their
  sources) and the real graph's subscriptions, publications and action clients against this table.

Pure data (no rclpy at import time); :meth:`QosSpec.profile` builds the rclpy QoSProfile. Facts and sources:
shared/notes/franka-ros2-jazzy.md; each entry's ``source`` names the upstream file.

The tracking controller is crisp_controllers' ``CartesianController`` (utiasDSL/crisp_controllers, tag v1.0.0), not
franka's ``cartesian_impedance_example_controller``, which overwrites its target every 1 ms with a scripted arc and so
never follows the arbiter. Why crisp, and what it does: docs/REAL_MODE.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

Reliability = Literal["reliable", "best_effort", "system_default"]
Durability = Literal["volatile", "transient_local", "system_default"]


@dataclass(frozen=True)
class QosSpec:
    """A QoS profile as the upstream node creates it (KEEP_LAST history)."""

    reliability: Reliability
    """"system_default" is what rclcpp's SystemDefaultsQoS / rmw_qos_profile_system_default leave to the middleware:
    with Fast DDS (Jazzy's default RMW) a writer is then RELIABLE (see :meth:`writer_reliability`)."""
    depth: int
    """KEEP_LAST depth (0 for the system default)."""
    durability: Durability = "volatile"
    """Durability; "system_default" resolves to volatile with Fast DDS."""

    def writer_reliability(self) -> str:
        """The reliability a Fast DDS writer of this profile offers ("reliable" or "best_effort")."""
        return "reliable" if self.reliability == "system_default" else self.reliability

    def profile(self) -> Any:
        """The rclpy QoSProfile (imports rclpy)."""
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

        reliability = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT,
                       "system_default": ReliabilityPolicy.SYSTEM_DEFAULT}[self.reliability]
        durability = {"volatile": DurabilityPolicy.VOLATILE, "transient_local": DurabilityPolicy.TRANSIENT_LOCAL,
                      "system_default": DurabilityPolicy.SYSTEM_DEFAULT}[self.durability]
        history = HistoryPolicy.SYSTEM_DEFAULT if self.depth == 0 else HistoryPolicy.KEEP_LAST
        return QoSProfile(history=history, depth=self.depth, reliability=reliability, durability=durability)


def reader_incompatibility(writer: QosSpec, reader_reliability: str, reader_durability: str = "volatile") -> str:
    """"" when a reader with these policies receives from ``writer``, else why not (DDS request/offered rules: a
    reliable reader gets nothing from a best-effort writer; a transient-local reader nothing from a volatile one)."""
    if reader_reliability == "reliable" and writer.writer_reliability() != "reliable":
        return f"a reliable reader gets nothing from a {writer.writer_reliability()} writer"
    if reader_durability == "transient_local" and writer.durability != "transient_local":
        return "a transient-local reader gets nothing from a volatile writer"
    return ""


SYSTEM_DEFAULTS = QosSpec("system_default", 0, "system_default")
"""rclcpp::SystemDefaultsQoS() / rmw_qos_profile_system_default."""
RMW_DEFAULT = QosSpec("reliable", 10)
"""rmw_qos_profile_default: reliable, keep last 10, volatile (also rclpy's / rclcpp's plain depth-10 profile)."""


@dataclass(frozen=True)
class TopicSpec:
    """A topic between the graph and the robot side."""

    name: str
    """Fully qualified topic name as the upstream node creates it (no namespace: franka's default)."""
    type: str
    """Message type, ``pkg/msg/Type``."""
    qos: QosSpec
    """The upstream side's QoS: the publisher's for ``direction`` "to_graph", the subscriber's for "from_graph"."""
    direction: Literal["to_graph", "from_graph"]
    """to_graph: the robot side publishes, the graph reads; from_graph: the graph publishes, the robot side reads."""
    upstream: str
    """The upstream node (or controller) on the robot side."""
    source: str
    """Where the fact comes from (upstream repository, tag, file)."""
    rate_hz: float | None = None
    """Publish rate of the upstream publisher (None: event-driven or not ours to know)."""
    frame_id: str | None = None
    """header.frame_id of the messages (None: no header or not fixed)."""


@dataclass(frozen=True)
class ActionServerSpec:
    """An action served on the robot side."""

    name: str
    type: str
    """Action type, ``pkg/action/Type``."""
    server: str
    source: str


@dataclass(frozen=True)
class ServiceSpec:
    """A service served on the robot side."""

    name: str
    type: str
    """Service type, ``pkg/srv/Type``."""
    server: str
    source: str


@dataclass(frozen=True)
class FrameNames:
    """TF frames (franka_description with arm_id fr3; realsense2_camera with camera_name "camera")."""

    root: str = "base"
    """URDF root; ``base`` -> ``fr3_link0`` is the identity. current_pose is stamped in it."""
    arm_base: str = "fr3_link0"
    """The robot base frame the graph works in (DESIGN.md)."""
    flange: str = "fr3_link8"
    hand: str = "fr3_hand"
    """Franka Hand: fr3_link8 -> fr3_hand is rpy (0, 0, -pi/4)."""
    tcp: str = "fr3_hand_tcp"
    """fr3_hand -> fr3_hand_tcp is z 0.1034 m. O_T_EE (current_pose) is this frame only when Desk's end effector is
    the Franka Hand."""
    camera_link: str = "camera_link"
    """RealSense body frame (its TF root when ``publish_tf`` is on)."""
    camera_optical: str = "camera_color_optical_frame"
    """The colour image's frame_id (z forward, x right, y down): what the hand-eye calibration locates."""


FRAMES = FrameNames()
HAND_TCP_OFFSET_M = 0.1034
"""fr3_hand -> fr3_hand_tcp along z (franka_description)."""
ARM_JOINTS = tuple(f"fr3_joint{i}" for i in range(1, 8))
START_JOINTS = (0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785)
"""The start configuration (rad) the sim's episodes begin near (franka_sim.robot.HOME_Q: TCP pointing down ~0.3 m in
front of the base): where ``residual-lab home`` moves the arm before an episode."""
FINGER_JOINTS = ("fr3_finger_joint1", "fr3_finger_joint2")
"""Each finger joint is half the opening width."""

HAND_TCP_QUAT_XYZW = (0.0, 0.0, -0.38268343236508984, 0.9238795325112867)
"""fr3_link8 (flange) -> fr3_hand_tcp rotation: -pi/4 about z (x y z w)."""


def desk_end_effector_reason(f_t_ee_pos, f_t_ee_quat_xyzw, tol_m: float = 1e-3, tol_rad: float = 1e-2) -> str:
    """"" when the robot's F_T_EE (FrankaRobotState.f_t_ee: flange -> the frame O_T_EE and current_pose report) is
    the Franka Hand's TCP, i.e. Desk's end effector is set to the Franka Hand and current_pose is fr3_hand_tcp, the
    frame the policies were trained in; else why not."""
    dpos = max(abs(float(a) - b) for a, b in zip(f_t_ee_pos, (0.0, 0.0, HAND_TCP_OFFSET_M), strict=True))
    q = [float(v) for v in f_t_ee_quat_xyzw]
    norm = sum(v * v for v in q) ** 0.5
    if not norm > 0.0:
        return f"F_T_EE has no valid orientation ({q})"
    dot = min(1.0, abs(sum(a * b for a, b in zip(q, HAND_TCP_QUAT_XYZW, strict=True))) / norm)
    angle = 2.0 * math.acos(dot)
    if dpos > tol_m or angle > tol_rad:
        return (f"F_T_EE is not the Franka Hand TCP (position off by {dpos * 1000:.1f} mm, rotation by "
                f"{math.degrees(angle):.1f} deg): set Desk's end effector to the Franka Hand, or current_pose is not "
                f"{FRAMES.tcp}")
    return ""


ROBOT_MODES = {"OTHER": 0, "IDLE": 1, "MOVE": 2, "GUIDING": 3, "REFLEX": 4, "USER_STOPPED": 5,
               "AUTOMATIC_ERROR_RECOVERY": 6}
"""franka_msgs/msg/FrankaRobotState.robot_mode values (ROBOT_MODE_<name>)."""

_FR = "frankarobotics/franka_ros2 v3.4.0"

# --- topics ------------------------------------------------------------------------------------------------------
CURRENT_POSE = TopicSpec(
    "/franka_robot_state_broadcaster/current_pose", "geometry_msgs/msg/PoseStamped", QosSpec("best_effort", 1),
    "to_graph", "franka_robot_state_broadcaster",
    f"{_FR} franka_robot_state_broadcaster/src/franka_robot_state_broadcaster.cpp (QoS(1).best_effort())",
    rate_hz=1000.0, frame_id=FRAMES.root)
"""Measured O_T_EE: the TCP pose every node reads as ``/tcp_pose`` (remapped in real mode)."""
ROBOT_STATE = TopicSpec(
    "/franka_robot_state_broadcaster/robot_state", "franka_msgs/msg/FrankaRobotState", SYSTEM_DEFAULTS,
    "to_graph", "franka_robot_state_broadcaster",
    f"{_FR} franka_robot_state_broadcaster/src/franka_robot_state_broadcaster.cpp (SystemDefaultsQoS)",
    rate_hz=1000.0, frame_id=FRAMES.root)
"""Full robot state: robot_mode, current_errors, last_motion_errors, ..."""
JOINT_STATES = TopicSpec(
    "/joint_states", "sensor_msgs/msg/JointState", RMW_DEFAULT, "to_graph", "joint_state_publisher",
    f"{_FR} franka_bringup/launch/franka.launch.py (joint_state_publisher merging franka/ and franka_gripper/"
    "joint_states at joint_state_rate); joint_state_publisher publishes with depth 10",
    rate_hz=30.0)
"""Arm and finger joints merged: fr3_joint1..7, fr3_finger_joint1/2."""
ARM_JOINT_STATES = TopicSpec(
    "/franka/joint_states", "sensor_msgs/msg/JointState", SYSTEM_DEFAULTS, "to_graph", "joint_state_broadcaster",
    f"{_FR} franka_bringup/launch/franka.launch.py (joint_state_broadcaster remapped to franka/joint_states)")
GRIPPER_JOINT_STATES = TopicSpec(
    "/franka_gripper/joint_states", "sensor_msgs/msg/JointState", QosSpec("reliable", 1), "to_graph",
    "franka_gripper", f"{_FR} franka_gripper/src/gripper_action_server.cpp, config/franka_gripper_node.yaml",
    rate_hz=15.0)
COLOR_IMAGE = TopicSpec(
    "/camera/camera/color/image_raw", "sensor_msgs/msg/Image", SYSTEM_DEFAULTS, "to_graph", "realsense2_camera",
    "IntelRealSense/realsense-ros 4.56 realsense2_camera (rs_launch.py camera_namespace/camera_name 'camera'; "
    "image QoS SYSTEM_DEFAULT)", rate_hz=30.0, frame_id=FRAMES.camera_optical)
COLOR_INFO = TopicSpec(
    "/camera/camera/color/camera_info", "sensor_msgs/msg/CameraInfo", RMW_DEFAULT, "to_graph", "realsense2_camera",
    "IntelRealSense/realsense-ros 4.56 realsense2_camera (info QoS DEFAULT)", rate_hz=30.0,
    frame_id=FRAMES.camera_optical)


@dataclass(frozen=True)
class ControllerSpec:
    """The ros2_control controller that tracks the arbiter's target pose."""

    name: str
    """Controller name (in config/franka_controllers.yaml and for the spawner)."""
    type: str
    """pluginlib type."""
    package: str
    version: str
    """The tag the Docker image builds."""
    target: TopicSpec
    """Where it reads the target pose."""
    law: dict[str, float] = field(default_factory=dict)
    """The gains and limits it runs with (the values in config/franka_controllers.yaml; the twin runs this law)."""


TRACKING_CONTROLLER = ControllerSpec(
    name="crisp_cartesian_controller",
    type="crisp_controllers/CartesianController",
    package="crisp_controllers",
    version="v1.0.0",
    target=TopicSpec(
        # A relative name ("target_pose") of a controller node in the controller manager's namespace (the root).
        "/target_pose", "geometry_msgs/msg/PoseStamped", QosSpec("reliable", 1), "from_graph",
        "crisp_cartesian_controller",
        "utiasDSL/crisp_controllers v1.0.0 src/cartesian_controller.cpp (create_subscription 'target_pose', "
        "rclcpp::QoS(1)); the frame_id is ignored (the pose is read in the URDF root); more than one publisher -> "
        "messages ignored",
        frame_id=FRAMES.root),
    law={"k_pos": 500.0, "k_rot": 30.0, "target_filter_alpha": 0.1, "error_clip_pos_m": 0.1,
         "error_clip_rot_rad": 0.5, "nullspace_stiffness": 1.0, "nullspace_max_tau_nm": 5.0, "max_delta_tau_nm": 0.5,
         "joint_limit_safe_range_rad": 0.3, "joint_limit_max_torque_nm": 5.0, "update_rate_hz": 1000.0},
)
"""crisp_controllers' Cartesian impedance controller: torque = J^T (K e - D v) with e the pose error to the target
(clipped), D = 2 sqrt(K), the target low-pass filtered (EMA, alpha per 1 kHz tick), plus the nullspace torque (clamped
to nullspace.max_tau, 5 Nm by default) and v1.0.0's built-in joint-limit repulsion (include/crisp_controllers/utils/
joint_limits.hpp: within 0.3 rad of a joint limit a torque rising linearly to 5 Nm at the limit; not a parameter in
v1.0.0), the sum rate-limited."""

# --- actions and services -----------------------------------------------------------------------------------------
_GRIPPER_SRC = f"{_FR} franka_gripper/src/gripper_action_server.cpp"
GRIPPER_HOMING = ActionServerSpec("/franka_gripper/homing", "franka_msgs/action/Homing", "franka_gripper", _GRIPPER_SRC)
GRIPPER_MOVE = ActionServerSpec("/franka_gripper/move", "franka_msgs/action/Move", "franka_gripper", _GRIPPER_SRC)
GRIPPER_GRASP = ActionServerSpec("/franka_gripper/grasp", "franka_msgs/action/Grasp", "franka_gripper", _GRIPPER_SRC)
GRIPPER_COMMAND = ActionServerSpec("/franka_gripper/gripper_action", "control_msgs/action/GripperCommand",
                                   "franka_gripper", _GRIPPER_SRC)
"""position = half the finger width."""
GRIPPER_STOP = ServiceSpec("/franka_gripper/stop", "std_srvs/srv/Trigger", "franka_gripper", _GRIPPER_SRC)
_ACTION_SRC = f"{_FR} franka_hardware/src/franka_action_server.cpp"
ERROR_RECOVERY = ActionServerSpec("/action_server/error_recovery", "franka_msgs/action/ErrorRecovery",
                                  "franka_hardware action_server", _ACTION_SRC)
"""Recovery step 1 (empty goal); then SET_HARDWARE_COMPONENT_STATE, then re-activate the controller."""
PTP_MOTION = ActionServerSpec("/action_server/ptp_motion", "franka_msgs/action/PTPMotion",
                              "franka_hardware action_server", _ACTION_SRC)
_PARAM_SRC = f"{_FR} franka_hardware/src/franka_param_service_server.cpp"
SET_CARTESIAN_STIFFNESS = ServiceSpec("/service_server/set_cartesian_stiffness",
                                      "franka_msgs/srv/SetCartesianStiffness", "franka_hardware service_server",
                                      _PARAM_SRC)
SET_FULL_COLLISION_BEHAVIOR = ServiceSpec("/service_server/set_full_collision_behavior",
                                          "franka_msgs/srv/SetFullCollisionBehavior", "franka_hardware service_server",
                                          _PARAM_SRC)
SET_LOAD = ServiceSpec("/service_server/set_load", "franka_msgs/srv/SetLoad", "franka_hardware service_server",
                       _PARAM_SRC)
SET_HARDWARE_COMPONENT_STATE = ServiceSpec(
    "/controller_manager/set_hardware_component_state", "controller_manager_msgs/srv/SetHardwareComponentState",
    "controller_manager", "ros-controls/ros2_control jazzy controller_manager")
"""Recovery step 2: set HARDWARE_COMPONENT active again (lifecycle_msgs/State id 3, "active")."""
SWITCH_CONTROLLER = ServiceSpec(
    "/controller_manager/switch_controller", "controller_manager_msgs/srv/SwitchController", "controller_manager",
    "ros-controls/ros2_control jazzy controller_manager")
"""Recovery step 3: activate TRACKING_CONTROLLER again (strictness STRICT)."""
HARDWARE_COMPONENT = "FrankaHardwareInterface"

TOPICS = (CURRENT_POSE, ROBOT_STATE, JOINT_STATES, ARM_JOINT_STATES, GRIPPER_JOINT_STATES, COLOR_IMAGE, COLOR_INFO,
          TRACKING_CONTROLLER.target)
ACTIONS = (GRIPPER_HOMING, GRIPPER_MOVE, GRIPPER_GRASP, GRIPPER_COMMAND, ERROR_RECOVERY, PTP_MOTION)
SERVICES = (GRIPPER_STOP, SET_CARTESIAN_STIFFNESS, SET_FULL_COLLISION_BEHAVIOR, SET_LOAD, SET_HARDWARE_COMPONENT_STATE,
            SWITCH_CONTROLLER)


def topic(name: str) -> TopicSpec:
    """The table's entry for topic ``name`` (KeyError naming the known ones)."""
    for t in TOPICS:
        if t.name == name:
            return t
    raise KeyError(f"{name!r} is not in the franka/RealSense table: {[t.name for t in TOPICS]}")


# --- launching the robot side -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchInclude:
    """An upstream launch file and the arguments the real graph passes to it."""

    package: str
    launch_file: str
    """Inside the package's share directory."""
    arguments: dict[str, str]
    """Fixed arguments (robot_ip and controllers_yaml are added by the graph)."""
    declared: tuple[str, ...]
    """Every argument the file declares (an argument it does not declare is silently ignored by ros2 launch)."""


FRANKA_BRINGUP = LaunchInclude(
    "franka_bringup", "launch/franka.launch.py",
    {"robot_type": "fr3", "load_gripper": "true", "use_fake_hardware": "false"},
    ("robot_type", "arm_prefix", "namespace", "robot_ip", "load_gripper", "use_fake_hardware", "fake_sensor_commands",
     "joint_state_rate", "load_franka_robot_state_broadcaster", "controllers_yaml"),
)
"""franka.launch.py: robot_type defaults to "" (no robot description then); it has no use_rviz."""
CONTROLLERS_YAML = "franka_controllers.yaml"
"""Our controllers file in config/ (replaces franka_bringup's controllers.yaml: the broadcasters + our controller)."""


@dataclass(frozen=True)
class NodeDriver:
    """An upstream node the graph starts itself (package, executable, namespace, name, fixed parameters)."""

    package: str
    executable: str
    namespace: str
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)


REALSENSE = NodeDriver("realsense2_camera", "realsense2_camera_node", "camera", "camera",
                       {"publish_tf": False})
"""rs_launch.py's defaults (namespace and name "camera": topics /camera/camera/color/...). ``publish_tf`` off: the
hand-eye transform is the only parent of camera_color_optical_frame (the calibration locates that frame directly;
the driver's own TF would give it a second parent)."""
CONTROLLER_SPAWNER = NodeDriver("controller_manager", "spawner", "", f"spawner_{TRACKING_CONTROLLER.name}")
SPAWNER_ARGUMENTS = (TRACKING_CONTROLLER.name, "--controller-manager-timeout", "30")

TWIN = NodeDriver("franka_twin", "franka-twin-node", "", "franka_twin")
"""robot:=twin: a real-time MuJoCo stand-in for franka_bringup + franka_gripper + the controller + the RealSense node,
serving every entry of this table (package written in a later step)."""
