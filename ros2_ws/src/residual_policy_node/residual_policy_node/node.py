"""ROS 2 node: base action of step t + latest proprioception and object poses -> residual of step t.

Thin glue around :class:`residual_policy_node.core.ResidualComputer`. Inputs: ``/joint_states``, ``/tcp_pose``,
``/objects/poses`` and ``/base/action``; for each base action it publishes ``~/action`` (``/residual/action``:
EefAction with the same episode and step, the residual already scaled, source "residual", header stamp = now) when the
status is "ok" (or zeros for "rejected_nan"); nothing when proprioception is missing or stale (the arbiter then
sends the base action alone). ``/diagnostics`` carries the compute times and counts.

Inputs are checked before use (:mod:`residual_ros.validate`: lengths, ``frame_id`` of poses, finiteness, magnitudes,
stamps against the node's clock; the values again in the computer): an unusable message (a bad object: that object) is
dropped, counted per topic and reason, logged (throttled) and reported on ``/diagnostics``, never fatal. A base action
of any step is answered (pairing by episode and step is the arbiter's); where the simulator (or twin) announces its
episodes (``episode_topic``), one of an episode it does not run is dropped as ``foreign_episode`` without a
computation (the rule of the arbiter's, ``residual_ros.episode_status.foreign_episode``): a flood of 500 forged
actions cost 500 policy evaluations and delayed real commands by up to 60 ms on two cores.

Lockstep simulation: the simulator publishes /sim/step t only after the pose estimator answered step t's image (its
pose barrier), so step t's poses are on their way before the base action of t; with ``lockstep_pose_wait`` the node
also waits for them (by stamp, like the joint states and TCP pose), so no step is computed on the previous step's
poses whatever the messages' order.
"""

from __future__ import annotations

from dataclasses import dataclass

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseStamped
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from residual_core.checkpoint import CheckpointError
from residual_core.observation import PoseFreshness
from residual_interfaces.msg import EefAction, ObjectPoseArray
from residual_ros import validate as v
from residual_ros.diagnostics import diagnostic_array, node_status
from residual_ros.episode_status import foreign_episode, status_fields
from residual_ros.lockstep import StateWait
from residual_ros.node_main import run_node
from residual_ros.params import declare_config
from residual_ros.qos import latest_input_qos
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from residual_policy_node.core import (
    ComputeStats,
    ObjectInput,
    OcclusionTracking,
    ResidualComputer,
    ResidualComputerConfig,
)


@dataclass
class ResidualNodeConfig:
    """Parameters of the residual node (each is a ROS parameter of the same name)."""

    task: str = "cube_lift"
    """Task name (residual_core.tasks); the checkpoint must have been trained for it."""
    checkpoint: str = ""
    """Residual checkpoint (.safetensors next to its .json manifest); empty: checkpoints/residual/<task>."""
    pose_timeout: float = PoseFreshness().timeout_s
    """An object pose older than this (s) is a dropout in the observation (residual_core.observation's rule)."""
    min_confidence: float = PoseFreshness().min_confidence
    """An object pose with a lower confidence is a dropout in the observation."""
    proprio_timeout: float = 0.25
    """Joint states or TCP pose older than this (s): no residual."""
    occlusion_tracking: bool = False
    """Keep a pose for an object the camera stops seeing: its last confident estimate, carried with the hand while it
    is held (residual_policy_node.core.OcclusionTracking); it counts as present for ``tracking_max_age``."""
    tracking_max_age: float = OcclusionTracking.max_age_s
    """occlusion_tracking: how long after its last confident estimate an object keeps a tracked pose (s)."""
    frame_id: str = "fr3_link0"
    """Robot base frame: written into the residual's header; the TCP and object poses must be in it."""
    diagnostics_period_s: float = 1.0
    """Period of /diagnostics (s)."""
    lockstep: bool = False
    """Lockstep simulation with sim time: compute step t only once the joint states and TCP pose are as new as the
    state the base action of t was computed on (their header stamps), or after ``state_wait_s``."""
    state_wait_s: float = 0.25
    """Lockstep: compute anyway (and say so) when the step's state has not arrived after this long (steady s)."""
    reliable_inputs: bool = False
    """Subscribe to the state inputs (joint states, TCP pose, object poses) reliably: only with reliable publishers
    (the sim's; the graph sets it in lockstep simulation, where a lost state is never replaced); else best effort
    (franka_ros2 publishes best effort)."""
    lockstep_pose_wait: bool = False
    """Lockstep: also wait for the object poses of the base action's stamp (the graph sets it with the sim's pose
    barrier, where every state gets its poses; with a camera slower than the control rate, steps without an image
    would wait state_wait_s)."""
    episode_topic: str = "none"
    """Simulator (or twin) status topic (std_msgs/String JSON with episode, e.g. /sim/episode): base actions of
    episodes it does not announce are dropped uncomputed; none: every base action is answered (real robot)."""

    def computer_config(self) -> ResidualComputerConfig:
        return ResidualComputerConfig(task=self.task, pose_timeout=self.pose_timeout,
                                      min_confidence=self.min_confidence, proprio_timeout=self.proprio_timeout,
                                      occlusion_tracking=self.occlusion_tracking,
                                      tracking_max_age=self.tracking_max_age)

    def checkpoint_path(self) -> str:
        if self.checkpoint:
            return self.checkpoint
        from residual_core.checkpoint import default_residual_checkpoint

        return str(default_residual_checkpoint(self.task))


