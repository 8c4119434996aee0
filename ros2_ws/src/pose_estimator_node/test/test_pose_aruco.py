"""ArUco pose maths on exact projections: marker -> object frames, distortion, the two-solution choice, confidence,
camera/extrinsic/image inputs, and detection bookkeeping on synthetic images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from franka_sim.env import FrankaTaskEnv
from pose_estimator_node.camera import CameraModel, Extrinsic, image_to_gray, sim_camera_extrinsic
from pose_estimator_node.estimator import ArucoConfig, ArucoPoseEstimator, confidence
from pose_estimator_node.ippe import marker_pose_solutions
from pose_synthetic import render_markers
from residual_core.markers import MARKERS
from scipy.spatial.transform import Rotation

K = np.array([[580.0, 0.0, 319.5], [0.0, 580.0, 239.5], [0.0, 0.0, 1.0]])
CAMERA = CameraModel(K, np.zeros(5), 640, 480)
EXTRINSIC = sim_camera_extrinsic()
EXACT = ArucoConfig(refine_corners=False)  # exact projected corners need no refinement
GRAY = np.zeros((480, 640), dtype=np.uint8)  # unused when refinement is off
# Object poses with their marker facing up (the cup lying on its side, marker facet on top).
POSES = {
    "cube": ([0.5, 0.05, 0.02], Rotation.from_euler("z", 0.3)),
    "target": ([0.55, -0.12, 0.0], Rotation.from_euler("z", -0.5)),
    "base_cube": ([0.45, 0.1, 0.025], Rotation.from_euler("z", 0.1)),
    "drawer_handle": ([0.58, 0.0, 0.15], Rotation.from_euler("z", np.pi + 0.1)),
    "cup": ([0.5, -0.05, 0.034], Rotation.from_euler("zy", [0.4, -np.pi / 2])),
}


def project(points: np.ndarray, camera: CameraModel = CAMERA, extrinsic: Extrinsic = EXTRINSIC) -> np.ndarray:
    r_cam = extrinsic.rotation.inv()
    rvec = r_cam.as_rotvec()
    tvec = -r_cam.apply(extrinsic.pos)
    px, _ = cv2.projectPoints(np.asarray(points, dtype=np.float64), rvec, tvec, camera.K, camera.D)
    return px.reshape(-1, 2)


def marker_corners(name: str, pos=None, rot=None, camera: CameraModel = CAMERA) -> np.ndarray:
    p, r = POSES[name]
    p, r = (p if pos is None else pos), (r if rot is None else rot)
    return project(r.apply(MARKERS[name][0].corners_in_object()) + np.asarray(p), camera)


def angle_deg(q, r: Rotation) -> float:
    return float(np.degrees((Rotation.from_quat(q) * r.inv()).magnitude()))


@pytest.mark.parametrize("name", sorted(POSES))
def test_exact_corners_give_the_exact_object_pose(name):
    est = ArucoPoseEstimator([name], EXACT).estimate_marker(name, GRAY, marker_corners(name), CAMERA, EXTRINSIC)
    pos, rot = POSES[name]
    assert np.linalg.norm(est.pos - pos) < 1e-6 and angle_deg(est.quat_xyzw, rot) < 1e-4
    assert est.marker_id == MARKERS[name][0].marker_id and est.reproj_err_px < 1e-6 and not est.refined
    assert est.resolution in ("reprojection", "prior")


def test_lens_distortion_is_undone():
    camera = CameraModel(K, np.array([-0.25, 0.08, 0.001, -0.0015, 0.0]), 640, 480)
    pos = [0.8, -0.3, 0.02]  # near the image's right edge, where the distortion is 14 px
    corners = marker_corners("cube", pos=pos, camera=camera)
    assert np.abs(corners - marker_corners("cube", pos=pos)).max() > 10.0, "the distortion must matter here"
    np.testing.assert_allclose(camera.undistort(corners), marker_corners("cube", pos=pos), atol=1e-4)
    est = ArucoPoseEstimator(["cube"], EXACT).estimate_marker("cube", GRAY, corners, camera, EXTRINSIC)
    assert np.linalg.norm(est.pos - pos) < 1e-5 and angle_deg(est.quat_xyzw, POSES["cube"][1]) < 1e-3


def test_ambiguous_marker_poses_are_decided_by_tracking_then_the_normal_prior():
    corners = marker_corners("cube")
    (_, _, e0), (_, _, e1) = marker_pose_solutions(CAMERA.undistort(corners), MARKERS["cube"][0].size, K)
    assert e1 - e0 < EXACT.ambiguity_margin_px, "this view must be ambiguous (a small marker seen at ~40 deg)"
    truth = POSES["cube"][1]
    up = ArucoPoseEstimator(["cube"], EXACT).estimate_marker("cube", GRAY, corners, CAMERA, EXTRINSIC)
    assert up.resolution == "prior" and angle_deg(up.quat_xyzw, truth) < 1e-4
    down_cfg = ArucoConfig(refine_corners=False, normal_prior=(0.0, 0.0, -1.0), track_timeout_s=1.0)
    down = ArucoPoseEstimator(["cube"], down_cfg)
    flipped = down.estimate_marker("cube", GRAY, corners, CAMERA, EXTRINSIC)
    assert flipped.resolution == "prior" and angle_deg(flipped.quat_xyzw, truth) > 30.0
    assert flipped.confidence == pytest.approx(confidence(flipped.reproj_err_px, flipped.side_px, True, False,
                                                          down_cfg))
    down.remember("cube", truth.as_quat(), stamp_s=10.0)  # tracking beats the prior while recent
    tracked = down.estimate_marker("cube", GRAY, corners, CAMERA, EXTRINSIC, stamp_s=10.5)
    assert tracked.resolution == "tracking" and angle_deg(tracked.quat_xyzw, truth) < 1e-4
    assert tracked.confidence > flipped.confidence  # no ambiguity penalty when tracking decided
    stale = down.estimate_marker("cube", GRAY, corners, CAMERA, EXTRINSIC, stamp_s=12.0)  # 1.5 s later: too old
    assert stale.resolution == "prior" and angle_deg(stale.quat_xyzw, truth) > 30.0
    down.remember("cube", (Rotation.from_euler("z", 1.2) * truth).as_quat(), stamp_s=12.5)  # far from both
    jumped = down.estimate_marker("cube", GRAY, corners, CAMERA, EXTRINSIC, stamp_s=12.6)
    assert jumped.resolution == "prior"
    none = ArucoPoseEstimator(["cube"], ArucoConfig(refine_corners=False, normal_prior=(0.0, 0.0, 0.0)))
    lowest = none.estimate_marker("cube", GRAY, corners, CAMERA, EXTRINSIC)
    assert lowest.resolution == "reprojection_ambiguous" and lowest.reproj_err_px == pytest.approx(e0)
    with pytest.raises(ValueError, match="unknown object 'cup'"):
        down.remember("cup", truth.as_quat(), 0.0)


def test_confidence_falls_with_error_small_size_ambiguity_and_failed_refinement():
    cfg = ArucoConfig(min_side_px=6.0, full_side_px=12.0, reproj_scale_px=0.15, ambiguous_confidence=0.8,
                      unrefined_confidence=0.3)
    assert confidence(0.0, 30.0, False, True, cfg) == 1.0
    assert confidence(0.15, 30.0, False, True, cfg) == pytest.approx(np.exp(-1.0))
    assert confidence(0.0, 9.0, False, True, cfg) == pytest.approx(0.5)
    assert confidence(0.0, 5.0, False, True, cfg) == 0.0
    assert confidence(0.0, 30.0, True, False, cfg) == pytest.approx(0.8 * 0.3)
    assert confidence(float("nan"), 30.0, False, True, cfg) == 0.0


def test_sim_camera_extrinsic_matches_the_rendered_camera():
    env = FrankaTaskEnv("cube_lift")
    env.reset(seed=0)
    pos, quat = env.camera_extrinsics()
    np.testing.assert_allclose(EXTRINSIC.pos, pos, atol=1e-9)
    assert angle_deg(EXTRINSIC.quat_xyzw, Rotation.from_quat(quat)) < 1e-6


def test_marker_table_is_residual_cores_and_its_dictionary_is_opencvs():
    """The estimator, franka_sim's plates and OpenCV agree on one marker table and dictionary (residual_core needs
    no cv2, so it stores DICT_4X4_50's enum value)."""
    from franka_sim import markers as sim_markers
    from residual_core import markers as core_markers

    assert core_markers.ARUCO_DICTIONARY == cv2.aruco.DICT_4X4_50
    assert sim_markers.MARKERS is core_markers.MARKERS and sim_markers.ARUCO_DICTIONARY == cv2.aruco.DICT_4X4_50


