"""The framing between :class:`~franka_sim.isaaclab_batch.IsaacLabBatch` and its worker (franka_sim/isaaclab_worker.py).

The two ends run in different Python environments (ours: Python 3.11, numpy 2.3, mujoco 4.0; Isaac Lab 3's: Python
3.12, numpy 2.5, mujoco 3.12), so a message carries nothing version-specific: one frame is an 8-byte little-endian
length, a UTF-8 JSON header, and the raw bytes of the header's arrays in order. The header's ``"arrays"`` lists
``[name, dtype, shape]``; every other key is plain JSON. Only numpy, json and struct are imported here: the worker
imports this file by path, without the franka_sim package.
"""

from __future__ import annotations

import json
import struct
from typing import BinaryIO

import numpy as np

_LEN = struct.Struct("<Q")


def write_message(stream: BinaryIO, header: dict, arrays: dict[str, np.ndarray] | None = None) -> None:
    """Write one frame: ``header`` (JSON-able) and ``arrays`` (sent C-contiguous, dtype and shape kept)."""
    arrays = {k: np.asarray(v, order="C") for k, v in (arrays or {}).items()}  # (ascontiguousarray makes 0-d 1-d)
    head = dict(header, arrays=[[k, v.dtype.str, list(v.shape)] for k, v in arrays.items()])
    blob = json.dumps(head).encode()
    stream.write(_LEN.pack(len(blob)))
    stream.write(blob)
    for v in arrays.values():
        stream.write(v.tobytes())
    stream.flush()


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            raise EOFError(f"stream ended after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def read_message(stream: BinaryIO) -> tuple[dict, dict[str, np.ndarray]]:
    """Read one frame written by :func:`write_message`: (header without ``"arrays"``, arrays by name)."""
    (n,) = _LEN.unpack(_read_exact(stream, _LEN.size))
    head = json.loads(_read_exact(stream, n))
    arrays = {}
    for name, dtype, shape in head.pop("arrays", []):
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        arrays[name] = np.frombuffer(_read_exact(stream, count * dt.itemsize), dtype=dt).reshape(shape).copy()
    return head, arrays
