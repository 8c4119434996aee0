"""The one ``main()`` every node of the stack uses: init, spin, clean shutdown, clear configuration errors."""

from __future__ import annotations

import sys
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node


def run_node(executable: str, make_node: Callable[[], Node], args: list[str] | None = None,
             config_errors: tuple[type[BaseException], ...] = (ValueError,)) -> None:
    """Build the node with ``make_node`` and spin it until Ctrl-C / SIGTERM.

    rclpy 7.1 (Jazzy): ``rclpy.init()`` returns None (there is no ``with rclpy.init():`` form), so shutdown is
    explicit. SIGINT/SIGTERM during spin raise ``ExternalShutdownException``: a clean exit. An exception in
    ``config_errors`` raised while building or running the node is a bad configuration: it is printed as
    ``<executable>: <message>`` without a traceback and the process exits with status 2.
    """
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except config_errors as exc:
        print(f"{executable}: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
