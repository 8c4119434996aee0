"""MessagePack encoding with NumPy arrays, as the openpi policy server speaks it.

Why our own: the ``openpi-client`` wheel pins ``numpy<2`` (this stack runs numpy 2.3) and ``msgpack`` is not
installed here, so this module implements the subset of the MessagePack format
(https://github.com/msgpack/msgpack/blob/master/spec.md) the protocol needs: nil, bool, int, float, str, bin,
array, map. Arrays travel as openpi's msgpack-numpy convention does: a map
``{b"__ndarray__": True, b"data": <raw bytes>, b"dtype": "<f4", b"shape": [..]}`` (NumPy scalars:
``{b"__npgeneric__": True, b"data": <value>, b"dtype": ...}``), keys as bin; object, void and complex arrays
are refused (they could not be rebuilt safely). Nothing is ever unpickled.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

_NDARRAY = b"__ndarray__"
_NPGENERIC = b"__npgeneric__"


class MsgpackError(ValueError):
    """Malformed or unsupported MessagePack data."""


# --- encoding ---------------------------------------------------------------------------------------------------


def _numpy_to_map(obj: Any) -> dict:
    if obj.dtype.kind in ("V", "O", "c"):
        raise MsgpackError(f"unsupported numpy dtype {obj.dtype} (object, void and complex cannot be sent)")
    if isinstance(obj, np.ndarray):
        # tobytes() is C order whatever the layout; not np.ascontiguousarray, which turns a 0-d array into shape (1,)
        return {_NDARRAY: True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": list(obj.shape)}
    return {_NPGENERIC: True, b"data": obj.item(), b"dtype": obj.dtype.str}


def _pack_int(v: int, out: bytearray) -> None:
    if 0 <= v <= 0x7F:
        out.append(v)
    elif -32 <= v < 0:
        out.append(v & 0xFF)
    elif 0 <= v <= 0xFF:
        out += b"\xcc" + struct.pack(">B", v)
    elif 0 <= v <= 0xFFFF:
        out += b"\xcd" + struct.pack(">H", v)
    elif 0 <= v <= 0xFFFFFFFF:
        out += b"\xce" + struct.pack(">I", v)
    elif 0 <= v <= 0xFFFFFFFFFFFFFFFF:
        out += b"\xcf" + struct.pack(">Q", v)
    elif -0x80 <= v < 0:
        out += b"\xd0" + struct.pack(">b", v)
    elif -0x8000 <= v < 0:
        out += b"\xd1" + struct.pack(">h", v)
    elif -0x80000000 <= v < 0:
        out += b"\xd2" + struct.pack(">i", v)
    elif -0x8000000000000000 <= v < 0:
        out += b"\xd3" + struct.pack(">q", v)
    else:
        raise MsgpackError(f"integer {v} does not fit in 64 bits")


def _pack_len(n: int, fix_base: int | None, fix_max: int, codes: tuple[int, int, int], out: bytearray) -> None:
    """Header for str/bin/array/map: a fix form (if any) or the 8/16/32-bit length forms ``codes``."""
    if fix_base is not None and n <= fix_max:
        out.append(fix_base | n)
    elif codes[0] and n <= 0xFF:
        out += bytes([codes[0]]) + struct.pack(">B", n)
    elif n <= 0xFFFF:
        out += bytes([codes[1]]) + struct.pack(">H", n)
    elif n <= 0xFFFFFFFF:
        out += bytes([codes[2]]) + struct.pack(">I", n)
    else:
        raise MsgpackError(f"object of length {n} is too large for MessagePack")


def _pack(obj: Any, out: bytearray, depth: int) -> None:
    if depth > 64:
        raise MsgpackError("object nested deeper than 64 levels")
    if obj is None:
        out.append(0xC0)
    elif obj is True or obj is False:
        out.append(0xC3 if obj else 0xC2)
    elif isinstance(obj, (np.ndarray, np.generic)):
        _pack(_numpy_to_map(obj), out, depth + 1)
    elif isinstance(obj, int):
        _pack_int(int(obj), out)
    elif isinstance(obj, float):
        out += b"\xcb" + struct.pack(">d", obj)
    elif isinstance(obj, str):
        data = obj.encode("utf-8")
        _pack_len(len(data), 0xA0, 31, (0xD9, 0xDA, 0xDB), out)
        out += data
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        data = bytes(obj)
        _pack_len(len(data), None, -1, (0xC4, 0xC5, 0xC6), out)
        out += data
    elif isinstance(obj, (list, tuple)):
        _pack_len(len(obj), 0x90, 15, (0, 0xDC, 0xDD), out)
        for item in obj:
            _pack(item, out, depth + 1)
    elif isinstance(obj, dict):
        _pack_len(len(obj), 0x80, 15, (0, 0xDE, 0xDF), out)
        for key, value in obj.items():
            _pack(key, out, depth + 1)
            _pack(value, out, depth + 1)
    else:
        raise MsgpackError(f"cannot encode object of type {type(obj).__name__}")


def packb(obj: Any) -> bytes:
    """Encode ``obj`` (None, bool, int, float, str, bytes, list/tuple, dict, numpy arrays/scalars)."""
    out = bytearray()
    _pack(obj, out, 0)
    return bytes(out)


# --- decoding ---------------------------------------------------------------------------------------------------


def _map_to_numpy(d: dict) -> Any:
    def get(key: bytes):
        return d[key] if key in d else d.get(key.decode())

    if get(_NDARRAY):
        dtype = np.dtype(get(b"dtype"))
        if dtype.kind in ("V", "O", "c"):
            raise MsgpackError(f"refusing numpy dtype {dtype}")
        shape = tuple(int(s) for s in get(b"shape"))
        data = get(b"data")
        if not isinstance(data, (bytes, bytearray)) or len(data) != dtype.itemsize * int(np.prod(shape)):
            raise MsgpackError(f"ndarray data does not match dtype {dtype} and shape {shape}")
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
    if get(_NPGENERIC):
        return np.dtype(get(b"dtype")).type(get(b"data"))
    return d


class _Reader:
    def __init__(self, data: bytes):
        self.data = memoryview(data)
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise MsgpackError(f"truncated data: need {n} bytes at offset {self.pos}, have {len(self.data) - self.pos}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]


_FIXED = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q", 0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q",
          0xCA: ">f", 0xCB: ">d"}
_LEN = {0xD9: ">B", 0xDA: ">H", 0xDB: ">I", 0xC4: ">B", 0xC5: ">H", 0xC6: ">I", 0xDC: ">H", 0xDD: ">I",
        0xDE: ">H", 0xDF: ">I"}


def _unpack(r: _Reader, depth: int) -> Any:
    if depth > 64:
        raise MsgpackError("data nested deeper than 64 levels")
    code = r.unpack(">B")
    if code <= 0x7F:
        return code
    if code >= 0xE0:
        return code - 0x100
    if 0x80 <= code <= 0x8F:
        return _unpack_map(r, code & 0x0F, depth)
    if 0x90 <= code <= 0x9F:
        return [_unpack(r, depth + 1) for _ in range(code & 0x0F)]
    if 0xA0 <= code <= 0xBF:
        return _decode_str(r.take(code & 0x1F))
    if code == 0xC0:
        return None
    if code in (0xC2, 0xC3):
        return code == 0xC3
    if code in _FIXED:
        return r.unpack(_FIXED[code])
    if code in _LEN:
        n = r.unpack(_LEN[code])
        if code in (0xD9, 0xDA, 0xDB):
            return _decode_str(r.take(n))
        if code in (0xC4, 0xC5, 0xC6):
            return bytes(r.take(n))
        if code in (0xDC, 0xDD):
            return [_unpack(r, depth + 1) for _ in range(n)]
        return _unpack_map(r, n, depth)
    raise MsgpackError(f"unsupported MessagePack type byte 0x{code:02x} at offset {r.pos - 1} (ext types are not used)")


def _decode_str(raw: memoryview) -> str:
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MsgpackError(f"invalid UTF-8 in a str: {exc}") from None


def _unpack_map(r: _Reader, n: int, depth: int) -> Any:
    d = {}
    for _ in range(n):
        key = _unpack(r, depth + 1)
        if isinstance(key, list):
            key = tuple(key)
        d[key] = _unpack(r, depth + 1)
    return _map_to_numpy(d)


def unpackb(data: bytes) -> Any:
    """Decode one MessagePack object (numpy maps become arrays); trailing bytes are an error."""
    r = _Reader(data)
    obj = _unpack(r, 0)
    if r.pos != len(r.data):
        raise MsgpackError(f"{len(r.data) - r.pos} trailing bytes after the object")
    return obj
