"""The hand-eye solver on synthetic data: exact recovery without noise, accuracy with estimator-like noise, both
setups, refusal of too few / degenerate poses, outlier flagging. No ROS, no images."""

from __future__ import annotations

import numpy as np
import pytest
from pose_estimator_node import handeye as he
from scipy.spatial.transform import Rotation

# a camera ~1 m from the workspace looking at it (like the sim's scene camera), a board ~8 cm from the TCP
CAMERA_IN_BASE = he.pose_matrix([0.32, -0.63, 0.88], Rotation.from_euler("xyz", [-128, 3, 8], degrees=True).as_quat())
BOARD_ON_TCP = he.pose_matrix([0.02, -0.07, -0.03], Rotation.from_euler("xyz", [70, 10, 40], degrees=True).as_quat())
CAMERA_ON_TCP = he.pose_matrix([0.05, 0.01, -0.04], Rotation.from_euler("xyz", [2, -5, 91], degrees=True).as_quat())
BOARD_IN_BASE = he.pose_matrix([0.5, 0.02, 0.0], Rotation.from_euler("xyz", [180, 0, 90], degrees=True).as_quat())
HOME = ([0.45, 0.0, 0.4], [1.0, 0.0, 0.0, 0.0])


def _tcp_poses(n=15, seed=0, **kw):
    return [he.pose_matrix(p, q) for p, q in he.collection_poses(*HOME, n=n, seed=seed, **kw)]


def _noisy(T, rng, pos_mm, rot_deg):
    N = np.eye(4)
    N[:3, :3] = Rotation.from_rotvec(rng.normal(scale=np.radians(rot_deg), size=3)).as_matrix()
    N[:3, 3] = rng.normal(scale=pos_mm * 1e-3, size=3)
    return T @ N


def _observations(setup, tcp, rng=None, pos_mm=0.0, rot_deg=0.0):
    out = []
    for A in tcp:
        if setup == "eye_to_hand":
            B = he.invert(CAMERA_IN_BASE) @ A @ BOARD_ON_TCP
        else:
            B = he.invert(A @ CAMERA_ON_TCP) @ BOARD_IN_BASE
        out.append(B if rng is None else _noisy(B, rng, pos_mm, rot_deg))
    return out


def _truth(setup):
    return (CAMERA_IN_BASE, BOARD_ON_TCP) if setup == "eye_to_hand" else (CAMERA_ON_TCP, BOARD_IN_BASE)


@pytest.mark.parametrize("setup", he.SETUPS)
def test_exact_recovery_without_noise(setup):
    tcp = _tcp_poses()
    res = he.solve(setup, tcp, _observations(setup, tcp))
    camera, board = _truth(setup)
    for est, true in ((res.camera, camera), (res.board, board), (res.closed_form_camera, camera)):
        pos_mm, rot_deg = he.transform_error(est, true)
        assert pos_mm < 1e-6 and rot_deg < 1e-6, (pos_mm, rot_deg)
    assert max(r.position_mm for r in res.residuals) < 1e-6 and not any(r.outlier for r in res.residuals)
    values = res.hand_eye()
    assert len(values) == 7 and np.allclose(he.pose_matrix(values[:3], values[3:]), camera, atol=1e-9)


WORKSPACE = np.array([[x, y, z] for x in (0.35, 0.5, 0.65) for y in (-0.15, 0.0, 0.15) for z in (0.02, 0.2)])
"""Points of the task workspace (base frame): where an error of the camera extrinsic shows in object poses."""


def _workspace_error_mm(T_est, T_true, setup):
    """Largest displacement (mm) of workspace points seen through the estimated instead of the true camera (eye_in_hand:
    points 0.3 m in front of the camera, a wrist camera's working distance)."""
    pts = WORKSPACE if setup == "eye_to_hand" else np.array([[x, y, 0.3] for x in (-0.1, 0.1) for y in (-0.1, 0.1)])
    in_cam = [he.invert(T_true) @ np.append(p, 1.0) for p in pts]
    return 1e3 * max(np.linalg.norm((T_est @ q)[:3] - (T_true @ q)[:3]) for q in in_cam)


