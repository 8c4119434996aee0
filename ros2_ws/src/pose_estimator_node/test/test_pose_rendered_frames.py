"""The ArUco estimator reproduces, to the bit, its poses on six stored franka_sim frames (four tasks, two of them
two-frame sequences so tracking decides). data/make_rendered_frames.py wrote the frames and the expected numbers
with the estimator as it was before aruco.py was split into camera / ippe / estimator; a change that moves any
number, however little, shows up here (rerun the script on purpose to accept one)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pose_estimator_node.camera import CameraModel, Extrinsic
from pose_estimator_node.estimator import ArucoPoseEstimator

DATA = Path(__file__).parent / "data"
EXPECTED = json.loads((DATA / "rendered_frames_expected.json").read_text())


def floats(hexes: list[str]) -> np.ndarray:
    return np.array([float.fromhex(h) for h in hexes])


def hexes(values) -> list[str]:
    return [float(v).hex() for v in np.asarray(values, dtype=np.float64).ravel()]


@pytest.mark.parametrize("seq", EXPECTED["sequences"], ids=lambda s: f"{s['task']}_{s['seed']}")
def test_poses_from_stored_frames_are_bit_identical(seq):
    camera = CameraModel(floats(seq["K"]).reshape(3, 3), floats(seq["D"]), seq["width"], seq["height"])
    extrinsic = Extrinsic(floats(seq["camera_pos"]), floats(seq["camera_quat_xyzw"]))
    estimator = ArucoPoseEstimator(seq["objects"])
    for frame in seq["frames"]:
        gray = cv2.imread(str(DATA / "rendered_frames" / frame["image"]), cv2.IMREAD_UNCHANGED)
        assert gray is not None and gray.shape == (seq["height"], seq["width"]) and gray.dtype == np.uint8
        result = estimator.estimate(gray, camera, extrinsic, frame["stamp_s"])
        assert list(result.missing) == frame["missing"] and list(result.unknown_ids) == frame["unknown_ids"]
        assert sorted(result.objects) == sorted(frame["objects"]), frame["image"]
        for name, want in frame["objects"].items():
            e = result.objects[name]
            got = {"marker_id": e.marker_id, "pos": hexes(e.pos), "quat_xyzw": hexes(e.quat_xyzw),
                   "confidence": float(e.confidence).hex(), "reproj_err_px": float(e.reproj_err_px).hex(),
                   "side_px": float(e.side_px).hex(), "refined": e.refined, "resolution": e.resolution,
                   "other_err_px": float(e.other_err_px).hex()}
            assert got == want, f"{frame['image']} {name}"
