"""The graph under hostile input (issue 10): well-typed but unusable messages on every input topic of every node, in
lockstep and in real time. The real graph runs as separate processes (sim, pose estimator on the ground truth, base
with the shipped sim_bc policy, residual, arbiter), plus a camera pose estimator (ArUco; its outputs remapped away)
for the image and camera_info inputs and the gripper bridge in this process. While an episode runs, the test sends
each bad kind to each topic (:data:`INJECTIONS`; a few rounds, see :class:`Injector`) and then checks: no node
exited, the episode ran to its end and the graph recovered, every command the arbiter decided is inside the safety
envelope, and each node reports the drops on /diagnostics (``dropped <topic>/<reason>``, residual_ros.validate's
reasons). The sim reports the commands it refused for their episode or step.

The bad messages copy the graph's current state (stamp, episode, step, TCP pose) and change one thing, so each is
refused for exactly the reason it is meant to test.
"""

from __future__ import annotations

import copy
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
from action_arbiter.gripper_bridge import GripperBridgeNode, GripperRequest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from residual_bringup.demo.session import DemoSession, NodeExpectation
from residual_interfaces.msg import ArbiterCommand, Correction, EefAction, ObjectPose, ObjectPoseArray
from residual_interfaces.srv import ResetEpisode
from rostest_utils import console_script
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64, String, UInt64
from test_graph_support import envelope_violations, graph_commands, graph_envelope, shipped_checkpoints

pytestmark = pytest.mark.ros

TASK = "cube_lift"
LOCKSTEP_STEPS = 50
REALTIME_STEPS = 50
FIRST_STEP = 2
"""Injections start at this step (lockstep: on its /sim/step, when every node waits for that step's actions)."""
FAR_STEP = 10**12
OTHER_EPISODE = 1000
"""Added to the current episode id for the "another episode" kinds."""
ARM = [f"fr3_joint{i}" for i in range(1, 8)]
JOINTS = ARM + ["fr3_finger_joint1", "fr3_finger_joint2"]
GOOD_JOINTS = [0.0, -0.5, 0.0, -2.0, 0.0, 1.5, 0.8, 0.02, 0.02]
CAMERA = (64, 48)
"""Width, height of the camera the ArUco estimator is told about (the sim renders none here)."""



@dataclass
class State:
    """The graph's current state, as the injector saw it last."""

    tcp: PoseStamped | None = None
    episode: int = 0
    step: int = 0

    @property
    def stamp(self):
        return self.tcp.header.stamp


@dataclass(frozen=True)
class Injection:
    """One bad message: ``make(state)`` builds it; each node in ``expect`` (diagnostics name -> drop key suffix,
    ``<topic><suffix>`` with the node's resolved topic) must count it."""

    topic: str
    kind: str
    make: Callable[[State], object]
    expect: dict[str, str] = field(default_factory=dict)


def _joints(position, names=JOINTS) -> Callable[[State], JointState]:
    def make(s: State) -> JointState:
        msg = JointState(name=list(names), position=[float(p) for p in position], velocity=[])
        msg.header.stamp = s.stamp
        return msg
    return make


def _tcp(change: Callable[[PoseStamped], None]) -> Callable[[State], PoseStamped]:
    """The current TCP pose with one change (its position stays: the demo session records TCP positions by
    stamp)."""
    def make(s: State) -> PoseStamped:
        msg = copy.deepcopy(s.tcp)
        change(msg)
        return msg
    return make


def _frame(msg, frame: str) -> None:
    msg.header.frame_id = frame


def _set_quat(msg, x, y, z, w) -> None:
    o = msg.pose.orientation
    o.x, o.y, o.z, o.w = x, y, z, w


def _ahead(msg) -> None:
    msg.header.stamp.sec += 3600


def _obj(name="cube", pos=(0.5, 0.0, 0.02), quat=(0.0, 0.0, 0.0, 1.0)) -> ObjectPose:
    o = ObjectPose(name=name, confidence=1.0)
    o.pose.position.x, o.pose.position.y, o.pose.position.z = pos
    o.pose.orientation.x, o.pose.orientation.y, o.pose.orientation.z, o.pose.orientation.w = quat
    return o