@pytest.mark.parametrize("setup", he.SETUPS)
def test_accuracy_with_estimator_like_noise(setup):
    """Board pose noise like the estimator's on a marker (docs/BENCHMARKS.md "Pose estimator": median 0.3-0.8 mm,
    0.1-0.2 deg): 0.6 mm / 0.12 deg per axis (1.0 mm / 0.2 deg in norm), 0.1 mm / 0.02 deg on the robot, 15 poses, 20
    draws. In every draw the camera's rotation within 0.5 deg and objects in the workspace within 2.5 mm (measured max
    1.9 mm eye_to_hand, 2.0 mm eye_in_hand); the camera's position within 2 mm in the median draw (a camera ~1 m away:
    its position error is mostly its rotation error times the distance, which the board's positions pin down only over
    their +-10 cm spread, so single draws reach ~4.5 mm while the workspace, where the board was, stays close); the
    refinement not worse than the closed form on average."""
    camera, _ = _truth(setup)
    errs, closed, workspace = [], [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        tcp = _tcp_poses(seed=seed)
        obs = _observations(setup, tcp, rng, 0.6, 0.12)
        measured_tcp = [_noisy(A, rng, 0.1, 0.02) for A in tcp]
        res = he.solve(setup, measured_tcp, obs)
        errs.append(he.transform_error(res.camera, camera))
        closed.append(he.transform_error(res.closed_form_camera, camera))
        workspace.append(_workspace_error_mm(res.camera, camera, setup))
        rms = res.summary()["residual_position_mm"]["rms"]
        assert 0.3 < rms < 3.0, rms  # residuals look like the noise put in
    errs, closed = np.array(errs), np.array(closed)
    print(f"{setup}: camera error mm median {np.median(errs[:, 0]):.2f} max {errs[:, 0].max():.2f}, deg max "
          f"{errs[:, 1].max():.3f}; workspace mm max {max(workspace):.2f}")
    assert errs[:, 1].max() < 0.5 and max(workspace) < 2.5, (errs, workspace)
    assert np.median(errs[:, 0]) < 2.0, errs
    assert errs.mean(axis=0)[0] <= closed.mean(axis=0)[0] * 1.05, (errs.mean(0), closed.mean(0))


def test_too_few_poses_are_refused():
    tcp = _tcp_poses(n=5)
    with pytest.raises(he.HandEyeError, match="too few poses: 5"):
        he.solve("eye_to_hand", tcp, _observations("eye_to_hand", tcp))


def test_rotations_about_one_axis_are_refused():
    """Rotations all about the tool z axis (positions spread): the solution is not unique, so it is refused."""
    rng = np.random.default_rng(3)
    r0 = Rotation.from_quat(HOME[1])
    tcp = [he.pose_matrix(np.array(HOME[0]) + rng.uniform(-0.1, 0.1, 3),
                          (r0 * Rotation.from_rotvec([0, 0, a])).as_quat())
           for a in np.radians(np.linspace(-30, 30, 12))]
    with pytest.raises(he.HandEyeError, match="not spread enough"):
        he.solve("eye_to_hand", tcp, _observations("eye_to_hand", tcp))
    # and translations alone, no rotation at all
    tcp = [he.pose_matrix(np.array(HOME[0]) + rng.uniform(-0.1, 0.1, 3), HOME[1]) for _ in range(12)]
    with pytest.raises(he.HandEyeError, match="not spread enough"):
        he.solve("eye_to_hand", tcp, _observations("eye_to_hand", tcp))


def test_an_outlier_is_flagged_and_can_be_dropped():
    rng = np.random.default_rng(7)
    tcp = _tcp_poses()
    obs = _observations("eye_to_hand", tcp, rng, 0.6, 0.12)
    obs[4] = obs[4] @ he.pose_matrix([0.0, 0.0, 0.03], [0, 0, 0, 1])  # 3 cm off: a wrong detection
    res = he.solve("eye_to_hand", tcp, obs, he.SolverConfig(loss="linear"))
    assert [r.index for r in res.residuals if r.outlier] == [4]
    kept = he.solve("eye_to_hand", tcp, obs, he.SolverConfig(loss="linear", reject_outliers=True))
    assert not kept.residuals[4].used and "dropped outlier pose(s) [4]" in kept.message
    before = _workspace_error_mm(res.camera, CAMERA_IN_BASE, "eye_to_hand")
    after = _workspace_error_mm(kept.camera, CAMERA_IN_BASE, "eye_to_hand")
    assert after < 2.0 < before, (before, after)
    # the default robust loss: flagged too, and it pulls the solution far less without dropping it
    robust = he.solve("eye_to_hand", tcp, obs)
    assert [r.index for r in robust.residuals if r.outlier] == [4] and robust.residuals[4].used
    assert _workspace_error_mm(robust.camera, CAMERA_IN_BASE, "eye_to_hand") < 0.5 * before


def test_the_robust_loss_weighs_a_misread_pose_less_and_clean_data_the_same():
    """One board pose 3.5 mm off (below the outlier flag's 5 mm floor; measured on the twin: a pose 3.5 mm off the
    others' fit moved the camera 2.1 mm) moves the soft_l1 solution less than plain least squares' (0.73x here;
    0.45-0.80x over 18 seed / pose draws); on the data without it both give the same camera within 0.05 mm. A loss
    scipy does not know is refused."""
    tcp = _tcp_poses(seed=2)
    obs = _observations("eye_to_hand", tcp, np.random.default_rng(11), 0.2, 0.04)
    configs = (he.SolverConfig(loss="linear"), he.SolverConfig())
    clean = [he.solve("eye_to_hand", tcp, obs, c).camera for c in configs]
    assert he.transform_error(*clean)[0] < 0.05
    obs[3] = obs[3] @ he.pose_matrix([0.002, -0.002, 0.002], [0, 0, 0, 1])
    moved = [he.transform_error(he.solve("eye_to_hand", tcp, obs, c).camera, T)[0]
             for c, T in zip(configs, clean, strict=True)]
    assert moved[0] > 0.5 and moved[1] < 0.85 * moved[0], moved
    with pytest.raises(ValueError, match="loss must be one of"):
        he.SolverConfig(loss="l2")


def test_collection_poses_are_spread_and_bounded():
    poses = he.collection_poses(*HOME, n=15, max_offset_m=0.1, max_angle_deg=30.0)
    assert len(poses) == 15 and np.allclose(poses[0][0], HOME[0])
    r0 = Rotation.from_quat(HOME[1])
    for p, q in poses:
        assert np.all(np.abs(p - HOME[0]) <= 0.1 + 1e-12)
        assert (r0.inv() * Rotation.from_quat(q)).magnitude() <= np.radians(30) + 1e-9
    spread = he.rotation_spread_deg([he.pose_matrix(p, q) for p, q in poses])
    assert spread[2] > 8.0, spread  # rotations about all three axes
