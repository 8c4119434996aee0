"""The demo's ROS graph: a ROS domain of its own, and the graph started by ``residual-launch`` (the supervisor:
it starts, relays and stops every node; the demo only starts and stops that one process)."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from residual_bringup.supervisor import _die_with_parent, format_set

MIN_DOMAIN_ID, MAX_DOMAIN_ID = 1, 232
LOCK_DIR = Path(tempfile.gettempdir()) / "residual_vla_ros_domain_locks"
"""Shared with tests/rostest_utils.py: processes that reserve domain ids here never share one."""

_held: dict[int, object] = {}


def reserve_domain_id(start: int | None = None) -> int:
    """A ROS_DOMAIN_ID (1-232) no other cooperating process holds, reserved (flock) until this process exits."""
    if _held:
        return next(iter(_held))
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    span = MAX_DOMAIN_ID - MIN_DOMAIN_ID + 1
    first = (os.getpid() if start is None else start) % span
    for k in range(span):
        domain = MIN_DOMAIN_ID + (first + k) % span
        handle = open(LOCK_DIR / f"{domain}.lock", "w")  # noqa: SIM115 (held open on purpose)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        handle.write(str(os.getpid()))
        handle.flush()
        _held[domain] = handle
        return domain
    raise RuntimeError(f"every ROS domain id {MIN_DOMAIN_ID}-{MAX_DOMAIN_ID} is held by another process")


def isolated_ros_env(domain_id: int, log_dir: str | os.PathLike) -> dict[str, str]:
    """The variables that put this process and its children in their own ROS graph, logging to ``log_dir``."""
    return {"ROS_DOMAIN_ID": str(domain_id), "ROS_LOG_DIR": str(log_dir), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
            "RCUTILS_COLORIZED_OUTPUT": "0"}


def launch_command(task: str, checkpoint: str, base_checkpoint: str, pose_source: str,
                   overrides: dict[str, dict[str, object]], use_sim_time: bool = True) -> list[str]:
    """``residual-launch`` arguments for the sim graph in lockstep (with sim time unless ``use_sim_time`` is off:
    then every node stamps with the wall clock, as the latency benchmark needs)."""
    exe = Path(sys.executable).parent / "residual-launch"
    cmd = [str(exe) if exe.exists() else "residual-launch", "--mode", "sim", "--task", task, "--lockstep",
           "--use-sim-time" if use_sim_time else "--no-use-sim-time", "--pose-source", pose_source,
           "--checkpoint", checkpoint]
    if base_checkpoint:
        cmd += ["--base-checkpoint", base_checkpoint]
    for node, params in overrides.items():
        for key, value in params.items():
            cmd += ["--set", format_set(node, key, value)]
    return cmd


class GraphProcess:
    """``residual-launch`` as a child process, its output in a log file; stopped by PID."""

    def __init__(self, cmd: Sequence[str], env: dict[str, str], log_path: str | os.PathLike):
        self.cmd = list(cmd)
        self.log_path = Path(log_path)
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(self.cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True,
                                          preexec_fn=_die_with_parent)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 30.0) -> int:
        """SIGINT (the supervisor then stops every node), SIGTERM, SIGKILL; returns the exit status."""
        stop_process(self.popen, timeout, 10.0)
        return self.popen.wait()


def stop_process(popen: subprocess.Popen, sigint_timeout: float, sigterm_timeout: float,
                 sigkill_timeout: float = 5.0) -> str:
    """Stop one process by its PID: SIGINT, then SIGTERM, then SIGKILL, each when the one before had not ended it
    within its timeout. Returns the last signal sent: "none" (it had already exited), "SIGINT", "SIGTERM" or
    "SIGKILL"."""
    used = "none"
    for sig, timeout in ((signal.SIGINT, sigint_timeout), (signal.SIGTERM, sigterm_timeout),
                         (signal.SIGKILL, sigkill_timeout)):
        if popen.poll() is not None:
            break
        used = sig.name
        try:
            os.kill(popen.pid, sig)
        except ProcessLookupError:
            break
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            continue
        break
    return used