def _objects(objs: Callable[[], list[ObjectPose]], frame="fr3_link0") -> Callable[[State], ObjectPoseArray]:
    def make(s: State) -> ObjectPoseArray:
        msg = ObjectPoseArray(objects=objs())
        msg.header.stamp, msg.header.frame_id = s.stamp, frame
        for o in msg.objects:
            o.measured = s.stamp
        return msg
    return make


def _action(values=None, step=None, episode_offset=0) -> Callable[[State], EefAction]:
    def make(s: State) -> EefAction:
        action = [0.0] * 7 if values is None else [float(v) for v in values]
        msg = EefAction(episode=s.episode + episode_offset, step=s.step if step is None else step, action=action,
                        source="fuzz")
        msg.header.stamp, msg.header.frame_id = s.stamp, "fr3_link0"
        return msg
    return make


def _command(target_nan=False, gripper=0.0, step=None, episode_offset=0) -> Callable[[State], ArbiterCommand]:
    """A command for the current step that is valid but for one thing; its target 4 cm above the TCP, so a command
    the sim wrongly applied would move it."""
    def make(s: State) -> ArbiterCommand:
        msg = ArbiterCommand(episode=s.episode + episode_offset, step=s.step if step is None else step,
                             gripper=gripper, valid=True)
        msg.header.stamp, msg.header.frame_id = s.stamp, "fr3_link0"
        p = s.tcp.pose.position
        msg.target.position.x, msg.target.position.y = (math.nan if target_nan else p.x), p.y
        msg.target.position.z = p.z + 0.04
        msg.target.orientation = copy.deepcopy(s.tcp.pose.orientation)
        return msg
    return make


def _image(encoding="rgb8", step=CAMERA[0] * 3) -> Callable[[State], Image]:
    def make(s: State) -> Image:
        msg = Image(width=CAMERA[0], height=CAMERA[1], encoding=encoding, step=step)
        msg.data = bytes(CAMERA[0] * CAMERA[1] * 3)
        msg.header.stamp, msg.header.frame_id = s.stamp, "camera_color_optical_frame"
        return msg
    return make


def camera_info(fx: float = 60.0, stamp=None) -> CameraInfo:
    msg = CameraInfo(width=CAMERA[0], height=CAMERA[1], k=[fx, 0.0, 32.0, 0.0, 60.0, 24.0, 0.0, 0.0, 1.0],
                     d=[0.0] * 5, distortion_model="plumb_bob")
    if stamp is not None:
        msg.header.stamp = stamp
    return msg


BASE, RESIDUAL, SIM, GRIPPER, ARBITER = "base", "residual_policy", "sim", "gripper_bridge", "action_arbiter"
GT, ARUCO = "pose_estimator/gt", "pose_estimator/aruco"
"""Diagnostics status names (the two pose estimators share one and differ in their "source" value)."""

