"""The FR3 model: kinematics against the published DH table, limits, home keyframe, gripper structure."""

import franka_sim  # noqa: F401  (sets MUJOCO_GL before mujoco is imported)
import mujoco
import numpy as np
import pytest
from franka_sim import robot


@pytest.fixture(scope="module")
def model() -> mujoco.MjModel:
    return robot.robot_only_spec().compile()


def test_mujoco_kinematics_match_the_dh_table(model):
    data = mujoco.MjData(model)
    site = model.site(robot.TCP_SITE).id
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.uniform(robot.Q_MIN, robot.Q_MAX)
        data.qpos[:7] = q
        mujoco.mj_kinematics(model, data)
        T = robot.forward_kinematics(q)
        np.testing.assert_allclose(data.site_xpos[site], T[:3, 3], atol=1e-9)
        np.testing.assert_allclose(data.site_xmat[site].reshape(3, 3), T[:3, :3], atol=1e-9)


def test_joint_names_limits_and_base(model):
    for i, name in enumerate(robot.JOINT_NAMES):
        jid = model.joint(name).id
        np.testing.assert_allclose(model.jnt_range[jid], [robot.Q_MIN[i], robot.Q_MAX[i]])
    base = model.body(robot.BASE_BODY).id
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    np.testing.assert_allclose(data.xpos[base], 0.0)
    np.testing.assert_allclose(data.xmat[base], np.eye(3).ravel())
    # Published torque limits on the arm actuators.
    for i, name in enumerate(robot.ARM_ACTUATOR_NAMES):
        limits = model.actuator_forcerange[model.actuator(name).id]
        np.testing.assert_allclose(limits, [-robot.TAU_MAX[i], robot.TAU_MAX[i]])


def test_home_keyframe_points_the_tcp_down_in_front(model):
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, model.key(robot.HOME_KEY).id)
    mujoco.mj_forward(model, data)
    site = model.site(robot.TCP_SITE).id
    pos, mat = data.site_xpos[site], data.site_xmat[site].reshape(3, 3)
    assert mat[:, 2] @ np.array([0.0, 0.0, -1.0]) > 0.999, "TCP z must point down at home"
    assert 0.25 < pos[0] < 0.4 and abs(pos[1]) < 1e-6 and 0.4 < pos[2] < 0.6
    np.testing.assert_allclose(data.qpos[7:9], robot.FINGER_MAX)


def test_gripper_is_two_coupled_slide_fingers_driven_by_one_actuator(model):
    fingers = [model.joint(n) for n in robot.FINGER_JOINT_NAMES]
    for j in fingers:
        assert j.type[0] == mujoco.mjtJoint.mjJNT_SLIDE
        np.testing.assert_allclose(j.range, [0.0, robot.FINGER_MAX])
    eq_joint = [i for i in range(model.neq) if model.eq_type[i] == mujoco.mjtEq.mjEQ_JOINT]
    assert len(eq_joint) == 1
    assert {model.eq_obj1id[eq_joint[0]], model.eq_obj2id[eq_joint[0]]} == {j.id for j in fingers}
    grip = model.actuator(robot.GRIPPER_ACTUATOR_NAME)
    assert grip.trntype[0] == mujoco.mjtTrn.mjTRN_TENDON
    assert model.nu == 8  # 7 arm servos + 1 gripper


def test_arm_holds_its_pose_under_gravity(model):
    data = mujoco.MjData(model)
    mujoco.mj_resetDataKeyframe(model, data, model.key(robot.HOME_KEY).id)
    mujoco.mj_forward(model, data)
    site = model.site(robot.TCP_SITE).id
    start = data.site_xpos[site].copy()
    mujoco.mj_step(model, data, 400)  # 2 s
    assert np.linalg.norm(data.site_xpos[site] - start) < 1e-3


def test_bad_robot_config_is_rejected():
    with pytest.raises(ValueError, match="bandwidth"):
        robot.RobotConfig(bandwidth=0.0)
