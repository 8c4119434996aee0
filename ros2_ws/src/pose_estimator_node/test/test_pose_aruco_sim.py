"""The ArUco estimator on franka_sim's rendered camera images: every task's objects against the ground truth.

Tolerances are for detections with confidence >= 0.5 (the residual node's default min_confidence) at 640x480,
from benchmarks/bench_pose_estimator.py (100 states per task: p95 position error 2.5 mm for the 3 cm cube and
drawer markers). The target, base_cube and cup markers get looser bounds: franka_sim renders them 0.3 %, -0.5 % and
-1.2 % off their stated size (``markers.marker_image`` rounds the plate to whole texture pixels), which shows up as
a depth error of a few mm to ~2 cm. The cup's small sticker is not reliably detected at 640x480 (83/100 detections,
39/100 confident), so it is checked at 1280x960.
"""

from __future__ import annotations

import franka_sim  # noqa: F401  (chooses the GL backend before mujoco is imported)
import numpy as np
import pytest
from franka_sim.env import FrankaTaskEnv
from pose_estimator_node.camera import CameraModel, Extrinsic, image_to_gray
from pose_estimator_node.estimator import ArucoPoseEstimator
from scipy.spatial.transform import Rotation

SEEDS = range(8)
MIN_CONFIDENCE = 0.5
# object -> (position tolerance m, rotation tolerance deg, confident detections needed out of len(SEEDS))
TOLERANCE = {
    "cube": (0.006, 2.0, 6),
    "drawer_handle": (0.006, 2.0, 6),
    "target": (0.015, 2.0, 6),
    "base_cube": (0.015, 2.0, 6),
    "cup": (0.025, 3.0, 6),
}
CASES = [("cube_lift", (480, 640)), ("pick_place", (480, 640)), ("stack_cube", (480, 640)),
         ("close_drawer", (480, 640)), ("stand_cup_up", (960, 1280))]


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