INJECTIONS: list[Injection] = [
    # /joint_states: base, residual
    Injection("/joint_states", "fewer positions than names", _joints(GOOD_JOINTS[:3]),
              {BASE: "/length_mismatch", RESIDUAL: "/length_mismatch"}),
    Injection("/joint_states", "NaN", _joints([math.nan] + GOOD_JOINTS[1:]),
              {BASE: "/not_finite", RESIDUAL: "/not_finite"}),
    Injection("/joint_states", "1e200", _joints([1e200] + GOOD_JOINTS[1:]),
              {BASE: "/out_of_range", RESIDUAL: "/out_of_range"}),
    # /tcp_pose: base, residual, arbiter
    Injection("/tcp_pose", "other frame", _tcp(lambda m: _frame(m, "camera_color_optical_frame")),
              {BASE: "/wrong_frame", RESIDUAL: "/wrong_frame", ARBITER: "/wrong_frame"}),
    Injection("/tcp_pose", "1e200 quaternion", _tcp(lambda m: _set_quat(m, 1e200, 1e200, 0.0, 0.0)),
              {BASE: "/bad_quaternion", RESIDUAL: "/bad_quaternion", ARBITER: "/bad_quaternion"}),
    Injection("/tcp_pose", "NaN", _tcp(lambda m: _set_quat(m, math.nan, 0.0, 0.0, 1.0)),
              {BASE: "/not_finite", RESIDUAL: "/not_finite", ARBITER: "/not_finite"}),
    # (before the arbiter validated its inputs it took a pose stamped an hour ahead as current for the next step too)
    Injection("/tcp_pose", "stamp 1 h ahead", _tcp(_ahead),
              {BASE: "/stamp_future", RESIDUAL: "/stamp_future", ARBITER: "/stamp_future"}),
    # /objects/poses: residual, arbiter, sim (the pose barrier: arrays only)
    *[Injection(topic, kind, make, expect)
      for topic, receivers in (("/objects/poses", (RESIDUAL,)), ("/sim/object_poses_gt", (GT, BASE)))
      for kind, make, expect in (
          ("NaN object", _objects(lambda: [_obj(pos=(math.nan, 0.0, 0.02))]), "[object]/not_finite"),
          ("1e200 quaternion", _objects(lambda: [_obj(quat=(1e200, 1e200, 0.0, 0.0))]), "[object]/bad_quaternion"),
          ("duplicate names", _objects(lambda: [_obj(), _obj()]), "/bad_name"),
          ("100 objects", _objects(lambda: [_obj(f"o{i}") for i in range(100)]), "/too_many"),
          ("other frame", _objects(lambda: [_obj()], frame="world"), "/wrong_frame"))
      for expect in [dict.fromkeys(receivers, expect)]],
    # actions: the residual node (/base/action) and the arbiter (both)
    Injection("/base/action", "inf", _action([math.inf, 0, 0, 0, 0, 0, 0]),
              {RESIDUAL: "/not_finite", ARBITER: "/not_finite"}),
    Injection("/base/action", "1e6 component", _action([0, 0, 0, 0, 1e6, 0, 0]),
              {RESIDUAL: "/out_of_range", ARBITER: "/out_of_range"}),
    # (before the arbiter's StepMatcher dropped implausible steps it decided step 10**12 and then ignored every real
    # step as older than the last decided: lockstep stalled for good, real time sent nothing for the episode)
    Injection("/base/action", "far-future step", _action(step=FAR_STEP), {ARBITER: "/impossible_step"}),
    # (the residual node answers a base action of any episode and step: pairing them is the arbiter's; the
    # /residual/action kinds reach only the arbiter)
    Injection("/base/action", "another episode", _action(episode_offset=OTHER_EPISODE)),
    Injection("/residual/action", "inf", _action([math.inf, 0, 0, 0, 0, 0, 0]), {ARBITER: "/not_finite"}),
    Injection("/residual/action", "1e6 component", _action([0, 0, 0, 0, 1e6, 0, 0]), {ARBITER: "/out_of_range"}),
    Injection("/residual/action", "far-future step", _action(step=FAR_STEP)),
    Injection("/residual/action", "another episode", _action(episode_offset=OTHER_EPISODE)),
    # /arbiter/command: the sim (content first; then its episode / step rule, counted as "commands dropped <why>")
    Injection("/arbiter/command", "NaN target", _command(target_nan=True), {SIM: "/not_finite"}),
    Injection("/arbiter/command", "gripper 7", _command(gripper=7.0), {SIM: "/out_of_range"}),
    Injection("/arbiter/command", "another episode", _command(episode_offset=OTHER_EPISODE)),
    Injection("/arbiter/command", "far-future step", _command(step=FAR_STEP)),
    # camera: the base (use_image) and the ArUco estimator
    Injection("/camera/image_raw", "step too small", _image(step=10), {BASE: "/bad_size", ARUCO: "/bad_size"}),
    Injection("/camera/image_raw", "bad encoding", _image(encoding="32FC1"),
              {BASE: "/bad_encoding", ARUCO: "/bad_encoding"}),
    Injection("/camera/camera_info", "zero focal", lambda s: camera_info(fx=0.0, stamp=s.stamp),
              {ARUCO: "/bad_intrinsics"}),
    # the simulator's status (base) and the arbiter's gripper command (gripper bridge)
    Injection("/sim/episode", "not JSON", lambda s: String(data="{episode: 1"), {BASE: "/bad_status"}),
    Injection("/sim/episode", "infinite episode", lambda s: String(data='{"episode": 1e999, "step": 0}'),
              {BASE: "/bad_status"}),
    Injection("/arbiter/gripper", "gripper 7", lambda s: Float64(data=7.0), {GRIPPER: "/out_of_range"}),
    Injection("/arbiter/gripper", "NaN", lambda s: Float64(data=math.nan), {GRIPPER: "/not_finite"}),
]
MSG_TYPES = {"/joint_states": JointState, "/tcp_pose": PoseStamped, "/objects/poses": ObjectPoseArray,
             "/sim/object_poses_gt": ObjectPoseArray, "/base/action": EefAction, "/residual/action": EefAction,
             "/arbiter/command": ArbiterCommand, "/camera/image_raw": Image, "/camera/camera_info": CameraInfo,
             "/sim/episode": String, "/arbiter/gripper": Float64}


