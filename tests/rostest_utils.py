"""Helpers for tests that start ROS 2 processes: isolated environment, node subprocesses, waiting.

Everything here waits for a condition with a timeout; nothing sleeps for a fixed time and hopes.

Isolation: every test process gets its own ``ROS_DOMAIN_ID`` (1-232), reserved with an exclusive file lock
in the system temp dir so that parallel pytest runs (several engineers, pytest-xdist workers) never share
one, plus ``ROS_LOG_DIR`` in a temp dir and ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from residual_bringup.demo.graph_process import MAX_DOMAIN_ID, MIN_DOMAIN_ID, reserve_domain_id, stop_process

T = TypeVar("T")

def allocate_domain_id(seed: int | None = None) -> int:
    """Reserve a ROS_DOMAIN_ID no other cooperating process on this machine holds; return it.

    The same reservation the demo uses (an exclusive ``flock`` per id in the system temp dir, dropped by the
    OS when this process exits), so tests and demos running side by side never share a domain.
    """
    return reserve_domain_id(seed)


def ros_test_env(domain_id: int, log_dir: str | os.PathLike, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a ROS test process: isolated domain, logs in ``log_dir``, localhost discovery."""
    if not MIN_DOMAIN_ID <= domain_id <= MAX_DOMAIN_ID:
        raise ValueError(f"domain_id {domain_id} outside {MIN_DOMAIN_ID}-{MAX_DOMAIN_ID}")
    env = dict(os.environ if base is None else base)
    env.pop("ROS_LOCALHOST_ONLY", None)  # deprecated; conflicts with the discovery range
    env.update(
        ROS_DOMAIN_ID=str(domain_id),
        ROS_LOG_DIR=str(log_dir),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        PYTHONUNBUFFERED="1",
        RCUTILS_COLORIZED_OUTPUT="0",
    )
    return env


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.01) -> T:
    """Call ``predicate`` until it returns something truthy; return that, or raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class StopResult:
    """How a process ended."""

    returncode: int
    """Exit status (negative: killed by that signal)."""
    signal_used: str
    """The last signal we had to send: "none" (had already exited), "SIGINT", "SIGTERM" or "SIGKILL"."""
    seconds: float
    """Time from the first signal to the process being reaped."""


@dataclass
class NodeProcess:
    """A ROS node running in a subprocess (own session), its output in a log file."""

    name: str
    popen: subprocess.Popen
    log_path: Path
    stop_result: StopResult | None = field(default=None)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, sigint_timeout: float = 10.0, sigterm_timeout: float = 3.0) -> StopResult:
        """Stop by PID: SIGINT, then SIGTERM, then SIGKILL, each after a timeout. Idempotent."""
        if self.stop_result is not None:
            return self.stop_result
        t0 = time.monotonic()
        used = stop_process(self.popen, sigint_timeout, sigterm_timeout)
        returncode = self.popen.wait()
        self.stop_result = StopResult(returncode=returncode, signal_used=used, seconds=time.monotonic() - t0)
        if used == "SIGKILL":
            clean_fastdds_shm()
        return self.stop_result


def clean_fastdds_shm() -> bool:
    """Remove FastDDS shared-memory segments no live process uses (a SIGKILLed one leaves them behind)."""
    fastdds = Path(sys.executable).parent / "fastdds"
    if not fastdds.exists():
        return False
    result = subprocess.run([str(fastdds), "shm", "clean"], capture_output=True, timeout=30, check=False)
    return result.returncode == 0


def start_node_process(
    cmd: Sequence[str], env: dict[str, str], log_dir: str | os.PathLike, name: str | None = None
) -> NodeProcess:
    """Start ``cmd`` (e.g. ``[sys.executable, "-m", "pkg.node", "--ros-args", ...]``) with ``env``.

    stdout and stderr go to ``<log_dir>/<name>.log`` (a file, so a chatty node never blocks on a full pipe).
    The child gets its own session, so a terminal Ctrl-C reaches only the test, which then stops it by PID.
    """
    name = name or Path(cmd[0]).name
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{time.monotonic_ns()}.log"
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(
            list(cmd), env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    return NodeProcess(name=name, popen=popen, log_path=log_path)


def start_python_node(
    module_or_script: str, args: Sequence[str], env: dict[str, str], log_dir: str | os.PathLike, name: str | None = None
) -> NodeProcess:
    """Start a Python node with this interpreter: a module (``pkg.node``) or a script path (``*.py``)."""
    if module_or_script.endswith(".py"):
        cmd = [sys.executable, module_or_script, *args]
    else:
        cmd = [sys.executable, "-m", module_or_script, *args]
    return start_node_process(cmd, env, log_dir, name or module_or_script.rsplit("/", 1)[-1])


def console_script(name: str) -> str:
    """Absolute path of a console script of this virtual environment; raises if it is not installed."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            raise FileNotFoundError(f"console script {name!r} is not installed next to {sys.executable}")
        return found
    return str(path)


