"""ROS 2 node: base action (step t) + residual (step t, if in time) -> safety envelope -> target pose + gripper.

Thin glue around :class:`action_arbiter.arbiter.Arbiter`. When the base action of step t arrives the node
waits up to ``residual_deadline_s`` (steady clock, so a paused simulation cannot stall it) for the residual
of step t, then decides. Base and residual are paired by (episode, step): an action of another episode starts
that episode (:class:`~action_arbiter.arbiter.StepMatcher`). Outputs: ``~/command`` (ArbiterCommand, every decided
step, holds included: what the simulator executes), ``~/target_pose`` (PoseStamped) and ``~/gripper`` (Float64)
(the robot's tracking controller and gripper bridge; only when there is a target), ``~/correction`` (Correction,
every step, a record for analysis), ``~/markers`` (three arrows), ``~/object_markers`` (the object poses it
receives, for rviz2), ``/diagnostics``; service
``~/enable_residual`` (SetBool). In real-time mode a watchdog holds the pose when the base goes stale (in
lockstep the simulator waits for commands, so there is no wall-clock staleness).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from residual_core.action import ACTION_DIM, CONTROL_DT, ActionSpec
from residual_core.checkpoint import default_residual_checkpoint, read_manifest
from residual_core.observation import PoseFreshness
from residual_core.pipeline import ActionPipeline, tighten_scale
from residual_core.safety import EnvelopeConfig
from residual_interfaces.msg import ArbiterCommand, Correction, EefAction, ObjectPoseArray
from residual_ros.node_main import run_node
from residual_ros.params import declare_config
from std_msgs.msg import Float64
from std_srvs.srv import SetBool
from visualization_msgs.msg import MarkerArray

from action_arbiter.arbiter import (
    Arbiter,
    ArbiterConfig,
    ArbiterStats,
    Decision,
    StepMatcher,
    base_is_stale,
    poses_are_stale,
)
from action_arbiter.visuals import action_arrows, command_msg, correction_msg, diagnostics, object_markers


def _ns(stamp: Time | None) -> int:
    return -1 if stamp is None else stamp.sec * 1_000_000_000 + stamp.nanosec


@dataclass
class ArbiterNodeConfig:
    """Parameters of the arbiter node (each is a ROS parameter of the same name; those of the nested configs are
    dotted: ``envelope.max_translation_step``)."""

    lockstep: bool = False
    """Lockstep simulation: no wall-clock base watchdog (the simulator waits for every command)."""
    control_dt: float = CONTROL_DT
    """Control period (s)."""
    residual_enabled: bool = True
    """Apply the residual at startup (switch with ~/enable_residual)."""
    residual_deadline_s: float = 0.02
    """How long to wait for the residual of step t after the base action of t arrived (s)."""
    base_stale_periods: int = 3
    """Hold the pose after this many control periods without a base action (real-time mode)."""
    pose_timeout: float = PoseFreshness().timeout_s
    """Object poses older than this are stale (s); the same parameter as the residual and base nodes'."""
    stale_pose_policy: str = "ignore"
    """With stale poses: ignore (the residual node masks the stale objects in its observation, as in training),
    mask (skip the residual this step) or disable (until re-enabled)."""
    task: str = "cube_lift"
    """Task (residual_core.tasks): names the default residual checkpoint, as for the residual node."""
    checkpoint: str = ""
    """Residual checkpoint whose manifest gives the residual bound (its action_scale: the residual_scale it was
    trained with); the graph passes the residual node's. Empty: checkpoints/residual/<task>, as the residual node."""
    residual_scale_fraction: tuple[float, ...] = (1.0,) * ACTION_DIM
    """Fraction in [0, 1] of the checkpoint's residual bound allowed per component (m, rad, gripper):
    configuration may only tighten what the residual was trained with."""
    action: ActionSpec = field(default_factory=ActionSpec)
    """Bounds of the composed action (base + residual), before the envelope (parameters action.max_translation,
    action.max_rotation)."""
    envelope: EnvelopeConfig = field(default_factory=EnvelopeConfig)
    """Safety envelope on the target TCP pose and the per-step motion (parameters envelope.workspace_min,
    envelope.max_translation_step, ...)."""
    frame_id: str = "fr3_link0"
    """Robot base frame of targets and markers."""
    base_topic: str = "/base/action"
    """EefAction topic of the base node."""
    residual_topic: str = "/residual/action"
    """EefAction topic of the residual node (residual already scaled to action units)."""
    controller_pose_topic: str = "none"
    """Also publish the target pose here (e.g. the Cartesian impedance controller's equilibrium pose); none: off."""
    marker_length_gain: float = 10.0
    """Arrow length per metre of action (10: a 1 cm step draws 10 cm)."""
    marker_lifetime_periods: float = 2.0
    """Arrow lifetime in control periods."""
    diagnostics_period_s: float = 1.0
    """Period of /diagnostics (s)."""

    def checkpoint_path(self) -> str:
        if self.checkpoint:
            return self.checkpoint
        return str(default_residual_checkpoint(self.task))

    def trained_residual_scale(self) -> tuple[float, ...]:
        """The residual_scale the checkpoint was trained with (its manifest's action_scale)."""
        manifest = read_manifest(self.checkpoint_path())
        if manifest.kind != "residual":
            raise ValueError(f"{self.checkpoint_path()} is a {manifest.kind} checkpoint, not a residual")
        return tuple(float(v) for v in manifest.action_scale)

    def to_arbiter_config(self, trained_scale: tuple[float, ...] | None = None) -> ArbiterConfig:
        """The arbiter's configuration; ``trained_scale`` default: :meth:`trained_residual_scale`."""
        trained = self.trained_residual_scale() if trained_scale is None else trained_scale
        return ArbiterConfig(
            control_dt=self.control_dt, base_stale_periods=self.base_stale_periods,
            freshness=PoseFreshness(timeout_s=self.pose_timeout), stale_pose_policy=self.stale_pose_policy,
            pipeline=ActionPipeline(
                residual_scale=tuple(tighten_scale(trained, self.residual_scale_fraction)),
                spec=self.action, envelope=self.envelope),
        )


class ArbiterNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("arbiter", **node_kwargs)
        self.cfg = cfg = declare_config(self, ArbiterNodeConfig)
        self.arbiter = Arbiter(cfg.to_arbiter_config(), residual_enabled=cfg.residual_enabled)
        self.get_logger().info(f"residual bound {list(self.arbiter.cfg.pipeline.residual_scale)} (from "
                               f"{cfg.checkpoint_path()}, x "
                               f"{list(cfg.residual_scale_fraction)})")
        self.stats, self.window = ArbiterStats(), ArbiterStats()
        self.steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.matcher = StepMatcher()  # base and residual per step; matcher.pending: the deadline timer runs for it
        self._last_command: ArbiterCommand | None = None
        self.resent_commands = 0
        """Commands re-sent for a base action of the step just decided (lockstep re-publication)."""
        self._last_base_s: float | None = None
        self._last_pose_s: float | None = None
        self._tcp = (np.full(3, np.nan), np.array([0.0, 0.0, 0.0, 1.0]))
        self._have_tcp = False
        # Lockstep with sim time: a stamp names a simulated state, and the base stamps its action with the time of
        # the state it saw; step t is decided on a TCP pose at least that new (or at the residual deadline).
        self._match_stamps = cfg.lockstep and bool(self.get_parameter("use_sim_time").value)
        self._tcp_stamp_ns = -1

        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.target_pub = self.create_publisher(PoseStamped, "~/target_pose", reliable)
        self.controller_pub = (self.create_publisher(PoseStamped, cfg.controller_pose_topic, reliable)
                               if cfg.controller_pose_topic not in ("", "none") else None)
        self.gripper_pub = self.create_publisher(Float64, "~/gripper", reliable)
        self.command_pub = self.create_publisher(ArbiterCommand, "~/command", reliable)
        self.correction_pub = self.create_publisher(Correction, "~/correction", reliable)
        self.marker_pub = self.create_publisher(MarkerArray, "~/markers", 10)
        self.object_marker_pub = self.create_publisher(MarkerArray, "~/object_markers", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # Inputs before actions: when several messages are ready at once, rclpy serves subscriptions in creation
        # order, one message each per round, so the TCP pose of step t is taken before the actions of step t are
        # decided (lockstep). Depth 1: the newest state only, never an older one queued behind it (e.g. the last
        # state of an episode and the first of the next arriving together).
        latest = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.create_subscription(PoseStamped, "/tcp_pose", self._on_tcp, latest)
        self.create_subscription(ObjectPoseArray, "/objects/poses", self._on_poses, latest)
        self.create_subscription(EefAction, cfg.base_topic, self._on_base, reliable)
        self.create_subscription(EefAction, cfg.residual_topic, self._on_residual, reliable)
        self.create_service(SetBool, "~/enable_residual", self._on_enable)
        # One deadline timer, restarted per waiting step (creating and destroying a timer per step made every
        # step's wait set change).
        self._deadline_timer = self.create_timer(cfg.residual_deadline_s, self._deadline, clock=self.steady)
        self._deadline_timer.cancel()
        if not cfg.lockstep:
            self.create_timer(cfg.control_dt, self._watchdog, clock=self.steady)
        self.create_timer(cfg.diagnostics_period_s, self._publish_diagnostics, clock=self.steady)

    # --- inputs --------------------------------------------------------------------------------------------------
    def _steady_s(self) -> float:
        return self.steady.now().nanoseconds * 1e-9

    def _ros_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_tcp(self, msg: PoseStamped) -> None:
        p, q = msg.pose.position, msg.pose.orientation
        self._tcp = (np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w]))
        self._have_tcp = True
        self._tcp_stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        pending = self.matcher.pending
        if pending is not None and self.matcher.has_base(pending) and self._ready(pending):
            self._decide(pending)

    def _tcp_current(self, step: int) -> bool:
        """The TCP pose is as new as the state the base action of ``step`` was computed on (lockstep, sim time)."""
        return not self._match_stamps or self._tcp_stamp_ns >= _ns(self.matcher.base_stamp(step))

    def _ready(self, step: int) -> bool:
        return (self.matcher.has_residual(step) or not self._residual_wanted()) and self._tcp_current(step)

    def _on_poses(self, msg: ObjectPoseArray) -> None:
        self._last_pose_s = self._ros_s()
        if self.object_marker_pub.get_subscription_count():
            objs = [(o.name, np.array([o.pose.position.x, o.pose.position.y, o.pose.position.z, o.pose.orientation.x,
                                       o.pose.orientation.y, o.pose.orientation.z, o.pose.orientation.w]),
                     float(o.confidence)) for o in msg.objects]
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

    def _on_base(self, msg: EefAction) -> None:
        step = int(msg.step)
        self._last_base_s = self._steady_s()
        added = self.matcher.add_base(msg.episode, step, msg.action, msg.header.stamp)
        if added == "duplicate":
            # The base re-sent the step just decided (the simulator re-published it: our command was lost, e.g.
            # while DDS was still matching): send the same command again, decide nothing new.
            last = self._last_command
            if last is not None and (last.episode, last.step) == (int(msg.episode), step):
                self.resent_commands += 1
                self.command_pub.publish(last)
            return
        if added == "stale":
            return
        if added == "new_episode":
            self.get_logger().info(f"episode {msg.episode} starts at step {step}")
            self._deadline_timer.cancel()
        if self._ready(step):
            self._decide(step)
        else:
            self.matcher.pending = step
            self._deadline_timer.reset()

    def _on_residual(self, msg: EefAction) -> None:
        step = int(msg.step)
        if self.matcher.add_residual(msg.episode, step, msg.action, msg.header.stamp) and \
                msg.episode == self.matcher.episode and self.matcher.has_base(step) and self._tcp_current(step):
            self._decide(step)

    def _deadline(self) -> None:
        step, self.matcher.pending = self.matcher.pending, None
        self._deadline_timer.cancel()
        if step is not None and self.matcher.has_base(step):
            self._decide(step)

    def _watchdog(self) -> None:
        if self._have_tcp and base_is_stale(self._steady_s(), self._last_base_s, self.arbiter.cfg):
            last = self.matcher.last_decided
            step = 0 if last is None else last + 1
            self._publish(self.arbiter.decide(step, None, None, *self._tcp, base_stale=True))

    # --- deciding and publishing ------------------------------------------------------------------------------------
    def _decide(self, step: int) -> None:
        inputs = self.matcher.take(step)
        if self.matcher.pending is None:
            self._deadline_timer.cancel()
        stale = poses_are_stale(self._ros_s(), self._last_pose_s, self.arbiter.cfg)
        self._publish(self.arbiter.decide(step, inputs.base, inputs.residual, *self._tcp, poses_stale=stale),
                      inputs.base_stamp, inputs.residual_stamp)

    def _publish(self, d: Decision, base_stamp: Time | None = None, residual_stamp: Time | None = None) -> None:
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
        elif self._have_tcp:
            self.get_logger().error("TCP pose is not finite: no target (command valid=false)",
                                    throttle_duration_sec=2.0)
        self.correction_pub.publish(correction_msg(d, self.cfg.frame_id, stamp, base_stamp, residual_stamp, episode))
        self.marker_pub.publish(action_arrows(d, self._tcp[0], self.cfg.frame_id, stamp,
                                              self.cfg.marker_lifetime_periods * self.cfg.control_dt,
                                              self.cfg.marker_length_gain))
        self.stats.add(d)
        self.window.add(d)

    def _publish_diagnostics(self) -> None:
        stale = (not self.cfg.lockstep) and base_is_stale(self._steady_s(), self._last_base_s, self.arbiter.cfg)
        self.diag_pub.publish(diagnostics(self.stats, self.window, self.get_clock().now().to_msg(),
                                          self.arbiter.residual_enabled, stale))
        self.window = ArbiterStats()


def main(args: list[str] | None = None) -> None:
    run_node("action-arbiter", ArbiterNode, args, config_errors=(ValueError,), executor="events")


if __name__ == "__main__":
    main()
