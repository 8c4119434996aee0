"""Writes rendered_frames/*.png and rendered_frames_expected.json: a few franka_sim camera frames (grey, 640x480)
and what the ArUco estimator made of them, every float as ``float.hex`` (bit-exact).

Run once, from the repository root, with the estimator whose numbers are to be frozen:
    .venv/bin/python ros2_ws/src/pose_estimator_node/test/data/make_rendered_frames.py
The frames are stored (not re-rendered in the test) because EGL and OSMesa render slightly different pixels;
test_pose_rendered_frames.py checks the estimator reproduces the expected file to the bit from them.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import franka_sim  # noqa: F401  (chooses the GL backend before mujoco is imported)
import numpy as np
from franka_sim.env import FrankaTaskEnv
from pose_estimator_node.camera import CameraModel, Extrinsic, image_to_gray
from pose_estimator_node.estimator import ArucoPoseEstimator

HERE = Path(__file__).parent
SIZE = (480, 640)
# (task, seed, number of frames): frames of one sequence are 0.1 s apart, with random actions between them, so the
# estimator's tracking sees them in order.
SEQUENCES = [("cube_lift", 0, 2), ("stack_cube", 1, 2), ("close_drawer", 2, 1), ("pick_place", 3, 1)]
STEPS_BETWEEN = 2
FRAME_DT_S = 0.1


def hexes(values) -> list[str]:
    return [float(v).hex() for v in np.asarray(values, dtype=np.float64).ravel()]


def result_record(result) -> dict:
    return {
        "objects": {name: {
            "marker_id": e.marker_id, "pos": hexes(e.pos), "quat_xyzw": hexes(e.quat_xyzw),
            "confidence": float(e.confidence).hex(), "reproj_err_px": float(e.reproj_err_px).hex(),
            "side_px": float(e.side_px).hex(), "refined": e.refined, "resolution": e.resolution,
            "other_err_px": float(e.other_err_px).hex()} for name, e in sorted(result.objects.items())},
        "missing": list(result.missing),
        "unknown_ids": list(result.unknown_ids),
    }


def main() -> None:
    (HERE / "rendered_frames").mkdir(exist_ok=True)
    h, w = SIZE
    sequences = []
    for task, seed, n in SEQUENCES:
        env = FrankaTaskEnv(task, image_size=SIZE)
        env.reset(seed=seed)
        rng = np.random.default_rng(seed)
        camera = CameraModel(env.camera_intrinsics().matrix(), np.zeros(5), w, h)
        extrinsic = Extrinsic(*env.camera_extrinsics())
        estimator = ArucoPoseEstimator(env.objects)
        frames = []
        for i in range(n):
            if i:
                for _ in range(STEPS_BETWEEN):
                    env.step(0.3 * rng.uniform(env.action_space.low, env.action_space.high))
            gray = image_to_gray(env.render().tobytes(), h, w, "rgb8", 3 * w)
            name = f"{task}_{seed}_{i}.png"
            cv2.imwrite(str(HERE / "rendered_frames" / name), gray, [cv2.IMWRITE_PNG_COMPRESSION, 9])
            assert np.array_equal(cv2.imread(str(HERE / "rendered_frames" / name), cv2.IMREAD_UNCHANGED), gray)
            stamp_s = i * FRAME_DT_S
            frames.append({"image": name, "stamp_s": stamp_s,
                           **result_record(estimator.estimate(gray, camera, extrinsic, stamp_s))})
        env.close()
        sequences.append({"task": task, "seed": seed, "objects": list(env.objects), "width": w, "height": h,
                          "K": hexes(camera.K), "D": hexes(camera.D), "camera_pos": hexes(extrinsic.pos),
                          "camera_quat_xyzw": hexes(extrinsic.quat_xyzw), "frames": frames})
    out = HERE / "rendered_frames_expected.json"
    out.write_text(json.dumps({"sequences": sequences}, indent=1) + "\n")
    for s in sequences:
        for f in s["frames"]:
            print(s["task"], f["image"], {k: (v["resolution"], v["refined"], round(float.fromhex(v["confidence"]), 3))
                                          for k, v in f["objects"].items()}, f["missing"], f["unknown_ids"])


if __name__ == "__main__":
    main()
