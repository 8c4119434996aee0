"""One description of the ROS graph, read by both ``launch/residual_bringup.launch.py`` and ``residual-launch``.

:func:`describe_graph` returns what to start, as plain data:

* :class:`NodeSpec`: package, executable, node name, parameters, remappings, arguments;
* :class:`IncludeSpec`: another package's launch file with its arguments (real mode: franka_bringup).

Sim mode: franka_sim's sim node, the pose estimator, the base node, the residual node, the arbiter (and rviz2).
Real mode (DESIGN.md "Real mode"), ``robot="franka"``: franka_ros2's franka_bringup (robot_type fr3, our controllers
file) with a spawner for the tracking controller (crisp_controllers' CartesianController), a RealSense camera, then,
for either robot, the hand-eye extrinsic as a static transform, the gripper bridge, and the same four policy/arbiter
nodes. ``robot="twin"`` replaces only the robot, the controller and the camera driver by the franka_ros2 twin
(package franka_twin), which serves the same interfaces. Every name, type and QoS on the robot side comes from
:mod:`residual_ros.franka_interfaces` (one table; tests/test_franka_contract.py checks the graph against it).
Per-node tunables live in ``config/<mode>.yaml`` (ROS params-file format), the values that follow from the
arguments (task, checkpoint, sim time, mode switches) are set here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from residual_core.tasks import check_task
from residual_ros import franka_interfaces as fi

MODES = ("sim", "real")
ROBOTS = ("franka", "twin")
"""Real mode: the FR3 through franka_ros2, or the franka_ros2 twin (MuJoCo, runs without ROS installed)."""
POSE_SOURCES = ("estimator", "ground_truth")


@dataclass(frozen=True)
class NodeSpec:
    """One process of the graph."""

    package: str
    """ROS package that installs the executable."""
    executable: str
    """Executable name (a console script for our Python nodes)."""
    name: str
    """Node name (also the prefix of its private topics, e.g. /arbiter/target_pose)."""
    namespace: str = ""
    """Node namespace without slashes ("" = the root; the RealSense node runs in "camera", as rs_launch.py)."""
    parameters: dict[str, Any] = field(default_factory=dict)
    """Parameters set from the launch arguments (override the params files)."""
    params_files: tuple[str, ...] = ()
    """ROS params files loaded first (config/<mode>.yaml)."""
    remappings: tuple[tuple[str, str], ...] = ()
    """Topic/service remappings (from, to)."""
    arguments: tuple[str, ...] = ()
    """Command-line arguments before --ros-args."""
    ros_node: bool = True
    """False for programs that take no --ros-args node settings (none so far; rviz2 does take them)."""
    description: str = ""
    """What it is for (shown by ``residual-launch --list``)."""

    @property
    def params_key(self) -> str:
        """The node's key in a ROS params file: its name, or ``/namespace/name`` for a node in a namespace."""
        return f"/{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True)
class IncludeSpec:
    """Another package's launch file (needs ``ros2 launch``; the supervisor cannot start these)."""

    package: str
    """Package whose share directory holds the launch file."""
    launch_file: str
    """Path of the launch file inside the share directory (e.g. launch/franka.launch.py)."""
    arguments: dict[str, str] = field(default_factory=dict)
    """Launch arguments."""
    description: str = ""
    """What it is for."""


GraphEntity = NodeSpec | IncludeSpec


def default_config_dir() -> Path:
    """``$RESIDUAL_CONFIG_DIR``, else the repository's config/ (source checkout), else the installed share dir."""
    env = os.environ.get("RESIDUAL_CONFIG_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[4] / "config"
    if (repo / "sim.yaml").exists():
        return repo
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("residual_bringup")) / "config"
    except Exception:  # noqa: BLE001 (package index absent or package not installed)
        return repo


