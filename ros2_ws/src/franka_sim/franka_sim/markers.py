"""ArUco fiducial markers on the task objects (cv2.aruco DICT_4X4_50).

Each task object carries one marker with a distinct id: a thin visual-only plate whose texture is the marker
image (made in code with ``cv2.aruco.generateImageMarker``) framed by a white quiet zone. ``MARKERS`` says,
per object, the marker id, the side length of the black square (m) and the marker's pose in the object frame
(the frame of the object's pose in ``object_poses()``).

Marker frame (OpenCV's ArUco convention): origin at the marker centre, x to the right of the marker image,
y up the image, z out of the face towards the viewer; the four corners in detection order are
(-s/2, s/2, 0), (s/2, s/2, 0), (s/2, -s/2, 0), (-s/2, -s/2, 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import mujoco
import numpy as np
from scipy.spatial.transform import Rotation

ARUCO_DICTIONARY = cv2.aruco.DICT_4X4_50
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


def marker_image(marker_id: int, size: float, plate_size: float, pixels_per_cell: int = 16) -> np.ndarray:
    """RGB (n, n, 3) uint8 image of a marker centred on a white plate of ``plate_size`` (m)."""
    cell = size / MARKER_CELLS
    marker_px = MARKER_CELLS * pixels_per_cell
    plate_px = int(round(plate_size / cell * pixels_per_cell))
    plate_px += (plate_px - marker_px) % 2  # symmetric margin
    dictionary = cv2.aruco.getPredefinedDictionary(ARUCO_DICTIONARY)
    marker = cv2.aruco.generateImageMarker(dictionary, marker_id, marker_px, borderBits=1)
    img = np.full((plate_px, plate_px), 255, dtype=np.uint8)
    off = (plate_px - marker_px) // 2
    img[off : off + marker_px, off : off + marker_px] = marker
    return np.repeat(img[:, :, None], 3, axis=2)


def add_marker(spec: mujoco.MjSpec, body: mujoco.MjsBody, object_name: str, object_frame_in_body=None) -> str:
    """Add ``object_name``'s marker plate to ``body``; returns the plate geom's name.

    ``object_frame_in_body``: (pos (3,), quat_xyzw (4,)) of the object frame in the body frame; identity if None.
    The plate is visual only (no contacts, no mass) and its outer face carries the marker at ``MARKERS``' pose.
    """
    if object_name not in MARKERS:
        raise KeyError(f"no marker for object {object_name!r}; known: {sorted(MARKERS)}")
    m = MARKERS[object_name]
    tex_name = f"aruco_{m.marker_id}"
    if spec.texture(tex_name) is None:
        img = marker_image(m.marker_id, m.size, m.plate_size)
        tex = spec.add_texture(name=tex_name, type=mujoco.mjtTexture.mjTEXTURE_2D, width=img.shape[1],
                               height=img.shape[0], nchannel=3)
        tex.data = img.tobytes()
        spec.add_material(name=f"{tex_name}_mat", textures=["", tex_name], texrepeat=[1, 1], texuniform=False)
    # Plate centre sits half a thickness behind the marker face, along the marker z.
    r_marker = Rotation.from_quat(m.quat_xyzw)
    plate_pos_obj = np.asarray(m.pos) - r_marker.apply([0.0, 0.0, PLATE_HALF_THICKNESS])
    if object_frame_in_body is None:
        pos_body, r_body = plate_pos_obj, r_marker
    else:
        p_ob, q_ob = object_frame_in_body
        r_ob = Rotation.from_quat(q_ob)
        pos_body, r_body = r_ob.apply(plate_pos_obj) + np.asarray(p_ob), r_ob * r_marker
    name = f"{object_name}_marker"
    body.add_geom(
        name=name,
        type=mujoco.mjtGeom.mjGEOM_BOX,
        pos=pos_body.tolist(),
        quat=r_body.as_quat(scalar_first=True).tolist(),
        size=[m.plate_size / 2, m.plate_size / 2, PLATE_HALF_THICKNESS],
        material=f"{tex_name}_mat",
        contype=0,
        conaffinity=0,
        mass=0.0,
        density=0.0,
        group=1,
        rgba=[1, 1, 1, 1],
    )
    return name