class RosProbe:
    """An in-process rclpy node for tests: collect messages, publish, call services, wait for graph events.

    Owns its own rclpy Context, so it neither needs nor disturbs the global one. Use as a context manager.
    """

    def __init__(self, name: str = "test_probe"):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self._rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received: dict[str, list[Any]] = {}

    def __enter__(self) -> RosProbe:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        if self.context.ok():
            self._rclpy.shutdown(context=self.context)

    def spin_for(self, seconds: float) -> None:
        """Process callbacks for ``seconds`` (for collecting a stream, not for waiting on a condition)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=min(0.02, max(0.0, deadline - time.monotonic())))

    def spin_until(self, predicate: Callable[[], T], timeout: float, what: str) -> T:
        """Spin until ``predicate()`` is truthy; return its value, or raise TimeoutError naming ``what``."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.02)

    def collect(self, msg_type: type, topic: str, qos: Any = 10) -> list[Any]:
        """Subscribe to ``topic`` and append every message to the returned (live) list."""
        bucket = self.received.setdefault(topic, [])
        self.node.create_subscription(msg_type, topic, bucket.append, qos)
        return bucket

    def wait_for_message(
        self,
        msg_type: type,
        topic: str,
        timeout: float = 10.0,
        predicate: Callable[[Any], bool] | None = None,
        qos: Any = 10,
    ) -> Any:
        """Return the first message on ``topic`` (satisfying ``predicate``) or raise TimeoutError."""
        bucket = self.received.get(topic)
        if bucket is None:
            bucket = self.collect(msg_type, topic, qos)

        def find():
            for msg in bucket:
                if predicate is None or predicate(msg):
                    return msg
            return None

        return self.spin_until(find, timeout, f"a message on {topic}")

    def wait_for_subscribers(self, publisher: Any, count: int = 1, timeout: float = 10.0) -> int:
        """Wait until ``publisher`` has at least ``count`` matched subscriptions."""
        return self.spin_until(
            lambda: publisher.get_subscription_count() >= count and publisher.get_subscription_count(),
            timeout,
            f"{count} subscriber(s) on {publisher.topic_name}",
        )

    def wait_for_publishers(self, topic: str, count: int = 1, timeout: float = 10.0) -> int:
        """Wait until ``topic`` has at least ``count`` publishers in the graph."""
        return self.spin_until(
            lambda: self.node.count_publishers(topic) >= count and self.node.count_publishers(topic),
            timeout,
            f"{count} publisher(s) on {topic}",
        )

    def call(self, client: Any, request: Any, timeout: float = 10.0, attempts: int = 3) -> Any:
        """Wait for the service, call it, spin until the response arrives; return it.

        ``service_is_ready()`` only says the request can reach the server: right after discovery the server's reply
        can still be lost (its response writer not yet matched to our reader), so an unanswered request is sent
        again, up to ``attempts`` times within ``timeout`` in all.
        """
        self.spin_until(lambda: client.service_is_ready(), timeout, f"service {client.srv_name}")
        for attempt in range(attempts):
            future = client.call_async(request)
            try:
                self.spin_until(future.done, timeout / attempts, f"response from {client.srv_name}")
                return future.result()
            except TimeoutError:
                client.remove_pending_request(future)
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")


def msg_to_dict(msg: Any) -> Any:
    """A ROS message as plain Python (nested dicts / lists / numbers / strings), for exact comparisons."""
    if hasattr(msg, "get_fields_and_field_types"):
        return {name: msg_to_dict(getattr(msg, name)) for name in msg.get_fields_and_field_types()}
    if isinstance(msg, (list, tuple)):
        return [msg_to_dict(v) for v in msg]
    if hasattr(msg, "tolist"):  # numpy arrays and array.array
        return msg.tolist()
    return msg