def subscribers(lockstep: bool) -> dict[str, int]:
    """Subscriptions per topic, matched before anything is sent: the graph's nodes (the sim reads /objects/poses as
    its lockstep pose barrier), the demo session (/tcp_pose, /sim/episode) and the injector itself (/tcp_pose,
    /base/action; its /sim/episode reader is transient local, which a volatile writer does not match)."""
    return {"/joint_states": 2, "/tcp_pose": 5, "/objects/poses": 3 if lockstep else 2, "/sim/object_poses_gt": 2,
            "/base/action": 3, "/residual/action": 1, "/arbiter/command": 1, "/camera/image_raw": 2,
            "/camera/camera_info": 1, "/sim/episode": 2, "/arbiter/gripper": 1}


TURNS = ("/objects/poses", "/sim/object_poses_gt")
"""Topics sent to in turn, never at the same step: a ground-truth array that passes makes the pose estimator publish
/objects/poses at once, which would overtake a bad /objects/poses of the same step in the residual node's queue."""


class RecordingSender:
    """Stands in for franka_gripper's action clients."""

    def __init__(self, node, cfg):
        self.sent: list[GripperRequest] = []

    def send(self, request: GripperRequest) -> bool:
        self.sent.append(request)
        return True


class Injector:
    """A test node (own context and executor thread) that follows the graph's state and sends the injections: one
    per topic at a time (the :data:`TURNS` topics in turn), each topic's list in order, ``rounds`` times. Lockstep:
    on each /sim/step from ``FIRST_STEP``; real time: on a timer. The nodes keep only the newest message of a state
    topic (best effort, depth 1), so a bad one can be overtaken by the sim's next state before the node takes it, in
    lockstep too (the next state follows as soon as the step's command is out): hence several rounds, and after them
    (up to ``max_refills`` times per topic) again those whose drops no receiver has reported yet (seen in CI: both
    "100 objects" arrays on /objects/poses overtaken by the estimator's). Also runs the gripper bridge and collects
    /diagnostics and /arbiter/correction."""

    def __init__(self, lockstep: bool, rounds: int = 1, max_refills: int = 4):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self._rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = node = rclpy.create_node("fuzz_injector", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(node)
        self.bridge = GripperBridgeNode(make_sender=RecordingSender, context=self.context)
        self.executor.add_node(self.bridge)
        self.lock = threading.Lock()
        self.state = State()
        self.queues: dict[str, list[Injection]] = {}
        for inj in INJECTIONS * rounds:
            self.queues.setdefault(inj.topic, []).append(inj)
        self.retries: dict[str, list[Injection]] = {}
        self.refills: dict[str, int] = {}
        self.max_refills = max_refills
        self.sent: list[tuple[str, str]] = []
        self.calls = 0
        self.armed = False
        self.lockstep = lockstep
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = {topic: node.create_publisher(MSG_TYPES[topic], topic, reliable) for topic in self.queues}
        self.diagnostics: list[DiagnosticArray] = []
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 100)
        self.corrections: list[Correction] = []
        node.create_subscription(Correction, "/arbiter/correction", self.corrections.append,
                                 QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE))
        self.statuses: list[dict] = []
        self.status_stamp_ns = 0
        self.tcp_by_stamp: dict[int, PoseStamped] = {}
        self.step_stamps: dict[tuple[int, int], int] = {}
        latched = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(String, "/sim/episode", self._on_status, latched)
        node.create_subscription(PoseStamped, "/tcp_pose", self._on_tcp, 10)
        node.create_subscription(EefAction, "/base/action", self._on_base, 10)
        if lockstep:
            node.create_subscription(UInt64, "/sim/step", self._on_step, 10)
        else:
            node.create_timer(0.03, self._inject)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        with self.lock:
            self.diagnostics.append(msg)

    def _on_status(self, msg: String) -> None:
        try:
            status = json.loads(msg.data)
            episode, stamp = int(status["episode"]), int(status["stamp_ns"])
        except (ValueError, TypeError, KeyError, OverflowError):
            return  # our own garbage
        with self.lock:
            self.statuses.append(status)
            if episode != self.state.episode and not self.lockstep:
                self.state.step = 0  # the base restarts its count
            self.state.episode, self.status_stamp_ns = episode, stamp
            self.step_stamps[episode, int(status.get("step", -1))] = stamp

    def _on_tcp(self, msg: PoseStamped) -> None:
        """The sim's TCP pose; not one of ours (another frame, a bad quaternion, an hour ahead of the sim)."""
        o = msg.pose.orientation
        ahead = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec - self.status_stamp_ns > 10**9
        unit = all(math.isfinite(v) and abs(v) <= 1.0 for v in (o.x, o.y, o.z, o.w))
        if msg.header.frame_id == "fr3_link0" and unit and not (ahead and self.status_stamp_ns > 0):
            with self.lock:
                self.state.tcp = msg
                self.tcp_by_stamp[msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec] = msg

    def _on_base(self, msg: EefAction) -> None:
        with self.lock:
            if not self.lockstep and msg.source != "fuzz" and msg.episode == self.state.episode:
                self.state.step = int(msg.step)  # real time: the base's own step count

    def _on_step(self, msg: UInt64) -> None:
        with self.lock:
            self.state.step = int(msg.data)
        if msg.data >= FIRST_STEP:
            self._inject()

    def _inject(self) -> None:
        """The next injection of every topic (lockstep: once per /sim/step, copying that step's TCP pose: skipped
        until it is in)."""
        with self.lock:
            if not self.armed or self.state.tcp is None or self.state.episode == 0:
                return
            tcp = self.state.tcp
            if self.lockstep:
                tcp = self.tcp_by_stamp.get(self.step_stamps.get((self.state.episode, self.state.step), -1))
                if tcp is None:
                    return
            state = State(tcp, self.state.episode, self.state.step)
        turn, self.calls = TURNS[self.calls % len(TURNS)], self.calls + 1
        for topic, queue in self.queues.items():
            if topic in TURNS and topic != turn:
                continue
            retry = self.retries.setdefault(topic, [])
            if not queue and not retry and self.refills.get(topic, 0) < self.max_refills:
                retry += self.unreported(topic)
                self.refills[topic] = self.refills.get(topic, 0) + 1
            inj = queue.pop(0) if queue else retry.pop(0) if retry else None
            if inj is not None:
                self.pubs[topic].publish(inj.make(state))
                self.sent.append((topic, inj.kind))

    def unreported(self, topic: str) -> list[Injection]:
        """The injections of ``topic`` some receiver of which has not reported their drop yet (diagnostics lag up to
        a second: some of these may be on their way; sending them again only adds drops)."""
        got = self.latest_drops()
        return [inj for inj in INJECTIONS if inj.topic == topic
                and any(f"dropped {topic}{suffix}" not in got.get(node, {}) for node, suffix in inj.expect.items())]

    def wait_for_subscribers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        short, want = {}, subscribers(self.lockstep)
        while time.monotonic() < deadline:
            short = {t: (p.get_subscription_count(), want[t]) for t, p in self.pubs.items()
                     if p.get_subscription_count() < want[t]}
            if not short:
                return
            time.sleep(0.05)
        raise TimeoutError(f"injection topics without all their subscribers (have, want): {short}")

    def done(self) -> bool:
        """Every round was sent (the re-sends of unreported ones are extra)."""
        return not any(self.queues.values())

    def latest_drops(self) -> dict[str, dict[str, str]]:
        """Per node (status name; pose estimators by source), its latest diagnostics values."""
        out = {}
        with self.lock:
            for arr in self.diagnostics:
                for st in arr.status:
                    values = {kv.key: kv.value for kv in st.values}
                    name = f"{st.name}/{values['source']}" if st.name == "pose_estimator" else st.name
                    out[name] = values
        return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.executor.shutdown()
        self.bridge.destroy_node()
        self.node.destroy_node()
        if self.context.ok():
            self._rclpy.shutdown(context=self.context)


