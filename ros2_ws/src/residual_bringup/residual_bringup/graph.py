"""One description of the ROS graph, read by both ``launch/residual_bringup.launch.py`` and ``residual-launch``.

:func:`describe_graph` returns what to start, as plain data:

* :class:`NodeSpec`: package, executable, node name, parameters, remappings, arguments;
* :class:`IncludeSpec`: another package's launch file with its arguments (real mode: franka_bringup).

Sim mode: franka_sim's sim node, the pose estimator, the base node, the residual node, the arbiter (and rviz2).
Real mode (DESIGN.md "Real mode"): franka_ros2's bringup with a controller spawner, a RealSense camera, the
hand-eye extrinsic as a static transform, the gripper bridge, and the same four policy/arbiter nodes.
Per-node tunables live in ``config/<mode>.yaml`` (ROS params-file format), the values that follow from the
arguments (task, checkpoint, sim time, mode switches) are set here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from residual_core.tasks import check_task

MODES = ("sim", "real")
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
    controller: str = "cartesian_impedance_controller",
    hand_eye: tuple[float, ...] | None = None,
    camera_parent_frame: str = "fr3_link0",
    config_dir: str | os.PathLike | None = None,
) -> list[GraphEntity]:
    """The graph for ``mode`` ("sim" or "real").

    task: residual_core task name; checkpoint: residual checkpoint (safetensors + JSON manifest) for the residual
    node; use_sim_time: default True in sim, False on the real robot; use_rviz: add rviz2 with
    config/residual.rviz; robot_ip: the FR3's address (real); base_backend: vla_base_node backend (default
    sim_bc in sim, openpi on the real robot); base_checkpoint: checkpoint of the sim BC base policy; lockstep
    (sim): the sim advances only when the command of the current step arrived; pose_source (sim): "estimator"
    (camera -> pose_estimator_node) or "ground_truth" (the sim publishes the object poses); controller (real):
    the Cartesian controller to spawn, whose ``~/equilibrium_pose`` receives the arbiter's target;
    hand_eye (real, required): calibrated camera pose x y z qx qy qz qw in ``camera_parent_frame``; config_dir: where
    <mode>.yaml and residual.rviz are.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    check_task(task)
    if pose_source not in POSE_SOURCES:
        raise ValueError(f"pose_source must be one of {POSE_SOURCES}, got {pose_source!r}")
    if mode == "real":
        if not robot_ip:
            raise ValueError("real mode needs robot_ip (the FR3's address)")
        if hand_eye is None or len(hand_eye) != 7:
            raise ValueError("real mode needs hand_eye: the camera pose from your hand-eye calibration as 7 numbers "
                             f"x y z qx qy qz qw in camera_parent_frame, got {hand_eye!r}")
    sim = mode == "sim"
    use_sim_time = sim if use_sim_time is None else use_sim_time
    lockstep = lockstep and sim
    cfg_dir = Path(config_dir) if config_dir is not None else default_config_dir()
    params_files = (str(cfg_dir / f"{mode}.yaml"),)
    backend = base_backend or ("sim_bc" if sim else "openpi")
    common = {"use_sim_time": use_sim_time}
    # franka_robot_state_broadcaster publishes the measured TCP pose (O_T_EE) as PoseStamped on ~/current_pose.
    tcp_remap = () if sim else (("/tcp_pose", "/franka_robot_state_broadcaster/current_pose"),)
    # In sim the base (a stand-in for a VLA, which sees the scene itself) reads the true object poses, as in
    # training and residual-eval; only the residual sees the estimated (noisy, dropped-out) ones.
    base_remap = (("/objects/poses", "/sim/object_poses_gt"),) if sim else tcp_remap

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
    else:
        out.append(IncludeSpec(
            "franka_bringup", "launch/franka.launch.py",
            {"robot_ip": robot_ip, "load_gripper": "true", "use_fake_hardware": "false", "use_rviz": "false"},
            description="franka_ros2: ros2_control, joint states, robot state broadcaster (TCP pose), gripper node",
        ))
        out.append(NodeSpec(
            "controller_manager", "spawner", f"spawner_{controller}", arguments=(controller,),
            description=f"activates {controller} (Cartesian impedance; target on ~/equilibrium_pose)",
        ))
        out.append(NodeSpec(
            "realsense2_camera", "realsense2_camera_node", "camera", params_files=params_files,
            parameters=common,
            remappings=(("/camera/color/image_raw", "/camera/image_raw"),
                        ("/camera/color/camera_info", "/camera/camera_info")),
            description="RealSense colour stream on /camera/image_raw + /camera/camera_info",
        ))
        x, y, z, qx, qy, qz, qw = (str(v) for v in hand_eye)
        out.append(NodeSpec(
            "tf2_ros", "static_transform_publisher", "hand_eye_tf",
            arguments=("--x", x, "--y", y, "--z", z, "--qx", qx, "--qy", qy, "--qz", qz, "--qw", qw,
                       "--frame-id", camera_parent_frame, "--child-frame-id", "camera_color_optical_frame"),
            description="hand-eye calibration as a static transform",
        ))
        out.append(NodeSpec(
            "action_arbiter", "franka-gripper-bridge", "gripper_bridge", params_files=params_files,
            parameters=common,
            description="/arbiter/gripper (0 open .. 1 closed) -> franka_gripper move/grasp actions",
        ))
    if pose_source == "estimator" or not sim:
        out.append(NodeSpec(
            "pose_estimator_node", "pose-estimator-node", "pose_estimator", params_files=params_files,
            # The sim publishes its images reliably: a best-effort reader loses some of the 0.9 MB images (UDP
            # fragments), and in lockstep every lost image stalls the sim for lockstep_pose_timeout_s.
            parameters={**common, "task": task, **({"image_reliable": True} if sim else {})},
            description="camera image + camera_info -> /objects/poses (robot base frame)",
        ))
    out.append(NodeSpec(
        "vla_base_node", "vla-base-node", "base", params_files=params_files,
        # Episode ids: the sim's (/sim/episode) in sim; on the robot the base node counts them (its ~/reset).
        parameters={**common, "task": task, "backend": backend, "lockstep": lockstep, "sync_inference": lockstep,
                    "episode_topic": "/sim/episode" if sim else "none",
                    "use_image": not sim or backend in ("openpi", "openvla"),
                    **({"base_checkpoint": base_checkpoint} if base_checkpoint else {})},
        remappings=base_remap,
        description=f"base policy ({backend}) -> one EefAction per step on /base/action",
    ))
    out.append(NodeSpec(
        "residual_policy_node", "residual-policy-node", "residual", params_files=params_files,
        parameters={**common, "task": task, "checkpoint": checkpoint, "lockstep": lockstep},
        remappings=tcp_remap,
        description="object poses + proprio + base action -> residual on /residual/action",
    ))
    out.append(NodeSpec(
        "action_arbiter", "action-arbiter", "arbiter", params_files=params_files,
        # The arbiter reads the residual's trained bound from the same checkpoint's manifest.
        parameters={**common, "lockstep": lockstep, "task": task, "checkpoint": checkpoint,
                    "controller_pose_topic": "none" if sim else f"/{controller}/equilibrium_pose"},
        remappings=tcp_remap,
        description="base + residual -> safety envelope -> /arbiter/command (+ /arbiter/target_pose, /arbiter/gripper "
                    "for the robot), records",
    ))
    if use_rviz:
        out.append(NodeSpec(
            "rviz2", "rviz2", "rviz2", arguments=("-d", str(cfg_dir / "residual.rviz")), parameters=common,
            description="object poses, action arrows, target pose",
        ))
    return out


def node_specs(graph: list[GraphEntity]) -> list[NodeSpec]:
    """Only the nodes (what a supervisor without ``ros2 launch`` can start)."""
    return [e for e in graph if isinstance(e, NodeSpec)]
