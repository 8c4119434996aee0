"""Fault soak of the sim graph: every node in a process of its own, a fault injected every --fault-period seconds.

The graph is the sim graph of ``residual-launch`` (sim, pose estimator on ground truth, base, residual, arbiter),
each node started here from the command ``residual-launch`` would run (so this script can kill, freeze and restart
one node without the supervisor stopping the rest), in a ROS domain of its own, in real time (default) or lockstep.
Episodes run back to back (``/sim/reset``, seeds 1000, 1001, ...). Faults, in turn:

* ``kill:<node>``: SIGKILL, then start it again (the restart is part of the fault: it lasts until a new publisher of
  the node's output topic is discovered);
* ``freeze:<node>``: SIGSTOP for --freeze-s seconds, then SIGCONT;
* ``flood_actions``: --flood-n EefActions with random episodes, steps and values on /base/action and
  /residual/action within a second;
* ``spoof_tcp``: --flood-n /tcp_pose messages in the right frame, 0.2-0.5 m and up to 3 rad off the true pose;
* ``bad_messages``: one of every hostile-but-well-typed kind on every input topic (short joint states, 1e200
  quaternions, NaN, other frames, stamps an hour ahead, duplicate object names, ...).

Measured, from /arbiter/command and /arbiter/correction (every decision) and the sim's own /tcp_pose:

* commands outside the envelope: a non-finite action or target, a translation or rotation step over the envelope's
  limit (unless the TCP was outside the box and is pulled in), a target outside the workspace box, and a target
  further from the true TCP than one envelope step plus one period of motion;
* stalls: gaps between consecutive commands over 1 s while an episode runs and every node is up, counted from the
  moment the last faulted node is back (a frozen node: SIGCONT; a killed one: the graph commands again after its
  restart was discovered; how long that took is reported per fault);
* fallback per fault: the largest gap between consecutive commands from the fault until 2 s after it ended, minus
  one control period (how late the first command after a missing one came). In real time this must stay within
  one control period for faults of the base, the residual and the pose estimator, and for floods and bad messages;
  while the arbiter itself is dead or frozen no node can command (the simulator, like the robot's controller, keeps
  the last target), so those gaps are reported, not judged;
* memory: resident set size of every node process, sampled every 10 s; growth from the first sample after the
  warm-up to the last, per process instance that lived at least half the soak;
* node exits other than the ones the soak caused.

    .venv/bin/python benchmarks/soak_faults.py --minutes 10                   # real time
    .venv/bin/python benchmarks/soak_faults.py --minutes 10 --mode lockstep

Prints a markdown table (and --json-out). Exit status 1 when a judged target is missed. The log folder it names
keeps every node's log and, for a closer look at a gap, ``commands.csv`` (every command: time, episode, step,
valid), ``corrections.csv`` (every decision's target and clip reasons), ``tcp.csv`` (when this process received
each true TCP pose, and where it was) and ``faults.csv``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
NODES = ("sim", "pose_estimator", "base", "residual", "arbiter")
OUTPUT_TOPIC = {"arbiter": "/arbiter/command", "residual": "/residual/action", "base": "/base/action",
                "pose_estimator": "/objects/poses"}
"""A topic each faulted node publishes: a restarted node is back once a publisher of it that was not there before
is discovered (its old participant lingers in the graph until its lease ends, so its name says nothing)."""
FAULT_CYCLE = ("kill:residual", "freeze:base", "flood_actions", "bad_messages", "kill:base", "freeze:residual",
               "spoof_tcp", "kill:pose_estimator", "freeze:arbiter", "kill:arbiter")
SPOOF_NS = 777_777
SPOOF_MOD = 1_000_000
"""Stamps of this process's own /tcp_pose and /arbiter/command messages end in these nanoseconds (the sim's and the
arbiter's never do in lockstep; in real time one in a million may, and is then skipped)."""