def describe_graph(
    mode: str = "sim",
    task: str = "cube_lift",
    checkpoint: str = "",
    use_sim_time: bool | None = None,
    use_rviz: bool = False,
    robot_ip: str = "",
    base_backend: str | None = None,
    base_checkpoint: str = "",
    lockstep: bool = True,
    pose_source: str = "estimator",
    hand_eye: tuple[float, ...] | None = None,
    robot: str = "franka",
    config_dir: str | os.PathLike | None = None,
) -> list[GraphEntity]:
    """The graph for ``mode`` ("sim" or "real").

    task: residual_core task name; checkpoint: residual checkpoint (safetensors + JSON manifest) for the residual
    node; use_sim_time: default True in sim, False on the real robot; use_rviz: add rviz2 with
    config/residual.rviz; robot_ip: the FR3's address (real, robot "franka"); base_backend: vla_base_node backend
    (default sim_bc in sim, openpi on the real robot); base_checkpoint: checkpoint of the sim BC base policy; lockstep
    (sim): the sim advances only when the command of the current step arrived; pose_source (sim): "estimator"
    (camera -> pose_estimator_node) or "ground_truth" (the sim publishes the object poses); hand_eye (real, required):
    the calibrated pose of the camera's colour optical frame (camera_color_optical_frame) in the robot base frame
    fr3_link0, x y z qx qy qz qw: the pose estimator's camera extrinsic and the static transform for TF; robot (real):
    "franka" (franka_ros2, RealSense, the tracking controller) or "twin" (the franka_ros2 twin in their place);
    config_dir: where <mode>.yaml, residual.rviz and franka_controllers.yaml are.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    check_task(task)
    if pose_source not in POSE_SOURCES:
        raise ValueError(f"pose_source must be one of {POSE_SOURCES}, got {pose_source!r}")
    if robot not in ROBOTS:
        raise ValueError(f"robot must be one of {ROBOTS}, got {robot!r}")
    if mode == "sim" and robot != "franka":
        raise ValueError(f"robot {robot!r} is a real-mode choice (mode real); sim mode runs franka_sim")
    if mode == "real":
        if robot == "franka" and not robot_ip:
            raise ValueError("real mode with robot franka needs robot_ip (the FR3's address)")
        if hand_eye is None or len(hand_eye) != 7:
            raise ValueError("real mode needs hand_eye: the camera's colour optical frame pose from your hand-eye "
                             f"calibration as 7 numbers x y z qx qy qz qw in {fi.FRAMES.arm_base}, got {hand_eye!r}")
    sim = mode == "sim"
    use_sim_time = sim if use_sim_time is None else use_sim_time
    lockstep = lockstep and sim
    cfg_dir = Path(config_dir) if config_dir is not None else default_config_dir()
    params_files = (str(cfg_dir / f"{mode}.yaml"),)
    backend = base_backend or ("sim_bc" if sim else "openpi")
    common = {"use_sim_time": use_sim_time}
    # Real mode: every node reads the measured TCP pose (franka_robot_state_broadcaster's O_T_EE) as /tcp_pose and the
    # colour camera as /camera/image_raw + /camera/camera_info; the remappings name the robot side's topics.
    tcp_remap = () if sim else (("/tcp_pose", fi.CURRENT_POSE.name),)
    camera_remap = () if sim else (("/camera/image_raw", fi.COLOR_IMAGE.name),
                                   ("/camera/camera_info", fi.COLOR_INFO.name))
    # In sim the base (a stand-in for a VLA, which sees the scene itself) reads the true object poses, as in
    # training and residual-eval; only the residual sees the estimated (noisy, dropped-out) ones. In lockstep sim
    # every publisher is reliable and a lost state is never replaced: the nodes' state inputs are reliable too
    # (reliable_inputs; residual_ros.qos).
    base_remap = (("/objects/poses", "/sim/object_poses_gt"),) if sim else tcp_remap + camera_remap
    # The twin with the sim base (sim_bc, the VLA's stand-in): the base reads the twin's true object poses and follows
    # its episodes, as it does in sim mode (the estimated poses, through hand_eye, go to the residual and the arbiter;
    # measured: a base that reads them loses the cube when the gripper hides its marker and never grasps); it reads no
    # images (sim_bc does not look at pixels).
    stand_in = not sim and robot == "twin" and backend == "sim_bc"
    if stand_in:
        base_remap += (("/objects/poses", f"/{fi.TWIN.name}/object_poses_gt"),)

    out: list[GraphEntity] = []
    if sim:
        out.append(NodeSpec(
            "franka_sim", "franka-sim-node", "sim", params_files=params_files,
            parameters={**common, "task": task, "lockstep": lockstep, "publish_clock": use_sim_time,
                        "publish_object_poses": pose_source == "ground_truth",
                        "render_camera": pose_source == "estimator",
                        # Lockstep: /sim/step t only once the estimator has answered step t's state, so the
                        # residual computes step t on step t's poses (reproducible runs).
                        "lockstep_pose_topic": "/objects/poses" if lockstep and pose_source == "estimator"
                        else "none"},
            description="MuJoCo FR3 + task scene: /joint_states, /tcp_pose, camera, /sim/step, /sim/episode, /clock; "
                        "executes /arbiter/command",
        ))
    elif robot == "franka":
        out.append(IncludeSpec(
            fi.FRANKA_BRINGUP.package, fi.FRANKA_BRINGUP.launch_file,
            {**fi.FRANKA_BRINGUP.arguments, "robot_ip": robot_ip,
             "controllers_yaml": str(cfg_dir / fi.CONTROLLERS_YAML)},
            description="franka_ros2 (fr3): ros2_control, joint states, robot state broadcaster (current_pose, "
                        "robot_state), franka_gripper; controllers from config/franka_controllers.yaml",
        ))
        spawner = fi.CONTROLLER_SPAWNER
        out.append(NodeSpec(
            spawner.package, spawner.executable, spawner.name, arguments=fi.SPAWNER_ARGUMENTS,
            description=f"activates {fi.TRACKING_CONTROLLER.name} ({fi.TRACKING_CONTROLLER.type}; target on "
                        f"{fi.TRACKING_CONTROLLER.target.name})",
        ))
        cam = fi.REALSENSE
        out.append(NodeSpec(
            cam.package, cam.executable, cam.name, namespace=cam.namespace, params_files=params_files,
            parameters={**common, **cam.parameters},
            description=f"RealSense colour stream on {fi.COLOR_IMAGE.name} + camera_info (its own TF off: the hand-eye "
                        "transform is the optical frame's parent)",
        ))
    else:
        twin = fi.TWIN
        out.append(NodeSpec(
            twin.package, twin.executable, twin.name, params_files=params_files,
            parameters={**common, "task": task},
            description="franka_ros2 twin (MuJoCo, real time): franka_bringup + franka_gripper + "
                        f"{fi.TRACKING_CONTROLLER.name} + the RealSense node, same names, types and QoS",
        ))
    if not sim:
        x, y, z, qx, qy, qz, qw = (str(v) for v in hand_eye)
        out.append(NodeSpec(
            "tf2_ros", "static_transform_publisher", "hand_eye_tf",
            arguments=("--x", x, "--y", y, "--z", z, "--qx", qx, "--qy", qy, "--qz", qz, "--qw", qw,
                       "--frame-id", fi.FRAMES.arm_base, "--child-frame-id", fi.FRAMES.camera_optical),
            description=f"hand-eye calibration: {fi.FRAMES.arm_base} -> {fi.FRAMES.camera_optical} (for TF/rviz2; the "
                        "pose estimator takes it as a parameter)",
        ))
        out.append(NodeSpec(
            "action_arbiter", "franka-gripper-bridge", "gripper_bridge", params_files=params_files,
            parameters={**common, "grasp_action": fi.GRIPPER_GRASP.name, "move_action": fi.GRIPPER_MOVE.name},
            description="/arbiter/gripper (0 open .. 1 closed) -> franka_gripper move/grasp actions",
        ))
    if pose_source == "estimator" or not sim:
        out.append(NodeSpec(
            "pose_estimator_node", "pose-estimator-node", "pose_estimator", params_files=params_files,
            # The sim publishes its images reliably: a best-effort reader loses some of the 0.9 MB images (UDP
            # fragments), and in lockstep every lost image stalls the sim for lockstep_pose_timeout_s.
            # In sim each image waits for its /sim/episode status: a new episode resets the estimator's tracking; the
            # sim's second, front camera is estimated with the scene camera (a real robot has one camera).
            parameters={**common, "task": task, **(
                {"image_reliable": True, "episode_topic": "/sim/episode", "front_camera": True} if sim else {
                # the calibrated extrinsic (the default is the sim camera's)
                "camera_pos": [float(v) for v in hand_eye[:3]],
                "camera_quat_xyzw": [float(v) for v in hand_eye[3:]]})},
            remappings=camera_remap,
            description="camera image + camera_info -> /objects/poses (robot base frame)",
        ))
    episode_topic = "/sim/episode" if sim else (f"/{fi.TWIN.name}/episode" if stand_in else "none")
    out.append(NodeSpec(
        "vla_base_node", "vla-base-node", "base", params_files=params_files,
        # Episode ids: the sim's (/sim/episode) in sim; on the robot the base node counts them (its ~/reset).
        # (lockstep_pose_wait: a re-plan waits for its step's ground-truth poses, published with every sim state)
        parameters={**common, "task": task, "backend": backend, "lockstep": lockstep, "sync_inference": lockstep,
                    "lockstep_pose_wait": lockstep, "reliable_inputs": lockstep,
                    "episode_topic": episode_topic,
                    "use_image": (not sim and not stand_in) or backend in ("openpi", "openvla"),
                    **({"base_checkpoint": base_checkpoint} if base_checkpoint else {})},
        remappings=base_remap,
        description=f"base policy ({backend}) -> one EefAction per step on /base/action",
    ))
    out.append(NodeSpec(
        "residual_policy_node", "residual-policy-node", "residual", params_files=params_files,
        # With the sim's pose barrier every state gets its poses: the residual of step t waits for step t's.
        # Base actions of episodes the sim (or twin) does not announce are not computed (a forged flood).
        parameters={**common, "task": task, "checkpoint": checkpoint, "lockstep": lockstep,
                    "lockstep_pose_wait": lockstep and pose_source == "estimator", "reliable_inputs": lockstep,
                    "episode_topic": episode_topic},
        remappings=tcp_remap,
        description="object poses + proprio + base action -> residual on /residual/action",
    ))
    out.append(NodeSpec(
        "action_arbiter", "action-arbiter", "arbiter", params_files=params_files,
        # The arbiter reads the residual's trained bound from the same checkpoint's manifest.
        # On the robot (and its twin): gated by franka's robot state, and ~/stop also stops the gripper.
        # Episode ids: only those the sim (or twin) announces are taken (a forged action cannot start an episode).
        parameters={**common, "lockstep": lockstep, "reliable_inputs": lockstep, "task": task, "checkpoint": checkpoint,
                    "episode_topic": episode_topic,
                    "controller_pose_topic": "none" if sim else fi.TRACKING_CONTROLLER.target.name,
                    **({} if sim else {"lab.robot_state_topic": fi.ROBOT_STATE.name,
                                       "lab.gripper_stop_service": fi.GRIPPER_STOP.name})},
        remappings=tcp_remap,
        description="base + residual -> safety envelope -> /arbiter/command (+ /arbiter/target_pose, /arbiter/gripper "
                    "for the robot), records",
    ))
    if use_rviz:
        out.append(NodeSpec(
            "rviz2", "rviz2", "rviz2", arguments=("-d", str(cfg_dir / "residual.rviz")), parameters=common,
            # the config's measured-TCP display reads /tcp_pose, like every node
            remappings=tcp_remap,
            description="object poses, action arrows, target pose, measured TCP",
        ))
    return out


def node_specs(graph: list[GraphEntity]) -> list[NodeSpec]:
    """Only the nodes (what a supervisor without ``ros2 launch`` can start)."""
    return [e for e in graph if isinstance(e, NodeSpec)]
