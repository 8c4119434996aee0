"""The ArUco fiducial markers printed on the task objects (DICT_4X4_50): a physical fact shared by the simulator,
which draws them (``franka_sim.markers`` builds the MuJoCo plates), and the pose estimator, which detects them.
numpy and scipy only (no cv2, no MuJoCo).

Each task object carries one marker with a distinct id, on a thin plate framed by a white quiet zone. ``MARKERS``
says, per object, the marker id, the side length of the black square (m) and the marker's pose in the object frame
(the frame of the object's pose in ``object_poses()``).

Marker frame (OpenCV's ArUco convention): origin at the marker centre, x to the right of the marker image,
y up the image, z out of the face towards the viewer; the four corners in detection order are
(-s/2, s/2, 0), (s/2, s/2, 0), (s/2, -s/2, 0), (-s/2, -s/2, 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

ARUCO_DICTIONARY = 0
"""OpenCV's ``cv2.aruco.DICT_4X4_50`` (its enum value, so this module needs no cv2; a test checks it)."""
MARKER_CELLS = 6
"""Cells across a 4x4 marker including its one-cell black border."""
PLATE_HALF_THICKNESS = 0.0005


@dataclass(frozen=True)
class MarkerSpec:
    """Where an object's marker is."""

    marker_id: int
    """ArUco id in DICT_4X4_50."""
    size: float
    """Side of the black square (m)."""
    plate_size: float
    """Side of the white plate the marker is printed on (m); > size, the rest is quiet zone."""
    pos: tuple[float, float, float]
    """Marker centre in the object frame (m), on the plate's outer face."""
    quat_xyzw: tuple[float, float, float, float]
    """Marker orientation in the object frame (x, y, z, w)."""

    def __post_init__(self) -> None:
        if not 0 <= self.marker_id < 50:
            raise ValueError(f"marker_id must be in [0, 50) for DICT_4X4_50, got {self.marker_id}")
        if not 0 < self.size < self.plate_size:
            raise ValueError(f"need 0 < size < plate_size, got size={self.size}, plate_size={self.plate_size}")

    def corners_in_object(self) -> np.ndarray:
        """(4, 3) marker corners in the object frame, in ArUco detection order."""
        h = self.size / 2.0
        local = np.array([[-h, h, 0.0], [h, h, 0.0], [h, -h, 0.0], [-h, -h, 0.0]])
        return Rotation.from_quat(self.quat_xyzw).apply(local) + np.asarray(self.pos)


def _quat_from_axes(x_axis, y_axis) -> tuple[float, float, float, float]:
    x = np.asarray(x_axis, dtype=float)
    y = np.asarray(y_axis, dtype=float)
    mat = np.stack([x, y, np.cross(x, y)], axis=1)
    return tuple(float(v) for v in Rotation.from_matrix(mat).as_quat())


# Object sizes the markers are laid out for (kept equal to the task geometry, see tasks/).
CUBE_HALF = 0.02
BASE_CUBE_HALF = 0.025
CUP_APOTHEM = 0.034
CUP_HALF_HEIGHT = 0.05
CUP_SIDES = 8
HANDLE_HALF_THICKNESS = 0.006
"""Half thickness of the flat drawer pull (m)."""

_IDENTITY = (0.0, 0.0, 0.0, 1.0)

MARKERS: dict[str, MarkerSpec] = {
    # Top face of the cube (object frame at the cube centre).
    "cube": MarkerSpec(1, 0.03, 0.04, (0.0, 0.0, CUBE_HALF + 2 * PLATE_HALF_THICKNESS), _IDENTITY),
    # Centre of the flat target square (object frame on the table surface at the square's centre).
    "target": MarkerSpec(2, 0.05, 0.07, (0.0, 0.0, 0.0011), _IDENTITY),
    # Top face of the base cube.
    "base_cube": MarkerSpec(3, 0.036, 0.05, (0.0, 0.0, BASE_CUBE_HALF + 2 * PLATE_HALF_THICKNESS), _IDENTITY),
    # Top face of the flat drawer pull (handle frame at the pull's centre: x out of the drawer front, z up).
    "drawer_handle": MarkerSpec(4, 0.03, 0.04, (0.0, 0.0, HANDLE_HALF_THICKNESS + 2 * PLATE_HALF_THICKNESS), _IDENTITY),
    # One wall facet of the cup, as a visual-only sticker slightly wider than the facet (cup frame at mid height,
    # z along the cup axis towards the opening; the facet's outward normal is the cup frame's +x). Marker y = towards
    # the opening.
    "cup": MarkerSpec(
        5, 0.028, 0.034, (CUP_APOTHEM + 2 * PLATE_HALF_THICKNESS, 0.0, -0.01), _quat_from_axes((0, 1, 0), (0, 0, 1))
    ),
}
