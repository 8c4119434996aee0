"""The graph under faults, as separate processes in lockstep: sim, pose estimator (ground truth), residual node and
arbiter; the test plays the base (answers every /sim/step) and injects faults. Every command is checked against
the safety envelope of config/sim.yaml.

- NaN/inf in the base action, the object poses, the joint states or the TCP pose never reaches a command;
- aggressive base actions are limited to the envelope (step sizes, workspace box);
- a lost base action does not stall lockstep (the sim re-publishes the step it waits on);
- SIGKILLed and restarted arbiter and residual nodes resume the lockstep episode;
- killing the residual node mid-episode gives base-only commands (status "late") within one control period.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from residual_bringup.demo.graph_process import reserve_domain_id
from residual_bringup.demo.session import DemoSession, NodeExpectation
from residual_interfaces.msg import ArbiterCommand, Correction, EefAction, ObjectPose, ObjectPoseArray
from rostest_utils import RosProbe, clean_fastdds_shm, start_node_process, wait_for
from sensor_msgs.msg import JointState
from std_msgs.msg import String, UInt64
from test_graph_support import envelope_violations, graph_commands, graph_envelope, make_residual_checkpoint
from vla_base_node.episodes import EpisodeClock, Tick, parse_status

pytestmark = pytest.mark.ros

TASK = "cube_lift"
STEPS = 24
DEADLINE_S = 0.02
SMALL = [0.004, 0.002, -0.006, 0.01, 0.0, -0.01, 0.0]


class FakeBase:
    """Answers /sim/step t with ``schedule(t)`` -> (action, injections) on /base/action, after publishing the
    injected inputs ("poses", "tcp", "joints": NaN versions) and running ``before(t)``. Its actions carry the sim's
    episode id, paired with the step as the base node pairs them (its EpisodeClock)."""

    def __init__(self):
        self.probe = RosProbe("fake_base")
        node = self.probe.node
        self.tcp: PoseStamped | None = None
        self.schedule = lambda t: (SMALL, ())
        self.before = lambda t: None
        self.sent_at: dict[int, float] = {}
        self.drop_first: set[int] = set()
        """Steps whose first base action is not published (lost, as while DDS still matches)."""
        self.dropped: list[int] = []
        self.corrected_at: dict[int, float] = {}
        node.create_subscription(PoseStamped, "/tcp_pose", self._on_tcp, 10)
        self.clock = EpisodeClock(lockstep=True, follow_sim=True)
        latched = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(String, "/sim/episode", self._on_status, latched)
        node.create_subscription(UInt64, "/sim/step", self._on_step, 10)
        node.create_subscription(Correction, "/arbiter/correction", self._on_correction, 50)
        self.commands: list[ArbiterCommand] = []
        node.create_subscription(ArbiterCommand, "/arbiter/command", self.commands.append, 50)
        self.base_pub = node.create_publisher(EefAction, "/base/action", 10)
        self.pose_pub = node.create_publisher(ObjectPoseArray, "/objects/poses", 10)
        self.tcp_pub = node.create_publisher(PoseStamped, "/tcp_pose", 10)
        self.joint_pub = node.create_publisher(JointState, "/joint_states", 10)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self):
        while not self._stop.is_set():
            self.probe.executor.spin_once(timeout_sec=0.05)

    def _on_tcp(self, msg):
        if np.isfinite(msg.pose.position.x):  # not our own injected NaN pose
            self.tcp = msg

    def _on_correction(self, msg):
        self.corrected_at.setdefault(msg.step, time.monotonic())

    def _on_status(self, msg):
        self._answer(self.clock.on_status(*parse_status(msg.data)))

    def _on_step(self, msg):
        self._answer(self.clock.on_sim_step(int(msg.data)))

    def _answer(self, tick: Tick | None):
        if tick is None:
            return
        t = tick.step
        stamp = self.tcp.header.stamp
        action, injections = self.schedule(t)
        self.before(t)
        if "poses" in injections:
            cube = ObjectPose(name="cube", confidence=1.0, measured=stamp)
            cube.pose.position.x = math.nan
            cube.pose.orientation.w = 1.0
            arr = ObjectPoseArray(objects=[cube])
            arr.header.stamp, arr.header.frame_id = stamp, "fr3_link0"
            self.pose_pub.publish(arr)
        if "joints" in injections:
            js = JointState(name=[f"fr3_joint{i}" for i in range(1, 8)] + ["fr3_finger_joint1", "fr3_finger_joint2"],
                            position=[math.nan] * 9, velocity=[0.0] * 9)
            js.header.stamp = stamp
            self.joint_pub.publish(js)
        if "tcp" in injections:
            bad = PoseStamped(header=self.tcp.header)
            bad.pose.position.x = math.inf
            bad.pose.orientation.w = 1.0
            self.tcp_pub.publish(bad)
        msg = EefAction(episode=tick.episode, step=t, action=[float(v) for v in action], source="fake_base")
        msg.header.stamp, msg.header.frame_id = stamp, "fr3_link0"
        if t in self.drop_first:
            self.drop_first.discard(t)
            self.dropped.append(t)
            return
        self.sent_at[t] = time.monotonic()
        self.base_pub.publish(msg)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.probe.close()


@pytest.fixture(scope="module")
def graph(ros_env, ros_log_dir, tmp_path_factory):
    # A ROS domain of its own: the SIGKILLed node's remains (its participant until the lease expires) stay here
    # and do not slow discovery in the tests that follow in the session's domain.
    domain = str(reserve_domain_id())
    env = dict(ros_env, ROS_DOMAIN_ID=domain)
    session_domain, os.environ["ROS_DOMAIN_ID"] = os.environ["ROS_DOMAIN_ID"], domain
    tmp = tmp_path_factory.mktemp("faults")
    residual = make_residual_checkpoint(tmp / "residual")
    overrides = {"sim": {"autostart": False, "render_camera": False, "max_steps": STEPS},
                 "pose_estimator": {"source": "gt"}, "arbiter": {"lockstep_residual_wait_s": DEADLINE_S}}
    cmds = graph_commands(tmp, TASK, str(residual), "", overrides)
    procs = {name: start_node_process(cmd, env, ros_log_dir, name) for name, cmd in cmds.items() if name != "base"}
    base = FakeBase()  # in-process nodes join the domain in os.environ at their rclpy.init
    session = DemoSession(node_name="faults_session")
    state = {"procs": procs, "base": base, "session": session, "killed": set(), "cmds": cmds, "env": env,
             "log_dir": ros_log_dir, "sigkilled": False}
    state["alive"] = lambda: all(p.running() for n, p in procs.items() if n not in state["killed"])
    try:
        session.wait_for_graph([NodeExpectation("sim", ("/arbiter/command",)),
                                NodeExpectation("pose_estimator", ("/sim/object_poses_gt",)),
                                NodeExpectation("residual", ("/base/action",)),
                                NodeExpectation("arbiter", ("/base/action", "/residual/action"))], 60.0, state["alive"])
        base.probe.wait_for_subscribers(base.base_pub, count=2, timeout=20.0)
        session.warm_up(TASK, 9, 60.0, state["alive"])
        yield state
    finally:
        session.close()
        base.close()
        os.environ["ROS_DOMAIN_ID"] = session_domain
        for p in procs.values():
            p.stop()
        if state["killed"] or state["sigkilled"]:
            clean_fastdds_shm()
        for name, p in procs.items():
            if name not in state["killed"]:
                assert p.stop_result.returncode == 0, f"{name} exited with {p.stop_result}:\n{p.output()[-3000:]}"


def run(graph, seed: int):
    rec = graph["session"].run_episode("faults", TASK, seed, 60.0, graph["alive"])
    assert rec.steps == STEPS and len(rec.records) == STEPS
    return rec


def test_nan_in_any_input_never_reaches_the_command(graph):
    faults = {3: ("poses",), 4: ("poses",), 7: ("joints",), 11: ("tcp",), 15: ("poses", "joints")}
    nan_base = {5: [math.nan, 0, 0, 0, 0, 0, 0], 9: [0, 0, 0, 0, math.inf, 0, 1.0]}
    graph["base"].schedule = lambda t: (nan_base.get(t, SMALL), faults.get(t, ()))
    rec = run(graph, seed=0)
    # (step 11's record holds the injected TCP pose the session saw last; the arbiter dropped it: checked below)
    assert envelope_violations([r for r in rec.records if r.step != 11], graph_envelope()) == []
    for r in rec.records:
        assert np.all(np.isfinite(r.final)) and np.all(np.isfinite(r.residual)), r
    by_step = {r.step: r for r in rec.records}
    for t in nan_base:  # NaN base action: rejected, pose held, gripper kept
        assert "nan_rejected" in by_step[t].clip_reasons and not np.any(by_step[t].final[0:6]), by_step[t]
    # The inf TCP pose is dropped by the arbiter's input validation: step 11 is composed from the true TCP.
    assert by_step[11].target_pos is not None and np.all(np.isfinite(by_step[11].target_pos)), by_step[11]
    def episode_commands():
        mine = {c.step: c for c in list(graph["base"].commands) if c.episode == rec.episode}
        return mine if len(mine) == STEPS else None
    commands = wait_for(episode_commands, 10.0, "the episode's commands on /arbiter/command")
    assert sorted(commands) == list(range(STEPS)), "one command per step, of this episode"
    assert [t for t, c in commands.items() if not c.valid] == [], "every step had a usable TCP pose"
    # The NaN joint state is dropped by the residual node's input validation: step 7's residual is computed on the
    # step's good state, or, when the NaN one displaced the good one in the node's newest-only queue, it comes too late
    # for this test's 20 ms wait: base alone. Never a residual from NaN.
    assert by_step[7].status in ("ok", "late"), by_step[7]
    clean = [r for t, r in by_step.items() if t not in faults and t not in nan_base]
    assert sum(r.status == "ok" for r in clean) >= 0.8 * len(clean), [r.status for r in clean]
    assert graph["procs"]["sim"].running() and "Traceback" not in graph["procs"]["sim"].output()


def test_aggressive_base_actions_stay_inside_the_envelope(graph):
    up = [0.05, 0.05, 0.05, 0.0, 0.16, 0.2, 1.0]  # 8.7 cm, 0.256 rad: over both step limits
    down = [-0.05, -0.05, -0.05, 0.0, -0.16, -0.2, 0.0]
    graph["base"].schedule = lambda t: (up if t < 6 else down, ())
    rec = run(graph, seed=1)
    env = graph_envelope()
    assert envelope_violations(rec.records, env) == []
    reasons = {x for r in rec.records for x in r.clip_reasons}
    assert {"translation_step", "rotation_step", "workspace_z_max", "workspace_x_min"} <= reasons, reasons
    assert max(r.target_pos[2] for r in rec.records) == pytest.approx(env.workspace_max[2], abs=1e-12)


def test_a_lost_base_action_does_not_stall_lockstep(graph):
    """Defect 1: one lost message stalled lockstep for good. The first base action of steps 0, 5 and 11 is lost: the
    sim re-publishes the step it waits on (resend_period_s, 0.5 s), the base answers again, the episode runs on."""
    base = graph["base"]
    base.schedule, base.before = (lambda t: (SMALL, ())), (lambda t: None)
    base.drop_first, base.dropped = {0, 5, 11}, []
    t0 = time.monotonic()
    rec = run(graph, seed=4)
    wall = time.monotonic() - t0
    assert sorted(base.dropped) == [0, 5, 11] and rec.steps == STEPS
    assert envelope_violations(rec.records, graph_envelope()) == []
    print(f"episode with three lost base actions: {wall:.1f} s")


def test_killed_and_restarted_nodes_resume_the_lockstep_episode(graph):
    """Defect 1: an arbiter restarted (or started late) never resumed lockstep. Here the arbiter is SIGKILLed as the
    base answers step 6 (that base action and the command are lost) and started again, and so is the residual node
    at step 14: the simulator re-publishes the step it waits on, every node answers it, the episode runs to its
    end with one decision per step and every command inside the envelope."""
    restarts, done = {6: "arbiter", 14: "residual"}, set()
    procs = graph["procs"]
    session = graph["session"]
    watched = {"arbiter": "/arbiter/correction", "residual": "/residual/action"}

    def writers(topic: str) -> set[bytes]:
        return {bytes(i.endpoint_gid) for i in session.node.get_publishers_info_by_topic(topic)}

    def before(t):
        name = restarts.get(t)
        if name is None or name in done:
            return
        done.add(name)
        old = writers(watched[name])
        graph["killed"].add(name)  # down while it restarts: not a graph failure
        graph["sigkilled"] = True
        os.kill(procs[name].pid, signal.SIGKILL)
        procs[name].popen.wait(timeout=10)
        procs[name] = start_node_process(graph["cmds"][name], graph["env"], graph["log_dir"], f"{name}_restarted")
        graph["killed"].discard(name)
        # The base answers once this session has discovered the restarted node's writer, so that the session's
        # readers match it before it decides (a volatile writer's samples before the match are not delivered: in CI
        # the session got 6 of 24 corrections while it still discovered a restarted arbiter). The graph itself needs
        # no such wait: the sim re-publishes the step it waits on until a command comes.
        wait_for(lambda: writers(watched[name]) - old, 60.0, f"the restarted {name}'s {watched[name]} writer")
    base = graph["base"]
    base.schedule, base.before = (lambda t: (SMALL, ())), before
    with session.cond:
        first = len(session.corrections)
    t0 = time.monotonic()
    final = session.run_to_end(TASK, 3, 120.0, graph["alive"])
    print(f"episode with two node restarts: {time.monotonic() - t0:.1f} s")
    # The sim advances only on a command for the step it waits on: reaching the horizon means every step was commanded.
    assert done == {"arbiter", "residual"} and final["step"] == STEPS and final["reason"] == "horizon", final
    with session.cond:  # (a restarted arbiter's first records may be lost while this session still discovers it)
        records = [session.step_record(c, None) for c in session.corrections[first:] if c.episode == final["episode"]]
    assert len(records) >= STEPS // 2 and envelope_violations(records, graph_envelope()) == []
    assert all(p.running() for p in procs.values())
    # The restarted residual node is matched again (DDS discovery of a new participant takes a while): its residuals
    # are applied again, as the next test needs.
    deadline, seed = time.monotonic() + 90.0, 20
    while True:
        rec = graph["session"].run_episode("faults", TASK, seed, 60.0, graph["alive"])
        if sum(r.status == "ok" for r in rec.records) >= 0.8 * STEPS:
            break
        assert time.monotonic() < deadline, "the restarted residual node's residuals never reached the arbiter"
        seed += 1


def test_killing_the_residual_node_gives_base_only_commands_within_a_control_period(graph):
    kill_at = 12
    proc = graph["procs"]["residual"]

    def before(t):
        if t == kill_at:
            graph["killed"].add("residual")
            os.kill(proc.pid, signal.SIGKILL)
    base = graph["base"]
    base.schedule, base.before = (lambda t: (SMALL, ())), before
    base.corrected_at.clear()
    rec = run(graph, seed=2)
    proc.popen.wait(timeout=10)
    assert envelope_violations(rec.records, graph_envelope()) == []
    before_kill = [r for r in rec.records if r.step < kill_at]
    after_kill = [r for r in rec.records if r.step >= kill_at]
    assert sum(r.status == "ok" for r in before_kill) >= 0.8 * len(before_kill), [r.status for r in before_kill]
    for r in after_kill:
        assert r.status == "late" and not np.any(r.residual), r
        np.testing.assert_allclose(r.final, SMALL, atol=1e-12)  # the base action alone (inside the envelope)
    delays = [base.corrected_at[t] - base.sent_at[t] for t in range(kill_at, STEPS)]
    print(f"base action -> late command: median {1e3 * np.median(delays):.1f} ms, max {1e3 * max(delays):.1f} ms "
          f"(residual deadline {DEADLINE_S * 1e3:.0f} ms)")
    # Base alone within one control period as a rule; one outlier on a loaded machine up to 0.25 s (the defect:
    # a killed residual node left the arm without a command for 8 s).
    assert np.median(delays) < 0.05 and max(delays) < 0.25, f"late commands took {delays} s (control period 0.05 s)"
