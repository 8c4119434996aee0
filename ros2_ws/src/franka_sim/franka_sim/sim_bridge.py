"""Pure logic of the franka_sim ROS node (no rclpy): configuration, the episode / lockstep state machine,
commands from the arbiter, one control step, and the field values of every message the node publishes.

The node (:mod:`franka_sim.sim_node`) is glue around this module; everything it decides is decided here.

Per control step the node publishes, in this order: ``/clock`` (when ``publish_clock``), ``/joint_states``,
``/tcp_pose``, ``/sim/object_poses_gt`` (and ``/objects/poses`` when ``publish_object_poses``), the camera info
and image of each camera (when ``render_camera`` and due at ``camera_rate_hz``; the scene camera, then the front
camera with ``front_camera``), ``/sim/episode`` and, LAST, ``/sim/step``
(std_msgs/UInt64) once all state of the step is out. All messages of a step carry one stamp: its simulated time
(continuous over episodes) when the node publishes /clock, else the node's clock at publication.

``/sim/episode`` (std_msgs/String, transient local) carries :class:`EpisodeStatus` as JSON:
``{"episode", "task", "seed", "step", "horizon", "sim_time", "stamp_ns", "success", "done", "reason"}``; ``step``
is the number of control steps applied in the episode (the state's index), ``stamp_ns`` the header stamp of the
state's messages, ``reason`` is "" while running, then "success" or "horizon". When an episode is done no
``/sim/step`` follows: the sim holds until ``/sim/reset``.

Commands: the arbiter's ``/arbiter/command`` (residual_interfaces/ArbiterCommand: episode, step, target, gripper,
valid), in both modes. A command of another episode than the sim's current one is dropped and counted
(:meth:`EpisodeMachine.accept_command`); so is, in lockstep, a command for another step than the one the sim
waits on, and in real time one older than the newest taken. A command with ``valid`` false holds the pose
(:func:`command_from_arbiter`).

Lockstep: after step t's state (and ``/sim/step`` t) is out the sim waits for the arbiter's command of (episode,
step t), applies its target pose and gripper (:func:`advance`) and runs one control period. Applying the
target ``apply_delta(tcp_t, a)`` this way is the same physics as ``FrankaTaskEnv.step(a)`` (tested to float
precision), so an episode through the ROS graph is the episode ``residual-eval`` runs. Optionally
(``lockstep_pose_topic``) the sim also waits, before ``/sim/step`` t, until the pose estimator has republished
the poses of step t, so every node computes step t on step t's poses.

Real-time mode: a 20 Hz timer applies the newest command taken in the episode (the current pose is held until
one arrives, and while the newest one is not valid).

Episodes end as in ``residual-eval``: at the first step after which the success predicate holds, or after
``horizon`` steps (success at the reset state does not count).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from residual_core.action import CONTROL_DT
from residual_core.tasks import check_task
from residual_ros.validate import pose_values_reason

from franka_sim import robot

ARM_JOINTS: tuple[str, ...] = tuple(robot.JOINT_NAMES)
"""Arm joint names in /joint_states order (fr3_joint1..7)."""
FINGER_JOINTS: tuple[str, ...] = tuple(robot.FINGER_JOINT_NAMES)
"""Finger joint names (fr3_finger_joint1/2), after the arm joints; their positions sum to the gripper width."""
BASE_FRAME = "fr3_link0"
TCP_FRAME = "fr3_hand_tcp"
CAMERA_FRAME = "camera_color_optical_frame"
FRONT_CAMERA_FRAME = "camera_front_optical_frame"
STATUS_REASONS = ("", "success", "horizon")


@dataclass(frozen=True)
class SimNodeConfig:
    """Parameters of the sim node (each is a ROS parameter of the same name)."""

    task: str = "cube_lift"
    """Task scene (residual_core.tasks); /sim/reset may switch it."""
    seed: int = 0
    """Seed of the episode started at startup (with autostart); negative: a random seed."""
    autostart: bool = True
    """Start an episode when the node comes up (else wait for /sim/reset)."""
    lockstep: bool = True
    """Advance only when the arbiter's command for the current step arrived (else a 20 Hz timer)."""
    control_dt: float = CONTROL_DT
    """Control period (s); must equal the simulator's (timestep x substeps = 0.05)."""
    max_steps: int = 0
    """Episode length in control steps; 0: the task's horizon."""
    publish_clock: bool = True
    """Publish the simulated time on /clock (for nodes with use_sim_time)."""
    publish_object_poses: bool = False
    """Also publish the ground-truth object poses on /objects/poses (graph pose_source ground_truth)."""
    render_camera: bool = False
    """Render and publish the scene camera on /camera/image_raw (rgb8) + /camera/camera_info."""
    front_camera: bool = True
    """With ``render_camera``: also render the front camera and publish it on /camera_front/image_raw +
    /camera_front/camera_info (same stamp, size and intrinsics)."""
    image_width: int = 640
    """Camera image width (px). Markers are only detectable from about 480 px."""
    image_height: int = 480
    """Camera image height (px)."""
    camera_rate_hz: float = 20.0
    """Camera rate in simulated time (rendered every round(1 / (rate * control_dt)) steps)."""
    lockstep_pose_topic: str = "none"
    """Lockstep: before /sim/step t, wait for one ObjectPoseArray on this topic (e.g. /objects/poses from the
    pose estimator), so every node sees step t's poses; none: do not wait."""
    lockstep_pose_timeout_s: float = 1.0
    """Lockstep: publish /sim/step anyway (with a warning) if the poses take longer than this (wall s)."""
    lockstep_pose_retry_s: float = 0.1
    """Lockstep: the wait instead of ``lockstep_pose_timeout_s`` while the previous wait expired and no poses came
    since (the estimator is down or restarting): the episode goes on at about 1 / this steps per second, not one
    step per timeout; the first poses that come restore the full wait."""
    resend_period_s: float = 0.5
    """Lockstep: re-publish the state and /sim/step when no command came for this long (wall s): a lost message
    (DDS still matching after a start or restart, a flooded queue) or a node that started late. Every node answers a
    re-published step idempotently, so this bounds how long lockstep can stand still with every node up."""
    diagnostics_period_s: float = 1.0
    """Period of /diagnostics (steady s): episode, step, commands dropped by reason, input messages dropped."""
    frame_id: str = BASE_FRAME
    """Robot base frame of poses and targets."""
    camera_frame_id: str = CAMERA_FRAME
    """Frame of the camera image (optical frame: x right, y down, z forward)."""

    def __post_init__(self) -> None:
        check_task(self.task)
        if not (math.isfinite(self.control_dt) and self.control_dt > 0):
            raise ValueError(f"control_dt must be > 0, got {self.control_dt}")
        if self.max_steps < 0:
            raise ValueError(f"max_steps must be >= 0 (0: the task's horizon), got {self.max_steps}")
        if self.image_width < 1 or self.image_height < 1:
            raise ValueError(f"image size must be positive, got {self.image_width}x{self.image_height}")
        if not (math.isfinite(self.camera_rate_hz) and self.camera_rate_hz > 0):
            raise ValueError(f"camera_rate_hz must be > 0, got {self.camera_rate_hz}")
        if not 0 < self.lockstep_pose_retry_s <= self.lockstep_pose_timeout_s:
            raise ValueError(f"lockstep_pose_retry_s must be in (0, lockstep_pose_timeout_s = "
                             f"{self.lockstep_pose_timeout_s}], got {self.lockstep_pose_retry_s}")
        for name in ("lockstep_pose_timeout_s", "resend_period_s", "diagnostics_period_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

    @property
    def pose_topic(self) -> str | None:
        """The lockstep pose barrier topic, or None."""
        return None if self.lockstep_pose_topic in ("", "none") else self.lockstep_pose_topic


def check_control_dt(configured: float, simulator: float) -> float:
    """The simulator's control period, if ``configured`` agrees with it (else ValueError naming both)."""
    if abs(configured - simulator) > 1e-9:
        raise ValueError(f"control_dt {configured} does not match the simulator's control period {simulator} "
                         "(physics timestep x substeps)")
    return simulator


def camera_every(rate_hz: float, control_dt: float) -> int:
    """Render the camera every this many control steps for ``rate_hz`` (at least 1: every step)."""
    return max(1, round(1.0 / (rate_hz * control_dt)))


def resolve_seed(seed: int, rng: np.random.Generator) -> int:
    """``seed`` if >= 0, else a fresh one from ``rng`` (0 .. 2**31 - 1)."""
    return int(seed) if seed >= 0 else int(rng.integers(0, 2**31 - 1))


# --- episode / lockstep state machine ------------------------------------------------------------------------------


class Phase(StrEnum):
    IDLE = "idle"
    """No episode yet."""
    WAIT_POSES = "wait_poses"
    """Lockstep: state of the step published, waiting for the pose estimator before /sim/step."""
    WAIT_COMMAND = "wait_command"
    """/sim/step published; lockstep: waiting for the arbiter's command of this step."""
    DONE = "done"
    """Episode over; holding until reset."""


@dataclass(frozen=True)
class EpisodeStatus:
    """What /sim/episode reports (as JSON)."""

    episode: int
    """Episode counter of this node (1 for the first)."""
    task: str
    seed: int
    step: int
    """Control steps applied in this episode (= index of the current state)."""
    horizon: int
    sim_time: float
    """Simulated time of the current state (s, continuous over episodes: the /clock value)."""
    stamp_ns: int
    """Header stamp of the current state's messages (ns): sim_time with /clock, else the node's clock."""
    success: bool
    """The success predicate held after the last step."""
    done: bool
    reason: str
    """"" while running, "success" or "horizon" when done."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EpisodeStatus:
        data = json.loads(text)
        missing = {f for f in cls.__dataclass_fields__} - set(data)
        if missing:
            raise ValueError(f"episode status lacks {sorted(missing)}: {text!r}")
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


COMMAND_DROP_REASONS = ("not_waiting", "other_episode", "old_step", "future_step")


@dataclass(frozen=True)
class CommandCheck:
    """Whether a command for (episode, step) is taken, and why not."""

    accepted: bool
    reason: str
    """"accepted", or one of COMMAND_DROP_REASONS: "not_waiting" (no episode running, or, in lockstep, no step
    outstanding: done, idle, or waiting for poses), "other_episode" (not the sim's current episode), "old_step"
    (lockstep: an earlier step; real time: older than the newest command taken), "future_step" (lockstep: a
    later step; both modes: a step at or beyond the episode's horizon, which it never reaches)."""


class EpisodeMachine:
    """Step counter, phase and end of episode; times are wall-clock seconds given by the caller."""

    def __init__(self, lockstep: bool = True, wait_for_poses: bool = False):
        self.lockstep = lockstep
        self.wait_for_poses = wait_for_poses and lockstep
        self.phase = Phase.IDLE
        self.episode = 0
        self.task = ""
        self.seed = -1
        self.step = 0
        self.horizon = 0
        self.success = False
        self.reason = ""
        self.published_at = 0.0
        self.resends = 0
        self.step_sent = False
        """/sim/step was published for the current step (so a command for it may come)."""
        self.poses_overdue = False
        """The last wait for poses expired and none came since (see :meth:`pose_timeout`)."""
        self.newest_command_step: int | None = None
        """Real time: step of the newest command taken in this episode."""
        self.dropped: dict[str, int] = dict.fromkeys(COMMAND_DROP_REASONS, 0)
        """Commands dropped, by reason (over all episodes)."""

    @property
    def running(self) -> bool:
        return self.phase in (Phase.WAIT_POSES, Phase.WAIT_COMMAND)

    def begin(self, task: str, seed: int, horizon: int) -> None:
        """A new episode at step 0 (the env was just reset)."""
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.episode += 1
        self.task, self.seed, self.horizon = task, int(seed), int(horizon)
        self.step, self.success, self.reason, self.step_sent = 0, False, "", False
        self.newest_command_step = None
        self.phase = Phase.WAIT_COMMAND  # until state_published() says otherwise

    def state_published(self, now: float, poses_expected: bool = True) -> bool:
        """The step's state is out; returns True if /sim/step must follow now (False: wait for poses, or done).

        ``poses_expected``: this step's state holds what the pose estimator answers (ground truth; or a camera
        image when the camera renders at a lower rate than the control rate)."""
        self.published_at = now
        if self.phase == Phase.DONE:
            return False
        wait = self.wait_for_poses and poses_expected
        self.phase = Phase.WAIT_POSES if wait else Phase.WAIT_COMMAND
        self.step_sent = self.step_sent or not wait
        return not wait

    def poses_arrived(self) -> bool:
        """The pose estimator republished this step's poses; True if /sim/step must be published now."""
        self.poses_overdue = False
        if self.phase != Phase.WAIT_POSES:
            return False
        self.phase, self.step_sent = Phase.WAIT_COMMAND, True
        return True

    def pose_timeout(self, full: float, retry: float) -> float:
        """How long to wait for this step's poses: ``full``, or ``retry`` while the last wait expired with no poses
        since (a dead or restarting estimator costs ``retry`` per step, not ``full``)."""
        return retry if self.poses_overdue else full

    def pose_wait_expired(self, now: float, timeout: float) -> bool:
        """True (and /sim/step is due) when the poses did not come within ``timeout``."""
        if self.phase == Phase.WAIT_POSES and now - self.published_at >= timeout:
            self.phase, self.step_sent, self.poses_overdue = Phase.WAIT_COMMAND, True, True
            return True
        return False

    def check_command(self, episode: int, step: int) -> CommandCheck:
        """May the command for (``episode``, ``step``) be applied now? Only one of the current episode. Lockstep:
        only the current step's, once its /sim/step is out (also while a re-published state waits for its poses:
        the command answers the first /sim/step). Real time: any step not older than the newest taken. Never a
        step the episode does not reach (at or beyond its horizon: a far-future step would, in real time, lock the
        newest-step rule onto it for the rest of the episode)."""
        if not self.running:
            return CommandCheck(False, "not_waiting")
        # What the command names is judged before when it came: a command of another episode, or of a step the
        # episode never reaches, is that whether or not a step is outstanding (so its count does not depend on
        # how fast the pose estimator answered).
        if episode != self.episode:
            return CommandCheck(False, "other_episode")
        if step >= self.horizon:
            return CommandCheck(False, "future_step")
        if self.lockstep and not self.step_sent:
            return CommandCheck(False, "not_waiting")
        if not self.lockstep:
            newest = self.newest_command_step
            return CommandCheck(False, "old_step") if newest is not None and step < newest else CommandCheck(
                True, "accepted")
        if step < self.step:
            return CommandCheck(False, "old_step")
        if step > self.step:
            return CommandCheck(False, "future_step")
        return CommandCheck(True, "accepted")

    def accept_command(self, episode: int, step: int) -> CommandCheck:
        """:meth:`check_command`, counting a dropped command in ``dropped`` and noting a taken one's step."""
        check = self.check_command(episode, step)
        if check.accepted:
            self.newest_command_step = int(step)
        else:
            self.dropped[check.reason] += 1
        return check

    def advanced(self, success: bool) -> bool:
        """One control step was applied; ends the episode on success or at the horizon. Returns ``done``."""
        if not self.running:
            raise RuntimeError(f"advanced() without a running episode (phase {self.phase.value})")
        self.step += 1
        self.step_sent = False
        self.success = bool(success)
        if self.success:
            self.phase, self.reason = Phase.DONE, "success"
        elif self.step >= self.horizon:
            self.phase, self.reason = Phase.DONE, "horizon"
        self.resends = 0
        return self.phase == Phase.DONE

    def resend_due(self, now: float, period: float) -> bool:
        """Lockstep: no command for ``period`` since the state went out; True (counted) if a resend is due."""
        if self.lockstep and self.phase == Phase.WAIT_COMMAND and now - self.published_at >= period:
            self.published_at = now
            self.resends += 1
            return True
        return False

    def status(self, sim_time: float, stamp_ns: int | None = None) -> EpisodeStatus:
        """The status now; ``stamp_ns`` defaults to ``sim_time`` in ns."""
        stamp = round(float(sim_time) * 1e9) if stamp_ns is None else int(stamp_ns)
        return EpisodeStatus(episode=self.episode, task=self.task, seed=self.seed, step=self.step,
                             horizon=self.horizon, sim_time=round(float(sim_time), 9), stamp_ns=stamp,
                             success=self.success,
                             done=self.phase == Phase.DONE, reason=self.reason)


# --- commands ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetCommand:
    """An absolute TCP target in the base frame and a gripper command."""

    pos: np.ndarray
    """(3,) target position (m)."""
    quat: np.ndarray
    """(4,) target orientation x y z w (within 10 % of unit length; normalised by the simulator)."""
    gripper: float
    """Gripper command in [0, 1] (0 open)."""
    source: str
    """"arbiter" or "hold" (no valid target: keep the current pose)."""


def command_from_target(pos, quat_xyzw, gripper: float) -> tuple[TargetCommand | None, str]:
    """A command from a target pose + gripper, or (None, why) when it cannot be applied.

    Reasons: "ok", "no_target" (all-zero quaternion: the arbiter had no valid command this step),
    "non_finite", "bad_quaternion" (norm far from 1), "out_of_range" (a position no scene has: residual_ros.validate's
    bound). The gripper is clipped to [0, 1].
    """
    p = np.asarray(pos, dtype=np.float64).reshape(3)
    q = np.asarray(quat_xyzw, dtype=np.float64).reshape(4)
    g = float(gripper)
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(q)) and math.isfinite(g)):
        return None, "non_finite"
    if not np.any(q):
        return None, "no_target"
    reason = pose_values_reason(p.tolist(), q.tolist())  # no overflow on a quaternion of 1e200
    if reason:
        return None, reason
    # Not normalised here: BatchSim.step_to_pose normalises every target, offline (the trainer's backend) and here
    # alike, so the graph and the closed loop run the same floating-point path.
    return TargetCommand(p, q, min(max(g, 0.0), 1.0), "arbiter"), "ok"


def command_from_arbiter(valid: bool, target_pos, target_quat, gripper: float) -> tuple[TargetCommand | None, str]:
    """The command an ArbiterCommand carries: (None, "invalid") when ``valid`` is false (the arbiter formed no
    target: hold), else as :func:`command_from_target`."""
    if not valid:
        return None, "invalid"
    return command_from_target(target_pos, target_quat, gripper)


def hold_command(tcp_pos, tcp_quat, gripper: float) -> TargetCommand:
    """Keep the current TCP pose (one control step towards it) with ``gripper``."""
    return TargetCommand(np.asarray(tcp_pos, dtype=np.float64).copy(), np.asarray(tcp_quat, dtype=np.float64).copy(),
                         min(max(float(gripper), 0.0), 1.0), "hold")


def advance(env: Any, command: TargetCommand) -> dict[str, Any]:
    """One control period of ``env`` (a FrankaTaskEnv) towards ``command``; returns set_target_pose's report
    (pose_error, ik_joint_limited, success) plus the command's source."""
    info = env.set_target_pose(command.pos, command.quat, command.gripper)
    return {**info, "source": command.source}


# --- message field values ------------------------------------------------------------------------------------------


def stamp_parts(seconds: float) -> tuple[int, int]:
    """(sec, nanosec) of a non-negative time in seconds."""
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"time stamp must be finite and >= 0, got {seconds}")
    ns = round(seconds * 1e9)
    return ns // 1_000_000_000, ns % 1_000_000_000


