"""The ArUco fiducial markers printed on the task objects (DICT_4X4_50): a physical fact shared by the simulator,
which draws them (``franka_sim.markers`` builds the MuJoCo plates), and the pose estimator, which detects them.
numpy and scipy only (no cv2, no MuJoCo).

Each task object carries one or more markers, each with its own id, on a thin plate framed by a white quiet zone.
``MARKERS`` says, per object, its markers, the main one first: the marker id, the side length of the black square (m)
and the marker's pose in the object frame (the frame of the object's pose in ``object_poses()``). The cubes carry a
marker on the top face and on each side face, so that some stay in view while the hand covers the top and two sides;
the cup carries one on every second facet of its wall and one on its bottom. The pose estimator fits one pose to the
corners of all the markers of an object that it sees.

Printed size: a marker is drawn as a texture of ``texture_px`` x ``texture_px`` pixels with ``pixels_per_cell`` per
marker cell (:func:`texture_layout`). The black square is exactly ``size`` only when the plate is a whole, evenly
framed number of texture pixels, and it stays exact in the renderer's mipmaps (which a marker of 15-30 px on screen is
drawn from) only when that number is a power of two: with a 134-pixel texture the base cube's marker jittered by +-5 mm
in depth, with 128 pixels by +-0.4 mm. :func:`texture_layout` refuses a spec whose size ratio has no such texture, so
every marker here is printed at its nominal size (``printed_size``; a test checks it).

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
TEXTURE_SIZES = (128, 256, 64)
"""Texture sizes (px, powers of two) :func:`texture_layout` tries, in this order."""


def texture_layout(size: float, plate_size: float) -> tuple[int, int]:
    """(texture_px, pixels_per_cell) of a plate texture on which a marker of ``size`` on a plate of ``plate_size`` is
    exact: texture_px a power of two (``TEXTURE_SIZES``), the marker ``MARKER_CELLS * pixels_per_cell`` px, centred with
    a whole number of pixels on each side. ValueError if there is none (choose another plate size: the ratio
    plate_size / size must be texture_px / (6 * pixels_per_cell))."""
    ratio = plate_size / size
    for tex in TEXTURE_SIZES:
        for ppc in range(tex // MARKER_CELLS, 2, -1):
            marker_px = MARKER_CELLS * ppc
            if abs(tex / marker_px - ratio) <= 1e-9 * ratio and (tex - marker_px) % 2 == 0:
                return tex, ppc
    raise ValueError(f"no power-of-two texture draws a {size} m marker on a {plate_size} m plate exactly "
                     f"(ratio {ratio:.6f}); use plate_size = size * T / (6 * n) with T in {TEXTURE_SIZES}, "
                     f"e.g. size * 4 / 3 (T = 128, n = 16)")


@dataclass(frozen=True)
class MarkerSpec:
    """Where one marker is."""

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

    def normal_in_object(self) -> np.ndarray:
        """(3,) the marker's outward normal (its z axis) in the object frame."""
        return Rotation.from_quat(self.quat_xyzw).apply([0.0, 0.0, 1.0])

    def printed_size(self) -> float:
        """Side of the black square as the simulator draws it (m): the texture's marker pixels over its plate pixels
        times the plate size; equal to ``size`` for every spec :func:`texture_layout` accepts."""
        tex, ppc = texture_layout(self.size, self.plate_size)
        return MARKER_CELLS * ppc / tex * self.plate_size


def _quat_from_axes(x_axis, y_axis) -> tuple[float, float, float, float]:
    x = np.asarray(x_axis, dtype=float)
    y = np.asarray(y_axis, dtype=float)
    mat = np.stack([x, y, np.cross(x, y)], axis=1)
    return tuple(float(v) for v in Rotation.from_matrix(mat).as_quat())


def _facing(normal, up=(0.0, 0.0, 1.0)) -> tuple[float, float, float, float]:
    """Orientation of a marker whose face points along ``normal`` with its image's y along ``up``."""
    n = np.asarray(normal, dtype=float)
    return _quat_from_axes(np.cross(up, n), up)


# Object sizes the markers are laid out for (kept equal to the task geometry, see tasks/).
CUBE_HALF = 0.02
BASE_CUBE_HALF = 0.025
CUP_APOTHEM = 0.034
CUP_HALF_HEIGHT = 0.05
CUP_SIDES = 8
HANDLE_HALF_THICKNESS = 0.006
"""Half thickness of the flat drawer pull (m)."""

_IDENTITY = (0.0, 0.0, 0.0, 1.0)
_OUT = 2 * PLATE_HALF_THICKNESS
"""A marker face stands this far out of the surface its plate lies on."""
_SIDES = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (-1.0, 0.0, 0.0), (0.0, -1.0, 0.0))


def _cube_markers(ids, half: float, size: float, plate_size: float) -> tuple[MarkerSpec, ...]:
    """A cube's markers (object frame at its centre): ``ids[0]`` on the top face, ``ids[1:5]`` on the +x, +y, -x, -y
    faces (image up = the cube's +z)."""
    top = MarkerSpec(ids[0], size, plate_size, (0.0, 0.0, half + _OUT), _IDENTITY)
    sides = tuple(MarkerSpec(i, size, plate_size, tuple(float(v) for v in (half + _OUT) * np.asarray(n)), _facing(n))
                  for i, n in zip(ids[1:], _SIDES, strict=True))
    return (top, *sides)


