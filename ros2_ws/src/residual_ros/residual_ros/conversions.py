"""sensor_msgs/Image pixels as numpy arrays, without cv_bridge: the one decoder every node uses (pure numpy, no rclpy).

The functions take the message's fields (``data``, ``height``, ``width``, ``encoding``, ``step``) rather than the
message, so they are tested without ROS; a node calls them as
``image_to_rgb(bytes(msg.data), msg.height, msg.width, msg.encoding, msg.step)``.
"""

from __future__ import annotations

import numpy as np

ENCODING_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
"""The 8-bit sensor_msgs/Image encodings understood here -> channels per pixel."""


def image_pixels(data, height: int, width: int, encoding: str, step: int) -> np.ndarray:
    """An (H, W, C) uint8 view of an Image's pixels, channels in the encoding's order (row padding dropped).

    ``data``: the message's buffer (bytes, bytearray, memoryview) or any array-like of byte values. Raises
    ValueError for an encoding outside :data:`ENCODING_CHANNELS` or a buffer too short for ``height`` rows of
    ``step`` bytes, or a ``step`` shorter than a row of pixels.
    """
    if encoding not in ENCODING_CHANNELS:
        raise ValueError(f"unsupported image encoding {encoding!r}; supported: {', '.join(ENCODING_CHANNELS)}")
    ch = ENCODING_CHANNELS[encoding]
    if isinstance(data, bytes | bytearray | memoryview):
        buf = np.frombuffer(data, dtype=np.uint8)
    else:
        buf = np.asarray(data, dtype=np.uint8).ravel()
    if step < width * ch or buf.size < step * height:
        raise ValueError(f"image buffer of {buf.size} bytes does not hold {height}x{width} {encoding} "
                         f"with row step {step}")
    return buf[: step * height].reshape(height, step)[:, : width * ch].reshape(height, width, ch)


def image_to_rgb(data, height: int, width: int, encoding: str, step: int) -> np.ndarray:
    """An Image as a contiguous (H, W, 3) uint8 RGB array: BGR swapped, alpha dropped, mono8 repeated."""
    img = image_pixels(data, height, width, encoding, step)
    if encoding == "mono8":
        return np.repeat(img, 3, axis=2)
    if encoding.startswith("bgr"):
        img = img[:, :, 2::-1]
    return np.ascontiguousarray(img[:, :, :3])
