"""residual-handeye without ROS: --help documents every option, --from-pairs solves saved pairs and writes the
result, degenerate pairs are refused with exit status 3, and the printable board is found by BoardDetector."""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest
from pose_estimator_node import handeye as he
from pose_estimator_node import handeye_cli as cli
from pose_estimator_node.board import BoardDetector
from pose_estimator_node.camera import CameraModel
from scipy.spatial.transform import Rotation

CAMERA = he.pose_matrix([0.3, -0.6, 0.85], Rotation.from_euler("xyz", [-130, 0, 5], degrees=True).as_quat())
BOARD = he.pose_matrix([0.0, 0.15, 0.1], Rotation.from_euler("x", -113, degrees=True).as_quat())


def _pairs_file(path, poses):
    tcp = [he.pose_matrix(p, q) for p, q in poses]
    pairs = [{"tcp": [*he.matrix_pose(A)[0], *he.matrix_pose(A)[1]],
              "board_in_camera": [*he.matrix_pose(B)[0], *he.matrix_pose(B)[1]]}
             for A in tcp for B in [he.invert(CAMERA) @ A @ BOARD]]
    path.write_text(json.dumps({"pairs_data": [{k: [float(v) for v in p[k]] for k in p} for p in pairs]}))


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(cli.HandEyeArgs):
        assert f"--{f.name.replace('_', '-')}" in text, f.name
    assert text.count("(default:") >= len(dataclasses.fields(cli.HandEyeArgs))


def test_from_pairs_solves_and_writes_the_hand_eye(tmp_path, capsys):
    src, out = tmp_path / "pairs.json", tmp_path / "out.json"
    _pairs_file(src, he.collection_poses([0.5, 0.1, 0.25], [1.0, 0.0, 0.0, 0.0], n=12))
    truth = [*he.matrix_pose(CAMERA)[0], *he.matrix_pose(CAMERA)[1]]
    rc = cli.main(["--from-pairs", str(src), "--output", str(out), "--truth", *map(str, truth)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert np.allclose(result["hand_eye"], truth, atol=1e-6) and result["pairs_used"] == 12
    assert result["error_vs_truth"]["position_mm"] < 1e-3 and len(result["per_pair"]) == 12
    assert "--hand-eye " + " ".join(f"{v:.6f}" for v in result["hand_eye"]) in capsys.readouterr().out


def test_degenerate_pairs_are_refused_with_a_message(tmp_path, capsys):
    src = tmp_path / "pairs.json"
    r0 = Rotation.from_quat([1.0, 0.0, 0.0, 0.0])
    _pairs_file(src, [([0.5 + 0.01 * k, 0.1, 0.25], (r0 * Rotation.from_rotvec([0, 0, 0.05 * k])).as_quat())
                      for k in range(12)])
    rc = cli.main(["--from-pairs", str(src), "--output", str(tmp_path / "out.json")])
    assert rc == cli.EXIT_REFUSED and not (tmp_path / "out.json").exists()
    assert "not spread enough" in capsys.readouterr().err


def test_printed_board_is_found_by_the_detector(tmp_path):
    png = tmp_path / "board.png"
    assert cli.main(["--print-board", str(png)]) == 0
    img = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
    assert img.shape == (1200, 1800)  # 18 x 12 cm at 10 px/mm
    small = cv2.resize(img, (360, 240), interpolation=cv2.INTER_AREA)  # 2 px/mm
    gray = np.full((480, 640), 255, dtype=np.uint8)
    gray[120:360, 140:500] = small
    f = 1000.0  # 2 px/mm at f = 1000 px: the board 0.5 m in front of the camera, facing it
    camera = CameraModel(np.array([[f, 0, 319.5], [0, f, 239.5], [0, 0, 1]]), np.zeros(5), 640, 480)
    pose, why = BoardDetector().detect(gray, camera)
    assert pose is not None, why
    assert pose.marker_ids == (20, 21, 22, 23, 24, 25)
    assert np.allclose(pose.T_cam_board[:3, 3], [0.0, 0.0, 0.5], atol=2e-3), pose.T_cam_board
    assert np.allclose(pose.T_cam_board[:3, :3], np.diag([1.0, -1.0, -1.0]), atol=0.02), pose.T_cam_board