def expected_drops(injector: Injector) -> dict[str, set[str]]:
    """Per node, the drop keys the sent injections must have left (topics as the node resolves them: the base reads
    the ground truth as its object poses)."""
    out: dict[str, set[str]] = {}
    for inj in INJECTIONS:
        for node, suffix in inj.expect.items():
            out.setdefault(node, set()).add(f"dropped {inj.topic}{suffix}")
    return out


def start_graph(launch_node, tmp_path, lockstep: bool, steps: int) -> dict:
    found = shipped_checkpoints(TASK)
    if isinstance(found, str):
        pytest.skip(found)
    residual, base = found
    overrides = {"sim": {"autostart": False, "render_camera": False, "max_steps": steps},
                 "pose_estimator": {"source": "gt"}, "base": {"use_image": True}}
    if not lockstep:
        overrides["arbiter"] = {"residual_deadline_s": 0.02}
    cmds = graph_commands(tmp_path, TASK, str(residual), str(base), overrides, lockstep=lockstep)
    procs = {name: launch_node(cmd, name=name) for name, cmd in cmds.items()}
    procs["aruco"] = launch_node([console_script("pose-estimator-node")],
                                 ["--ros-args", "-r", "__node:=pose_estimator_aruco", "-p", "source:=aruco",
                                  "-p", f"task:={TASK}", "-p", "use_sim_time:=true",
                                  "-r", "/objects/poses:=/fuzz/aruco/poses",
                                  "-r", "/objects/pose_array:=/fuzz/aruco/pose_array"], name="aruco")
    return procs


