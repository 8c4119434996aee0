"""The ArUco estimator on franka_sim's rendered camera images: every task's objects against the ground truth.

Tolerances are for detections with confidence >= 0.5 (the residual node's default min_confidence) at 640x480,
from benchmarks/bench_pose_estimator.py (100 states per task: p95 position error 1.4-4.2 mm; the cup has rare
confident outliers, 14 mm on seed 7). Until the marker
textures were powers of two (``residual_core.markers.texture_layout``), the target, base_cube and cup markers were
printed 0.3-1.2 % off their size and their mipmaps jittered them by several mm; the cup's sticker, with a narrow
quiet zone, was confidently seen only at 1280x960.
"""

from __future__ import annotations

import cv2
import franka_sim  # noqa: F401  (chooses the GL backend before mujoco is imported)
import numpy as np
import pytest
from franka_sim.camera import project
from franka_sim.env import FrankaTaskEnv
from pose_estimator_node.camera import CameraModel, Extrinsic, image_to_gray
from pose_estimator_node.estimator import ArucoPoseEstimator
from residual_core.markers import MARKERS
from scipy.spatial.transform import Rotation

SEEDS = range(8)
MIN_CONFIDENCE = 0.5
# object -> (position tolerance m, rotation tolerance deg, confident detections needed out of len(SEEDS))
TOLERANCE = {
    "cube": (0.006, 2.0, 6),
    "drawer_handle": (0.006, 2.0, 6),
    "target": (0.006, 2.0, 6),
    "base_cube": (0.006, 2.0, 6),
    "cup": (0.02, 3.0, 6),
}
CASES = [("cube_lift", (480, 640)), ("pick_place", (480, 640)), ("stack_cube", (480, 640)),
         ("close_drawer", (480, 640)), ("stand_cup_up", (480, 640))]


@pytest.mark.parametrize(("task", "size"), CASES)
def test_confident_estimates_are_within_tolerance_of_the_ground_truth(task, size):
    h, w = size
    env = FrankaTaskEnv(task, image_size=size)
    estimator = ArucoPoseEstimator(env.objects)
    camera = CameraModel(env.camera_intrinsics().matrix(), np.zeros(5), w, h)
    confident = dict.fromkeys(env.objects, 0)
    for seed in SEEDS:
        env.reset(seed=seed)
        result = estimator.estimate(image_to_gray(env.render().tobytes(), h, w, "rgb8", 3 * w), camera,
                                    Extrinsic(*env.camera_extrinsics()))
        truth = env.object_poses()
        for name, est in result.objects.items():
            if est.confidence < MIN_CONFIDENCE:
                continue
            confident[name] += 1
            pos_tol, rot_tol, _ = TOLERANCE[name]
            pos_err = np.linalg.norm(est.pos - truth[name][0])
            rot_err = np.degrees((Rotation.from_quat(est.quat_xyzw) * Rotation.from_quat(truth[name][1]).inv())
                                 .magnitude())
            assert pos_err < pos_tol and rot_err < rot_tol, (
                f"{task} seed {seed} {name}: {pos_err * 1e3:.1f} mm, {rot_err:.2f} deg (confidence "
                f"{est.confidence:.2f}, {est.side_px:.1f} px, reprojection {est.reproj_err_px:.3f} px)")
    env.close()
    for name, n in confident.items():
        assert n >= TOLERANCE[name][2], f"{task}: {name} confidently seen in only {n} of {len(SEEDS)} scenes"


@pytest.mark.parametrize("task", ["cube_lift", "stack_cube"])
def test_cubes_are_found_from_their_side_markers_when_the_top_marker_is_covered(task):
    """The hand covers a cube's top face while it grasps it: with the top marker painted over in the rendered image
    (as by an occluder), the cube's side markers still give its pose, in some scenes (before the side markers, the
    cube was lost in all). From this camera (elevation ~50 deg) the side face towards it is foreshortened to ~13 px
    high: the side markers are detected in about half of the scenes and confidently in a quarter (measured on seeds
    0-7: cube_lift 2, stack_cube 3 of 16 cubes)."""
    h, w = 480, 640
    env = FrankaTaskEnv(task, image_size=(h, w))
    camera = CameraModel(env.camera_intrinsics().matrix(), np.zeros(5), w, h)
    extrinsic = Extrinsic(*env.camera_extrinsics())
    intr, (cam_pos, cam_quat) = env.camera_intrinsics(), env.camera_extrinsics()
    found = 0
    for seed in SEEDS:
        env.reset(seed=seed)
        img = env.render().copy()
        for name in ("cube", "base_cube") if task == "stack_cube" else ("cube",):
            top = MARKERS[name][0]
            pos, quat = env.object_poses()[name]
            plate = Rotation.from_quat(quat).apply(top.corners_in_object() * top.plate_size / top.size
                                                   - np.asarray(top.pos) * (top.plate_size / top.size - 1)) + pos
            cv2.fillConvexPoly(img, np.round(project(plate, intr, cam_pos, cam_quat)).astype(np.int32), (90, 60, 50))
        estimator = ArucoPoseEstimator(env.objects)
        gray = image_to_gray(img.tobytes(), h, w, "rgb8", 3 * w)
        assert not {MARKERS[o][0].marker_id for o in env.objects} & set(estimator.detect(gray)), "top not covered"
        result = estimator.estimate(gray, camera, extrinsic)
        truth = env.object_poses()
        for name, est in result.objects.items():
            if not name.endswith("cube") or est.confidence < MIN_CONFIDENCE:
                continue
            found += 1
            pos_err = np.linalg.norm(est.pos - truth[name][0])
            rot_err = np.degrees((Rotation.from_quat(est.quat_xyzw) * Rotation.from_quat(truth[name][1]).inv())
                                 .magnitude())
            assert MARKERS[name][0].marker_id not in est.marker_ids
            assert pos_err < 0.01 and rot_err < 3.0, (
                f"{task} seed {seed} {name}: {pos_err * 1e3:.1f} mm, {rot_err:.2f} deg from markers {est.marker_ids} "
                f"({est.resolution}, confidence {est.confidence:.2f})")
    env.close()
    assert found >= 2, f"{task}: cubes confidently found from their side markers only {found} times in 8 scenes"