def test_camera_extrinsic_and_image_inputs_are_validated():
    with pytest.raises(ValueError, match="fx, fy > 0"):
        CameraModel.from_camera_info([0.0] * 9, [], 640, 480)
    with pytest.raises(ValueError, match="k must have 9 values"):
        CameraModel.from_camera_info([1.0] * 4, [], 640, 480)
    cam = CameraModel.from_camera_info(K.ravel(), [], 640, 480)
    assert not cam.has_distortion and cam.D.shape == (0,)
    with pytest.raises(ValueError, match="OpenCV"):  # 3 coefficients: cv2.undistortPoints raised cv2.error
        CameraModel.from_camera_info(K.ravel(), [0.1, 0.01, 0.001], 640, 480)
    with pytest.raises(ValueError, match="not \\(close to\\) unit length"):
        Extrinsic(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="finite position"):
        Extrinsic(np.array([np.nan, 0, 0]), np.array([0, 0, 0, 1.0]))
    rgb = np.random.default_rng(0).integers(0, 256, (3, 4, 3), dtype=np.uint8)
    gray = image_to_gray(rgb.tobytes(), 3, 4, "rgb8", 12)
    np.testing.assert_array_equal(gray, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    np.testing.assert_array_equal(image_to_gray(rgb[:, :, ::-1].tobytes(), 3, 4, "bgr8", 12), gray)
    padded = np.pad(rgb.reshape(3, 12), ((0, 0), (0, 4))).tobytes()  # row step 16 > 12
    np.testing.assert_array_equal(image_to_gray(padded, 3, 4, "rgb8", 16), gray)
    np.testing.assert_array_equal(image_to_gray(gray.tobytes(), 3, 4, "mono8", 4), gray)
    with pytest.raises(ValueError, match="unsupported image encoding '16UC1'"):
        image_to_gray(b"", 3, 4, "16UC1", 8)
    with pytest.raises(ValueError, match="does not hold 3x4 rgb8"):
        image_to_gray(rgb.tobytes()[:-1], 3, 4, "rgb8", 12)
    with pytest.raises(ValueError, match="no marker for object"):
        ArucoPoseEstimator(["mug"])


def test_estimate_reports_missing_objects_unknown_ids_and_keeps_the_best_duplicate():
    plate = np.array([[40.3, 30.7], [92.1, 33.2], [90.4, 81.9], [38.2, 78.8]])
    img, _ = render_markers((240, 320), [(1, 0.03, 0.04, plate), (40, 0.03, 0.04, plate + [150.0, 10.0]),
                                         (1, 0.03, 0.04, plate + [60.0, 120.0])])
    # Spoil the second cube marker's quiet zone along one edge: its corners cannot be refined.
    cv2.rectangle(img, (98, 196), (152, 203), 30, thickness=-1)
    camera = CameraModel(K, np.zeros(5), 320, 240)
    estimator = ArucoPoseEstimator(["cube", "target"])
    found = estimator.detect(img)
    assert sorted(found) == [1, 40] and len(found[1]) == 2
    result = estimator.estimate(img, camera, EXTRINSIC)
    assert list(result.objects) == ["cube"] and result.missing == ("target",) and result.unknown_ids == (40,)
    each = [estimator.estimate_marker("cube", img, c, camera, EXTRINSIC) for c in found[1]]
    assert sorted(e.refined for e in each) == [False, True]
    assert result.objects["cube"].refined and result.objects["cube"].confidence == max(e.confidence for e in each)
    assert result.total_s >= result.detect_s > 0
    with pytest.raises(ValueError, match="image is 320x240 but the camera info says 640x480"):
        estimator.estimate(img, CAMERA, EXTRINSIC)


def test_the_prior_expects_a_side_markers_normal_to_be_horizontal():
    """A marker on a cube's side face points sideways while the cube rests upright (residual_core.markers.RESTING_UP):
    when its two IPPE solutions are ambiguous, the prior takes the one whose normal is closest to horizontal, which
    here is the true one (an "as up as possible" prior, right for top markers, takes the other: 119 deg off)."""
    side = MARKERS["cube"][4]  # the -y face, towards the sim camera
    p, r = POSES["cube"]
    corners = project(r.apply(side.corners_in_object()) + np.asarray(p))
    sols = marker_pose_solutions(corners, side.size, K)
    assert len(sols) == 2 and sols[1][2] - sols[0][2] < EXACT.ambiguity_margin_px, "this view must be ambiguous"
    est = ArucoPoseEstimator(["cube"], EXACT).estimate_marker("cube", GRAY, corners, CAMERA, EXTRINSIC, spec=side)
    assert est.resolution == "prior" and est.marker_ids == (side.marker_id,)
    assert np.linalg.norm(est.pos - p) < 1e-6 and angle_deg(est.quat_xyzw, r) < 1e-4