def check_alive(procs: dict) -> None:
    dead = {n: p.output()[-2000:] for n, p in procs.items() if not p.running()}
    assert not dead, f"node(s) exited: {list(dead)}\n" + "\n".join(f"--- {n}:\n{o}" for n, o in dead.items())


def check_drops(injector: Injector, procs: dict, timeout: float = 5.0) -> dict[str, dict[str, str]]:
    """Wait (diagnostics come once a second) until every node reports every drop the injections must have left, the
    sim included the commands it dropped for their episode or step."""
    want = expected_drops(injector)

    def missing():
        got = injector.latest_drops()
        out = {n: sorted(k for k in keys if k not in got.get(n, {})) for n, keys in want.items()}
        sim = got.get(SIM, {})
        out[SIM] += [k for k in ("commands dropped other_episode", "commands dropped future_step")
                     if int(sim.get(k, 0)) < 1]
        return out

    deadline = time.monotonic() + timeout
    while any(missing().values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(missing().values()), f"drops not reported on /diagnostics: {missing()}"
    check_alive(procs)
    return injector.latest_drops()


def test_lockstep_graph_survives_every_bad_kind(launch_node, ros_env, tmp_path):
    t0 = time.monotonic()
    procs = start_graph(launch_node, tmp_path, lockstep=True, steps=LOCKSTEP_STEPS)
    alive = lambda: all(p.running() for p in procs.values())  # noqa: E731
    injector = Injector(lockstep=True, rounds=2)
    session = DemoSession(node_name="fuzz_session")
    try:
        session.wait_for_graph([NodeExpectation("sim", ("/arbiter/command", "/objects/poses")),
                                NodeExpectation("pose_estimator", ("/sim/object_poses_gt",)),
                                NodeExpectation("pose_estimator_aruco", ("/camera/image_raw", "/camera/camera_info")),
                                NodeExpectation("base", ("/sim/step", "/sim/episode", "/camera/image_raw")),
                                NodeExpectation("residual", ("/base/action",)),
                                NodeExpectation("arbiter", ("/base/action", "/residual/action"))], 90.0, alive)
        injector.wait_for_subscribers(30.0)
        injector.pubs["/camera/camera_info"].publish(camera_info())  # a good one first: images are judged by it
        session.warm_up(TASK, 3, 60.0, alive)
        injector.pubs["/camera/camera_info"].publish(camera_info())  # again, discovery done (see the real-time test)
        started = time.monotonic()
        injector.armed = True
        rec = session.run_episode("fuzz", TASK, 4, 60.0, alive)
        episode_s = time.monotonic() - started
        assert injector.done(), f"not every injection was sent: {injector.queues}"
        check_drops(injector, procs)
    finally:
        session.close()
        injector.close()
    check_alive(procs)
    print(f"lockstep fuzz: {len(injector.sent)} bad messages, episode of {rec.steps} steps in {episode_s:.1f} s, "
          f"test {time.monotonic() - t0:.1f} s")
    assert rec.reason in ("success", "horizon") and rec.steps == len(rec.records), rec.reason
    assert envelope_violations(rec.records, graph_envelope()) == []
    assert all(r.status == "ok" for r in rec.records[-5:]), [r.status for r in rec.records]  # recovered


def test_real_time_graph_survives_every_bad_kind(launch_node, ros_env, tmp_path):
    t0 = time.monotonic()
    procs = start_graph(launch_node, tmp_path, lockstep=False, steps=REALTIME_STEPS)
    alive = lambda: all(p.running() for p in procs.values())  # noqa: E731
    injector = Injector(lockstep=False, rounds=4)
    session = DemoSession(node_name="fuzz_session_rt")
    try:
        session.wait_for_graph([NodeExpectation("sim", ("/arbiter/command",)),
                                NodeExpectation("pose_estimator", ("/sim/object_poses_gt",)),
                                NodeExpectation("pose_estimator_aruco", ("/camera/image_raw", "/camera/camera_info")),
                                NodeExpectation("base", ("/sim/episode", "/camera/image_raw")),
                                NodeExpectation("residual", ("/base/action",)),
                                NodeExpectation("arbiter", ("/base/action", "/residual/action"))], 90.0, alive)
        injector.wait_for_subscribers(30.0)
        injector.pubs["/camera/camera_info"].publish(camera_info())
        reset = injector.node.create_client(ResetEpisode, "/sim/reset")
        # A first episode until the base acts on its inputs (DDS discovery), then the measured one.
        for seed, measured in ((3, False), (4, True)):
            before = max((s["episode"] for s in injector.statuses), default=0)
            future = reset.call_async(ResetEpisode.Request(task=TASK, seed=seed))
            deadline = time.monotonic() + 30.0
            while not future.done():
                assert time.monotonic() < deadline and alive(), "no answer from /sim/reset"
                time.sleep(0.02)
            assert future.result().success
            # the good camera_info again before each episode: the aruco node skips every image until it has one, and
            # a single one sent right after discovery was once lost (seen in CI: no image drop counted)
            injector.pubs["/camera/camera_info"].publish(camera_info())
            injector.armed = measured
            deadline = time.monotonic() + REALTIME_STEPS * 0.05 * 4 + 20.0
            while not (final := next((s for s in list(injector.statuses) if s["episode"] > before and s["done"]),
                                     None)):
                assert time.monotonic() < deadline, "the episode did not end"
                check_alive(procs)
                time.sleep(0.05)
        assert injector.done(), f"not every injection was sent: {injector.queues}"
        check_drops(injector, procs)
        corrections = [c for c in list(injector.corrections) if c.episode == final["episode"]]
    finally:
        session.close()
        injector.close()
    check_alive(procs)
    print(f"real-time fuzz: {len(injector.sent)} bad messages, episode of {final['step']} steps, {len(corrections)} "
          f"commands, test {time.monotonic() - t0:.1f} s")
    assert final["reason"] in ("success", "horizon")
    records = [DemoSession.step_record(c, None) for c in corrections]
    assert len(records) >= final["step"] * 0.5, f"{len(records)} commands for {final['step']} sim steps"
    assert envelope_violations(records, graph_envelope()) == []
    assert np.all([np.all(np.isfinite(r.final)) for r in records])
    assert all(r.target_pos is not None for r in records[-10:]), "the graph recovered: valid commands at the end"