def _cup_markers(facet_ids, bottom_id: int) -> tuple[MarkerSpec, ...]:
    """The cup's markers (cup frame at mid height on the axis, z towards the opening): one on every second facet of
    the wall, starting with the facet along +x (image up = towards the opening), as visual-only stickers wider than the
    facet: a one-cell quiet zone (a narrower one made the marker hard to detect at 640x480); one on the bottom (image
    up = the cup's -y)."""
    size, plate = 0.028, 0.028 * 4 / 3  # 96 marker px on a 128 px texture (texture_layout), a one-cell quiet zone
    out = []
    for k, marker_id in enumerate(facet_ids):
        phi = 2 * np.pi * (2 * k) / CUP_SIDES
        n = (float(np.cos(phi)), float(np.sin(phi)), 0.0)
        pos = ((CUP_APOTHEM + _OUT) * n[0], (CUP_APOTHEM + _OUT) * n[1], -0.01)
        out.append(MarkerSpec(marker_id, size, plate, pos, _facing(n)))
    # The bottom's square plate fits inside the octagon (half diagonal 0.0325 < apothem 0.034).
    out.append(MarkerSpec(bottom_id, 0.03, 0.04, (0.0, 0.0, -CUP_HALF_HEIGHT - _OUT),
                          _quat_from_axes((1.0, 0.0, 0.0), (0.0, -1.0, 0.0))))
    return tuple(out)


MARKERS: dict[str, tuple[MarkerSpec, ...]] = {
    # Top face, then the four side faces of the cube (object frame at the cube centre).
    "cube": _cube_markers((1, 6, 7, 8, 9), CUBE_HALF, 0.03, 0.04),
    # Centre of the flat target square (object frame on the table surface at the square's centre).
    "target": (MarkerSpec(2, 0.0525, 0.07, (0.0, 0.0, 0.0011), _IDENTITY),),
    # Top face, then the four side faces of the base cube.
    "base_cube": _cube_markers((3, 10, 11, 12, 13), BASE_CUBE_HALF, 0.036, 0.048),
    # Top face of the flat drawer pull (handle frame at the pull's centre: x out of the drawer front, z up).
    "drawer_handle": (MarkerSpec(4, 0.03, 0.04, (0.0, 0.0, HANDLE_HALF_THICKNESS + _OUT), _IDENTITY),),
    # Facets 0, 2, 4, 6 of the cup's wall (the first is the facet along the cup frame's +x, which faces up when the
    # cup lies in stand_cup_up's initial pose), then the bottom.
    "cup": _cup_markers((5, 14, 15, 16), 17),
}
"""Object -> its markers, the main one first."""

RESTING_UP: dict[str, tuple[float, float, float]] = {"cup": (1.0, 0.0, 0.0)}
"""Object -> the direction in the object frame that points up while the object rests in its usual pose (the cup lies
on its side with its main marker's facet up); (0, 0, 1) for the objects not listed. The pose estimator's prior for
an ambiguous marker expects the marker's normal to point up as much as it does in that pose."""


def resting_up(name: str) -> np.ndarray:
    """(3,) ``RESTING_UP`` of object ``name`` (the object frame's z if not listed)."""
    return np.asarray(RESTING_UP.get(name, (0.0, 0.0, 1.0)), dtype=np.float64)


# --- the hand-eye calibration board ---------------------------------------------------------------------------------
CALIBRATION_BOARD_FIRST_ID = 20
"""First marker id of the calibration board (ids 20 on are not on any task object)."""


def calibration_board(cols: int = 3, rows: int = 2, size: float = 0.045, plate_size: float = 0.06,
                      first_id: int = CALIBRATION_BOARD_FIRST_ID) -> tuple[MarkerSpec, ...]:
    """The markers of a flat ArUco board of ``cols`` x ``rows`` plates of ``plate_size`` side edge to edge, each with a
    marker of ``size`` (a one-cell quiet zone at the default 4/3 ratio), ids ``first_id`` on row by row from the top
    left. Board frame: at the board's centre, z out of the printed face (the face at z = 0), x to the right of the
    printed image, y up it (the markers' own convention, so every marker's orientation is the identity)."""
    if cols < 1 or rows < 1 or first_id < 0 or first_id + cols * rows > 50:
        raise ValueError(f"need cols, rows >= 1 and ids within DICT_4X4_50, got {cols} x {rows} from id {first_id}")
    out = []
    for r in range(rows):
        for c in range(cols):
            pos = ((c - (cols - 1) / 2) * plate_size, ((rows - 1) / 2 - r) * plate_size, 0.0)
            out.append(MarkerSpec(first_id + r * cols + c, size, plate_size, pos, _IDENTITY))
    return tuple(out)


CALIBRATION_BOARD: tuple[MarkerSpec, ...] = calibration_board()
"""The board ``residual-handeye`` looks for by default (3 x 2 markers of 45 mm on 60 mm plates: an 18 x 12 cm board;
print it with ``residual-handeye --print-board``), and the one the twin mounts on the hand when asked to."""
