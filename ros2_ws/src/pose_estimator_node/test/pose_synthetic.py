"""Anti-aliased synthetic images of ArUco markers at known sub-pixel corner positions (for the unit tests).

A marker on its white plate (``franka_sim.markers.marker_image``) is warped onto a grey background at 8x the
output resolution and averaged down (INTER_AREA), so edges are properly blurred; the true corners follow from the
homography. Pixel-centre convention throughout: pixel (0, 0) is centred at (0, 0).
"""

from __future__ import annotations

import cv2
import numpy as np
from franka_sim.markers import MARKER_CELLS, marker_image, texture_layout

SUPERSAMPLE = 8


def marker_texture(marker_id: int, size: float, plate_size: float) -> tuple[np.ndarray, np.ndarray]:
    """(grey plate texture (P, P) uint8, (4, 2) marker corners in texture pixel coordinates, detection order)."""
    tex = marker_image(marker_id, size, plate_size)[:, :, 0]
    p = tex.shape[0]
    m = MARKER_CELLS * texture_layout(size, plate_size)[1]
    off = (p - m) // 2
    lo, hi = off - 0.5, off + m - 0.5  # edges of the black square (pixel-centre convention)
    return tex, np.array([[lo, lo], [hi, lo], [hi, hi], [lo, hi]])


def render_markers(shape: tuple[int, int], placements: list[tuple[int, float, float, np.ndarray]],
                   background: int = 110) -> tuple[np.ndarray, list[np.ndarray]]:
    """Grey (H, W) uint8 image with each (marker_id, size, plate_size, plate corners (4, 2) in output pixels, clockwise
    from the plate's top-left) drawn; returns the image and each marker's true corners (4, 2) in detection order."""
    h, w = shape
    s = SUPERSAMPLE
    big = np.full((h * s, w * s), background, dtype=np.uint8)
    truths = []
    for marker_id, size, plate_size, plate_corners in placements:
        tex, marker_corners = marker_texture(marker_id, size, plate_size)
        p = tex.shape[0]
        src = np.array([[-0.5, -0.5], [p - 0.5, -0.5], [p - 0.5, p - 0.5], [-0.5, p - 0.5]], dtype=np.float32)
        dst = (np.asarray(plate_corners, dtype=np.float64) * s + (s - 1) / 2.0).astype(np.float32)
        H = cv2.getPerspectiveTransform(src, dst)
        warped = cv2.warpPerspective(tex, H, (w * s, h * s), flags=cv2.INTER_LINEAR, borderValue=0)
        mask = cv2.warpPerspective(np.full_like(tex, 255), H, (w * s, h * s), flags=cv2.INTER_NEAREST, borderValue=0)
        big[mask > 0] = warped[mask > 0]
        mapped = cv2.perspectiveTransform(marker_corners[None].astype(np.float64), H)[0]
        truths.append((mapped - (s - 1) / 2.0) / s)
    small = cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA)
    return small, truths
