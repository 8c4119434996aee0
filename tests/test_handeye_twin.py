"""`residual-handeye --motion twin` on the franka twin: the twin's camera sits at a hidden random pose
(tools/twin_episodes.camera_extrinsic), the twin carries the opt-in calibration board on its hand, and the tool moves
the arm through 15 poses through the controller's target topic. The calibration must recover the hidden pose within
2 mm / 0.5 deg, and, given to the real-mode graph as --hand-eye, put the estimator's object poses within a few mm of
the twin's truth."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from residual_interfaces.msg import ObjectPoseArray
from rostest_utils import console_script
from std_msgs.msg import String

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import handeye_twin as ht  # noqa: E402
import twin_episodes as te  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

TOL_MM, TOL_DEG = 2.0, 0.5
"""The issue's bound on the recovered camera pose."""
OBJECT_TOL_M = 0.006
"""Estimated vs true object position through the calibrated hand_eye (test_twin_graph.py's bound with the true one)."""


def _wait_exit(ros_probe, proc, timeout):
    ros_probe.spin_until(lambda: not proc.running(), timeout, f"{proc.name} to finish")
    return proc.popen.returncode


def test_handeye_on_the_twin_recovers_a_hidden_camera_pose(launch_node, ros_probe, tmp_path):
    seed = int(np.random.default_rng().integers(1000))
    extrinsic = te.camera_extrinsic(seed)
    print(f"hidden camera pose (camera_extrinsic seed {seed}): {extrinsic}")
    twin = launch_node([console_script("franka-twin-node")], ht.twin_args(extrinsic), name="twin")
    output = tmp_path / "handeye.json"
    tool = launch_node(ht.handeye_command(extrinsic, output, poses=15, seed=seed % 7), name="handeye")
    rc = _wait_exit(ros_probe, tool, 600.0)
    assert rc == 0, tool.output()[-4000:]
    assert twin.running(), twin.output()[-3000:]
    result = json.loads(output.read_text())
    err = result["error_vs_truth"]
    print(f"seed {seed}: {err}, {result['pairs_used']} poses, residuals {result['residual_position_mm']}")
    assert 10 <= result["pairs_used"] <= 15, result["per_pair"]
    assert err["position_mm"] < TOL_MM and err["rotation_deg"] < TOL_DEG, (seed, err)
    assert "--hand-eye" in tool.output()
    twin.stop()

    # the calibrated hand_eye in the real-mode graph: the estimator's object poses vs the twin's truth (the board off:
    # the twin as it normally runs)
    hand_eye = result["hand_eye"]
    estimates = ros_probe.collect(ObjectPoseArray, "/objects/poses", qos=50)
    statuses: list[dict] = []
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    ros_probe.node.create_subscription(String, "/franka_twin/episode", lambda m: statuses.append(json.loads(m.data)),
                                       latched)
    cmd = [console_script("residual-launch"), "--mode", "real", "--robot", "twin", "--task", "cube_lift",
           "--hand-eye", *map(str, hand_eye), "--allow-missing", "--only", "franka_twin", "pose_estimator",
           "--set", f"franka_twin.camera_extrinsic={extrinsic}", "--set", "franka_twin.camera_rate_hz=10.0"]
    graph = launch_node(cmd, name="graph")

    def fresh():
        assert graph.running(), graph.output()[-3000:]
        return [e for e in list(estimates) if e.objects][:5] if statuses else None

    first = ros_probe.spin_until(lambda: len(got := fresh() or []) == 5 and got, 120.0, "5 object estimates")
    truth = statuses[-1]["objects"]
    errors = [float(np.linalg.norm(np.array([o.pose.position.x, o.pose.position.y, o.pose.position.z])
                                   - np.array(truth[o.name][:3]))) for e in first for o in e.objects]
    # the calibration's own share of an object's error: the true position seen through the calibrated instead of the
    # true camera pose (no estimator noise in it)
    from pose_estimator_node import handeye as he

    T_est, T_true = he.pose_matrix(hand_eye[:3], hand_eye[3:]), he.pose_matrix(extrinsic[:3], extrinsic[3:])
    shares = {name: 1e3 * float(np.linalg.norm((T_est @ he.invert(T_true) @ np.append(p[:3], 1.0))[:3] - p[:3]))
              for name, p in ((n, np.asarray(v)) for n, v in truth.items())}
    print(f"object position errors through the calibrated hand_eye (m): {np.round(errors, 4).tolist()}; the "
          f"calibration's share (mm): {shares}")
    assert max(shares.values()) < TOL_MM, shares
    assert np.median(errors) < OBJECT_TOL_M, errors


def test_manual_mode_on_an_arm_nobody_moves_is_refused(launch_node, ros_probe, tmp_path):
    """--motion manual publishes nothing: with --yes and no person moving the arm every pose is the same one, and the
    tool refuses (exit status 3) saying the poses are not spread enough, instead of printing a calibration."""
    extrinsic = te.camera_extrinsic(1)
    launch_node([console_script("franka-twin-node")], ht.twin_args(extrinsic), name="twin")
    output = tmp_path / "handeye.json"
    cmd = [console_script("residual-handeye"), "--motion", "manual", "--yes", "--poses", "8", "--center",
           *map(str, ht.TWIN_CENTER), "--output", str(output)]
    tool = launch_node(cmd, name="handeye_manual")
    rc = _wait_exit(ros_probe, tool, 300.0)
    out = tool.output()
    assert rc == 3, out[-3000:]
    assert "not spread enough" in out and "pair 8:" in out and not output.exists(), out[-3000:]
