"""ROS 2 node: base action (step t) + residual (step t, if in time) -> safety envelope -> target pose + gripper.

Thin glue around :class:`action_arbiter.arbiter.Arbiter`. When the base action of step t arrives the node
waits for the residual of step t, then decides: in real time up to ``residual_deadline_s`` (shorter than a control
period) from the arrival of the oldest undecided base action (a fixed deadline, never restarted by later inputs), in
lockstep up to ``lockstep_residual_wait_s`` (the simulator waits for the command); both on the steady clock, so a
paused simulation cannot stall it. Base and residual are paired by (episode, step): an action of another episode
starts that episode; implausible, stale and re-sent steps are handled by :class:`~action_arbiter.arbiter.StepMatcher`.

Every input is checked by ``residual_ros.validate`` (frame, finiteness, magnitude, stamp against this node's clock)
and a bad one dropped and counted (/diagnostics "dropped ..."), never fatal; a base action that is not finite or
absurdly large is still answered (the envelope rejects it: hold the pose, keep the gripper), so a lockstep step is
never left without a command. The TCP pose composed from passes :class:`~action_arbiter.tcp_gate.TcpGate` (no jumps,
no out-of-order poses, not stale in real time); without one the decision has no target.

Outputs: ``~/command`` (ArbiterCommand, every decided step, holds included: what the simulator executes),
``~/target_pose`` (PoseStamped) and ``~/gripper`` (Float64) (the robot's tracking controller and gripper bridge;
only when there is a target), ``~/correction`` (Correction, every step, a record for analysis), ``~/markers`` (three
arrows), ``~/object_markers`` (the object poses it receives, for rviz2), ``/diagnostics``; service
``~/enable_residual`` (SetBool). In real-time mode a watchdog ticking every half control period holds the pose when
the base goes stale (``base_stale_periods``), and counts the ticks at which more than one control period has passed
without a command (/diagnostics ``late_ticks``, ``max_command_gap_s``); in lockstep the simulator waits for
commands, so there is no wall-clock staleness.

Lab gating (``lab.*``, :mod:`action_arbiter.lab`; real mode): with ``lab.require_arming`` the node starts disarmed
and publishes no target (decisions are still made and recorded, clip reason "disarmed") until ``~/arm`` (SetBool
true) finds the robot ready (robot state, Desk end effector, a fresh TCP pose inside the workspace box, the deadman
held); refusals say why. A robot error (robot_mode REFLEX, USER_STOPPED, current errors), a stale robot state or TCP
pose, a silent deadman (``lab.heartbeat_topic``) or ``~/stop`` (Trigger; also stops the gripper through
``lab.gripper_stop_service``) disarms and holds: one target at the measured pose, then nothing. ``~/resync``
(Trigger) takes the next measured TCP pose as it comes (after franka's error recovery). ``lab.speed_scale`` (0, 1]
scales the envelope's per-step limits, settable while running.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from residual_core.action import ACTION_DIM
from residual_interfaces.msg import ArbiterCommand, Correction, EefAction, ObjectPoseArray
from residual_ros.episode_status import status_fields
from residual_ros.node_main import run_node
from residual_ros.params import declare_config
from residual_ros.qos import latest_input_qos
from residual_ros.validate import (
    DropCounter,
    eef_action_reason,
    object_pose_array_reason,
    object_pose_reason,
    pose_stamped_reason,
    same_frames,
    stamp_ns,
)
from std_msgs.msg import Bool, Float64, String
from std_srvs.srv import SetBool, Trigger
from visualization_msgs.msg import MarkerArray

from action_arbiter.arbiter import (
    Arbiter,
    ArbiterStats,
    Decision,
    StepMatcher,
    base_is_stale,
    poses_are_stale,
)
from action_arbiter.lab import LabGuard, TcpView, check_speed_scale
from action_arbiter.node_config import ArbiterNodeConfig
from action_arbiter.tcp_gate import TcpGate
from action_arbiter.visuals import action_arrows, command_msg, correction_msg, diagnostics, object_markers


def _ns(stamp: Time | None) -> int:
    return -1 if stamp is None else stamp_ns(stamp)


class ArbiterNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("arbiter", **node_kwargs)
        self.cfg = cfg = declare_config(self, ArbiterNodeConfig)
        self.arbiter = Arbiter(cfg.to_arbiter_config(), residual_enabled=cfg.residual_enabled)
        self.guard = LabGuard(cfg.lab, cfg.envelope.workspace_min, cfg.envelope.workspace_max)
        self._apply_speed_scale()
        self.get_logger().info(f"residual bound {list(self.arbiter.cfg.pipeline.residual_scale)} (from "
                               f"{cfg.checkpoint_path()}, x "
                               f"{list(cfg.residual_scale_fraction)}); composing from the "
                               f"{self.arbiter.cfg.compose_from} pose (compose_from {cfg.compose_from})")
        self.stats, self.window = ArbiterStats(), ArbiterStats()
        self.steady = Clock(clock_type=ClockType.STEADY_TIME)
        # base and residual per step; matcher.pending: the deadline timer runs for it
        self.matcher = StepMatcher(max_step_gap=cfg.max_step_gap)
        self.dropped = DropCounter()
        self.tcp_gate = TcpGate(cfg.tcp)
        self._frames = same_frames(cfg.frame_id)  # franka_ros2 stamps the TCP pose in "base", identical to fr3_link0
        self._last_command: ArbiterCommand | None = None
        self.resent_commands = 0
        """Commands re-sent for a base action of the step just decided (lockstep re-publication)."""
        self._last_base_s: float | None = None
        self._last_pose_s: float | None = None
        self._last_command_s: float | None = None
        self._last_decided_s: float | None = None
        self.late_ticks, self._late_ticks_window = 0, 0
        """Watchdog ticks (real time) at which more than one control period had passed without a command."""
        self._max_gap_window = 0.0
        self._have_tcp = False
        self._newest_tcp_ns = -1
        """Stamp of the newest valid TCP pose received (accepted by the gate or not)."""
        # Lockstep with sim time: a stamp names a simulated state, and the base stamps its action with the time of
        # the state it saw; step t is decided on a TCP pose at least that new (or at the residual deadline).
        self._match_stamps = cfg.lockstep and bool(self.get_parameter("use_sim_time").value)

        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.target_pub = self.create_publisher(PoseStamped, "~/target_pose", reliable)
        self.controller_pub = (self.create_publisher(PoseStamped, cfg.controller_pose_topic, reliable)
                               if cfg.controller_pose_topic not in ("", "none") else None)
        self.gripper_pub = self.create_publisher(Float64, "~/gripper", reliable)
        self.command_pub = self.create_publisher(ArbiterCommand, "~/command", reliable)
        # The record of every decision (loggers, the demo's session): a deeper history, so that a reader that falls
        # behind for a moment (a GC pause, a loaded machine) still gets each one (KEEP_LAST drops the oldest unacked).
        self.correction_pub = self.create_publisher(
            Correction, "~/correction", QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
        self.marker_pub = self.create_publisher(MarkerArray, "~/markers", 10)
        self.object_marker_pub = self.create_publisher(MarkerArray, "~/object_markers", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # Inputs before actions: when several messages are ready at once, rclpy serves subscriptions in creation
        # order, one message each per round, so the TCP pose of step t is taken before the actions of step t are
        # decided (lockstep). Best effort: object poses depth 1, the newest only; TCP poses depth 10, so a flood of
        # forged poses cannot push the real one out of the queue before it is read; the gate takes them in stamp
        # order (an older one queued behind a newer one is dropped as out of order). Reliable with reliable_inputs
        # (lockstep simulation: a lost TCP pose is never replaced), as deep as residual_ros.qos says.
        self.create_subscription(PoseStamped, "/tcp_pose", self._on_tcp,
                                 latest_input_qos(cfg.reliable_inputs, depth=None if cfg.reliable_inputs else 10))
        self.create_subscription(ObjectPoseArray, "/objects/poses", self._on_poses,
                                 latest_input_qos(cfg.reliable_inputs))
        if cfg.episode_topic != "none":  # before the actions: a status and an action ready together, status first
            self.create_subscription(String, cfg.episode_topic, self._on_status, reliable)
        self.create_subscription(EefAction, cfg.base_topic, self._on_base, reliable)
        self.create_subscription(EefAction, cfg.residual_topic, self._on_residual, reliable)
        self.create_service(SetBool, "~/enable_residual", self._on_enable)
        # lab gating (action_arbiter.lab)
        self.create_service(SetBool, "~/arm", self._on_arm)
        self.create_service(Trigger, "~/stop", self._on_stop)
        self.create_service(Trigger, "~/resync", self._on_resync)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if cfg.lab.watches_robot_state:
            try:
                from franka_msgs.msg import FrankaRobotState
            except ImportError:
                raise ValueError(f"lab.robot_state_topic {cfg.lab.robot_state_topic} needs franka_msgs (franka_ros2; "
                                 "make setup builds a stand-in from ros2_ws/compat)") from None
            from residual_ros import franka_interfaces as fi

            self.create_subscription(FrankaRobotState, cfg.lab.robot_state_topic, self._on_robot_state,
                                     fi.ROBOT_STATE.qos.profile())
        if cfg.lab.has_deadman:
            self.create_subscription(Bool, cfg.lab.heartbeat_topic, self._on_heartbeat, 10)
        self._gripper_stop = (self.create_client(Trigger, cfg.lab.gripper_stop_service)
                              if cfg.lab.gripper_stop_service not in ("", "none") else None)
        # One deadline timer, started when a step starts waiting and never restarted while one waits (creating and
        # destroying a timer per step made every step's wait set change).
        wait_s = cfg.lockstep_residual_wait_s if cfg.lockstep else cfg.residual_deadline_s
        self._deadline_timer = self.create_timer(wait_s, self._deadline, clock=self.steady)
        self._deadline_timer.cancel()
        if not cfg.lockstep:
            self.create_timer(cfg.control_dt / 2, self._watchdog, clock=self.steady)
        self.create_timer(cfg.diagnostics_period_s, self._publish_diagnostics, clock=self.steady)

    # --- inputs --------------------------------------------------------------------------------------------------
    def _steady_s(self) -> float:
        return self.steady.now().nanoseconds * 1e-9

    def _ros_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _now_ns(self) -> int | None:
        """This node's clock for judging stamps; None before a sim-time clock has started (it reads 0)."""
        now = self.get_clock().now().nanoseconds
        return now if now > 0 else None

    def _drop(self, topic: str, reason: str) -> None:
        if self.dropped.drop(topic, reason):
            self.get_logger().warn(f"dropped a message on {topic}: {reason} "
                                   f"({self.dropped.counts[f'{topic}/{reason}']} so far)")

    def _on_status(self, msg: String) -> None:
        try:
            (episode,) = status_fields(msg.data, ("episode",))
        except ValueError:
            self._drop(self.cfg.episode_topic, "bad_status")
            return
        self.matcher.announce(episode)

    def _on_tcp(self, msg: PoseStamped) -> None:
        reason = pose_stamped_reason(msg, self._frames, self._now_ns())
        if not reason:
            # the measured pose stream is alive (what the lab guard's freshness judges, jump or not)
            self._newest_tcp_ns = max(self._newest_tcp_ns, stamp_ns(msg.header.stamp))
            p, q = msg.pose.position, msg.pose.orientation
            reason = self.tcp_gate.offer((p.x, p.y, p.z), (q.x, q.y, q.z, q.w), stamp_ns(msg.header.stamp))
        if reason:
            self._drop("/tcp_pose", reason)
            return
        self._have_tcp = True
        pending = self.matcher.pending
        if pending is not None and self.matcher.has_base(pending) and self._ready(pending):
            self._decide(pending)

    def _tcp(self) -> tuple[np.ndarray, np.ndarray, str]:
        """The TCP pose to compose from (NaN when there is none usable) and why not ("" when usable)."""
        pose, why = self.tcp_gate.current(None if self.cfg.lockstep else self._now_ns())
        if pose is None:
            return np.full(3, np.nan), np.array([0.0, 0.0, 0.0, 1.0]), why
        return pose[0], pose[1], ""

    def _tcp_current(self, step: int) -> bool:
        """The TCP pose may be composed from for ``step`` (:meth:`TcpGate.ready_for`)."""
        return self.tcp_gate.ready_for(_ns(self.matcher.base_stamp(step)) if self._match_stamps else None)

    def _ready(self, step: int) -> bool:
        return (self.matcher.has_residual(step) or not self._residual_wanted()) and self._tcp_current(step)

    def _on_poses(self, msg: ObjectPoseArray) -> None:
        reason = object_pose_array_reason(msg, self._frames, self._now_ns())
        if reason:
            self._drop("/objects/poses", reason)
            return
        self._last_pose_s = self._ros_s()
        if self.object_marker_pub.get_subscription_count():
            objs = [(o.name, np.array([o.pose.position.x, o.pose.position.y, o.pose.position.z, o.pose.orientation.x,
                                       o.pose.orientation.y, o.pose.orientation.z, o.pose.orientation.w]),
                     float(o.confidence)) for o in msg.objects if not object_pose_reason(o)]
            self.object_marker_pub.publish(object_markers(objs, self.cfg.frame_id, msg.header.stamp,
                                                          lifetime_s=self.cfg.pose_timeout))

    def _on_enable(self, req: SetBool.Request, resp: SetBool.Response) -> SetBool.Response:
        was = self.arbiter.set_residual_enabled(req.data)
        resp.success = True
        resp.message = f"residual {'enabled' if req.data else 'disabled'} (was {'enabled' if was else 'disabled'})"
        self.get_logger().info(resp.message)
        return resp

    def _residual_wanted(self) -> bool:
        stale = poses_are_stale(self._ros_s(), self._last_pose_s, self.arbiter.cfg)
        return self.arbiter.residual_enabled and not (stale and self.arbiter.cfg.stale_pose_policy != "ignore")

    def _action(self, msg: EefAction, topic: str) -> np.ndarray | None:
        """The message's action, NaN when it is not finite or absurd (still answered: the envelope rejects it), None
        when the message is dropped (another length, a stamp from the future, too old in real time)."""
        now = self._now_ns()
        reason = eef_action_reason(msg, now)
        if not reason and not self.cfg.lockstep and now is not None and topic == self.cfg.base_topic and \
                now - stamp_ns(msg.header.stamp) > self.cfg.base_max_age_s * 1e9:
            reason = "stamp_old"
        if reason:
            self._drop(topic, reason)
            if reason in ("not_finite", "out_of_range"):
                return np.full(ACTION_DIM, np.nan)
            return None
        return np.asarray(msg.action, dtype=np.float64)

    def _on_base(self, msg: EefAction) -> None:
        action = self._action(msg, self.cfg.base_topic)
        if action is None:
            return
        step = int(msg.step)
        periods = (None if self.cfg.lockstep or self._last_decided_s is None else
                   int((self._steady_s() - self._last_decided_s) / self.cfg.control_dt))
        added = self.matcher.add_base(msg.episode, step, action, msg.header.stamp, periods)
        if added == "duplicate":
            # The base re-sent the step just decided (the simulator re-published it: our command was lost, e.g.
            # while DDS was still matching): send the same command again, decide nothing new.
            last = self._last_command
            if last is not None and (last.episode, last.step) == (int(msg.episode), step):
                self.resent_commands += 1
                self.command_pub.publish(last)
            return
        if added in ("stale", "impossible"):
            self._drop(self.cfg.base_topic, f"{added}_step")
            return
        if added in ("foreign", "early"):
            self._drop(self.cfg.base_topic, "foreign_episode" if added == "foreign" else "early_step")
            return
        self._last_base_s = self._steady_s()
        if added == "rewound":
            self.get_logger().warn(f"step {step} of episode {msg.episode} re-sent: deciding it again")
        if added == "new_episode":
            self.get_logger().info(f"episode {msg.episode} starts at step {step}")
            # (a TCP pose older than the episode's first base action may be the previous episode's: see new_episode)
            self.tcp_gate.new_episode(stamp_ns(msg.header.stamp), refuse_older=self._match_stamps)
            self.arbiter.forget_target()
            self._deadline_timer.cancel()
            self.matcher.pending = None
        older = self.matcher.pending
        if not self.cfg.lockstep and older is not None and older < step and self.matcher.has_base(older):
            # Real time: a newer base action came while an older one still waited for its residual (two arrivals
            # within one deadline: delivery jitter): the older is decided now, as its deadline would have (base
            # alone, late), so every base action gets its command and none is superseded unanswered. (Lockstep has
            # no deadline: a step waits for its residual and for its own TCP pose.)
            self._deadline_timer.cancel()
            self.matcher.pending = None
            self._decide(older)
        if self._ready(step):
            self._decide(step)
        else:
            if self.matcher.pending is None:  # a fixed deadline: from the oldest waiting base action
                self._deadline_timer.reset()
            self.matcher.pending = step

    def _on_residual(self, msg: EefAction) -> None:
        action = self._action(msg, self.cfg.residual_topic)
        if action is None:
            return
        step = int(msg.step)
        if not self.matcher.add_residual(msg.episode, step, action, msg.header.stamp):
            return
        if msg.episode == self.matcher.episode and self.matcher.has_base(step) and self._tcp_current(step):
            self._decide(step)

    def _deadline(self) -> None:
        step, self.matcher.pending = self.matcher.pending, None
        self._deadline_timer.cancel()
        if step is not None and self.matcher.has_base(step):
            self._decide(step)

    def _watchdog(self) -> None:
        now = self._steady_s()
        if self.guard.armed and self.cfg.lab.require_arming:
            why = self.guard.tick(now, self._tcp_view())
            if why:
                self._on_disarmed(why)
        if self._last_command_s is not None and now - self._last_command_s > self.cfg.control_dt:
            self.late_ticks += 1
            self._late_ticks_window += 1
        recently = self._last_command_s is not None and now - self._last_command_s < 0.9 * self.cfg.control_dt
        if self._have_tcp and not recently and base_is_stale(now, self._last_base_s, self.arbiter.cfg):
            # (holds at the control rate: the watchdog ticks twice per period to notice a missing action in time)
            last = self.matcher.last_decided
            step = 0 if last is None else last + 1
            pos, quat, why = self._tcp()
            self._publish(self.arbiter.decide(step, None, None, pos, quat, base_stale=True), why=why)

    # --- lab gating ---------------------------------------------------------------------------------------------------
    def _tcp_view(self) -> TcpView:
        """The measured TCP pose as the guard judges it (age on this node's clock)."""
        now = self._now_ns()
        pose, why = self.tcp_gate.current(now)
        age = None if self._newest_tcp_ns < 0 or now is None else (now - self._newest_tcp_ns) * 1e-9
        return TcpView(None if pose is None else pose[0], age, why)

    def _apply_speed_scale(self) -> None:
        pipeline = self.arbiter.cfg.pipeline
        envelope = self.guard.scaled_envelope(self.cfg.envelope)
        self.arbiter.cfg = replace(self.arbiter.cfg, pipeline=replace(pipeline, envelope=envelope))

    def _on_set_parameters(self, params) -> SetParametersResult:
        for p in params:
            if p.name == "lab.speed_scale":
                try:
                    check_speed_scale(p.value)
                except ValueError as exc:
                    return SetParametersResult(successful=False, reason=str(exc))
        for p in params:
            if p.name == "lab.speed_scale":
                self.guard.set_speed_scale(p.value)
                self._apply_speed_scale()
                self.get_logger().info(f"speed scale {p.value:g}: per-step limits "
                                       f"{self.arbiter.cfg.pipeline.envelope.max_translation_step:.4f} m, "
                                       f"{self.arbiter.cfg.pipeline.envelope.max_rotation_step:.4f} rad")
        return SetParametersResult(successful=True)

    def _on_robot_state(self, msg) -> None:
        why = self.guard.on_robot_state(LabGuard.robot_state(msg, self._steady_s()))
        if why:
            self._on_disarmed(why)

    def _on_heartbeat(self, msg: Bool) -> None:
        why = self.guard.on_heartbeat(bool(msg.data), self._steady_s())
        if why:
            self._on_disarmed(why)

    def _on_disarmed(self, why: str) -> None:
        """Just disarmed: hold (one target at the measured pose, if it is usable), log."""
        self.get_logger().warn(f"disarmed: {why}")
        pose, _ = self.tcp_gate.current(self._now_ns())  # never a stale, jumped or awaited pose
        if pose is None or not self.cfg.lab.require_arming:
            return
        target = PoseStamped()
        target.header.stamp, target.header.frame_id = self.get_clock().now().to_msg(), self.cfg.frame_id
        target.pose.position.x, target.pose.position.y, target.pose.position.z = (float(v) for v in pose[0])
        o = target.pose.orientation
        o.x, o.y, o.z, o.w = (float(v) for v in pose[1] / np.linalg.norm(pose[1]))
        self.target_pub.publish(target)
        if self.controller_pub is not None:
            self.controller_pub.publish(target)

    def _on_arm(self, req: SetBool.Request, resp: SetBool.Response) -> SetBool.Response:
        now = self._steady_s()
        if req.data:
            resp.success, resp.message = self.guard.arm(now, self._tcp_view())
            if resp.success:  # (rclpy: one call site, one severity)
                self.get_logger().info(resp.message)
            else:
                self.get_logger().warn(resp.message)
            return resp
        if self.guard.disarm("disarmed on request (~/arm false)", now):
            self._on_disarmed("disarmed on request (~/arm false)")
        resp.success = True
        resp.message = "disarmed" if self.cfg.lab.require_arming else "arming not required: always armed"
        return resp

    def _on_stop(self, req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        """Software stop: disarm, hold, stop the gripper (its running goal is aborted)."""
        was = self.guard.disarm("software stop (~/stop)", self._steady_s())
        if was:
            self._on_disarmed("software stop (~/stop)")
        gripper = ""
        if self._gripper_stop is not None:
            if self._gripper_stop.service_is_ready():
                self._gripper_stop.call_async(Trigger.Request())
                gripper = "; gripper stop sent"
            else:
                gripper = f"; gripper stop service {self.cfg.lab.gripper_stop_service} not available"
        resp.success = self.cfg.lab.require_arming
        resp.message = ("stopped: disarmed and holding" if was else "stopped (was not armed)") + gripper
        if not self.cfg.lab.require_arming:
            resp.message = "lab.require_arming is false: there is no armed state to leave" + gripper
        self.get_logger().warn(resp.message)
        return resp

    def _on_resync(self, req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        """Take the next measured TCP pose as it comes, without the jump check (after an error recovery the arm may
        have been moved by hand or by a reflex); while disarmed only."""
        if self.guard.armed and self.cfg.lab.require_arming:
            resp.success, resp.message = False, "refused while armed: disarm first"
            return resp
        now = self._now_ns()
        self.tcp_gate.new_episode(now)
        self.arbiter.forget_target()
        resp.success, resp.message = True, "re-syncing to the next measured TCP pose"
        return resp

    # --- deciding and publishing ------------------------------------------------------------------------------------
    def _decide(self, step: int) -> None:
        inputs = self.matcher.take(step)
        self._last_decided_s = self._steady_s()
        if self.matcher.pending is None:
            self._deadline_timer.cancel()
        stale = poses_are_stale(self._ros_s(), self._last_pose_s, self.arbiter.cfg)
        pos, quat, why = self._tcp()
        self._publish(self.arbiter.decide(step, inputs.base, inputs.residual, pos, quat, poses_stale=stale),
                      inputs.base_stamp, inputs.residual_stamp, why)

    def _publish(self, d: Decision, base_stamp: Time | None = None, residual_stamp: Time | None = None,
                 why: str = "") -> None:
        if why and not d.has_command:
            d = replace(d, clip_reasons=d.clip_reasons + (why,))
        if not self.guard.armed:  # decided and recorded, never sent; recorded "disarmed" with or without a target
            d = replace(d, target_pos=None, target_quat=None, clip_reasons=d.clip_reasons + ("disarmed",))
            # a target never sent is nothing the arm tracks: compose_from target must not chain disarmed decisions,
            # and the first target after arming is composed from the measured TCP
            self.arbiter.forget_target()
        now = self._steady_s()
        if self._last_command_s is not None:
            self._max_gap_window = max(self._max_gap_window, now - self._last_command_s)
        self._last_command_s = now
        stamp = self.get_clock().now().to_msg()
        episode = self.matcher.episode or 0  # 0: no base action (so no episode) seen yet
        self._last_command = command_msg(d, episode, self.cfg.frame_id, stamp)
        self.command_pub.publish(self._last_command)
        if d.has_command:
            target = PoseStamped()
            target.header.stamp, target.header.frame_id = stamp, self.cfg.frame_id
            p, q = d.target_pos, d.target_quat
            target.pose.position.x, target.pose.position.y, target.pose.position.z = (float(v) for v in p)
            o = target.pose.orientation
            o.x, o.y, o.z, o.w = (float(v) for v in q)
            self.target_pub.publish(target)
            if self.controller_pub is not None:
                self.controller_pub.publish(target)
            self.gripper_pub.publish(Float64(data=d.gripper))
        elif self._have_tcp and self.guard.armed:
            self.get_logger().error(f"no usable TCP pose ({why or 'not finite'}): no target (command valid=false)",
                                    throttle_duration_sec=2.0)
        self.correction_pub.publish(correction_msg(d, self.cfg.frame_id, stamp, base_stamp, residual_stamp, episode))
        tcp_pos = d.target_pos - d.final[0:3] if d.has_command else np.full(3, np.nan)
        self.marker_pub.publish(action_arrows(d, tcp_pos, self.cfg.frame_id, stamp,
                                              self.cfg.marker_lifetime_periods * self.cfg.control_dt,
                                              self.cfg.marker_length_gain))
        self.stats.add(d)
        self.window.add(d)

    def _publish_diagnostics(self) -> None:
        stale = (not self.cfg.lockstep) and base_is_stale(self._steady_s(), self._last_base_s, self.arbiter.cfg)
        m = self.matcher
        extra = [("late_ticks_total", str(self.late_ticks)),
                 ("max_command_gap_s_recent", f"{self._max_gap_window:.4f}"),
                 ("resent_commands_total", str(self.resent_commands)), ("stale_steps_total", str(m.stale_bases)),
                 ("foreign_episode_total", str(m.foreign)), ("early_steps_total", str(m.early)),
                 ("announced_episode", "none" if m.announced is None else str(m.announced)),
                 ("impossible_steps_total", str(m.impossible)), ("late_residuals_total", str(m.late_residuals)),
                 ("pending_evicted_total", str(m.evicted)), ("rewinds_total", str(m.rewinds)),
                 ("tcp_jumps_total", str(self.tcp_gate.jumps)), ("tcp_reanchors_total", str(self.tcp_gate.reanchors)),
                 ("armed", str(self.guard.armed)), ("disarm_reason", self.guard.disarm_reason),
                 ("speed_scale", f"{self.guard.speed_scale:g}"), ("arms_total", str(self.guard.arms)),
                 ("disarms_total", str(self.guard.disarms)), ("arm_refusals_total", str(self.guard.refusals)),
                 *self.dropped.key_values()]
        self.diag_pub.publish(diagnostics(self.stats, self.window, self.get_clock().now().to_msg(),
                                          self.arbiter.residual_enabled, stale,
                                          late_ticks_recent=self._late_ticks_window, extra=extra,
                                          disarmed="" if self.guard.armed else self.guard.disarm_reason))
        self.window, self._late_ticks_window, self._max_gap_window = ArbiterStats(), 0, 0.0


def main(args: list[str] | None = None) -> None:
    run_node("action-arbiter", ArbiterNode, args, config_errors=(ValueError,), executor="events")


if __name__ == "__main__":
    main()
