"""Offscreen camera: every task renders; ArUco markers are detected where MARKERS + intrinsics/extrinsics say."""

import cv2
import franka_sim  # noqa: F401
import numpy as np
import pytest
from franka_sim import camera, markers
from franka_sim.env import FrankaTaskEnv
from residual_core.tasks import TASK_NAMES, TASK_OBJECTS
from scipy.spatial.transform import Rotation


@pytest.mark.parametrize("task", TASK_NAMES)
def test_every_task_renders_an_image(task):
    env = FrankaTaskEnv(task, seed=0, render_camera=True, image_size=(224, 224))
    obs, _ = env.reset(seed=0)
    img = obs["image"]
    assert img.shape == (224, 224, 3) and img.dtype == np.uint8
    assert img.std() > 10.0, "image looks blank"
    obs2, *_ = env.step(np.array([0.0, 0.0, -0.03, 0.0, 0.0, 0.0, 0.0]))
    assert not np.array_equal(obs2["image"], img), "the arm moved but the image did not change"
    env.close()


def test_intrinsics_follow_fovy():
    env = FrankaTaskEnv("cube_lift", image_size=(480, 640))
    intr = env.camera_intrinsics()
    fovy = np.deg2rad(env.model.cam_fovy[env.model.camera("scene_camera").id])
    assert intr.width == 640 and intr.height == 480
    assert intr.fx == pytest.approx(240.0 / np.tan(fovy / 2)) and intr.fy == intr.fx
    assert (intr.cx, intr.cy) == (319.5, 239.5)


def _detect(img: np.ndarray) -> dict[int, np.ndarray]:
    detector = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(markers.ARUCO_DICTIONARY),
                                       cv2.aruco.DetectorParameters())
    corners, ids, _ = detector.detectMarkers(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY))
    return {} if ids is None else {int(i): c.reshape(4, 2) for i, c in zip(ids.ravel(), corners, strict=True)}


@pytest.mark.parametrize("task", TASK_NAMES)
def test_markers_are_detected_at_their_documented_pose(task):
    env = FrankaTaskEnv(task, seed=3, image_size=(480, 640))
    env.reset(seed=3)
    img = env.render()
    found = _detect(img)
    intr = env.camera_intrinsics()
    cam_pos, cam_quat = env.camera_extrinsics()
    for name in TASK_OBJECTS[task]:
        spec = markers.MARKERS[name]
        assert spec.marker_id in found, f"{task}: marker {spec.marker_id} of {name} not detected"
        pos, quat = env.object_poses()[name]
        corners_world = Rotation.from_quat(quat).apply(spec.corners_in_object()) + pos
        projected = camera.project(corners_world, intr, cam_pos, cam_quat)
        err = np.linalg.norm(projected - found[spec.marker_id], axis=-1)
        assert err.max() < 1.5, f"{task}/{name}: corner reprojection error {err.max():.2f} px"


def test_marker_table_covers_every_task_object_with_distinct_ids():
    names = {n for objs in TASK_OBJECTS.values() for n in objs}
    assert names == set(markers.MARKERS)
    ids = [m.marker_id for m in markers.MARKERS.values()]
    assert len(set(ids)) == len(ids)
    for name, spec in markers.MARKERS.items():
        img = markers.marker_image(spec.marker_id, spec.size, spec.plate_size)
        padded = np.pad(img, ((20, 20), (20, 20), (0, 0)), constant_values=255)
        assert list(_detect(padded)) == [spec.marker_id], name
