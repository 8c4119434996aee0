"""ROS 2 node: a base policy backend -> one EefAction per control step on ``~/action`` (/base/action).

Thin glue around :class:`~vla_base_node.chunk_broker.ChunkBroker` (which action for which step),
:class:`~vla_base_node.inputs.InputCache` (latest inputs -> observation) and a backend from
:data:`~vla_base_node.backends.BACKEND_FACTORIES`. Inference runs on a worker thread, so a slow backend
never delays the 20 Hz tick; with ``sync_inference`` it runs inside the tick instead (lockstep simulation:
the sim waits for the command anyway, and the result no longer depends on timing).

Episode and step (:mod:`vla_base_node.episodes`): every action carries both. Following the simulator
(``episode_topic``, /sim/episode) the episode is the sim's; the step is ``/sim/step`` in lockstep, else the node's
own timer count, restarted at 0 by a new episode. Without a simulator (``episode_topic`` none) the node counts
episodes itself: service ``~/reset`` (std_srvs/Trigger) starts the next one. A new episode resets the chunks and
the backend; a step index going backwards is never taken for one.

Inputs are checked before use (:mod:`residual_ros.validate`: lengths, ``frame_id`` for poses, finiteness, magnitudes,
stamps against the node's clock; the values again in :class:`~vla_base_node.inputs.InputCache`); an unusable message
(a bad object: that object) is dropped, counted per topic and reason, logged (throttled) and reported on
``/diagnostics``, never fatal; an unparsable status too. ``/sim/step`` needs no check: a step ticks only together
with the status of the same step.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from residual_core.action import CONTROL_DT
from residual_core.observation import PoseFreshness
from residual_core.tasks import TASK_INSTRUCTIONS, TASK_OBJECTS, check_task
from residual_interfaces.msg import EefAction, EefActionChunk, ObjectPoseArray
from residual_ros import validate as v
from residual_ros.conversions import image_to_rgb
from residual_ros.diagnostics import diagnostic_array, node_status
from residual_ros.lockstep import StateWait
from residual_ros.node_main import run_node
from residual_ros.params import declare_config
from residual_ros.qos import latest_input_qos
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String, UInt64
from std_srvs.srv import Trigger

from vla_base_node.backends import BackendError, make_backend, timed_infer
from vla_base_node.chunk_broker import ChunkBroker
from vla_base_node.episodes import EpisodeClock, Tick, parse_status, status_stamp_ns
from vla_base_node.inputs import InputCache


def _ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


DEFAULT_HORIZON = 8
"""Actions used per chunk when neither the configuration nor the backend says (horizon 0)."""


@dataclass
class VlaBaseNodeConfig:
    """Parameters of the base node (each is a ROS parameter of the same name)."""

    backend: str = "sim_bc"
    """Base policy backend: sim_bc (the shipped sim base policy), openpi, openvla or replay."""
    task: str = "cube_lift"
    """Task name (residual_core.tasks): selects the objects and the default instruction."""
    instruction: str = ""
    """Language instruction; empty: the task's instruction."""
    control_dt: float = CONTROL_DT
    """Control period (s)."""
    lockstep: bool = False
    """Take the step index from /sim/step (published by the sim each step) instead of an own timer."""
    state_wait_s: float = 0.25
    """Lockstep with sim time: how long a re-planning tick waits for its step's joint states and TCP pose (their
    stamps reaching the step's status stamp) before it re-plans on the newest inputs anyway (steady s)."""
    reliable_inputs: bool = False
    """Subscribe to the state inputs (joint states, TCP pose, object poses) reliably: only with reliable publishers
    (the sim's; the graph sets it in lockstep simulation, where a lost state is never replaced); else best effort
    (franka_ros2 publishes best effort)."""
    lockstep_pose_wait: bool = False
    """Lockstep with sim time: a re-planning tick also waits for its step's object poses (the graph sets it in sim,
    where the base reads the simulator's ground truth, published with every state)."""
    episode_topic: str = "none"
    """Simulator status topic (std_msgs/String JSON with episode and step, e.g. /sim/episode) whose episode ids
    the actions carry (required in lockstep); none: the node's own counter, advanced by ~/reset (real robot)."""
    sync_inference: bool = False
    """Run inference inside the tick when a re-plan is due (deterministic in lockstep; blocks the tick)."""
    horizon: int = 0
    """Largest number of actions used from one chunk; 0: the backend's own chunk length where it declares one (sim_bc:
    its checkpoint's execute_steps, read from the manifest, so each chunk is played open-loop as long as in training
    and residual-eval), else 8."""
    ensemble: str = "none"
    """Chunk handling: none (newest chunk) or temporal (ACT-style ensembling)."""
    ensemble_decay: float = 0.01
    """Temporal ensembling weight exp(-decay * i), i = 0 for the oldest prediction."""
    replan_threshold: int = -1
    """Re-plan when fewer steps than this remain covered; -1: automatic from the measured latency."""
    use_image: bool = False
    """Subscribe to the camera image (needed by openpi/openvla models that look at pixels)."""
    pose_timeout: float = PoseFreshness().timeout_s
    """Object poses older than this (s) are reported as not present (the same parameter as the residual node's)."""
    min_confidence: float = PoseFreshness().min_confidence
    """Object poses with a lower confidence are reported as not present (as for the residual node)."""
    frame_id: str = "fr3_link0"
    """Robot base frame: written into the action headers; the TCP and object poses must be in it."""
    diagnostics_period_s: float = 1.0
    """Period of /diagnostics (s)."""
    server_host: str = "127.0.0.1"
    """openpi: server host or ws:// URI."""
    server_port: int = 8000
    """openpi: server port."""
    server_url: str = "http://127.0.0.1:8000/act"
    """openvla: URL of the act endpoint."""
    api_key: str = ""
    """openpi: API key (empty: none)."""
    openpi_preset: str = "libero"
    """openpi: request layout and reply check of the served config family (vla_base_node.backends.presets): libero
    (pi0/pi0-FAST/pi05 *_libero), droid (request only: DROID models return joint velocities, refused), or custom
    (image_keys and state_keys as set)."""
    prompt_key: str = "prompt"
    """openpi: request key of the instruction."""
    image_keys: tuple[str, ...] = ("preset",)
    """openpi: key=camera|zeros per image the model expects; ["preset"]: the preset's; ["none"]: no image."""
    state_keys: tuple[str, ...] = ("preset",)
    """openpi: key=field,field... concatenated state vectors; ["preset"]: the preset's; ["none"]: no state."""
    image_size: int = 224
    """openpi/openvla: square size images are resized (with padding) to; 0: unchanged."""
    actions_key: str = "actions"
    """openpi: reply key of the action chunk."""
    connect_timeout_s: float = 10.0
    """openpi: time allowed to open a connection and receive the server metadata (s), within infer_timeout_s."""
    infer_timeout_s: float = 5.0
    """openpi/openvla: longest one inference call takes, (re)connecting included (s); the connection is then dropped
    and the next call opens a new one."""
    unnorm_key: str = ""
    """openvla: dataset statistics key for un-normalising actions."""
    double_encode: bool = False
    """openvla: send the JSON payload double-encoded."""
    action_convention: str = ""
    """Model action convention: ours, openpi_libero or bridge; empty: the backend's default."""
    action_translation_scale: float = 1.0
    """Multiplies the model's translation to get metres."""
    action_rotation_scale: float = 1.0
    """Multiplies the model's rotation to get radians."""
    action_max_actions: int = 0
    """Use at most this many actions of a chunk (0: all)."""
    replay_path: str = ""
    """replay: .npy or .csv file of (T, 7) actions."""
    base_checkpoint: str = ""
    """sim_bc: checkpoint of the behaviour-cloned base policy (residual_learning.base_policy)."""

    def __post_init__(self) -> None:
        check_task(self.task)
        if not self.control_dt > 0:
            raise ValueError(f"control_dt must be > 0, got {self.control_dt}")
        if self.horizon < 0:
            raise ValueError(f"horizon must be >= 0 (0: the backend's chunk length), got {self.horizon}")
        if self.lockstep and self.follow_sim is False:
            raise ValueError("lockstep needs episode_topic (the simulator's status, e.g. /sim/episode), got none")

    @property
    def follow_sim(self) -> bool:
        """Episode ids come from the simulator's status topic."""
        return self.episode_topic not in ("", "none")

    @property
    def resolved_instruction(self) -> str:
        return self.instruction or TASK_INSTRUCTIONS[self.task]