class SimClock:
    """Simulated time on /clock, continuous over episodes: a reset never makes the clock go backwards."""

    def __init__(self, control_dt: float):
        self.control_dt = control_dt
        self.offset = 0.0
        self.last = 0.0
        self._started = False

    def now(self, episode_time: float) -> float:
        """Clock value of a state ``episode_time`` seconds into the current episode."""
        self.last = self.offset + float(episode_time)
        return self.last

    def new_episode(self) -> float:
        """The next episode starts one control period after the last published time; returns its start."""
        if self._started:
            self.offset = self.last + self.control_dt
        self._started = True
        self.last = self.offset
        return self.offset


def joint_state_fields(arm_q, arm_dq, finger_q, finger_dq) -> tuple[list[str], list[float], list[float]]:
    """(names, positions, velocities) of /joint_states: fr3_joint1..7 then the two fingers."""
    pos = np.concatenate([np.asarray(arm_q, dtype=np.float64).reshape(7), np.asarray(finger_q).reshape(2)])
    vel = np.concatenate([np.asarray(arm_dq, dtype=np.float64).reshape(7), np.asarray(finger_dq).reshape(2)])
    return list(ARM_JOINTS + FINGER_JOINTS), pos.tolist(), vel.tolist()


def camera_info_fields(fx: float, fy: float, cx: float, cy: float) -> dict[str, list[float] | str]:
    """k, p, r, d and distortion model of sensor_msgs/CameraInfo for an undistorted pinhole camera."""
    return {
        "k": [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0],
        "p": [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0],
        "r": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        "d": [0.0] * 5,
        "distortion_model": "plumb_bob",
    }
