"""The demo's own ROS node: waits for the graph, switches the residual, runs seeded episodes through
``/sim/reset`` and ``/sim/episode``, collects the arbiter's corrections, and records topics to MCAP.

It runs its executor on a background thread (own rclpy context); the caller's thread makes the requests and
waits on conditions, never on fixed sleeps.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.exceptions import InvalidHandle
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from residual_interfaces.msg import Correction, EefAction
from residual_interfaces.srv import ResetEpisode
from residual_ros.node_main import use_fastdds_profile
from std_msgs.msg import String
from std_srvs.srv import SetBool

from residual_bringup.demo.recording import McapRecorder, message_class
from residual_bringup.demo.results import EpisodeRecord, StepRecord


class DemoError(RuntimeError):
    """The graph did not do what the demo needs (node missing, timeout, failed service call)."""


@dataclass(frozen=True)
class NodeExpectation:
    """A node the demo waits for, and topics it must have subscribed to before it counts as up."""

    name: str
    subscribes: tuple[str, ...]


def expected_nodes(with_estimator: bool, estimator_source: str = "gt") -> list[NodeExpectation]:
    """The lockstep sim graph's nodes and the subscriptions each must have (the base reads the true poses; the pose
    estimator, if any, the ground truth (``gt``) or the camera (``aruco``))."""
    out = [NodeExpectation("sim", ("/arbiter/command",) + (("/objects/poses",) if with_estimator else ())),
           NodeExpectation("base", ("/sim/step", "/sim/episode", "/tcp_pose", "/joint_states", "/sim/object_poses_gt")),
           NodeExpectation("residual", ("/base/action", "/tcp_pose", "/joint_states", "/objects/poses")),
           NodeExpectation("arbiter", ("/base/action", "/residual/action", "/tcp_pose", "/objects/poses"))]
    if with_estimator:
        inputs = (("/sim/object_poses_gt",) if estimator_source == "gt"
                  else ("/camera/image_raw", "/camera/camera_info", "/sim/episode"))
        out.append(NodeExpectation("pose_estimator", inputs))
    return out


STATUS_FIELDS = {"episode": int, "step": int, "stamp_ns": int, "done": bool, "success": bool, "reason": str}
"""The /sim/episode fields the session reads, and their JSON types."""


def parse_status(text: str) -> dict | None:
    """A simulator status (/sim/episode JSON) with the fields the session reads, or None for anything else (a
    garbage status on the topic must not stop the session's executor)."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    for key, kind in STATUS_FIELDS.items():
        value = data.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return None
    return data


def _stamp_key(sec: int, nanosec: int) -> int:
    """A header stamp as a dictionary key (ns)."""
    return sec * 1_000_000_000 + nanosec


class DemoSession:
    def __init__(self, recorder: McapRecorder | None = None, topics: dict[str, str] | None = None,
                 node_name: str = "residual_demo"):
        use_fastdds_profile()  # a participant like the nodes: the same DDS settings (before the first one exists)
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(node_name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.recorder = recorder
        self.cond = threading.Condition()
        self.corrections: list[Correction] = []
        self.statuses: list[dict] = []
        self.tcp_by_stamp: dict[int, np.ndarray] = {}
        self.action_counts = {"base": 0, "base_hold": 0}
        reliable = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
        for topic, type_name in (topics or {}).items():
            if recorder is not None:
                self.node.create_subscription(message_class(type_name), topic, self._recorder_cb(topic), reliable,
                                              raw=True)
        self.node.create_subscription(Correction, "/arbiter/correction", self._on_correction, reliable)
        self.node.create_subscription(String, "/sim/episode", self._on_status, reliable)
        self.node.create_subscription(PoseStamped, "/tcp_pose", self._on_tcp, reliable)
        self.reset_client = self.node.create_client(ResetEpisode, "/sim/reset")
        self.enable_client = self.node.create_client(SetBool, "/arbiter/enable_residual")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="demo_executor", daemon=True)
        self._thread.start()

    # --- executor thread ---------------------------------------------------------------------------------------
    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except InvalidHandle:
                # rclpy (Jazzy) lists a node's event handlers before it marks them in use; one destroyed in between
                # raises here (seen in CI: the executor thread died and no service reply was taken after it). The
                # entity is gone; the next spin_once builds a wait set without it.
                continue

    def run_in_executor(self, fn: Callable[[], object], timeout: float = 10.0) -> object:
        """Run ``fn`` on the executor thread (between two waits) and return its result: for creating or destroying
        entities while the executor spins. Called directly when the executor thread is not running."""
        if not self._thread.is_alive():
            return fn()
        task = self.executor.create_task(fn)
        done = threading.Event()
        task.add_done_callback(lambda _t: done.set())
        if not done.wait(timeout):
            raise DemoError(f"the session's executor did not run a task within {timeout:.0f} s")
        return task.result()

    def _recorder_cb(self, topic: str) -> Callable[[bytes], None]:
        def cb(data: bytes) -> None:
            self.recorder.write(topic, data, time.time_ns())
        return cb

    def _on_correction(self, msg: Correction) -> None:
        with self.cond:
            self.corrections.append(msg)
            self.cond.notify_all()

    def _on_status(self, msg: String) -> None:
        status = parse_status(msg.data)
        if status is None:
            return
        with self.cond:
            self.statuses.append(status)
            self.cond.notify_all()

    def _on_base(self, msg: EefAction) -> None:
        with self.cond:
            self.action_counts["base"] += 1
            self.action_counts["base_hold"] += msg.source == "hold"

    def _on_tcp(self, msg: PoseStamped) -> None:
        p = msg.pose.position
        with self.cond:
            self.tcp_by_stamp[_stamp_key(msg.header.stamp.sec, msg.header.stamp.nanosec)] = np.array([p.x, p.y, p.z])

    # --- caller thread -------------------------------------------------------------------------------------------
    def wait(self, predicate: Callable[[], object], timeout: float, what: str,
             alive: Callable[[], bool] | None = None) -> object:
        """Wait until ``predicate()`` (called under the lock) is truthy; DemoError on timeout or when ``alive``
        says the graph died."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                value = predicate()
                if value:
                    return value
                if alive is not None and not alive():
                    raise DemoError(f"the graph stopped while waiting for {what}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")
                self.cond.wait(min(left, 0.1))

    def missing_nodes(self, expected: list[NodeExpectation]) -> list[str]:
        """What of ``expected`` is not up yet ("node" or "node: /topic"), from the ROS graph."""
        present = {n for n, _ in self.node.get_node_names_and_namespaces()}
        missing = []
        for exp in expected:
            if exp.name not in present:
                missing.append(exp.name)
                continue
            try:
                subs = {t for t, _ in self.node.get_subscriber_names_and_types_by_node(exp.name, "/")}
            except Exception:  # noqa: BLE001 (node vanished between the two queries)
                missing.append(exp.name)
                continue
            missing += [f"{exp.name}: {t}" for t in exp.subscribes if t not in subs]
        for client in (self.reset_client, self.enable_client):
            if not client.service_is_ready():
                missing.append(f"service {client.srv_name}")
        return missing

    def wait_for_graph(self, expected: list[NodeExpectation], timeout: float, alive: Callable[[], bool]) -> float:
        """Block until every expected node is up with its subscriptions and both services answer; returns the
        seconds it took."""
        t0 = time.monotonic()
        last: list[str] = []
        while True:
            last = self.missing_nodes(expected)
            if not last:
                return time.monotonic() - t0
            if not alive():
                raise DemoError(f"the graph stopped before it was up (still missing: {last})")
            if time.monotonic() - t0 > timeout:
                raise DemoError(f"the graph was not up after {timeout:.0f} s; missing: {last}")
            with self.cond:
                self.cond.wait(0.2)

    def _call(self, client, request, timeout: float, alive: Callable[[], bool], attempts: int = 1):
        """Call the service and wait for its answer. ``attempts`` > 1 (idempotent requests only): an unanswered
        request is sent again, up to ``attempts`` times within ``timeout`` in all: right after discovery a server's
        reply can be lost although the request reached it (its reply writer not yet matched to our reader)."""
        deadline = time.monotonic() + timeout
        for attempt in range(attempts):
            future = client.call_async(request)
            done = threading.Event()
            future.add_done_callback(lambda _f, event=done: event.set())
            until = deadline if attempt == attempts - 1 else time.monotonic() + timeout / attempts
            while not done.wait(0.1):
                if not alive():
                    raise DemoError(f"the graph stopped during the call to {client.srv_name}")
                if time.monotonic() > until:
                    break
            if future.done():
                return future.result()
            client.remove_pending_request(future)
        raise DemoError(f"no answer from {client.srv_name} within {timeout:.0f} s ({attempts} request(s) sent)")

    def set_residual(self, enabled: bool, alive: Callable[[], bool], timeout: float = 10.0) -> str:
        resp = self._call(self.enable_client, SetBool.Request(data=enabled), timeout, alive, attempts=3)
        if not resp.success:
            raise DemoError(f"/arbiter/enable_residual({enabled}) failed: {resp.message}")
        return resp.message

    def run_to_end(self, task: str, seed: int, timeout: float, alive: Callable[[], bool], what: str = "") -> dict:
        """Reset the sim to ``seed`` and wait until the episode is done; its final /sim/episode status."""
        with self.cond:
            before = max((s["episode"] for s in self.statuses), default=0)
        resp = self._call(self.reset_client, ResetEpisode.Request(task=task, seed=seed), timeout, alive)
        if not resp.success:
            raise DemoError(f"/sim/reset(task={task}, seed={seed}) failed: {resp.message}")
        return self.wait(lambda: next((s for s in self.statuses if s["episode"] > before and s["done"]), None),
                         timeout, f"the end of the {what + ' ' if what else ''}episode with seed {seed}", alive)

    def run_episode(self, phase: str, task: str, seed: int, timeout: float, alive: Callable[[], bool]
                    ) -> EpisodeRecord:
        """Reset the sim to ``seed``, wait until the episode is done and its corrections are in; the record."""
        with self.cond:
            first = len(self.corrections)
        t0 = time.monotonic()
        final = self.run_to_end(task, seed, timeout, alive, phase)
        wall = time.monotonic() - t0
        steps = int(final["step"])

        def collected():
            mine = [c for c in self.corrections[first:] if c.episode == final["episode"]]
            return len({c.step for c in mine if c.step < steps}) >= steps and mine
        corrections = self.wait(collected, 10.0, f"the corrections of the {phase} episode with seed {seed}", alive)
        with self.cond:
            stamps = {s["step"]: s["stamp_ns"] for s in self.statuses if s["episode"] == final["episode"]}
            tcp = dict(self.tcp_by_stamp)
        by_step: dict = {}
        for c in corrections:  # the first decision of a step: in lockstep the one the sim applied (a step decided
            if c.step < steps:  # again, e.g. a bad base action for it arriving late, composes from a newer TCP pose
                by_step.setdefault(c.step, c)  # and its command is dropped by the sim as an old step)
        records = [self.step_record(by_step[t], tcp.get(stamps.get(t, -1))) for t in range(steps)]
        return EpisodeRecord(phase=phase, seed=seed, episode=int(final["episode"]), success=bool(final["success"]),
                             steps=steps, reason=final["reason"], wall_s=wall, records=records)

    def warm_up(self, task: str, seed: int, timeout: float, alive: Callable[[], bool]) -> list[EpisodeRecord]:
        """Episodes with the residual on, not measured, until the data paths work: a node sees another's publisher
        only some time after the ROS graph lists both (DDS discovery, now and then seconds), so right after
        start-up the base may hold for lack of inputs and the residual may miss its deadline. Done when an episode
        had no base hold and its last quarter of steps all had the residual in time ("ok"); DemoError after
        ``timeout``. Leaves the residual switched on."""
        self.set_residual(True, alive)
        deadline = time.monotonic() + timeout
        runs = []
        # Base actions are watched only here (for holds): afterwards this process wakes on nothing that the control
        # path publishes before the arbiter's command, so it does not add to the latency it may be measuring.
        sub = self.run_in_executor(lambda: self.node.create_subscription(
            EefAction, "/base/action", self._on_base, QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)))
        try:
            while True:
                with self.cond:
                    holds = self.action_counts["base_hold"]
                runs.append(self.run_episode("warmup", task, seed, timeout, alive))
                with self.cond:
                    holds = self.action_counts["base_hold"] - holds
                tail = runs[-1].records[-max(1, len(runs[-1].records) // 4):]
                if holds == 0 and all(r.status == "ok" for r in tail):
                    return runs
                if time.monotonic() > deadline:
                    raise DemoError(f"the graph's data paths did not work within {timeout:.0f} s: in the last "
                                    f"warm-up episode the base held {holds} times and the residual statuses of its "
                                    f"last steps were {sorted({r.status for r in tail})}")
        finally:
            self.run_in_executor(lambda: self.node.destroy_subscription(sub))

    @staticmethod
    def step_record(c: Correction, tcp_pos: np.ndarray | None) -> StepRecord:
        p, q = c.target.position, c.target.orientation
        quat = np.array([q.x, q.y, q.z, q.w])
        has_target = "tcp_pose_invalid" not in c.clip_reasons  # else the arbiter sent no command (default pose)
        return StepRecord(step=int(c.step), base=np.array(c.base), residual=np.array(c.residual),
                          final=np.array(c.final), status=c.residual_status, clipped=bool(c.clipped),
                          clip_reasons=tuple(c.clip_reasons),
                          target_pos=np.array([p.x, p.y, p.z]) if has_target else None,
                          target_quat=quat if has_target else None, tcp_pos=tcp_pos)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        self.executor.shutdown()
        self.node.destroy_node()
        if self.context.ok():
            rclpy.shutdown(context=self.context)
