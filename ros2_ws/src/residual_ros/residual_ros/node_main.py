"""The one ``main()`` every node of the stack uses: init, spin, clean shutdown, clear configuration errors."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import rclpy
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from residual_core.runtime import limit_compute_threads

EXECUTOR_ENV = "RESIDUAL_EXECUTOR"
"""Environment variable that overrides every node's executor choice: ``events`` or ``single``."""
EXECUTORS = ("events", "single")
SPIN_PERIOD_S = 0.1
"""Longest single wait of the spin loop (s): how quickly a shutdown is noticed."""
FASTDDS_PROFILE = Path(__file__).with_name("fastdds_profile.xml")
"""The stack's Fast DDS defaults (a 100 ms heartbeat for reliable writers; the file says why)."""
FASTDDS_PROFILE_ENVS = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")
"""Where Fast DDS looks for a profile file: the Fast DDS 2.14 of the Jazzy wheels reads only the first (measured:
a profile given by the second was ignored); newer releases read the second."""


def use_fastdds_profile(environ: dict[str, str] | os._Environ = os.environ) -> str:
    """Point Fast DDS at :data:`FASTDDS_PROFILE` unless a profile file is set already (a lab's own DDS
    configuration wins); returns the file in effect. Must run before ``rclpy.init`` creates the participant."""
    for name in FASTDDS_PROFILE_ENVS:
        if environ.get(name):
            return environ[name]
    for name in FASTDDS_PROFILE_ENVS:
        environ[name] = str(FASTDDS_PROFILE)
    return str(FASTDDS_PROFILE)


def make_executor(kind: str) -> Executor:
    """``events``: rclpy's EventsExecutor (C++ event queue, no per-wake wait-set rebuild in Python: the low-latency
    choice for the nodes on the control path); ``single``: rclpy's SingleThreadedExecutor."""
    kind = os.environ.get(EXECUTOR_ENV, kind) or kind
    if kind not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)} (from ${EXECUTOR_ENV} or the node), "
                         f"got {kind!r}")
    if kind == "events":
        from rclpy.experimental import EventsExecutor

        return EventsExecutor()
    return SingleThreadedExecutor()


def _shutting_down(context, grace_s: float = 1.0) -> bool:
    """Whether ``context`` shuts down within ``grace_s`` (polled)."""
    deadline = time.monotonic() + grace_s
    while context.ok():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def spin(node: Node, executor: Executor) -> None:
    """Spin ``node`` until its context shuts down, always with a finite wait.

    Not ``rclpy.spin``: that calls ``spin_once()`` without a timeout, and rclpy 7.1.6's EventsExecutor never runs a
    callback from an untimed ``spin_once()`` (measured here: a subscriber spun that way received 0 of 15,000
    messages while ``spin_once(timeout_sec=0.1)`` in a loop received all of them).
    """
    executor.add_node(node)
    try:
        while executor.context.ok():
            try:
                executor.spin_once(timeout_sec=SPIN_PERIOD_S)
            except RuntimeError:
                # SIGINT shuts the context down from rclpy's signal handler; an EventsExecutor caught in the middle
                # of a wait then raises a pybind conversion error (seen in `make test`), sometimes just before the
                # context reports the shutdown (seen once in CI: exit status 1 on SIGINT). Only then is it an
                # ordinary shutdown; a context still up a moment later is a real error.
                if not _shutting_down(executor.context):
                    raise
    finally:
        executor.remove_node(node)


def run_node(executable: str, make_node: Callable[[], Node], args: list[str] | None = None,
             config_errors: tuple[type[BaseException], ...] = (ValueError,), executor: str = "single",
             compute_threads: int = 1) -> None:
    """Build the node with ``make_node`` and spin it until Ctrl-C / SIGTERM.

    rclpy 7.1 (Jazzy): ``rclpy.init()`` returns None (there is no ``with rclpy.init():`` form), so shutdown is
    explicit. SIGINT/SIGTERM during spin raise ``ExternalShutdownException``: a clean exit. An exception in
    ``config_errors`` raised while building or running the node is a bad configuration: it is printed as
    ``<executable>: <message>`` without a traceback and the process exits with status 2. ``executor`` picks the
    executor (see :func:`make_executor`; ``$RESIDUAL_EXECUTOR`` overrides it for every node). ``compute_threads``
    limits the node's BLAS / OpenMP / torch / OpenCV pools once the node is built (0: leave them as they are; see
    :func:`residual_core.runtime.limit_compute_threads`).
    """
    use_fastdds_profile()
    rclpy.init(args=args)
    node, chosen = None, None
    try:
        chosen = make_executor(executor)
        node = make_node()
        if compute_threads > 0:
            limit_compute_threads(compute_threads)
        spin(node, chosen)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, *config_errors) as exc:
        print(f"{executable}: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    finally:
        if node is not None:
            node.destroy_node()
        if chosen is not None:
            chosen.shutdown()
        rclpy.try_shutdown()
