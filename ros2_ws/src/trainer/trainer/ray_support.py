"""Ray for `residual-sweep` and `residual-train --collectors`: an optional dependency (``make setup-ray``).

Nothing here imports Ray at module level, so the trainer runs without it; :func:`require_ray` says how to install it.
"""

from __future__ import annotations

INSTALL_HINT = "install it with `make setup-ray` (the pinned ray[tune] of setup/requirements-ray.txt into .venv)"


class RayMissingError(RuntimeError):
    """Ray is needed (--collectors, residual-sweep) but not installed."""


def require_ray():
    """The ``ray`` module, or :class:`RayMissingError` with the install command."""
    try:
        import ray
    except ImportError as exc:
        raise RayMissingError(f"this needs Ray, which is not installed: {INSTALL_HINT} ({exc})") from None
    return ray


def start_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Connect to the cluster at ``address`` (``auto``, ``ray://head:10001``, ``head:6379``), or start Ray on this
    machine with ``num_cpus`` (default: all). Returns whether this call started it (then the caller shuts it down);
    an already initialised Ray is used as it is.

    ``num_cpus`` is passed only when starting locally: ``ray.init(num_cpus=...)`` raises when it joins an existing
    cluster (its resources are the nodes'). A local start needs no token set-up (Ray 2.60 enables token
    authentication by default and creates the token itself); a cluster started with ``ray start`` gives its token
    to the nodes and drivers that join it (see README "Sweeps and distributed collection on Ray").
    """
    ray = require_ray()
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)
    return True
