"""Our MessagePack subset: byte-exact against the format spec, numpy arrays the openpi way, bad input refused."""

from __future__ import annotations

import numpy as np
import pytest
from vla_base_node.msgpack_wire import MsgpackError, packb, unpackb

# (value, bytes) pairs from the MessagePack specification's type definitions.
SPEC_VECTORS = [
    (None, b"\xc0"),
    (False, b"\xc2"),
    (True, b"\xc3"),
    (0, b"\x00"),
    (127, b"\x7f"),
    (128, b"\xcc\x80"),
    (256, b"\xcd\x01\x00"),
    (65536, b"\xce\x00\x01\x00\x00"),
    (2**32, b"\xcf\x00\x00\x00\x01\x00\x00\x00\x00"),
    (-1, b"\xff"),
    (-32, b"\xe0"),
    (-33, b"\xd0\xdf"),
    (-129, b"\xd1\xff\x7f"),
    (-(2**31), b"\xd2\x80\x00\x00\x00"),
    (-(2**63), b"\xd3\x80\x00\x00\x00\x00\x00\x00\x00"),
    (1.5, b"\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00"),
    ("", b"\xa0"),
    ("abc", b"\xa3abc"),
    ("x" * 32, b"\xd9\x20" + b"x" * 32),
    (b"\x01\x02", b"\xc4\x02\x01\x02"),
    ([1, 2], b"\x92\x01\x02"),
    (list(range(16)), b"\xdc\x00\x10" + bytes(range(16))),
    ({"a": 1}, b"\x81\xa1a\x01"),
]


@pytest.mark.parametrize(("value", "encoded"), SPEC_VECTORS)
def test_spec_vectors(value, encoded):
    assert packb(value) == encoded
    assert unpackb(encoded) == value


def test_decodes_forms_we_never_emit():
    assert unpackb(b"\xca\x3f\xc0\x00\x00") == 1.5  # float32
    assert unpackb(b"\xda\x00\x02hi") == "hi"  # str16 for a short string
    assert unpackb(b"\xde\x00\x01\xa1k\xc0") == {"k": None}  # map16
    assert unpackb(b"\xcc\x05") == 5  # uint8 for a fixint value


def test_large_containers_round_trip():
    big = {"s": "\u00e9" * 70000, "b": bytes(70000), "l": list(range(70000)), "m": {str(i): i for i in range(20)}}
    assert unpackb(packb(big)) == big


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64, np.int64, np.bool_])
def test_numpy_arrays_round_trip_with_openpi_layout(dtype):
    arr = (np.arange(24).reshape(2, 3, 4) % 5).astype(dtype)
    raw = packb({"img": arr})
    assert b"__ndarray__" in raw and arr.dtype.str.encode() in raw  # keys and dtype string as openpi sends them
    back = unpackb(raw)["img"]
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)
    back[0, 0, 0] = 1  # writable copy, not a view of the message buffer


def test_numpy_scalars_and_non_contiguous_arrays():
    assert unpackb(packb(np.float32(2.5))) == np.float32(2.5)
    assert isinstance(unpackb(packb(np.float32(2.5))), np.float32)
    arr = np.arange(12.0).reshape(3, 4)[:, ::2]
    np.testing.assert_array_equal(unpackb(packb(arr)), arr)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\xa5ab", "truncated"),
        (b"\xc1", "unsupported MessagePack type byte 0xc1"),
        (b"\xd4\x01\x00", "unsupported"),  # fixext
        (b"\x01\x02", "trailing"),
        (b"\xa2\xff\xfe", "UTF-8"),
    ],
)
def test_malformed_input_is_refused(data, match):
    with pytest.raises(MsgpackError, match=match):
        unpackb(data)


def test_unsafe_numpy_dtypes_refused_both_ways():
    with pytest.raises(MsgpackError, match="object"):
        packb(np.array([object()]))
    forged = packb({b"__ndarray__": True, b"data": b"\x00" * 8, b"dtype": "|O", b"shape": [1]})
    with pytest.raises(MsgpackError, match="refusing"):
        unpackb(forged)
    short = packb({b"__ndarray__": True, b"data": b"\x00" * 3, b"dtype": "<f4", b"shape": [1]})
    with pytest.raises(MsgpackError, match="does not match"):
        unpackb(short)


def test_unencodable_objects_refused():
    with pytest.raises(MsgpackError, match="set"):
        packb({1, 2})
    with pytest.raises(MsgpackError, match="64 bits"):
        packb(2**64)


@pytest.mark.parametrize("value", [np.array(2.5, dtype=np.float32), np.array(7, dtype=np.int64), np.array(True)])
def test_zero_d_arrays_keep_shape_and_value(value):
    raw = packb({"x": value})
    assert b"\x90" in raw  # the shape is an empty array, as openpi's packer writes ()
    back = unpackb(raw)["x"]
    assert isinstance(back, np.ndarray) and back.shape == () and back.dtype == value.dtype and back == value


def test_fortran_order_arrays_travel_in_c_order():
    arr = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(unpackb(packb(arr)), arr)