@dataclass
class NodeProc:
    name: str
    cmd: list[str]
    env: dict[str, str]
    log_dir: Path
    popen: subprocess.Popen | None = None
    instance: int = 0
    started_s: float = 0.0
    rss_kb: list[tuple[float, int]] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)
    """Finished instances: {instance, started_s, ended_s, rss: [(t, kB)], exit}."""
    expected_exit: bool = False

    def start(self) -> None:
        self.instance += 1
        log = open(self.log_dir / f"{self.name}.{self.instance}.log", "w")  # noqa: SIM115 (child's stdout)
        self.popen = subprocess.Popen(self.cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        self.started_s, self.rss_kb, self.expected_exit = time.monotonic(), [], False

    def retire(self, exit_code: int | None) -> None:
        self.history.append({"instance": self.instance, "started_s": self.started_s, "ended_s": time.monotonic(),
                             "rss": list(self.rss_kb), "exit": exit_code, "expected": self.expected_exit})

    def sample_rss(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        try:
            for line in Path(f"/proc/{self.popen.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    self.rss_kb.append((time.monotonic(), int(line.split()[1])))
        except OSError:
            pass


def publisher_gids(obs: Observer, topic: str) -> set[bytes]:
    """The endpoint ids of every publisher of ``topic`` this process has discovered."""
    return {bytes(i.endpoint_gid) for i in obs.node.get_publishers_info_by_topic(topic)}


def node_commands(directory: Path, task: str, lockstep: bool, overrides: dict[str, dict]) -> dict[str, list[str]]:
    """Node name -> the command ``residual-launch`` would run for it (sim graph, pose estimator on ground truth)."""
    from residual_bringup.graph import describe_graph, node_specs
    from residual_bringup.supervisor import build_command, node_parameters, resolve_executable, write_params_file

    specs = node_specs(describe_graph("sim", task, lockstep=lockstep, use_sim_time=lockstep,
                                      pose_source="estimator", config_dir=REPO / "config"))
    out = {}
    for spec in specs:
        params_file = write_params_file(spec, node_parameters(spec, overrides.get(spec.name)), directory)
        exe = resolve_executable(spec)
        if exe is None:
            raise SystemExit(f"{spec.executable} is not installed: run `make setup` first")
        out[spec.name] = build_command(spec, exe, params_file)
    return out


@dataclass(frozen=True, slots=True)
class Decided:
    """What the checks read of one /arbiter/correction."""

    episode: int
    step: int
    final: tuple[float, ...]
    clip_reasons: tuple[str, ...]
    target: tuple[float, float, float]
    base_stamp_ns: int
    """Stamp of the base action decided: lockstep with sim time, the stamp of the state (TCP) it was computed on."""

    @classmethod
    def of(cls, msg) -> Decided:
        p = msg.target.position
        return cls(int(msg.episode), int(msg.step), tuple(float(v) for v in msg.final), tuple(msg.clip_reasons),
                   (p.x, p.y, p.z), msg.base_stamp.sec * 1_000_000_000 + msg.base_stamp.nanosec)


class Observer:
    """This process's ROS node: watches commands, corrections, the true TCP and episodes; injects messages."""

    def __init__(self):
        import rclpy
        from geometry_msgs.msg import PoseStamped
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from residual_interfaces.msg import ArbiterCommand, Correction, EefAction, ObjectPoseArray
        from residual_interfaces.srv import ResetEpisode
        from residual_ros.node_main import use_fastdds_profile
        from sensor_msgs.msg import CameraInfo, Image, JointState
        from std_msgs.msg import String

        use_fastdds_profile()  # this process is a participant like the nodes: the same DDS settings
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("soak_faults", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.lock = threading.Lock()
        self.commands: list[tuple[float, int, int, bool, float]] = []
        """(recv monotonic, episode, step, valid, header stamp as monotonic: the arbiter's clock when it decided)."""
        self._wall_to_mono = time.time() - time.monotonic()
        self.corrections: list[tuple[float, Decided]] = []
        """(recv monotonic, the decision): a few fields, not the message. Tens of thousands of whole messages made
        this process's garbage collection pause it for about a second (lockstep soak: 30 commands then arrived in
        one burst after a 1.07 s gap, while the graph had gone on)."""
        self.tcp: list[tuple[float, np.ndarray, int, int]] = []
        """True TCP (the sim's): receive time (monotonic), position, sim episode, header stamp (ns)."""
        self.status: dict = {}
        reliable = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(ArbiterCommand, "/arbiter/command", self._on_command, reliable)
        self.node.create_subscription(Correction, "/arbiter/correction", self._on_correction, reliable)
        self.node.create_subscription(PoseStamped, "/tcp_pose", self._on_tcp, reliable)
        self.node.create_subscription(String, "/sim/episode", self._on_status, latched)
        self.reset = self.node.create_client(ResetEpisode, "/sim/reset")
        self.ResetEpisode = ResetEpisode
        self.pubs = {
            "/base/action": self.node.create_publisher(EefAction, "/base/action", 10),
            "/residual/action": self.node.create_publisher(EefAction, "/residual/action", 10),
            "/tcp_pose": self.node.create_publisher(PoseStamped, "/tcp_pose", 10),
            "/joint_states": self.node.create_publisher(JointState, "/joint_states", 10),
            "/objects/poses": self.node.create_publisher(ObjectPoseArray, "/objects/poses", 10),
            "/sim/object_poses_gt": self.node.create_publisher(ObjectPoseArray, "/sim/object_poses_gt", 10),
            "/arbiter/command": self.node.create_publisher(ArbiterCommand, "/arbiter/command", 10),
            "/camera/image_raw": self.node.create_publisher(Image, "/camera/image_raw", 10),
            "/camera/camera_info": self.node.create_publisher(CameraInfo, "/camera/camera_info", 10),
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def _on_command(self, msg) -> None:
        if msg.header.stamp.nanosec % SPOOF_MOD == SPOOF_NS:
            return  # one of this process's own forged commands
        with self.lock:
            stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9 - self._wall_to_mono
            self.commands.append((time.monotonic(), int(msg.episode), int(msg.step), bool(msg.valid), stamp))

    def _on_correction(self, msg) -> None:
        with self.lock:
            self.corrections.append((time.monotonic(), Decided.of(msg)))

    def _on_tcp(self, msg) -> None:
        if msg.header.stamp.nanosec % SPOOF_MOD == SPOOF_NS or msg.header.frame_id != "fr3_link0":
            return
        p = msg.pose.position
        if not all(math.isfinite(v) and abs(v) < 5 for v in (p.x, p.y, p.z)):
            return
        with self.lock:
            self.tcp.append((time.monotonic(), np.array([p.x, p.y, p.z]), int(self.status.get("episode", -1)),
                             msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec))

    def _on_status(self, msg) -> None:
        with self.lock:
            self.status = json.loads(msg.data)

    def now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds

    def call_reset(self, task: str, seed: int, timeout: float = 10.0) -> bool:
        if not self.reset.wait_for_service(timeout_sec=timeout):
            return False
        future = self.reset.call_async(self.ResetEpisode.Request(task=task, seed=seed))
        deadline = time.monotonic() + timeout
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        return future.done() and future.result() is not None and future.result().success

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.node.destroy_node()
        self.context.try_shutdown()


# --- hostile messages ---------------------------------------------------------------------------------------------


def _stamp(msg_header, ns: int) -> None:
    msg_header.stamp.sec, msg_header.stamp.nanosec = divmod(int(ns), 1_000_000_000)


def _pose(pose, pos, quat) -> None:
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in pos)
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = (float(v) for v in quat)


def bad_messages(obs: Observer, episode: int, step: int) -> int:
    """One of every hostile kind on every input topic; returns how many were sent."""
    from geometry_msgs.msg import PoseStamped
    from residual_interfaces.msg import ArbiterCommand, EefAction, ObjectPose, ObjectPoseArray
    from sensor_msgs.msg import CameraInfo, Image, JointState

    now = obs.now_ns() // SPOOF_MOD * SPOOF_MOD + SPOOF_NS
    hour = 3600 * 10**9
    arm = [f"fr3_joint{i}" for i in range(1, 8)] + ["fr3_finger_joint1", "fr3_finger_joint2"]
    sent = []
    for positions, stamp in (([0.0] * 3, now), ([math.nan] * 9, now), ([1e200] * 9, now), ([0.0] * 9, now + hour)):
        js = JointState(name=arm, position=positions, velocity=[])
        _stamp(js.header, stamp)
        sent.append(("/joint_states", js))
    for frame, pos, quat, stamp in (("fr3_link0", (0.4, 0, 0.3), (1e200, 0, 0, 0), now),
                                    ("fr3_link0", (math.nan, 0, 0.3), (1, 0, 0, 0), now),
                                    ("camera_color_optical_frame", (0.2, 0.1, 0.5), (1, 0, 0, 0), now),
                                    ("fr3_link0", (1e3, 0, 0.3), (1, 0, 0, 0), now),
                                    ("fr3_link0", (0.4, 0, 0.3), (1, 0, 0, 0), now + hour)):
        msg = PoseStamped()
        msg.header.frame_id = frame
        _stamp(msg.header, stamp)
        _pose(msg.pose, pos, quat)
        sent.append(("/tcp_pose", msg))
    for topic in ("/objects/poses", "/sim/object_poses_gt"):
        for objs, frame in ((("cube", (math.nan, 0, 0), (0, 0, 0, 1)),), "fr3_link0"), \
                           ((("cube", (0.5, 0, 0), (1e200, 1e200, 0, 0)),), "fr3_link0"), \
                           ((("cube", (0.5, 0, 0), (0, 0, 0, 1)), ("cube", (0.6, 0, 0), (0, 0, 0, 1))), "fr3_link0"), \
                           (tuple((f"o{i}", (0.5, 0, 0), (0, 0, 0, 1)) for i in range(100)), "fr3_link0"), \
                           ((("cube", (0.5, 0, 0), (0, 0, 0, 1)),), "map"):
            arr = ObjectPoseArray(objects=[])
            for name, pos, quat in objs:
                o = ObjectPose(name=name, confidence=1.0)
                _pose(o.pose, pos, quat)
                arr.objects.append(o)
            arr.header.frame_id = frame
            _stamp(arr.header, now)
            sent.append((topic, arr))
    for topic in ("/base/action", "/residual/action"):
        for ep, st, action in ((episode, step + 1, [math.inf] + [0.0] * 6), (episode, step + 1, [1e6] + [0.0] * 6),
                               (episode, step + 10**9, [0.01] + [0.0] * 6), (episode + 7, 3, [0.01] + [0.0] * 6)):
            a = EefAction(episode=ep, step=st, action=[float(v) for v in action], source="soak")
            _stamp(a.header, now)
            sent.append((topic, a))
    for valid, target, gripper, ep, st in ((True, (math.nan, 0, 0.3), 0.5, episode, step + 1),
                                           (True, (0.4, 0, 0.3), 7.0, episode, step + 1),
                                           (True, (0.4, 0.3, 0.3), 0.5, episode + 3, step + 1),
                                           (True, (0.4, 0.3, 0.3), 0.5, episode, step + 10**6)):
        c = ArbiterCommand(episode=ep, step=st, valid=valid, gripper=gripper)
        c.header.frame_id = "fr3_link0"
        _stamp(c.header, now)
        _pose(c.target, target, (1, 0, 0, 0))
        sent.append(("/arbiter/command", c))
    img = Image(height=480, width=640, encoding="rgb8", step=100)
    img.data = bytes(100)
    sent.append(("/camera/image_raw", img))
    img2 = Image(height=4, width=4, encoding="32FC1", step=16)
    img2.data = bytes(64)
    sent.append(("/camera/image_raw", img2))
    sent.append(("/camera/camera_info", CameraInfo(height=480, width=640, k=[0.0] * 9)))
    for topic, msg in sent:
        obs.pubs[topic].publish(msg)
        time.sleep(0.002)
    return len(sent)


def flood_actions(obs: Observer, n: int, rng: np.random.Generator) -> int:
    from residual_interfaces.msg import EefAction

    for k in range(n):
        a = EefAction(episode=int(rng.integers(0, 50)), step=int(rng.integers(0, 400)),
                      action=[float(v) for v in rng.uniform(-0.05, 0.05, 7)], source="soak_flood")
        _stamp(a.header, obs.now_ns() // SPOOF_MOD * SPOOF_MOD + SPOOF_NS)
        obs.pubs["/base/action" if k % 2 == 0 else "/residual/action"].publish(a)
        time.sleep(1.0 / n)
    return n


def spoof_tcp(obs: Observer, n: int, rng: np.random.Generator) -> int:
    from geometry_msgs.msg import PoseStamped
    from scipy.spatial.transform import Rotation

    with obs.lock:
        true = obs.tcp[-1][1] if obs.tcp else np.array([0.4, 0.0, 0.3])
    for _ in range(n):
        msg = PoseStamped()
        msg.header.frame_id = "fr3_link0"
        _stamp(msg.header, obs.now_ns() // SPOOF_MOD * SPOOF_MOD + SPOOF_NS)
        offset = rng.normal(size=3)
        offset *= rng.uniform(0.2, 0.5) / np.linalg.norm(offset)
        quat = Rotation.from_rotvec(rng.normal(size=3) * 1.5).as_quat()
        _pose(msg.pose, true + offset, quat)
        obs.pubs["/tcp_pose"].publish(msg)
        time.sleep(1.0 / n)
    return n


# --- checks ------------------------------------------------------------------------------------------------------


def envelope_problems(corrections, tcp, env, control_dt: float, by_stamp: bool = False) -> list[str]:
    """Every recorded decision that leaves the envelope (see the module doc). ``by_stamp`` (lockstep with sim time): a
    target is judged against the true TCP of its base action's stamp, the state it was composed from, wherever that
    pose was received; else (real time) against the poses this process received around the decision."""
    lo, hi = np.array(env.workspace_min), np.array(env.workspace_max)
    tcp_t = np.array([x[0] for x in tcp]) if tcp else np.zeros(0)
    tcp_p = np.array([x[1] for x in tcp]) if tcp else np.zeros((0, 3))
    at_stamp = {x[3]: x[1] for x in tcp} if by_stamp else {}
    reach = env.max_translation_step + 0.05 * 1.0 + 0.01  # one step + one period of motion at 1 m/s + noise
    bad = []
    for t, c in corrections:
        final = np.array(c.final)
        where = f"episode {c.episode} step {c.step}"
        if not np.all(np.isfinite(final)):
            bad.append(f"{where}: final not finite")
            continue
        pulled_in = "tcp_outside_workspace" in c.clip_reasons
        if np.linalg.norm(final[:3]) > env.max_translation_step + 1e-9 and not pulled_in:
            bad.append(f"{where}: translation step {np.linalg.norm(final[:3]):.4f}")
        if np.linalg.norm(final[3:6]) > env.max_rotation_step + 1e-9:
            bad.append(f"{where}: rotation step {np.linalg.norm(final[3:6]):.4f}")
        if "tcp_pose_invalid" in c.clip_reasons:  # no target this step: the controller keeps its last one
            continue
        target = np.array(c.target)
        if not np.all(np.isfinite(target)) or np.any(target < lo - 1e-9) or np.any(target > hi + 1e-9):
            bad.append(f"{where}: target {target} outside the box")
            continue
        if c.base_stamp_ns in at_stamp:
            # Lockstep: this process may read its poses late (it floods the graph itself; measured under load: targets
            # judged 0.1-0.45 m from poses received 0.1 s around them while the arbiter composed from the right one).
            d = float(np.linalg.norm(target - at_stamp[c.base_stamp_ns]))
            if d > reach and not pulled_in:
                bad.append(f"{where}: target {d:.3f} m from the true TCP of its state "
                           f"({', '.join(c.clip_reasons) or 'no clip'})")
            continue
        # The true TCP poses received from two periods before the decision to one after it, of any episode: across
        # a reset the arbiter may rightly compose from the reset pose (re-anchored on it, e.g. while holding with
        # the base down) under the old episode's number, or from the old pose just before it; and this process
        # may take a pose from its queue after the decision composed from it (lockstep: a new episode's first
        # decision, composed from the reset pose, was judged against the old pose alone). The closest is taken.
        lo_k, hi_k = np.searchsorted(tcp_t, t - 2 * control_dt), np.searchsorted(tcp_t, t + control_dt)
        window = range(lo_k, hi_k)
        if window and not pulled_in:
            d = min(float(np.linalg.norm(target - tcp_p[k])) for k in window)
            if d > reach:
                bad.append(f"{where}: target {d:.3f} m from the true TCP ({', '.join(c.clip_reasons) or 'no clip'})")
    return bad


def gaps_in(times: np.ndarray, start: float, end: float) -> tuple[float, float]:
    """Largest gap between consecutive times, counting from ``start``, within [start, end], and when it began."""
    inside = times[(times >= start) & (times <= end)]
    points = np.concatenate([[start], inside, [end]]) if inside.size else np.array([start, end])
    k = int(np.argmax(np.diff(points)))
    return float(points[k + 1] - points[k]), float(points[k])


# --- main -------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="length of the soak (after the warm-up)")
    p.add_argument("--mode", choices=("realtime", "lockstep"), default="realtime",
                   help="real time (20 Hz timers, wall clock) or lockstep (the sim waits for each command, sim time)")
    p.add_argument("--fault-period", type=float, default=30.0, help="seconds between faults")
    p.add_argument("--freeze-s", type=float, default=2.0, help="how long a frozen node stays stopped (s)")
    p.add_argument("--flood-n", type=int, default=500, help="messages per flood / spoof burst")
    p.add_argument("--task", default="cube_lift", help="task scene")
    p.add_argument("--max-steps", type=int, default=200, help="episode length limit (control steps)")
    p.add_argument("--faults", nargs="*", choices=FAULT_CYCLE, default=list(FAULT_CYCLE),
                   help="the faults to inject, in turn (none: a soak without faults, the baseline)")
    p.add_argument("--json-out", default="", help="also write the results as JSON here")
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.fault_period <= args.freeze_s + 1:
        p.error("--minutes must be > 0 and --fault-period longer than --freeze-s + 1")

    from action_arbiter.node_config import ArbiterNodeConfig
    from residual_bringup.demo.graph_process import isolated_ros_env, reserve_domain_id
    from residual_bringup.graph import describe_graph, node_specs
    from residual_bringup.supervisor import node_parameters
    from residual_core.action import CONTROL_DT
    from residual_ros.params import config_defaults, config_from_values

    lockstep = args.mode == "lockstep"
    tmp = Path(tempfile.mkdtemp(prefix="soak_faults_"))
    env = dict(os.environ, PYTHONUNBUFFERED="1", **isolated_ros_env(reserve_domain_id(), tmp / "ros_log"))
    os.environ.update(env)
    overrides = {"sim": {"autostart": False, "render_camera": False, "max_steps": args.max_steps},
                 "pose_estimator": {"source": "gt"}}
    cmds = node_commands(tmp, args.task, lockstep, overrides)
    arb_spec = next(s for s in node_specs(describe_graph("sim", args.task, lockstep=lockstep,
                                                         config_dir=REPO / "config")) if s.name == "arbiter")
    arb_params = {k: v for k, v in node_parameters(arb_spec).items() if k in config_defaults(ArbiterNodeConfig)}
    envelope = config_from_values(ArbiterNodeConfig, arb_params).envelope
    procs = {name: NodeProc(name, cmd, env, tmp) for name, cmd in cmds.items()}
    rng = np.random.default_rng(0)
    obs = Observer()
    print(f"[soak] {args.mode}, {args.minutes} min, a fault every {args.fault_period} s; logs in {tmp}", flush=True)
    for proc in procs.values():
        proc.start()
    stop = threading.Event()
    faults: list[dict] = []
    down: list[tuple[float, float]] = []  # (from, to): a node dead, restarting or frozen
    episodes: list[dict] = []
    unexpected_exits: list[str] = []

    def wait_for(predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not stop.is_set():
            if predicate():
                return True
            time.sleep(0.02)
        return False

    def node_up(name: str) -> bool:
        return name in {n for n, _ in obs.node.get_node_names_and_namespaces()}

    def driver() -> None:
        """Episodes back to back; an episode that does not finish in time is reset (and counted)."""
        seed = 1000
        horizon_s = args.max_steps * CONTROL_DT * (4 if not lockstep else 2) + 20.0
        while not stop.is_set():
            if not obs.call_reset(args.task, seed, timeout=10.0):
                continue
            t0 = time.monotonic()
            done = wait_for(lambda s=seed: obs.status.get("seed") == s and obs.status.get("done"), horizon_s)
            with obs.lock:
                st = dict(obs.status)
            episodes.append({"seed": seed, "episode": st.get("episode"), "done": bool(done),
                             "success": bool(st.get("success")) and done, "steps": st.get("step"),
                             "wall_s": time.monotonic() - t0})
            seed += 1

    try:
        print("[soak] waiting for every node and a first episode ...", flush=True)
        if not wait_for(lambda: all(node_up(n) for n in ("sim", "pose_estimator", "base", "residual", "arbiter")),
                        180.0):
            raise RuntimeError("the graph did not come up within 180 s")
        threading.Thread(target=driver, daemon=True).start()
        if not wait_for(lambda: len(episodes) >= 1 and any(c[3] for c in obs.commands), 300.0):
            raise RuntimeError("no first episode within 300 s")
        t_start = time.monotonic()
        with obs.lock:
            first_command = len(obs.commands)
        for proc in procs.values():
            proc.sample_rss()
        t_end = t_start + args.minutes * 60.0
        next_fault, next_rss = t_start + args.fault_period / 2, t_start + 10.0
        cycle = itertools.cycle(args.faults) if args.faults else None
        while time.monotonic() < t_end:
            now = time.monotonic()
            for proc in procs.values():
                code = proc.popen.poll()
                if code is not None and not proc.expected_exit:
                    unexpected_exits.append(f"{proc.name} (instance {proc.instance}) exited with {code}")
                    proc.retire(code)
                    proc.start()
                    down.append((now, now + 15.0))
            if now >= next_rss:
                for proc in procs.values():
                    proc.sample_rss()
                next_rss = now + 10.0
            if cycle is None or now < next_fault:
                time.sleep(0.05)
                continue
            kind = next(cycle)
            with obs.lock:
                ep, st = (obs.commands[-1][1], obs.commands[-1][2]) if obs.commands else (0, 0)
            fault = {"kind": kind, "t0": time.monotonic()}
            print(f"[soak] t={fault['t0'] - t_start:6.1f} s: {kind}", flush=True)
            if kind.startswith("kill:"):
                proc = procs[kind.split(":")[1]]
                topic = OUTPUT_TOPIC[proc.name]
                before = publisher_gids(obs, topic)
                proc.expected_exit = True
                proc.popen.send_signal(signal.SIGKILL)
                proc.popen.wait(timeout=10)
                proc.retire(-9)
                proc.start()
                up = wait_for(lambda t=topic, b=before: bool(publisher_gids(obs, t) - b), 60.0)
                fault["t1"] = time.monotonic()
                fault["restart_s"] = fault["t1"] - fault["t0"] if up else None
            elif kind.startswith("freeze:"):
                proc = procs[kind.split(":")[1]]
                proc.popen.send_signal(signal.SIGSTOP)
                time.sleep(args.freeze_s)
                proc.popen.send_signal(signal.SIGCONT)
                fault["t1"] = time.monotonic()
                down.append((fault["t0"], fault["t1"]))
            elif kind == "flood_actions":
                fault["sent"] = flood_actions(obs, args.flood_n, rng)
                fault["t1"] = time.monotonic()
            elif kind == "spoof_tcp":
                fault["sent"] = spoof_tcp(obs, args.flood_n, rng)
                fault["t1"] = time.monotonic()
            else:
                fault["sent"] = bad_messages(obs, ep, st)
                fault["t1"] = time.monotonic()
            faults.append(fault)
            next_fault = fault["t0"] + args.fault_period
        t_stop = time.monotonic()
        for proc in procs.values():
            proc.sample_rss()
    finally:
        stop.set()
        for proc in procs.values():
            if proc.popen is not None and proc.popen.poll() is None:
                proc.popen.send_signal(signal.SIGCONT)
                proc.popen.send_signal(signal.SIGINT)
        for proc in procs.values():
            if proc.popen is not None:
                try:
                    proc.popen.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.popen.kill()
                proc.retire(proc.popen.returncode)
        obs.close()

    # --- results ---------------------------------------------------------------------------------------------------
    with obs.lock:
        commands = obs.commands[first_command:]
        corrections = [(t, c) for t, c in obs.corrections if t >= t_start]
        tcp = list(obs.tcp)
    # Real time: when the arbiter published (its header stamp, wall clock), so that this process being slow to read
    # (it floods the graph itself) does not count as a gap. Lockstep stamps are sim time: the receive time then.
    times = np.array([c[4] if not lockstep else c[0] for c in commands])
    outside = envelope_problems(corrections, tcp, envelope, CONTROL_DT, by_stamp=lockstep)
    with open(tmp / "commands.csv", "w") as f:  # every command, for a closer look at a gap
        f.write("t_s,episode,step,valid\n")
        f.writelines(f"{t - t_start:.4f},{c[1]},{c[2]},{int(c[3])}\n" for t, c in zip(times, commands, strict=True))
    with open(tmp / "tcp.csv", "w") as f:  # when this process received each true TCP pose
        f.write("t_s,episode,x,y,z,stamp_ns\n")
        f.writelines(f"{t - t_start:.4f},{ep},{p[0]:.4f},{p[1]:.4f},{p[2]:.4f},{ns}\n" for t, p, ep, ns in tcp)
    with open(tmp / "corrections.csv", "w") as f:  # every decision: its target and why it was changed
        f.write("t_s,episode,step,x,y,z,reasons,base_stamp_ns\n")
        f.writelines(f"{t - t_start:.4f},{c.episode},{c.step},{c.target[0]:.4f},{c.target[1]:.4f},"
                     f"{c.target[2]:.4f},{' '.join(c.clip_reasons)},{c.base_stamp_ns}\n" for t, c in corrections)
    with open(tmp / "faults.csv", "w") as f:
        f.write("t0_s,kind\n")
        f.writelines(f"{x['t0'] - t_start:.4f},{x['kind']}\n" for x in faults)
    # A restart lasts until the graph commands again after the new node was discovered (its subscriptions matching
    # and its first computation are part of coming back; how long that took is reported per fault).
    for f in faults:
        if f["kind"].startswith("kill:"):
            later = times[times > f["t1"]]
            f["resumed_after_s"] = float(later[0] - f["t1"]) if later.size else None
            down.append((f["t0"], float(later[0]) if later.size else t_stop))

    def all_up_since(a: float, b: float) -> float:
        """When, within the gap (a, b), every node was last back up (a when none was down in it)."""
        return max([a] + [d1 for d0, d1 in down if d0 < b and d1 > a])

    # A stall: commands stop for over 1 s although every node is up (counted from the moment the last one is back:
    # recovering after a restart or a freeze must be as quick). Episode ends and resets are not stalls: gaps that
    # span the end of an episode (its last command) are skipped.
    gaps = np.diff(times) if times.size > 1 else np.zeros(0)
    episode_change = np.array([commands[k][1] != commands[k + 1][1] for k in range(len(commands) - 1)], dtype=bool)
    stalls, down_gaps = [], []
    for k in range(len(gaps)):
        a, b = float(times[k]), float(times[k + 1])
        if gaps[k] <= 1.0 or episode_change[k]:
            continue
        up = all_up_since(a, b)
        if up > a:
            down_gaps.append(float(gaps[k]))
        if b - up > 1.0:
            stalls.append((up, b - up))
    for f in faults:
        # (a burst still being sent when the soak ends: its window ends with the soak, not 2 s after)
        f["max_gap_s"], at = gaps_in(times, f["t0"], min(f["t1"] + 2.0, t_stop))
        f["max_gap_after_fault_s"] = at - f["t0"]  # when the largest gap began, from the fault's start
        f["fallback_late_s"] = max(0.0, f["max_gap_s"] - CONTROL_DT)
        target = f["kind"] not in ("freeze:arbiter", "kill:arbiter")
        f["judged"] = target and not lockstep
        f["ok"] = (f["fallback_late_s"] <= CONTROL_DT + 1e-3) if f["judged"] else None
    mem = []
    for proc in procs.values():
        for inst in proc.history:
            rss = inst["rss"]
            life = inst["ended_s"] - inst["started_s"]
            if len(rss) >= 2 and life >= 0.5 * (t_stop - t_start):
                first = next((kb for t, kb in rss if t >= t_start), rss[0][1])
                mem.append({"node": proc.name, "instance": inst["instance"], "first_kB": first,
                            "last_kB": rss[-1][1], "growth": (rss[-1][1] - first) / first, "life_s": life})
    result = {
        "mode": args.mode, "minutes": args.minutes, "fault_period_s": args.fault_period, "task": args.task,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "commands": len(commands), "decisions": len(corrections),
        "commands_outside_envelope": len(outside), "outside_examples": outside[:10],
        "stalls_over_1s": len(stalls), "stalls": stalls[:10], "gaps_over_1s_while_a_node_was_down": down_gaps,
        "faults": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in f.items() if k not in ("t0", "t1")}
                   for f in faults],
        "episodes": len(episodes), "episodes_done": sum(e["done"] for e in episodes),
        "episodes_success": sum(e["success"] for e in episodes),
        "memory": mem, "max_memory_growth": max((m["growth"] for m in mem), default=None),
        "unexpected_exits": unexpected_exits,
    }
    judged = [f for f in faults if f["judged"]]
    passed = (not outside and not stalls and not unexpected_exits and all(f["ok"] for f in judged)
              and (result["max_memory_growth"] is None or result["max_memory_growth"] < 0.05))
    result["passed"] = passed
    print(f"\nFault soak, {args.mode}, {args.minutes:g} min, a fault every {args.fault_period:g} s ({args.task}; "
          f"{result['machine']})\n")
    print("| measure | value |\n|---|---|")
    print(f"| commands / decisions | {len(commands)} / {len(corrections)} |")
    print(f"| commands outside the envelope | {len(outside)} |")
    print(f"| stalls > 1 s with every node up | {len(stalls)} |")
    print(f"| gaps > 1 s while a node was down or frozen | {len(down_gaps)} (longest "
          f"{max(down_gaps, default=0):.2f} s) |")
    print(f"| episodes run / finished / succeeded | {len(episodes)} / {result['episodes_done']} / "
          f"{result['episodes_success']} |")
    print(f"| node exits the soak did not cause | {len(unexpected_exits)} |")
    if mem:
        worst = max(mem, key=lambda m: m["growth"])
        print(f"| largest memory growth (node instance alive >= half the soak) | {100 * worst['growth']:+.1f} % "
              f"({worst['node']}, {worst['first_kB'] / 1024:.0f} -> {worst['last_kB'] / 1024:.0f} MiB) |")
    print("\n| fault | times | largest command gap (ms) | later than due (ms) | fallback | restarted node "
          "discovered after (s) | commands again after that (s) |")
    print("|---|---|---|---|---|---|---|")
    for kind in FAULT_CYCLE:
        fs = [f for f in faults if f["kind"] == kind]
        if not fs:
            continue
        gap = max(f["max_gap_s"] for f in fs)
        restart = [f["restart_s"] for f in fs if f.get("restart_s") is not None]
        resumed = [f["resumed_after_s"] for f in fs if f.get("resumed_after_s") is not None]
        verdict = ("ok" if all(f["ok"] for f in fs) else "MISSED") if fs[0]["judged"] else "reported"
        print(f"| {kind} | {len(fs)} | {1e3 * gap:.0f} | {1e3 * max(0.0, gap - CONTROL_DT):.0f} | {verdict} | "
              f"{max(restart):.1f} | {max(resumed):.2f} |" if restart and resumed else
              f"| {kind} | {len(fs)} | {1e3 * gap:.0f} | {1e3 * max(0.0, gap - CONTROL_DT):.0f} | {verdict} | | |")
    for line in outside[:5] + [f"stall of {g:.2f} s at t={t - t_start:.1f} s" for t, g in stalls[:5]] + \
            unexpected_exits[:5]:
        print(f"  {line}")
    print(f"\n{'PASSED' if passed else 'MISSED'}: logs in {tmp}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