class VlaBaseNode(Node):
    """Publishes one base action per control step and each new chunk; see the module docstring."""

    def __init__(self, **node_kwargs):
        super().__init__("base", **node_kwargs)
        self.cfg = cfg = declare_config(self, VlaBaseNodeConfig)
        self.backend = make_backend(cfg.backend, asdict(cfg))
        self.backend.reset(cfg.resolved_instruction)
        self.horizon = cfg.horizon or getattr(self.backend, "chunk_length", None) or DEFAULT_HORIZON
        self.broker = ChunkBroker(
            horizon=self.horizon, control_dt=cfg.control_dt, ensemble=cfg.ensemble, ensemble_decay=cfg.ensemble_decay,
            replan_threshold=self._replan_threshold(cfg),
        )
        self.inputs = InputCache(instruction=cfg.resolved_instruction, object_names=TASK_OBJECTS[cfg.task],
                                 freshness=PoseFreshness(cfg.pose_timeout, cfg.min_confidence))
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="base_infer")
        self._tick_lock = threading.Lock()
        self.episodes = EpisodeClock(lockstep=cfg.lockstep, follow_sim=cfg.follow_sim)
        self._episode = self.episodes.episode  # episode of the last tick
        self.failures = 0
        self.repeats = 0
        """Actions re-sent for a step the simulator re-published (lockstep)."""
        self._last_action: EefAction | None = None
        # Lockstep with sim time: a re-plan of step t reads step t's state. The state's messages and /sim/step travel
        # on different topics, so the tick waits (at most state_wait_s) until the joint states and TCP pose carry a
        # stamp at least that of step t's status (and the object poses, with lockstep_pose_wait).
        watched = ("joint_states", "tcp_pose") + (("object_poses",) if cfg.lockstep_pose_wait else ())
        self.state_wait = StateWait(watched, enabled=cfg.lockstep and bool(self.get_parameter("use_sim_time").value))
        self._status_stamp_ns = -1
        self.steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._state_timer = self.create_timer(cfg.state_wait_s, self._state_deadline, clock=self.steady)
        self._state_timer.cancel()
        self.drops = v.DropCounter()
        self.pose_frames = v.same_frames(cfg.frame_id)  # what pose inputs may be in
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(cfg.diagnostics_period_s, self._publish_diagnostics, clock=self.steady)

        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.action_pub = self.create_publisher(EefAction, "~/action", reliable)
        self.chunk_pub = self.create_publisher(EefActionChunk, "~/chunk", reliable)
        # Inputs before /sim/step (rclpy serves ready subscriptions in creation order, one message each per round).
        # Best effort (real time): depth 1, so a tick never reads an older state queued behind the newest. Reliable
        # with reliable_inputs (lockstep simulation, where a lost state is never replaced): a deep queue read in
        # order, a re-plan waiting for its state's stamp (residual_ros.qos, StateWait).
        latest = latest_input_qos(cfg.reliable_inputs)
        # Topic names as resolved (remappings applied): the keys of the drop counts.
        self.topics = {
            "joints": self.create_subscription(JointState, "/joint_states", self._on_joint_state, latest).topic_name,
            "tcp": self.create_subscription(PoseStamped, "/tcp_pose", self._on_tcp_pose, latest).topic_name,
            "objects": self.create_subscription(ObjectPoseArray, "/objects/poses", self._on_objects, latest).topic_name}
        if cfg.use_image:
            self.topics["image"] = self.create_subscription(Image, "/camera/image_raw", self._on_image,
                                                            qos_profile_sensor_data).topic_name
        if cfg.follow_sim:  # before /sim/step: when both are ready, the status (published first) is served first
            self.topics["status"] = self.create_subscription(String, cfg.episode_topic, self._on_status,
                                                             reliable).topic_name
        else:
            self.create_service(Trigger, "~/reset", self._on_reset)
        if cfg.lockstep:
            self.create_subscription(UInt64, "/sim/step", lambda m: self._run(self.episodes.on_sim_step(int(m.data))),
                                     reliable)
        else:
            self.create_timer(cfg.control_dt, lambda: self._run(self.episodes.on_timer()))
        self.get_logger().info(
            f"base node: backend={cfg.backend} task={cfg.task} ensemble={cfg.ensemble} horizon={self.horizon} "
            f"{'lockstep' if cfg.lockstep else 'real-time'} {'sync' if cfg.sync_inference else 'async'} inference")

    @staticmethod
    def _replan_threshold(cfg: VlaBaseNodeConfig) -> int | None:
        """Explicit value; else synchronous inference re-plans only when the chunk is used up (it runs before the
        step's action is chosen, so latency never leaves a step uncovered) and asynchronous uses the broker's
        latency-based automatic threshold."""
        if cfg.replan_threshold >= 0:
            return cfg.replan_threshold
        return 0 if cfg.sync_inference else None

    # --- inputs --------------------------------------------------------------------------------------------------
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _now_ns(self) -> int | None:
        """The clock stamps are judged against (None before the first /clock under sim time)."""
        return v.judged_now(self.get_clock().now().nanoseconds)

    def _refused(self, kind: str, reason: str, detail: str = "", part: str = "") -> bool:
        """True (dropped, counted, logged now and then) when ``reason`` says the message of input ``kind`` (``part``
        of it, e.g. "[object]") is unusable."""
        return self.drops.refuse(self.topics[kind] + part, reason, self.get_logger().warn, detail)

    def _on_joint_state(self, msg: JointState) -> None:
        reason = v.joint_state_reason(msg, min_joints=1, now_ns=self._now_ns())
        if self._refused("joints", reason or self.inputs.update_joint_state(msg.name, msg.position, msg.velocity)):
            return
        self._run_ready(self.state_wait.arrived("joint_states", _ns(msg.header.stamp)))

    def _on_tcp_pose(self, msg: PoseStamped) -> None:
        if self._refused("tcp", v.pose_stamped_reason(msg, self.pose_frames, self._now_ns())):
            return
        p, q = msg.pose.position, msg.pose.orientation
        if self._refused("tcp", self.inputs.update_tcp_pose([p.x, p.y, p.z], [q.x, q.y, q.z, q.w], self._now())):
            return
        self._run_ready(self.state_wait.arrived("tcp_pose", _ns(msg.header.stamp)))

    def _on_objects(self, msg: ObjectPoseArray) -> None:
        if self._refused("objects", v.object_pose_array_reason(msg, self.pose_frames, self._now_ns())):
            return
        objs = [(o.name, [o.pose.position.x, o.pose.position.y, o.pose.position.z, o.pose.orientation.x,
                          o.pose.orientation.y, o.pose.orientation.z, o.pose.orientation.w], o.confidence)
                for o in msg.objects]
        for name, reason in self.inputs.update_objects(objs, self._now()).items():  # not seen in this message
            self._refused("objects", reason, f"object {name[:40]!r}", part="[object]")
        if self.cfg.lockstep_pose_wait:
            self._run_ready(self.state_wait.arrived("object_poses", _ns(msg.header.stamp)))

    def _on_image(self, msg: Image) -> None:
        if self._refused("image", v.image_reason(msg) or v.stamp_reason(msg.header.stamp, self._now_ns())):
            return
        img = image_to_rgb(bytes(msg.data), msg.height, msg.width, msg.encoding, msg.step)
        self.inputs.update_image(img, self._now())

    def _on_status(self, msg: String) -> None:
        try:
            episode, step = parse_status(msg.data)
        except ValueError as exc:
            self._refused("status", "bad_status", str(exc))
            return
        stamp = status_stamp_ns(msg.data)
        if self._refused("status", v.time_ns_reason(stamp, self._now_ns()) if stamp >= 0 else ""):
            return
        self._status_stamp_ns = stamp
        self._run(self.episodes.on_status(episode, step))

    def _on_reset(self, req: Trigger.Request, resp: Trigger.Response) -> Trigger.Response:
        with self._tick_lock:
            episode = self.episodes.reset()
        resp.success, resp.message = True, f"episode {episode} starts at the next tick"
        self.get_logger().info(resp.message)
        return resp

    # --- stepping ------------------------------------------------------------------------------------------------
    def _state_deadline(self) -> None:
        held = self.state_wait.expire()
        if held is not None:
            self.get_logger().warn(f"step {held.step}: its state did not arrive within {self.cfg.state_wait_s} s: "
                                   "re-planning on the newest inputs", throttle_duration_sec=5.0)
            self._run_ready(held)

    def _run(self, tick: Tick | None) -> None:
        if tick is None:
            return
        replans = self.cfg.sync_inference and (tick.new_episode or self.broker.wants_replan(tick.step))
        if not tick.repeat and replans:  # a re-plan reads the inputs: step t's state must be in
            tick = self.state_wait.offer(tick, self._status_stamp_ns)
            if tick is None:
                self._state_timer.reset()
                return
        self._run_ready(tick)

    def _run_ready(self, tick: Tick | None) -> None:
        if tick is None:
            return
        self._state_timer.cancel()
        if tick.repeat:
            with self._tick_lock:
                last = self._last_action
            if last is not None and (last.episode, last.step) == (tick.episode, tick.step):
                self.repeats += 1
                self.action_pub.publish(last)  # the same answer again: idempotent
            return
        self.tick(tick.episode, tick.step, tick.new_episode)

    def tick(self, episode: int, step: int, new_episode: bool = False) -> None:
        """Emit the action of ``step`` of ``episode`` and start a re-plan if one is due; ``new_episode``: reset the
        chunks and the backend first."""
        with self._tick_lock:
            if new_episode:
                self.get_logger().info(f"episode {episode} starts at step {step}")
                self.broker.reset()
                self.backend.reset(self.cfg.resolved_instruction)
            self._episode = episode
            if self.cfg.sync_inference and self.broker.wants_replan(step):
                obs = self.inputs.snapshot(step, self._now())
                if obs is not None:
                    self.broker.replan_started(step)
                    self._infer(episode, step, obs)
            out = self.broker.next_action(step)
            self._last_action = self._action_msg(episode, step, out.action,
                                                 "hold" if out.ran_dry else self.backend.name)
            self.action_pub.publish(self._last_action)
            if out.ran_dry:
                self.get_logger().warn(f"no base action for step {step}: holding"
                                       f" (waiting for {self.inputs.missing() or 'inference'})",
                                       throttle_duration_sec=2.0)
            if out.replan and not self.cfg.sync_inference:
                obs = self.inputs.snapshot(step, self._now())
                if obs is not None:
                    self.broker.replan_started(step)
                    self._worker.submit(self._infer, episode, step, obs)

    def _infer(self, episode: int, step: int, obs: dict) -> None:
        try:
            chunk, latency = timed_infer(self.backend, obs)
        except Exception as exc:  # noqa: BLE001 (any failure must free the request slot, or re-planning stops)
            self.broker.replan_failed()
            self.failures += 1
            self.get_logger().error(f"inference for step {step} failed: {exc}", throttle_duration_sec=2.0)
            return
        self.broker.note_latency(latency)
        if episode != self._episode:  # the chunks were reset for a new episode while this one was computed
            self.get_logger().info(f"chunk for step {step} of episode {episode} dropped: episode {self._episode} "
                                   "has started")
            return
        result = self.broker.add_chunk(step, chunk)
        if not result.accepted:
            self.get_logger().error(f"chunk for step {step} rejected: {result.reason}", throttle_duration_sec=2.0)
            return
        msg = EefActionChunk(episode=episode, start_step=step)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.cfg.frame_id
        used = np.asarray(chunk)[: self.horizon]
        msg.actions = [self._action_msg(episode, step + i, a, self.backend.name) for i, a in enumerate(used)]
        self.chunk_pub.publish(msg)

    def _action_msg(self, episode: int, step: int, action: np.ndarray, source: str) -> EefAction:
        msg = EefAction(episode=int(episode), step=int(step), action=[float(v) for v in action], source=source)
        if self.state_wait.enabled and self._status_stamp_ns >= 0:
            # Lockstep with sim time: the stamp of the step's state (its status), which the residual node and the
            # arbiter wait for. Not the clock: /clock travels on a topic of its own and may not have reached this
            # node yet, and an action stamped with the previous state's time lets them compute on that state.
            msg.header.stamp = Time(sec=self._status_stamp_ns // 1_000_000_000,
                                    nanosec=self._status_stamp_ns % 1_000_000_000)
        else:
            msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.cfg.frame_id
        return msg

    def _publish_diagnostics(self) -> None:
        values = {"backend": self.backend.name, "episode": self._episode, "inference_failures": self.failures,
                  "repeats": self.repeats}
        status = node_status("base", "ok", values, self.drops)
        self.diag_pub.publish(diagnostic_array(status, self.get_clock().now().to_msg()))

    def destroy_node(self) -> None:
        self._worker.shutdown(wait=True, cancel_futures=True)
        self.backend.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    run_node("vla-base-node", VlaBaseNode, args, config_errors=(ValueError, BackendError))


if __name__ == "__main__":
    main()
