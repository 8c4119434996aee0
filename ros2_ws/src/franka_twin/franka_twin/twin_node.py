"""ROS 2 node ``franka_twin`` (``franka-twin-node``): the franka_ros2 twin. Glue around :mod:`franka_twin.twin_core`
(laws, robot mode, gripper rules) and :mod:`franka_twin.twin_robot` (physics); every name, type and QoS comes from
``residual_ros.franka_interfaces`` (the table the real graph is checked against).

Serves, in real time (wall clock, steady timer; the physics catches up whole 5 ms steps):
current_pose + robot_state at ``current_pose_rate_hz``, merged /joint_states (+ /franka/joint_states,
/franka_gripper/joint_states), the controller's target topic, the gripper actions and stop service, franka's
three-step error recovery (the error recovery action, the controller manager's set_hardware_component_state and
switch_controller services), the RealSense colour image + camera_info. Twin-only (for tests): ``~/reset``
(ResetEpisode: task, seed), ``~/episode`` (JSON at 20 Hz: episode, step = 50 ms periods since the reset, task,
seed, time, horizon (the task's, in steps, as the sim's episodes), camera_frames (images published since the reset),
success, robot_mode, true object and TCP poses), ``~/object_poses_gt`` (ObjectPoseArray, the true object poses at
the same rate: what the sim base stand-in reads, as it reads /sim/object_poses_gt in sim mode), ``~/fault/reflex``,
``~/fault/user_stop`` (SetBool: press / release), ``~/fault/camera_dropout`` (SetBool), ``~/fault/no_hand``
(SetBool: Desk's end effector none in robot_state's F_T_EE).
"""

from __future__ import annotations

import array
import json
import math
import time

import numpy as np
from control_msgs.action import GripperCommand
from controller_manager_msgs.srv import SetHardwareComponentState, SwitchController
from franka_msgs.action import ErrorRecovery, Grasp, Homing, Move, PTPMotion
from franka_msgs.msg import FrankaRobotState, TargetStatus
from franka_sim import robot as fr
from franka_sim import sim_bridge as sb
from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion
from lifecycle_msgs.msg import State
from rclpy.action import ActionServer, CancelResponse
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.task import Future
from residual_core.action import CONTROL_DT
from residual_core.tasks import check_task
from residual_interfaces.msg import ObjectPose, ObjectPoseArray
from residual_interfaces.srv import ResetEpisode
from residual_ros import franka_interfaces as fi
from residual_ros.node_main import run_node
from residual_ros.params import declare_config
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Header, String
from std_srvs.srv import SetBool, Trigger

from franka_twin import twin_core as tc
from franka_twin.twin_robot import TwinRobot


def _pose(pos, quat) -> Pose:
    return Pose(position=Point(x=float(pos[0]), y=float(pos[1]), z=float(pos[2])),
                orientation=Quaternion(x=float(quat[0]), y=float(quat[1]), z=float(quat[2]), w=float(quat[3])))


class _GripperGoal:
    """A running gripper goal: the width commanded, its goal handle (for a cancel request) and the future the physics
    tick completes with (status, success, error)."""

    def __init__(self, kind: str, width: float, started: float, future: Future, handle, inner=0.0, outer=0.0):
        self.kind, self.width, self.started, self.future, self.handle = kind, width, started, future, handle
        self.inner, self.outer = inner, outer
        """grasp: ``width`` is the goal's width the result is judged against (the fingers close to 0)."""


class TwinNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__(fi.TWIN.name, **node_kwargs)
        self.cfg = cfg = declare_config(self, tc.TwinConfig)
        self.robot = TwinRobot(cfg)
        self.mode = tc.RobotModeMachine()
        self.steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.homed = cfg.gripper_homed
        self.camera_dropout = False
        self.target = None
        self.goal: _GripperGoal | None = None
        self.gripper_cancels = 0
        self.episode = 0
        self.seed = cfg.seed

        p = self.create_publisher
        self.pose_pub = p(PoseStamped, fi.CURRENT_POSE.name, fi.CURRENT_POSE.qos.profile())
        self.state_pub = p(FrankaRobotState, fi.ROBOT_STATE.name, fi.ROBOT_STATE.qos.profile())
        self.joint_pub = p(JointState, fi.JOINT_STATES.name, fi.JOINT_STATES.qos.profile())
        self.arm_joint_pub = p(JointState, fi.ARM_JOINT_STATES.name, fi.ARM_JOINT_STATES.qos.profile())
        self.grip_joint_pub = p(JointState, fi.GRIPPER_JOINT_STATES.name, fi.GRIPPER_JOINT_STATES.qos.profile())
        self.image_pub = p(Image, fi.COLOR_IMAGE.name, fi.COLOR_IMAGE.qos.profile())
        self.info_pub = p(CameraInfo, fi.COLOR_INFO.name, fi.COLOR_INFO.qos.profile())
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.episode_pub = p(String, "~/episode", latched)
        self.gt_pub = p(ObjectPoseArray, "~/object_poses_gt",
                        QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        target = fi.TRACKING_CONTROLLER.target
        self.target_sub = self.create_subscription(PoseStamped, target.name, self._on_target, target.qos.profile())

        ActionServer(self, Homing, fi.GRIPPER_HOMING.name, self._homing, cancel_callback=self._cancel)
        ActionServer(self, Move, fi.GRIPPER_MOVE.name, self._move, cancel_callback=self._cancel)
        ActionServer(self, Grasp, fi.GRIPPER_GRASP.name, self._grasp, cancel_callback=self._cancel)
        ActionServer(self, GripperCommand, fi.GRIPPER_COMMAND.name, self._gripper_command,
                     cancel_callback=self._cancel)
        ActionServer(self, ErrorRecovery, fi.ERROR_RECOVERY.name, self._recover)
        ActionServer(self, PTPMotion, fi.PTP_MOTION.name, self._ptp)
        self.ptp: dict | None = None
        """A running PTP motion: goal, max_velocities, tolerance, started, future."""
        self.create_service(SetHardwareComponentState, fi.SET_HARDWARE_COMPONENT_STATE.name, self._on_hardware_state)
        self.create_service(SwitchController, fi.SWITCH_CONTROLLER.name, self._on_switch_controller)
        self.create_service(Trigger, fi.GRIPPER_STOP.name, self._stop)
        self.create_service(ResetEpisode, "~/reset", self._on_reset)
        self.create_service(Trigger, "~/fault/reflex", lambda req, resp: self._fault("reflex", resp))
        self.create_service(SetBool, "~/fault/user_stop", self._on_user_stop)
        self.create_service(SetBool, "~/fault/camera_dropout", self._on_camera_dropout)
        self.create_service(SetBool, "~/fault/no_hand", self._on_no_hand)
        self.no_hand = False
        """Desk's end effector set to none (F_T_EE the identity) instead of the Franka Hand."""

        self.start_episode(cfg.task, cfg.seed)
        tick = 1.0 / cfg.current_pose_rate_hz
        self.create_timer(tick, self._tick, clock=self.steady)
        self.create_timer(1.0 / cfg.joint_state_rate_hz, self._publish_joints, clock=self.steady)
        self.create_timer(1.0 / cfg.gripper_joint_state_rate_hz, self._publish_gripper_joints, clock=self.steady)
        self.create_timer(1.0 / cfg.camera_rate_hz, self._publish_camera, clock=self.steady)
        self.get_logger().info(f"franka twin: task={cfg.task} law={cfg.law} camera at "
                               f"{'the sim pose' if cfg.camera_pose is None else cfg.camera_extrinsic} "
                               f"current_pose {cfg.current_pose_rate_hz:g} Hz")

    # --- episodes -------------------------------------------------------------------------------------------------
    def start_episode(self, task: str, seed: int) -> None:
        self.robot.reset(task, seed)
        self.mode = tc.RobotModeMachine()
        self.target = None
        self.reflexes: list[list[str]] = []
        """The joint-limit reflexes of this episode (their error names), reported in the episode status."""
        self.episode += 1
        self.seed = seed
        self.wall_start = time.monotonic()
        self.steps_done = 0
        self.camera_frames = 0
        self._publish_episode()

    def _on_reset(self, req: ResetEpisode.Request, resp: ResetEpisode.Response) -> ResetEpisode.Response:
        try:
            task = check_task(req.task or self.robot.task)
        except ValueError as exc:
            resp.success, resp.message = False, str(exc)
            return resp
        seed = int(req.seed) if req.seed >= 0 else int(time.monotonic_ns() % 2**31)
        self._finish_goal(False, "episode reset")
        self.start_episode(task, seed)
        resp.success, resp.instruction = True, self.robot.env.instruction
        resp.message = f"episode {self.episode}: task {task}, seed {seed}"
        return resp

    # --- control --------------------------------------------------------------------------------------------------
    def _on_target(self, msg: PoseStamped) -> None:
        if not self.mode.accepts_target():
            return  # controller inactive: franka's controller is deactivated and reads nothing
        p, q = msg.pose.position, msg.pose.orientation
        values = (p.x, p.y, p.z, q.x, q.y, q.z, q.w)
        if not all(math.isfinite(v) for v in values) or not 0.5 < math.sqrt(q.x**2 + q.y**2 + q.z**2 + q.w**2) < 1.5:
            self.get_logger().warn(f"target ignored (not finite / not a unit quaternion): {values}",
                                   throttle_duration_sec=2.0)
            return
        quat = np.array(values[3:])
        self.target = (np.array(values[:3]), quat / np.linalg.norm(quat))

    def _tick(self) -> None:
        due = int((time.monotonic() - self.wall_start) / self.robot.dt)
        n = tc.steps_to_run(due, self.steps_done)
        if n.dropped:
            self.get_logger().warn(f"physics {n.dropped * self.robot.dt:.3f} s behind the wall clock: dropped "
                                   "(the twin slows down rather than jumping)", throttle_duration_sec=5.0)
        self.steps_done += n.dropped
        if n.run <= 0:
            return
        if self.ptp is not None:  # the joint setpoint moves along the PTP line; the arm servoes to it
            self.robot.q_hold = tc.ptp_step(self.robot.q_hold, self.ptp["goal"], self.ptp["max_velocities"],
                                            n.run * self.robot.dt)
        self.robot.advance(n.run, self.target, self.mode.controller_active)
        self.steps_done += n.run
        self._watch_limits()
        self._check_goal()
        self._check_ptp()
        stamp = self.get_clock().now().to_msg()
        if self.mode.hardware_active:  # on a reflex franka's broadcaster stops (hardware unconfigured)
            pos, quat = self.robot.tcp_pose()
            self.pose_pub.publish(PoseStamped(header=Header(stamp=stamp, frame_id=fi.CURRENT_POSE.frame_id),
                                              pose=_pose(pos, quat)))
        self._publish_robot_state(stamp)
        if self._control_step() != self._published_step:  # the episode status at the control rate (20 Hz)
            self._publish_episode()

    def _watch_limits(self) -> None:
        """The FR3's own joint monitoring (:func:`twin_core.limit_violations`): a joint outside its limits or faster
        than its maximum velocity while the controller commands the arm stops it in REFLEX, as the robot does."""
        env = self.robot.env
        q, dq = env.joint_positions(), env.joint_velocities()
        found = self.mode.check_limits(q, dq, fr.Q_MIN, fr.Q_MAX, fr.DQ_MAX)
        if found:
            self.robot.hold()
            self.target = None
            self.reflexes.append(sorted(found))
            joints = "; ".join(f"{fi.ARM_JOINTS[i]} q {q[i]:.3f} in [{fr.Q_MIN[i]:.3f}, {fr.Q_MAX[i]:.3f}] "
                               f"dq {dq[i]:.2f} (max {fr.DQ_MAX[i]:.2f})" for i in range(7)
                               if not fr.Q_MIN[i] <= q[i] <= fr.Q_MAX[i] or not abs(dq[i]) <= fr.DQ_MAX[i])
            self.get_logger().error(f"joint limits monitoring at twin time {self.robot.time:.2f} s: reflex "
                                    f"({', '.join(sorted(found))}): {joints}; error recovery needed")

    def _publish_robot_state(self, stamp) -> None:
        msg = FrankaRobotState()
        msg.header = Header(stamp=stamp, frame_id=fi.ROBOT_STATE.frame_id)
        msg.robot_mode = self.mode.mode
        for name in self.mode.errors:
            setattr(msg.current_errors, name, True)
        for name in self.mode.last_motion_errors:
            setattr(msg.last_motion_errors, name, True)
        pos, quat = self.robot.tcp_pose()
        msg.o_t_ee = PoseStamped(header=msg.header, pose=_pose(pos, quat))
        # F_T_EE: Desk's end effector is the Franka Hand (flange -> fr3_hand_tcp), or none (~/fault/no_hand)
        ee = ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 1.0)) if self.no_hand else ((0.0, 0.0, fi.HAND_TCP_OFFSET_M),
                                                                           fi.HAND_TCP_QUAT_XYZW)
        msg.f_t_ee = PoseStamped(header=msg.header, pose=_pose(*ee))
        env = self.robot.env
        msg.measured_joint_state = JointState(header=Header(stamp=stamp), name=list(fi.ARM_JOINTS),
                                              position=[float(v) for v in env.joint_positions()],
                                              velocity=[float(v) for v in env.joint_velocities()])
        msg.time = self.robot.time
        self.state_pub.publish(msg)

    def _control_step(self) -> int:
        return int(self.robot.time / CONTROL_DT + 1e-6)

    def _publish_episode(self) -> None:
        pos, quat = self.robot.tcp_pose()
        objects = self.robot.env.object_poses()
        self._published_step = step = self._control_step()
        stamp = self.get_clock().now().to_msg()
        self.gt_pub.publish(ObjectPoseArray(
            header=Header(stamp=stamp, frame_id=fi.FRAMES.arm_base),
            objects=[ObjectPose(name=k, pose=_pose(p, q), confidence=1.0, measured=stamp)
                     for k, (p, q) in objects.items()]))
        status = {"episode": self.episode, "step": step, "task": self.robot.task, "seed": self.seed,
                  "time": self.robot.time,
                  "horizon": self.robot.env.horizon, "camera_frames": self.camera_frames,
                  "success": self.robot.success(), "robot_mode": self.mode.mode, "law": self.cfg.law,
                  "errors": sorted(self.mode.errors), "limit_reflexes": self.reflexes,
                  "tcp": [*map(float, pos), *map(float, quat)],
                  "objects": {k: [*map(float, p), *map(float, q)]
                              for k, (p, q) in objects.items()}}
        self.episode_pub.publish(String(data=json.dumps(status)))

    # --- joint states and camera ----------------------------------------------------------------------------------
    def _publish_joints(self) -> None:
        env = self.robot.env
        names, pos, vel = sb.joint_state_fields(env.joint_positions(), env.joint_velocities(),
                                                env.finger_positions(), [0.0, 0.0])
        stamp = self.get_clock().now().to_msg()
        self.joint_pub.publish(JointState(header=Header(stamp=stamp), name=names, position=pos, velocity=vel))
        self.arm_joint_pub.publish(JointState(header=Header(stamp=stamp), name=names[:7], position=pos[:7],
                                              velocity=vel[:7]))

    def _publish_gripper_joints(self) -> None:
        half = self.robot.gripper_width() / 2.0
        self.grip_joint_pub.publish(JointState(header=Header(stamp=self.get_clock().now().to_msg()),
                                               name=list(fi.FINGER_JOINTS), position=[half, half]))

    def _publish_camera(self) -> None:
        if self.camera_dropout:
            return
        env = self.robot.env
        img = env.render()
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=fi.COLOR_IMAGE.frame_id)
        intr = env.camera_intrinsics()
        fields = sb.camera_info_fields(intr.fx, intr.fy, intr.cx, intr.cy)
        self.info_pub.publish(CameraInfo(header=header, height=intr.height, width=intr.width, **fields))
        msg = Image(header=header, height=img.shape[0], width=img.shape[1], encoding="rgb8", is_bigendian=0,
                    step=img.shape[1] * 3)
        msg.data = array.array("B", img.tobytes())
        self.image_pub.publish(msg)
        self.camera_frames += 1

    # --- gripper --------------------------------------------------------------------------------------------------
    def _cancel(self, goal_handle) -> CancelResponse:
        return CancelResponse.ACCEPT

    def _start_goal(self, kind: str, width: float, goal_handle, **eps) -> Future:
        self._finish_goal(False, "preempted by a new goal")
        future = Future()
        # franka_gripper's grasp closes with the goal's force until the fingers stop; the twin's fingers close with the
        # sim's gripper force limit (the goal's force is not modelled)
        self.robot.gripper_width_target = 0.0 if kind == "grasp" else width
        self.goal = _GripperGoal(kind, width, time.monotonic(), future, goal_handle, **eps)
        return future

    def _finish_goal(self, success: bool, error: str, status: str = "") -> None:
        """End the running goal: ``status`` "canceled", or "" (succeeded / aborted by ``success``)."""
        if self.goal is not None and not self.goal.future.done():
            self.goal.future.set_result((status, success, error))
        self.goal = None

    def _end_goal(self, goal_handle, status: str, ok: bool) -> None:
        if status == "canceled":
            goal_handle.canceled()
        elif ok:
            goal_handle.succeed()
        else:
            goal_handle.abort()

    def _check_goal(self) -> None:
        g = self.goal
        if g is None:
            return
        width = self.robot.gripper_width()
        if g.handle.is_cancel_requested:  # franka_gripper: stop the gripper, then the goal ends CANCELED
            self.robot.gripper_width_target = width
            self.gripper_cancels += 1
            self.get_logger().info(f"gripper {g.kind} goal cancelled at {width:.4f} m "
                                   f"({self.gripper_cancels} cancelled so far)")
            self._finish_goal(False, "canceled", status="canceled")
            return
        moving = self.robot.gripper_speed() > tc.SETTLED_SPEED
        elapsed = time.monotonic() - g.started
        if elapsed < 0.1 or (moving and elapsed < self.cfg.gripper_timeout_s):
            return
        if g.kind == "grasp":
            ok = tc.grasp_success(width, g.width, g.inner, g.outer)
            self._finish_goal(ok, "" if ok else f"fingers stopped at {width:.4f} m, outside the grasp epsilon")
        else:
            ok = abs(width - g.width) < 0.005
            self._finish_goal(ok, "" if ok else f"fingers stopped at {width:.4f} m (goal {g.width:.4f})")

    async def _homing(self, goal_handle):
        status, ok, error = await self._start_goal("move", tc.MAX_WIDTH, goal_handle)
        self.homed = self.homed or ok
        self._end_goal(goal_handle, status, ok)
        return Homing.Result(success=ok, error="" if ok else f"homing did not reach the max width: {error}")

    async def _move(self, goal_handle):
        g = goal_handle.request
        why = tc.move_goal_reason(g.width, g.speed, self.homed)
        if why:
            goal_handle.abort()
            return Move.Result(success=False, error=why)
        status, ok, error = await self._start_goal("move", g.width, goal_handle)
        self._end_goal(goal_handle, status, ok)
        return Move.Result(success=ok, error=error)

    async def _grasp(self, goal_handle):
        g = goal_handle.request
        why = tc.move_goal_reason(g.width, g.speed, self.homed)
        if why:
            goal_handle.abort()
            return Grasp.Result(success=False, error=why)
        status, ok, error = await self._start_goal("grasp", g.width, goal_handle, inner=g.epsilon.inner,
                                                   outer=g.epsilon.outer)
        self._end_goal(goal_handle, status, ok)
        return Grasp.Result(success=ok, error=error)

    async def _gripper_command(self, goal_handle):
        width = 2.0 * goal_handle.request.command.position  # position is half the width
        status, ok, error = await self._start_goal("move", min(max(width, 0.0), tc.MAX_WIDTH), goal_handle)
        width_now = self.robot.gripper_width()
        self._end_goal(goal_handle, status, ok)
        return GripperCommand.Result(position=width_now / 2.0, effort=0.0, stalled=not ok, reached_goal=ok)

    def _stop(self, req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        self.robot.gripper_width_target = self.robot.gripper_width()
        self._finish_goal(False, "stopped")
        resp.success, resp.message = True, "gripper stopped"
        return resp

    # --- faults and recovery --------------------------------------------------------------------------------------
    def _fault(self, kind: str, resp: Trigger.Response) -> Trigger.Response:
        resp.message = self.mode.fault(kind)
        self.robot.hold()
        self.target = None
        resp.success = True
        self.get_logger().warn(f"fault injected: {resp.message}")
        return resp

    def _on_user_stop(self, req: SetBool.Request, resp: SetBool.Response) -> SetBool.Response:
        """true: press the user stop; false: release it (then the error recovery action re-activates)."""
        if req.data:
            return self._fault("user_stop", resp)
        self.mode.release_user_stop()
        resp.success, resp.message = True, "user stop released"
        return resp

    def _on_no_hand(self, req: SetBool.Request, resp: SetBool.Response) -> SetBool.Response:
        """true: report Desk's end effector as none (F_T_EE identity; only robot_state changes: the arming check)."""
        self.no_hand = bool(req.data)
        resp.success, resp.message = True, f"F_T_EE {'identity (no end effector)' if req.data else 'Franka Hand'}"
        return resp

    def _on_camera_dropout(self, req: SetBool.Request, resp: SetBool.Response) -> SetBool.Response:
        self.camera_dropout = bool(req.data)
        resp.success, resp.message = True, f"camera {'dropped out' if req.data else 'streaming'}"
        return resp

    async def _ptp(self, goal_handle):
        """franka_hardware's PTP motion: a joint-space line to the goal at the given maximum joint velocities, with
        the tracking controller inactive; TARGET_REACHED when every joint is within goal_tolerance."""
        g = goal_handle.request
        why = tc.ptp_goal_reason(g.goal_joint_configuration, g.maximum_joint_velocities, g.goal_tolerance,
                                 fr.Q_MIN, fr.Q_MAX, fr.DQ_MAX, self.mode)
        if why or self.ptp is not None:
            goal_handle.abort()
            return PTPMotion.Result(target_status=TargetStatus(status=TargetStatus.ABORTED),
                                    error_message=why or "a PTP motion is running")
        future = Future()
        q0 = self.robot.env.joint_positions()
        self.robot.q_hold = np.array(q0, dtype=float)
        duration = float(np.max(np.abs(np.asarray(g.goal_joint_configuration) - q0)
                                / np.asarray(g.maximum_joint_velocities)))
        self.ptp = {"goal": np.array(g.goal_joint_configuration, dtype=float), "tolerance": float(g.goal_tolerance),
                    "max_velocities": np.array(g.maximum_joint_velocities, dtype=float), "future": future,
                    "deadline": time.monotonic() + 2.0 * duration + 5.0}
        self.get_logger().info(f"PTP motion to {np.round(g.goal_joint_configuration, 3).tolist()} (~{duration:.1f} s)")
        ok, error = await future
        goal_handle.succeed() if ok else goal_handle.abort()
        status = TargetStatus.TARGET_REACHED if ok else TargetStatus.ABORTED
        return PTPMotion.Result(target_status=TargetStatus(status=status), error_message=error)

    def _check_ptp(self) -> None:
        p = self.ptp
        if p is None:
            return
        err = np.abs(self.robot.env.joint_positions() - p["goal"])
        if not self.mode.hardware_active or self.mode.errors:
            done = (False, "robot error during the motion")
        elif np.all(err <= p["tolerance"]):
            done = (True, "")
        elif time.monotonic() > p["deadline"]:
            done = (False, f"goal not reached (largest joint error {err.max():.4f} rad)")
        else:
            return
        self.ptp = None
        if not p["future"].done():
            p["future"].set_result(done)

    def _recover(self, goal_handle):
        ok, message = self.mode.recover()
        self.get_logger().info(f"error recovery: {message}")
        goal_handle.succeed() if ok else goal_handle.abort()  # the result is empty: the goal status says it
        return ErrorRecovery.Result()

    def _on_hardware_state(self, req, resp):
        """controller_manager's set_hardware_component_state for FrankaHardwareInterface (active or inactive)."""
        if req.name != fi.HARDWARE_COMPONENT:
            resp.ok = False
            self.get_logger().warn(f"set_hardware_component_state: no hardware component {req.name!r}")
        else:
            active = req.target_state.id == State.PRIMARY_STATE_ACTIVE or req.target_state.label == "active"
            resp.ok, message = self.mode.set_hardware_active(active)
            self.get_logger().info(f"set_hardware_component_state {req.name}: {message}")
        resp.state = (State(id=State.PRIMARY_STATE_ACTIVE, label="active") if self.mode.hardware_active
                      else State(id=State.PRIMARY_STATE_UNCONFIGURED, label="unconfigured"))
        return resp

    def _on_switch_controller(self, req, resp):
        """controller_manager's switch_controller: activating the tracking controller starts it at the measured pose;
        deactivating it stops it reading targets."""
        name = fi.TRACKING_CONTROLLER.name
        unknown = [c for c in (*req.activate_controllers, *req.deactivate_controllers) if c != name]
        if unknown and req.strictness == SwitchController.Request.STRICT:
            resp.ok = False
            self.get_logger().warn(f"switch_controller: unknown controllers {unknown} (the twin runs {name})")
            return resp
        resp.ok, message = True, "nothing to switch"
        if name in req.deactivate_controllers:
            message = self.mode.deactivate_controller()
            self.robot.hold()
        if name in req.activate_controllers:
            resp.ok, message = self.mode.activate_controller()
            if resp.ok:
                self.target = None
                self.robot.activate()  # the controller starts at the measured pose
        self.get_logger().info(f"switch_controller: {message}")
        return resp

    def destroy_node(self) -> None:
        self.robot.env.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    run_node("franka-twin-node", TwinNode, args, config_errors=(ValueError,))


if __name__ == "__main__":
    main()
