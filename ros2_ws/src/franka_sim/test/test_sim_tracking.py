"""Cartesian tracking in the full simulation: a control step moves the TCP by what it commanded."""

import franka_sim  # noqa: F401
import numpy as np
import pytest
from franka_sim.env import FrankaTaskEnv
from scipy.spatial.transform import Rotation


@pytest.fixture()
def env():
    e = FrankaTaskEnv("cube_lift", seed=0)
    e.reset(seed=0)
    for _ in range(3):  # settle
        e.step(np.zeros(7))
    return e


@pytest.mark.parametrize("axis", [0, 1, 2])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_one_cm_step_moves_the_tcp_one_cm_within_the_step(env, axis, sign):
    p0, _ = env.tcp_pose()
    action = np.zeros(7)
    action[axis] = 0.01 * sign
    env.step(action)
    p1, _ = env.tcp_pose()
    moved = (p1 - p0)[axis] * sign
    off_axis = np.linalg.norm(np.delete(p1 - p0, axis))
    assert 0.009 < moved < 0.011, f"1 cm step along axis {axis} moved {moved * 1000:.2f} mm"
    assert off_axis < 0.0015, f"off-axis motion {off_axis * 1000:.2f} mm"


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_small_rotation_step(env, axis):
    _, q0 = env.tcp_pose()
    action = np.zeros(7)
    action[3 + axis] = 0.05
    env.step(action)
    _, q1 = env.tcp_pose()
    rotvec = (Rotation.from_quat(q1) * Rotation.from_quat(q0).inv()).as_rotvec()
    assert 0.045 < rotvec[axis] < 0.055
    assert np.linalg.norm(np.delete(rotvec, axis)) < 0.005


def test_zero_actions_hold_the_pose(env):
    p0, _ = env.tcp_pose()
    for _ in range(20):
        env.step(np.zeros(7))
    assert np.linalg.norm(env.tcp_pose()[0] - p0) < 0.001


def test_repeated_steps_accumulate_to_the_commanded_motion(env):
    p0, _ = env.tcp_pose()
    for _ in range(10):
        env.step(np.array([0.01, 0.0, -0.01, 0.0, 0.0, 0.0, 0.0]))
    moved = env.tcp_pose()[0] - p0
    np.testing.assert_allclose(moved, [0.1, 0.0, -0.1], atol=0.006)


def test_set_target_pose_reaches_an_absolute_target(env):
    p0, q0 = env.tcp_pose()
    target_p = p0 + np.array([0.06, 0.05, -0.1])
    target_q = (Rotation.from_rotvec([0.0, 0.0, 0.3]) * Rotation.from_quat(q0)).as_quat()
    for _ in range(25):
        info = env.set_target_pose(target_p, target_q, gripper=1.0)
    p, q = env.tcp_pose()
    assert np.linalg.norm(p - target_p) < 0.002
    assert (Rotation.from_quat(q) * Rotation.from_quat(target_q).inv()).magnitude() < 0.01
    assert set(info) == {"pose_error", "ik_joint_limited", "success"}
    assert env.gripper_width() < 0.01  # closed on nothing


def test_set_target_pose_rejects_bad_targets(env):
    with pytest.raises(ValueError, match="non-finite"):
        env.set_target_pose([np.nan, 0, 0], [0, 0, 0, 1], 0.0)
    with pytest.raises(ValueError, match="unit length"):
        env.set_target_pose([0.4, 0, 0.3], [0, 0, 0, 0.1], 0.0)
