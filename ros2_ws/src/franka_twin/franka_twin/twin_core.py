"""Pure logic of the franka_ros2 twin (no rclpy, no MuJoCo): configuration, the controller laws, the robot-mode /
fault machine and the gripper's goal checks. The physics wrapper is :mod:`franka_twin.twin_robot`, the node
:mod:`franka_twin.twin_node`.

Controller laws (parameter ``law``):

* ``impedance``: crisp_controllers' ``CartesianController`` (v1.0.0, ``src/cartesian_controller.cpp``) with the gains
  of ``residual_ros.franka_interfaces.TRACKING_CONTROLLER.law``: target EMA filter, pose error clipped per axis,
  ``tau = J^T (K e - D v) + N (k_ns (q_ns - q) - d_ns dq)``, D = 2 sqrt(K), torque change rate-limited. crisp ticks at
  1 kHz; the twin ticks at the physics rate (200 Hz), so the per-tick filter weight and torque-change limit are
  converted to the same time constants (:func:`per_tick`).
* ``stiff``: the sim's differential-IK joint servo (``BatchSim.command_pose``, what ``FrankaTaskEnv.set_target_pose``
  runs): each command is one IK step whose servo ramp runs for one 50 ms control period, from when it arrives.
* ``stock_example``: franka's ``cartesian_impedance_example_controller`` (v3.4.0): 150 N/m, 10 Nm/rad, nullspace
  20, and its position target overwritten every tick by a scripted arc (:func:`stock_arc_position`) starting where
  the arm was on activation: whatever target the graph sends, only its orientation is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from residual_core.tasks import check_task
from residual_ros import franka_interfaces as fi

LAWS = ("impedance", "stiff", "stock_example")
STOCK_EXAMPLE = {"k_pos": 150.0, "k_rot": 10.0, "nullspace_stiffness": 20.0, "arc_period_s": 10.0,
                 "arc_radius_m": 0.1}
"""franka_ros2 v3.4.0 franka_example_controllers cartesian_impedance_example_controller: stiffnesses (its yaml); the
arc's period (10 s) is upstream's, its radius and plane are this imitation's (the upstream shape differs; what the
test shows, that the target position is not the subscribed one, does not depend on it)."""
_DEFAULT_HAND_EYE = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class TwinConfig:
    """Parameters of the twin node (each a ROS parameter of the same name)."""

    task: str = "cube_lift"
    """Task scene (residual_core.tasks); ~/reset may switch it."""
    seed: int = 0
    """Seed of the episode set up at startup."""
    law: str = "impedance"
    """Controller law: impedance (crisp CartesianController), stiff (the sim's tracking), stock_example."""
    camera_extrinsic: tuple[float, ...] = _DEFAULT_HAND_EYE
    """Pose of camera_color_optical_frame in fr3_link0 (x y z qx qy qz qw); all zeros: the sim camera's pose."""
    calibration_board: bool = False
    """Opt-in, visual only: the ArUco calibration board on the hand (franka_sim SceneConfig.calibration_board) for an
    eye-to-hand calibration with residual-handeye; no contacts, no mass (off: the sim's own scene)."""
    camera_rate_hz: float = 30.0
    """Colour stream rate (wall clock; realsense2_camera's default profile is 30 Hz)."""
    image_width: int = 640
    image_height: int = 480
    current_pose_rate_hz: float = 100.0
    """current_pose / robot_state rate (the physics tick: franka publishes at 1 kHz; nothing in the graph reads
    faster than 20 Hz, and a Python node cannot publish 1 kHz on a shared CPU)."""
    joint_state_rate_hz: float = 30.0
    """Merged /joint_states rate (franka.launch.py joint_state_rate)."""
    gripper_joint_state_rate_hz: float = 15.0
    """/franka_gripper/joint_states rate (franka_gripper_node.yaml)."""
    gripper_homed: bool = True
    """Start with the gripper homed (the real one needs homing once after power-up; false: goals abort until the
    homing action ran)."""
    gripper_timeout_s: float = 5.0
    """A gripper goal that has not settled after this long ends (move: aborted; grasp: judged on the width)."""

    def __post_init__(self) -> None:
        check_task(self.task)
        if self.law not in LAWS:
            raise ValueError(f"law must be one of {LAWS}, got {self.law!r}")
        if len(self.camera_extrinsic) != 7 or not all(math.isfinite(v) for v in self.camera_extrinsic):
            raise ValueError("camera_extrinsic must be 7 finite numbers x y z qx qy qz qw, got "
                             f"{self.camera_extrinsic}")
        if any(v != 0.0 for v in self.camera_extrinsic) and not 0.5 < np.linalg.norm(self.camera_extrinsic[3:]) < 1.5:
            raise ValueError(f"camera_extrinsic quaternion {self.camera_extrinsic[3:]} is not a unit quaternion")
        for name in ("camera_rate_hz", "current_pose_rate_hz", "joint_state_rate_hz", "gripper_joint_state_rate_hz",
                     "gripper_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

    @property
    def camera_pose(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(pos, quat_xyzw) of the optical frame, or None for the sim camera's own pose."""
        if all(v == 0.0 for v in self.camera_extrinsic):
            return None
        q = np.asarray(self.camera_extrinsic[3:], dtype=np.float64)
        return np.asarray(self.camera_extrinsic[:3], dtype=np.float64), q / np.linalg.norm(q)


# --- controller laws ---

def so3_log(mat: np.ndarray) -> np.ndarray:
    """Rotation vector of a rotation matrix (numpy; the law runs every physics step)."""
    cos = np.clip((np.trace(mat) - 1.0) / 2.0, -1.0, 1.0)
    angle = math.acos(cos)
    axis = np.array([mat[2, 1] - mat[1, 2], mat[0, 2] - mat[2, 0], mat[1, 0] - mat[0, 1]])
    if angle < 1e-7:
        return 0.5 * axis
    if math.pi - angle < 1e-4:  # near pi: the axis from the symmetric part
        sym = (mat + np.eye(3)) / 2.0
        k = int(np.argmax(np.diag(sym)))
        v = sym[:, k] / math.sqrt(max(sym[k, k], 1e-12))
        return angle * v / np.linalg.norm(v)
    return angle / (2.0 * math.sin(angle)) * axis


def so3_exp(rotvec: np.ndarray) -> np.ndarray:
    """Rotation matrix of a rotation vector (Rodrigues)."""
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.eye(3)
    k = np.asarray(rotvec) / angle
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + math.sin(angle) * kx + (1.0 - math.cos(angle)) * kx @ kx


def per_tick(alpha_1khz: float, dt: float) -> float:
    """The EMA weight per tick of ``dt`` s with the time constant of ``alpha_1khz`` per 1 ms tick."""
    return 1.0 - (1.0 - alpha_1khz) ** (dt / 1e-3)


@dataclass(frozen=True)
class ImpedanceGains:
    """A Cartesian impedance law's gains (crisp CartesianController; the stock example uses other values)."""

    k_pos: float
    k_rot: float
    nullspace_stiffness: float
    target_filter_alpha: float = 1.0
    """Per 1 kHz tick (1: no filter)."""
    error_clip_pos_m: float = math.inf
    error_clip_rot_rad: float = math.inf
    max_delta_tau_nm: float = math.inf
    """Per 1 kHz tick."""
    nullspace_max_tau_nm: float = math.inf
    """The nullspace torque clamped per joint."""
    joint_limit_safe_range_rad: float = 0.0
    """Joint-limit repulsion (:func:`joint_limit_torque`) within this distance of a limit; 0: none."""
    joint_limit_max_torque_nm: float = 0.0
    """The repulsion's torque at the limit."""

    @classmethod
    def crisp(cls) -> ImpedanceGains:
        law = fi.TRACKING_CONTROLLER.law
        return cls(law["k_pos"], law["k_rot"], law["nullspace_stiffness"], law["target_filter_alpha"],
                   law["error_clip_pos_m"], law["error_clip_rot_rad"], law["max_delta_tau_nm"],
                   law["nullspace_max_tau_nm"], law["joint_limit_safe_range_rad"], law["joint_limit_max_torque_nm"])

    @classmethod
    def stock_example(cls) -> ImpedanceGains:
        # the example filters its target too (time constant ~0.2 s: alpha ~0.005 per 1 ms tick)
        return cls(STOCK_EXAMPLE["k_pos"], STOCK_EXAMPLE["k_rot"], STOCK_EXAMPLE["nullspace_stiffness"], 0.005)


@dataclass
class ImpedanceResult:
    """What one impedance tick did."""

    tau: np.ndarray
    """(7,) joint torques applied."""
    error: np.ndarray
    """(6,) pose error after clipping [m, rad]."""
    clipped: bool
    """The pose error was clipped."""
    rate_limited: bool
    """The torque change was limited."""


def joint_limit_torque(q, q_min, q_max, safe_range: float, max_torque: float) -> np.ndarray:
    """crisp v1.0.0's joint-limit repulsion: a joint within ``safe_range`` of a limit is pushed back by a torque rising
    linearly from 0 to ``max_torque`` at the limit (and held there beyond it)."""
    q = np.asarray(q, dtype=np.float64)
    if safe_range <= 0.0:
        return np.zeros_like(q)
    near_lower = np.clip((safe_range - (q - q_min)) / safe_range, 0.0, 1.0)
    near_upper = np.clip((safe_range - (q_max - q)) / safe_range, 0.0, 1.0)
    return max_torque * (near_lower - near_upper)


class ImpedanceLaw:
    """``tau = J^T (K e - D J dq) + N (k_ns (q_ns - q) - 2 sqrt(k_ns) dq) + tau_limits`` with the target
    EMA-filtered, the error clipped per axis, the nullspace torque clamped, the joint-limit repulsion
    (:func:`joint_limit_torque`, with ``q_limits``) and the torque change limited (crisp CartesianController's
    structure; no gravity term: the FR3 and the MuJoCo model compensate gravity themselves)."""

    def __init__(self, gains: ImpedanceGains, dt: float, q_nullspace: np.ndarray,
                 q_limits: tuple[np.ndarray, np.ndarray] | None = None):
        self.gains, self.dt = gains, dt
        self.q_limits = q_limits
        self.alpha = per_tick(gains.target_filter_alpha, dt)
        self.max_dtau = gains.max_delta_tau_nm * dt / 1e-3
        self.K = np.array([gains.k_pos] * 3 + [gains.k_rot] * 3)
        self.D = 2.0 * np.sqrt(self.K)
        self.q_ns = np.asarray(q_nullspace, dtype=np.float64)
        self.filtered: tuple[np.ndarray, np.ndarray] | None = None  # (pos, rotation matrix)
        self.tau = np.zeros(7)

    def activate(self, tcp_pos: np.ndarray, tcp_mat: np.ndarray) -> None:
        """On (re-)activation the target starts at the measured pose (crisp does the same) and torques at zero."""
        self.filtered = (np.array(tcp_pos, dtype=np.float64), np.array(tcp_mat, dtype=np.float64))
        self.tau = np.zeros(7)

    def filter_target(self, target_pos: np.ndarray, target_mat: np.ndarray) -> None:
        """One EMA step of the filtered target towards ``target`` (rotation: the same fraction of the way along the
        geodesic)."""
        pos, mat = self.filtered
        pos = pos + self.alpha * (np.asarray(target_pos) - pos)
        mat = mat @ so3_exp(self.alpha * so3_log(mat.T @ np.asarray(target_mat)))
        self.filtered = (pos, mat)

    def torque(self, tcp_pos, tcp_mat, jac: np.ndarray, q: np.ndarray, dq: np.ndarray) -> ImpedanceResult:
        g = self.gains
        pos, mat = self.filtered
        raw = np.concatenate([pos - tcp_pos, so3_log(mat @ np.asarray(tcp_mat).T)])
        err = np.concatenate([np.clip(raw[:3], -g.error_clip_pos_m, g.error_clip_pos_m),
                              np.clip(raw[3:], -g.error_clip_rot_rad, g.error_clip_rot_rad)])
        twist = jac @ dq
        tau_task = jac.T @ (self.K * err - self.D * twist)
        # kinematic nullspace projector I - J^T (J^T)^+, (J^T)^+ = (J J^T)^-1 J (J full rank away from singularities)
        null = np.eye(7) - jac.T @ np.linalg.solve(jac @ jac.T + 1e-9 * np.eye(6), jac)
        k_ns = g.nullspace_stiffness
        tau_ns = null @ (k_ns * (self.q_ns - q) - 2.0 * math.sqrt(k_ns) * dq)
        tau_ns = np.clip(tau_ns, -g.nullspace_max_tau_nm, g.nullspace_max_tau_nm)
        tau = tau_task + tau_ns
        if self.q_limits is not None:
            tau = tau + joint_limit_torque(q, *self.q_limits, g.joint_limit_safe_range_rad, g.joint_limit_max_torque_nm)
        delta = np.clip(tau - self.tau, -self.max_dtau, self.max_dtau)
        limited = bool(np.any(delta != tau - self.tau))
        self.tau = self.tau + delta
        return ImpedanceResult(self.tau.copy(), err, bool(np.any(err != raw)), limited)


def stock_arc_position(start: np.ndarray, t: float, period_s: float = STOCK_EXAMPLE["arc_period_s"],
                       radius_m: float = STOCK_EXAMPLE["arc_radius_m"]) -> np.ndarray:
    """The stock example's overwritten position target ``t`` s after activation (a circle through ``start`` in the
    x-z plane; it repeats every ``period_s``)."""
    phase = 2.0 * math.pi * t / period_s
    return np.asarray(start, dtype=np.float64) + radius_m * np.array([math.sin(phase), 0.0, 1.0 - math.cos(phase)])


# --- real-time stepping ---------------------------------------------------------------------------------------------
MAX_CATCH_UP_STEPS = 40
"""Most physics steps one tick runs (0.2 s at 5 ms); further behind, the excess is dropped (the twin slows down)."""


@dataclass(frozen=True)
class StepsToRun:
    """What one real-time tick does: ``run`` physics steps now, after skipping ``dropped`` that are too late."""

    run: int
    dropped: int


def steps_to_run(due: int, done: int, max_steps: int = MAX_CATCH_UP_STEPS) -> StepsToRun:
    """Physics steps for a tick when ``due`` steps have come due on the wall clock and ``done`` have run: all that are
    due, at most ``max_steps``; more behind than that, the excess is dropped, so the physics falls behind the wall
    clock instead of running a long burst."""
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    behind = due - done
    dropped = max(0, behind - max_steps)
    return StepsToRun(run=max(0, behind - dropped), dropped=dropped)


# --- robot mode and faults ----------------------------------------------------------------------------------------


@dataclass
class RobotModeMachine:
    """franka_hardware's view of the robot as the twin imitates it (../shared/notes/franka-ros2-jazzy.md, "Errors and
    recovery"): MOVE while the hardware component is active and the tracking controller runs. A reflex (or a user
    stop) leaves the hardware component unconfigured and the controllers inactive: current_pose stops, targets are
    ignored, the arm holds. Recovery is franka's three steps, in this order: the error recovery action (clears the
    errors: IDLE), the hardware component set active again (SetHardwareComponentState), the controller activated
    again (SwitchController: it starts at the measured pose, MOVE). A step out of order is refused, saying why."""

    mode: int = fi.ROBOT_MODES["MOVE"]
    errors: set[str] = field(default_factory=set)
    """Names of franka_msgs/Errors fields set in current_errors."""
    last_motion_errors: set[str] = field(default_factory=set)
    hardware_active: bool = True
    """The hardware component FrankaHardwareInterface is active (current_pose and robot_state flow)."""
    controller_running: bool = True
    """The tracking controller is active (it reads targets)."""

    @property
    def controller_active(self) -> bool:
        return self.controller_running and self.hardware_active

    def fault(self, kind: str, errors: set[str] | None = None) -> str:
        """Inject ``kind`` ("reflex" or "user_stop"); a reflex sets ``errors`` (franka_msgs/Errors field names;
        default the cartesian reflex of a collision); returns what happened."""
        if kind == "reflex":
            errors = set(errors or {"cartesian_reflex"})
            self.mode = fi.ROBOT_MODES["REFLEX"]
            self.errors = set(errors)
            self.last_motion_errors = set(errors)
            what = "reflex (" + ", ".join(sorted(errors)) + ")"
        elif kind == "user_stop":
            self.mode = fi.ROBOT_MODES["USER_STOPPED"]
            what = "user stop pressed"
        else:
            raise ValueError(f"unknown fault {kind!r} (reflex, user_stop)")
        self.hardware_active = self.controller_running = False
        return f"{what}: hardware component unconfigured, controllers deactivated"

    def check_limits(self, q, dq, q_min, q_max, dq_max) -> set[str]:
        """While the controller commands the arm: the errors :func:`limit_violations` finds, each stopping the arm in
        REFLEX with them set (the caller holds the arm); nothing while no controller runs (the brakes hold it)."""
        if not self.controller_active:
            return set()
        found = limit_violations(q, dq, q_min, q_max, dq_max)
        if found:
            self.fault("reflex", found)
        return found

    def release_user_stop(self) -> None:
        if self.mode == fi.ROBOT_MODES["USER_STOPPED"]:
            self.mode = fi.ROBOT_MODES["IDLE"]

    def recover(self) -> tuple[bool, str]:
        """Step 1, the error recovery action: clears the errors (the arm is then IDLE until a controller runs)."""
        if self.mode == fi.ROBOT_MODES["USER_STOPPED"]:
            return False, "user stop is engaged: release it first"
        had = self.mode in (fi.ROBOT_MODES["REFLEX"], fi.ROBOT_MODES["AUTOMATIC_ERROR_RECOVERY"]) or self.errors
        self.errors = set()
        if not self.controller_active:
            self.mode = fi.ROBOT_MODES["IDLE"]
        return True, "errors cleared" if had else "no error to recover from"

    def set_hardware_active(self, active: bool) -> tuple[bool, str]:
        """Step 2: the hardware component's lifecycle state (active or not)."""
        if not active:
            self.hardware_active = self.controller_running = False
            return True, "hardware component inactive"
        if self.errors or self.mode in (fi.ROBOT_MODES["REFLEX"], fi.ROBOT_MODES["USER_STOPPED"]):
            return False, f"robot in {mode_name(self.mode)} with errors {sorted(self.errors)}: run error recovery first"
        self.hardware_active = True
        return True, "hardware component active"

    def activate_controller(self) -> tuple[bool, str]:
        """Step 3: the tracking controller activated again (needs the hardware component active)."""
        if not self.hardware_active:
            return False, "hardware component FrankaHardwareInterface is not active"
        was = self.controller_running
        self.controller_running = True
        self.mode = fi.ROBOT_MODES["MOVE"]
        return True, "controller already active" if was else "controller activated"

    def deactivate_controller(self) -> str:
        """The tracking controller stopped (no error): the arm idles, held."""
        self.controller_running = False
        if self.mode == fi.ROBOT_MODES["MOVE"]:
            self.mode = fi.ROBOT_MODES["IDLE"]
        return "controller deactivated"

    def accepts_target(self) -> bool:
        return self.controller_active


def limit_violations(q, dq, q_min, q_max, dq_max) -> set[str]:
    """The franka_msgs/Errors flags the FR3's own joint monitoring raises for this joint state (the robot stops in
    REFLEX on any of them while a controller commands it): ``joint_position_limits_violation`` for a joint outside
    [q_min, q_max], ``joint_velocity_violation`` for |dq| above dq_max (franka_sim.robot's FR3 limits, from Franka's
    published FR3 specifications). The twin checks at its tick (100 Hz), the robot at 1 kHz: a violation shorter
    than a tick can go unseen here."""
    q, dq = np.asarray(q, dtype=float), np.asarray(dq, dtype=float)
    found = set()
    if np.any(q < q_min) or np.any(q > q_max) or not np.all(np.isfinite(q)):
        found.add("joint_position_limits_violation")
    if np.any(np.abs(dq) > dq_max) or not np.all(np.isfinite(dq)):
        found.add("joint_velocity_violation")
    return found


def mode_name(mode: int) -> str:
    """ROBOT_MODE name of a robot_mode value."""
    return next((k for k, v in fi.ROBOT_MODES.items() if v == mode), str(mode))


# --- PTP motion (franka_hardware's action server) --------------------------------------------------------------


def ptp_goal_reason(goal, max_velocities, tolerance: float, q_min, q_max, dq_max, mode: RobotModeMachine) -> str:
    """"" if a PTPMotion goal can run, else why it is aborted: 7 finite joint positions inside the limits, 7 maximum
    velocities in (0, the FR3's], a tolerance > 0; the hardware active, no error, and the tracking controller not
    running (a joint motion and the Cartesian controller would both command the arm)."""
    g, v = np.asarray(goal, dtype=float), np.asarray(max_velocities, dtype=float)
    if g.shape != (7,) or v.shape != (7,):
        return f"need 7 joint positions and 7 maximum velocities, got {g.size} and {v.size}"
    if not (np.all(np.isfinite(g)) and np.all(np.isfinite(v)) and math.isfinite(tolerance)):
        return "goal, velocities and tolerance must be finite"
    if np.any(g < q_min) or np.any(g > q_max):
        return f"goal outside the joint limits: {np.round(g, 3).tolist()}"
    if np.any(v <= 0) or np.any(v > dq_max):
        return f"maximum velocities must be in (0, {np.round(dq_max, 2).tolist()}]"
    if not tolerance > 0:
        return f"goal_tolerance must be > 0, got {tolerance}"
    if not mode.hardware_active or mode.errors:
        return "robot not ready (hardware component inactive or errors): run the error recovery first"
    if mode.controller_running:
        return "the tracking controller is active: deactivate it first (switch_controller)"
    return ""


def ptp_step(q_now, goal, max_velocities, dt: float) -> np.ndarray:
    """The joint setpoint ``dt`` later on the straight joint-space line to ``goal``, every joint arriving together:
    the slowest joint (distance / its maximum velocity) sets the pace."""
    q_now, goal, v = (np.asarray(a, dtype=float) for a in (q_now, goal, max_velocities))
    delta = goal - q_now
    duration = float(np.max(np.abs(delta) / v))
    if duration <= dt:
        return goal.copy()
    return q_now + delta * (dt / duration)


# --- gripper ------------------------------------------------------------------------------------------------------
MAX_WIDTH = 0.08
"""Franka Hand opening (m), known after homing."""
SETTLED_SPEED = 0.002
"""A finger opening changing slower than this (m/s) has stopped."""


def move_goal_reason(width: float, speed: float, homed: bool, max_width: float = MAX_WIDTH) -> str:
    """"" if a move / grasp goal is acceptable, else why it is aborted (franka_gripper aborts goals beyond the max
    width it knows from homing)."""
    if not (math.isfinite(width) and math.isfinite(speed)):
        return f"non-finite goal width {width} speed {speed}"
    if not homed:
        return "gripper not homed: max width unknown (call homing first)"
    if not 0.0 <= width <= max_width:
        return f"width {width:.4f} m outside [0, {max_width}]"
    if speed <= 0.0:
        return f"speed must be > 0, got {speed}"
    return ""


def grasp_success(width: float, goal: float, inner: float, outer: float) -> bool:
    """franka_gripper's grasp rule: the fingers stopped within [goal - inner, goal + outer]."""
    return goal - inner <= width <= goal + outer
