"""Base policy backends: something that turns an observation into a chunk of actions in our convention.

Every backend implements :class:`BasePolicyBackend`: ``reset(instruction)`` at the start of an episode and
``infer(observation) -> (H, 7)`` chunk (docs/CONTRACTS.md: dx dy dz m, rotation vector rad, gripper 0 open
.. 1 closed), where ``observation`` is the dict built by :func:`vla_base_node.inputs.InputCache.snapshot`:

* ``instruction`` (str), ``step`` (int),
* ``state``: dict of numpy arrays: ``joint_pos`` (7,), ``joint_vel`` (7,), ``gripper_width`` (1,) m,
  ``tcp_pos`` (3,), ``tcp_quat`` (4,) x y z w, ``objects`` {name: (7,) pos + quat}, ``object_present``
  {name: bool}, all in the robot base frame,
* ``image``: (H, W, 3) uint8 RGB or None.

Modules: :mod:`.adapters` (model action conventions -> ours, :class:`BackendError`), :mod:`.images` (image
preparation), :mod:`.openpi` (openpi policy server, msgpack over websocket), :mod:`.presets` (the request layouts
of the model families openpi serves), :mod:`.openvla` (OpenVLA's REST deploy server, ``POST /act``, and its
json_numpy codec), :mod:`.replay` (a recorded action sequence, open loop). The sim BC base policy lives in
:mod:`vla_base_node.sim_bc` (it imports torch, so it is imported only when chosen).
:data:`BACKEND_FACTORIES` is the one plain dict from backend name to factory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from vla_base_node.backends.adapters import (
    ACTION_CONVENTIONS,
    ACTION_DIM,
    ActionAdapter,
    BackendError,
    adapter_from_params,
)
from vla_base_node.backends.images import prepare_image, resize_with_pad
from vla_base_node.backends.openpi import (
    STATE_FIELDS,
    OpenPIBackend,
    OpenPIConfig,
    make_openpi,
    parse_key_map,
    state_field,
)
from vla_base_node.backends.openvla import (
    OpenVLABackend,
    OpenVLAConfig,
    json_numpy_encode,
    json_numpy_hook,
    make_openvla,
)
from vla_base_node.backends.presets import OPENPI_PRESETS, OpenPIPreset
from vla_base_node.backends.replay import ReplayBackend, ReplayConfig, make_replay


@runtime_checkable
class BasePolicyBackend(Protocol):
    """A base policy: observation dict in, action chunk (H, 7) in our action convention out."""

    name: str
    """Short name, written into EefAction.source."""

    def reset(self, instruction: str) -> None:
        """Start an episode conditioned on ``instruction``."""

    def infer(self, observation: dict) -> np.ndarray:
        """Return a chunk (H, 7): row i is the action for step ``observation["step"] + i``."""

    def close(self) -> None:
        """Release connections."""


BackendFactory = Callable[[dict], BasePolicyBackend]


def make_sim_bc(params: dict) -> BasePolicyBackend:
    """The sim BC base policy (:func:`vla_base_node.sim_bc.make_sim_bc`); torch is imported only here."""
    from vla_base_node.sim_bc import make_sim_bc as make  # imports torch: only when this backend is chosen

    return make(params)


BACKEND_FACTORIES: dict[str, BackendFactory] = {
    "openpi": make_openpi,
    "openvla": make_openvla,
    "replay": make_replay,
    "sim_bc": make_sim_bc,
}
"""Backend name -> factory taking the node's parameters as a dict."""


def make_backend(name: str, params: dict) -> BasePolicyBackend:
    """Build the backend ``name`` from ``params``; the error lists the known names."""
    if name not in BACKEND_FACTORIES:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(sorted(BACKEND_FACTORIES))}")
    return BACKEND_FACTORIES[name](params)


def timed_infer(backend: BasePolicyBackend, observation: dict) -> tuple[np.ndarray, float]:
    """``backend.infer`` plus its wall time in seconds."""
    t0 = time.perf_counter()
    chunk = backend.infer(observation)
    return chunk, time.perf_counter() - t0


__all__ = [
    "ACTION_CONVENTIONS",
    "ACTION_DIM",
    "BACKEND_FACTORIES",
    "STATE_FIELDS",
    "ActionAdapter",
    "BackendError",
    "BackendFactory",
    "BasePolicyBackend",
    "OPENPI_PRESETS",
    "OpenPIBackend",
    "OpenPIConfig",
    "OpenPIPreset",
    "OpenVLABackend",
    "OpenVLAConfig",
    "ReplayBackend",
    "ReplayConfig",
    "adapter_from_params",
    "json_numpy_encode",
    "json_numpy_hook",
    "make_backend",
    "make_openpi",
    "make_openvla",
    "make_replay",
    "make_sim_bc",
    "parse_key_map",
    "prepare_image",
    "resize_with_pad",
    "state_field",
    "timed_infer",
]
