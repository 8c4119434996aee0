"""Camera image preparation shared by the model clients: check (H, W, 3) uint8, resize with padding."""

from __future__ import annotations

from typing import Any

import numpy as np

from vla_base_node.backends.adapters import BackendError


def resize_with_pad(image: np.ndarray, size: int) -> np.ndarray:
    """Fit an (H, W, 3) uint8 image into size x size keeping its aspect ratio, padding with black."""
    import cv2

    h, w = image.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    out = np.zeros((size, size, image.shape[2]), dtype=image.dtype)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = resized
    return out


def prepare_image(image: Any, size: int) -> np.ndarray:
    """``image`` checked to be (H, W, 3) uint8, resized-with-pad to ``size`` (0: as is)."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise BackendError(f"image must be (H, W, 3) uint8, got shape {img.shape} dtype {img.dtype}")
    return resize_with_pad(img, size) if size > 0 else img
