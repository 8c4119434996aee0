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


@pytest.mark.parametrize("camera_name", [None, "front"])
@pytest.mark.parametrize("task", TASK_NAMES)
def test_markers_are_detected_at_their_documented_pose(task, camera_name):
    """Scene camera: every object's main marker is seen; both cameras: every marker seen is where the marker table, the
    camera's intrinsics and its extrinsics put it."""
    env = FrankaTaskEnv(task, seed=3, image_size=(480, 640))
    env.reset(seed=3)
    img = env.render(camera_name)
    found = _detect(img)
    intr = env.camera_intrinsics(camera_name)
    cam_pos, cam_quat = env.camera_extrinsics(camera_name)
    object_ids = {m.marker_id for name in TASK_OBJECTS[task] for m in markers.MARKERS[name]}
    if (task, camera_name) != ("close_drawer", "front"):  # the front camera looks over the pull, not at it
        assert object_ids & set(found), f"{task}: no marker seen by camera {camera_name}"
    for name in TASK_OBJECTS[task]:
        main = markers.MARKERS[name][0]
        assert camera_name or main.marker_id in found, f"{task}: marker {main.marker_id} of {name} not detected"
        for spec in markers.MARKERS[name]:  # every marker of the object that is seen is where the table says
            if spec.marker_id not in found:
                continue
            pos, quat = env.object_poses()[name]
            corners_world = Rotation.from_quat(quat).apply(spec.corners_in_object()) + pos
            projected = camera.project(corners_world, intr, cam_pos, cam_quat)
            err = np.linalg.norm(projected - found[spec.marker_id], axis=-1)
            assert err.max() < 1.5, f"{task}/{name} marker {spec.marker_id}: corner reprojection error {err.max():.2f}"


def test_marker_table_covers_every_task_object_with_distinct_ids():
    names = {n for objs in TASK_OBJECTS.values() for n in objs}
    assert names == set(markers.MARKERS)
    ids = [m.marker_id for specs in markers.MARKERS.values() for m in specs]
    assert len(set(ids)) == len(ids)
    for name, specs in markers.MARKERS.items():
        for spec in specs:
            img = markers.marker_image(spec.marker_id, spec.size, spec.plate_size)
            padded = np.pad(img, ((20, 20), (20, 20), (0, 0)), constant_values=255)
            assert list(_detect(padded)) == [spec.marker_id], name


def test_every_marker_is_printed_at_its_nominal_size_on_a_power_of_two_texture():
    """The black square of each plate texture, measured in its pixels, is the marker's nominal size within 0.1 %
    (texture pixels are whole: before the layout was chosen for it, the base cube's marker was printed 0.5 % small
    and the cup's 1.2 %), and the texture is a power of two (the renderer's mipmaps halve it exactly)."""
    for name, specs in markers.MARKERS.items():
        for spec in specs:
            img = markers.marker_image(spec.marker_id, spec.size, spec.plate_size)[:, :, 0]
            n = img.shape[0]
            assert img.shape == (n, n) and n & (n - 1) == 0, f"{name} {spec.marker_id}: texture {img.shape}"
            rows, cols = np.nonzero(img[:, :] < 128)
            black_px = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1  # the one-cell black border is whole
            printed = black_px / n * spec.plate_size
            assert abs(printed / spec.size - 1.0) < 1e-3, f"{name} {spec.marker_id}: printed {printed}, not {spec.size}"
            assert spec.printed_size() == pytest.approx(spec.size, rel=1e-9)
    with pytest.raises(ValueError, match="no power-of-two texture"):
        markers.texture_layout(0.036, 0.05)  # the base cube's former plate


def test_place_camera_puts_the_optical_frame_where_asked():
    env = FrankaTaskEnv("cube_lift", seed=0)
    env.reset(seed=0)
    name = env.config.sim.scene.camera.name
    pos = np.array([0.95, 0.1, 0.55])
    quat = Rotation.from_euler("xyz", [np.pi - 0.7, 0.1, np.pi / 2]).as_quat()
    camera.place_camera(env.model, name, pos, quat)
    env.sim.batch.set_models(env.model)
    got_pos, got_quat = camera.extrinsics(env.model, env.get_data(), name)
    np.testing.assert_allclose(got_pos, pos, atol=1e-9)
    assert (Rotation.from_quat(got_quat) * Rotation.from_quat(quat).inv()).magnitude() < 1e-6
