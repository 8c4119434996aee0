"""The MuJoCo plates of the ArUco fiducial markers on the task objects (cv2.aruco DICT_4X4_50).

The marker table itself (``MARKERS``: per object, its markers: id, size and pose in the object frame; the marker frame
convention; the texture layout that prints each marker at its nominal size) is a physical fact shared with the pose
estimator and lives in :mod:`residual_core.markers`; this module draws it: each marker is a thin visual-only plate
whose texture is the marker image (made in code with ``cv2.aruco.generateImageMarker``) framed by a white quiet zone.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import mujoco
import numpy as np
from residual_core.markers import (  # noqa: F401 (re-exported for the task scenes: markers.CUP_APOTHEM, ...)
    ARUCO_DICTIONARY,
    BASE_CUBE_HALF,
    CUBE_HALF,
    CUP_APOTHEM,
    CUP_HALF_HEIGHT,
    CUP_SIDES,
    HANDLE_HALF_THICKNESS,
    MARKER_CELLS,
    MARKERS,
    PLATE_HALF_THICKNESS,
    MarkerSpec,
    texture_layout,
)
from scipy.spatial.transform import Rotation


def marker_image(marker_id: int, size: float, plate_size: float) -> np.ndarray:
    """RGB (n, n, 3) uint8 image of a marker centred on a white plate of ``plate_size`` (m), laid out by
    :func:`residual_core.markers.texture_layout` (n a power of two; the black square exactly ``size`` / ``plate_size``
    of it)."""
    plate_px, pixels_per_cell = texture_layout(size, plate_size)
    marker_px = MARKER_CELLS * pixels_per_cell
    dictionary = cv2.aruco.getPredefinedDictionary(ARUCO_DICTIONARY)
    marker = cv2.aruco.generateImageMarker(dictionary, marker_id, marker_px, borderBits=1)
    img = np.full((plate_px, plate_px), 255, dtype=np.uint8)
    off = (plate_px - marker_px) // 2
    img[off : off + marker_px, off : off + marker_px] = marker
    return np.repeat(img[:, :, None], 3, axis=2)


def add_marker(spec: mujoco.MjSpec, body: mujoco.MjsBody, object_name: str, object_frame_in_body=None) -> list[str]:
    """Add the plates of all of ``object_name``'s markers to ``body``; returns the plate geoms' names (the main
    marker's is ``<object>_marker``, the others' ``<object>_marker<id>``).

    ``object_frame_in_body``: (pos (3,), quat_xyzw (4,)) of the object frame in the body frame; identity if None.
    The plates are visual only (no contacts, no mass): the object's physics is that of its other geoms.
    """
    if object_name not in MARKERS:
        raise KeyError(f"no marker for object {object_name!r}; known: {sorted(MARKERS)}")
    names = []
    for k, m in enumerate(MARKERS[object_name]):
        name = f"{object_name}_marker" if k == 0 else f"{object_name}_marker{m.marker_id}"
        _add_plate(spec, body, m, name, object_frame_in_body)
        names.append(name)
    return names


def add_board(spec: mujoco.MjSpec, body: mujoco.MjsBody, board: Sequence[MarkerSpec], name: str,
              board_frame_in_body) -> list[str]:
    """Add the plates of a marker board (``residual_core.markers.calibration_board``) to ``body`` at
    ``board_frame_in_body`` (pos (3,), quat_xyzw (4,)); visual only like every marker plate (no contacts, no mass).
    Returns the plate geoms' names (``<name>_marker<id>``)."""
    names = []
    for m in board:
        _add_plate(spec, body, m, f"{name}_marker{m.marker_id}", board_frame_in_body)
        names.append(f"{name}_marker{m.marker_id}")
    return names


def _add_plate(spec: mujoco.MjSpec, body: mujoco.MjsBody, m: MarkerSpec, name: str, object_frame_in_body) -> None:
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