def _seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def _ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class ResidualPolicyNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("residual", **node_kwargs)
        self.cfg = cfg = declare_config(self, ResidualNodeConfig)
        path = cfg.checkpoint_path()
        self.computer = ResidualComputer.from_checkpoint(path, cfg.computer_config())
        self.stats, self.window = ComputeStats(), ComputeStats()
        self.steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._last_status = ""

        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.create_publisher(EefAction, "~/action", reliable)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # Inputs first: when several messages are ready at once, rclpy serves subscriptions in creation order.
        # Best effort (real time): the newest message only (depth 1), so a queued state of the previous episode is
        # never the one a new episode's first residual is computed on. Reliable with reliable_inputs (lockstep): a
        # deep queue read in order, the step waiting for its state's stamp (residual_ros.qos, StateWait).
        latest = latest_input_qos(cfg.reliable_inputs)
        self.drops = v.DropCounter()
        self.pose_frames = v.same_frames(cfg.frame_id)  # what pose inputs may be in
        # Topic names as resolved (remappings applied): the keys of the drop counts.
        self.topics = {
            "joints": self.create_subscription(JointState, "/joint_states", self._on_joints, latest).topic_name,
            "tcp": self.create_subscription(PoseStamped, "/tcp_pose", self._on_tcp, latest).topic_name,
            "objects": self.create_subscription(ObjectPoseArray, "/objects/poses", self._on_poses, latest).topic_name,
            **({"status": self.create_subscription(String, cfg.episode_topic, self._on_status, reliable).topic_name}
               if cfg.episode_topic not in ("", "none") else {}),  # before the actions: a status is served first
            "base": self.create_subscription(EefAction, "/base/action", self._on_base, reliable).topic_name}
        self._announced: int | None = None
        """The episode the simulator last announced (None: no announcements, every episode is answered)."""
        self._episode: int | None = None
        """Episode of the last base action computed."""
        self.create_timer(cfg.diagnostics_period_s, self._publish_diagnostics, clock=self.steady)
        watched = ("joint_states", "tcp_pose") + (("object_poses",) if cfg.lockstep_pose_wait else ())
        self.state_wait = StateWait(watched, enabled=cfg.lockstep and bool(self.get_parameter("use_sim_time").value))
        self._state_timer = self.create_timer(cfg.state_wait_s, self._state_deadline, clock=self.steady)
        self._state_timer.cancel()
        self.get_logger().info(f"residual node: task={cfg.task} checkpoint={path} "
                               f"({self.computer.policy.manifest.steps} steps)")

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _judged_at(self, stamp) -> float:
        """The time a message of this stamp is judged at (lockstep: never before its stamp; StateWait.judged_at)."""
        now = self._now()
        judged = self.state_wait.judged_at(now, _ns(stamp))
        if judged > now:
            self.get_logger().info(f"an input arrived ahead of /clock ({judged - now:.3f} s; "
                                   f"{self.state_wait.ahead_of_clock} so far): judged at its stamp",
                                   throttle_duration_sec=30.0)
        return judged

    def _now_ns(self) -> int | None:
        """The clock stamps are judged against (None before the first /clock under sim time)."""
        return v.judged_now(self.get_clock().now().nanoseconds)

    def _refused(self, kind: str, reason: str, detail: str = "", part: str = "") -> bool:
        """True (dropped, counted, logged now and then) when ``reason`` says the message of input ``kind`` (``part``
        of it, e.g. "[object]") is unusable."""
        return self.drops.refuse(self.topics[kind] + part, reason, self.get_logger().warn, detail)

    def _on_joints(self, msg: JointState) -> None:
        if self._refused("joints", v.joint_state_reason(msg, min_joints=1, now_ns=self._now_ns())):
            return
        arm, fingers = self.computer.update_joint_state(msg.name, msg.position, msg.velocity,
                                                        self._judged_at(msg.header.stamp))
        if self._refused("joints", "" if arm or fingers else "too_few_joints"):
            return
        if arm:
            self._compute(self.state_wait.arrived("joint_states", _ns(msg.header.stamp)))

    def _on_tcp(self, msg: PoseStamped) -> None:
        if self._refused("tcp", v.pose_stamped_reason(msg, self.pose_frames, self._now_ns())):
            return
        p, q = msg.pose.position, msg.pose.orientation
        if self._refused("tcp", self.computer.update_tcp_pose((p.x, p.y, p.z), (q.x, q.y, q.z, q.w),
                                                              self._judged_at(msg.header.stamp))):
            return
        self._compute(self.state_wait.arrived("tcp_pose", _ns(msg.header.stamp)))

    def _on_poses(self, msg: ObjectPoseArray) -> None:
        if self._refused("objects", v.object_pose_array_reason(msg, self.pose_frames, self._now_ns())):
            return
        objects = [ObjectInput(o.name, (o.pose.position.x, o.pose.position.y, o.pose.position.z),
                               (o.pose.orientation.x, o.pose.orientation.y, o.pose.orientation.z, o.pose.orientation.w),
                               float(o.confidence), _seconds(o.measured)) for o in msg.objects]
        for name, reason in self.computer.update_objects(objects, self._judged_at(msg.header.stamp)).items():
            if reason != "unknown_object":  # not seen in this message
                self._refused("objects", reason, f"object {name[:40]!r}", part="[object]")
        if self.cfg.lockstep_pose_wait:
            self._compute(self.state_wait.arrived("object_poses", _ns(msg.header.stamp)))

    def _state_deadline(self) -> None:
        held = self.state_wait.expire()
        if held is not None:
            self.get_logger().warn(f"step {held.step}: its state did not arrive within {self.cfg.state_wait_s} s: "
                                   "computing on the newest inputs", throttle_duration_sec=5.0)
            self._compute(held)

    def _on_status(self, msg: String) -> None:
        try:
            (self._announced,) = status_fields(msg.data, ("episode",))
        except ValueError as exc:
            self._refused("status", "bad_status", str(exc))

    def _on_base(self, msg: EefAction) -> None:
        if self._refused("base", v.eef_action_reason(msg, self._now_ns())):
            return
        if self._refused("base", "foreign_episode" if foreign_episode(msg.episode, msg.step, self._episode,
                                                                      self._announced) else ""):
            return
        if msg.episode != self._episode:  # a new episode: no object is carried over from the last one
            self.computer.objects.forget_tracking()
        self._episode = msg.episode
        # Lockstep with sim time: compute on the state the base action was computed on (its stamp).
        self._compute(self.state_wait.offer(msg, _ns(msg.header.stamp)))
        if self.state_wait.holding:
            self._state_timer.reset()

    def _compute(self, msg: EefAction | None) -> None:
        if msg is None:
            return
        self._state_timer.cancel()
        result = self.computer.compute(int(msg.step), msg.action, self._judged_at(msg.header.stamp))
        self.stats.add(result)
        self.window.add(result)
        if result.status in ("ok", "rejected_nan"):
            out = EefAction(episode=msg.episode, step=msg.step, action=[float(v) for v in result.residual],
                            source="residual")
            out.header.stamp = self.get_clock().now().to_msg()
            out.header.frame_id = self.cfg.frame_id
            self.pub.publish(out)
        if result.status != "ok" and result.status != self._last_status:
            self.get_logger().warn(f"step {msg.step}: {result.status}: {result.info.detail}")
        self._last_status = result.status

    def _publish_diagnostics(self) -> None:
        window = self.window.summary()
        bad = window["calls"] and window["status_ok"] < window["calls"]
        level = DiagnosticStatus.WARN if bad else DiagnosticStatus.OK
        text = f"last status: {self._last_status or 'none yet'}"
        values = {**{f"recent_{k}": x for k, x in window.items()}, **{f"total_{k}": x for k, x in
                                                                       self.stats.summary().items()},
                  "total_inputs_ahead_of_clock": self.state_wait.ahead_of_clock}
        status = node_status("residual_policy", text, values, self.drops, level)
        self.diag_pub.publish(diagnostic_array(status, self.get_clock().now().to_msg()))
        self.window = ComputeStats()


def main(args: list[str] | None = None) -> None:
    run_node("residual-policy-node", ResidualPolicyNode, args,
             config_errors=(ValueError, CheckpointError, FileNotFoundError), executor="events")


if __name__ == "__main__":
    main()
