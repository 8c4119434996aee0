"""sensor_msgs/Image fields -> numpy: every encoding, row padding, the buffer types a node may hand over, errors."""

from __future__ import annotations

import array

import numpy as np
import pytest
from residual_ros.conversions import ENCODING_CHANNELS, image_pixels, image_to_rgb

RGB = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 7  # 2 x 3, distinct values
ALPHA = np.full((2, 3, 1), 255, np.uint8)


def message(encoding: str, pad: int = 0) -> tuple[bytes, int]:
    """(data, step) of RGB in ``encoding``, each row padded with ``pad`` bytes of 0xEE."""
    pixels = {"rgb8": RGB, "bgr8": RGB[:, :, ::-1], "rgba8": np.concatenate([RGB, ALPHA], axis=2),
              "bgra8": np.concatenate([RGB[:, :, ::-1], ALPHA], axis=2), "mono8": RGB[:, :, :1]}[encoding]
    rows = pixels.reshape(2, -1)
    rows = np.concatenate([rows, np.full((2, pad), 0xEE, np.uint8)], axis=1)
    return rows.tobytes(), rows.shape[1]


@pytest.mark.parametrize("encoding", list(ENCODING_CHANNELS))
@pytest.mark.parametrize("pad", [0, 5])
def test_pixels_and_rgb_for_every_encoding(encoding, pad):
    data, step = message(encoding, pad)
    pixels = image_pixels(data, 2, 3, encoding, step)
    assert pixels.shape == (2, 3, ENCODING_CHANNELS[encoding]) and pixels.dtype == np.uint8
    rgb = image_to_rgb(data, 2, 3, encoding, step)
    expected = np.repeat(RGB[:, :, :1], 3, axis=2) if encoding == "mono8" else RGB
    np.testing.assert_array_equal(rgb, expected)
    assert rgb.flags.c_contiguous and rgb.shape == (2, 3, 3)


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview, lambda b: array.array("B", b),
                                  lambda b: np.frombuffer(b, np.uint8)])
def test_buffer_types(wrap):
    data, step = message("bgr8", pad=2)
    np.testing.assert_array_equal(image_to_rgb(wrap(data), 2, 3, "bgr8", step), RGB)


def test_a_longer_buffer_is_cut_to_height_rows():
    data, step = message("rgb8")
    np.testing.assert_array_equal(image_to_rgb(data + b"\x01" * 10, 2, 3, "rgb8", step), RGB)


def test_errors_name_the_problem():
    data, step = message("rgb8")
    with pytest.raises(ValueError, match="unsupported image encoding '16UC1'; supported: rgb8, bgr8"):
        image_pixels(data, 2, 3, "16UC1", step)
    with pytest.raises(ValueError, match=f"buffer of {len(data) - 1} bytes does not hold 2x3 rgb8 with row step 9"):
        image_pixels(data[:-1], 2, 3, "rgb8", step)
    with pytest.raises(ValueError, match="does not hold 2x3 rgb8 with row step 8"):
        image_to_rgb(data, 2, 3, "rgb8", 8)  # a row step shorter than a row of pixels
