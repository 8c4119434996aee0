"""Pure controller maths: batched apply_delta, the site Jacobian, the DLS step, the gripper mapping."""

import franka_sim  # noqa: F401
import mujoco
import numpy as np
from franka_sim import controller, robot
from residual_core.action import apply_delta
from scipy.spatial.transform import Rotation


def test_batched_apply_delta_matches_residual_core():
    rng = np.random.default_rng(1)
    pos = rng.normal(size=(8, 3))
    quat = Rotation.random(8, random_state=2).as_quat()
    act = np.concatenate(
        [rng.uniform(-0.05, 0.05, (8, 3)), rng.uniform(-0.25, 0.25, (8, 3)), rng.uniform(0, 1, (8, 1))], 1
    )
    tp, tq = controller.batched_apply_delta(pos, quat, act)
    for i in range(8):
        p, q = apply_delta(pos[i], quat[i], act[i])
        np.testing.assert_allclose(tp[i], p, atol=1e-12)
        assert abs(abs(np.dot(tq[i], q)) - 1.0) < 1e-12


def test_pose_error_is_the_action_that_apply_delta_applied():
    rng = np.random.default_rng(3)
    pos = rng.normal(size=(5, 3))
    rot = Rotation.random(5, random_state=4)
    act = np.concatenate([rng.uniform(-0.05, 0.05, (5, 3)), rng.uniform(-0.25, 0.25, (5, 3)), np.zeros((5, 1))], 1)
    tp, tq = controller.batched_apply_delta(pos, rot.as_quat(), act)
    err = controller.pose_error(pos, rot.as_matrix(), tp, Rotation.from_quat(tq).as_matrix())
    np.testing.assert_allclose(err, act[:, :6], atol=1e-12)


def _robot():
    model = robot.robot_only_spec().compile()
    return model, mujoco.MjData(model)


def test_site_jacobian_matches_mujoco():
    model, data = _robot()
    site = model.site(robot.TCP_SITE).id
    joints = np.array([model.joint(n).id for n in robot.JOINT_NAMES])
    rng = np.random.default_rng(5)
    for _ in range(5):
        data.qpos[:7] = rng.uniform(robot.Q_MIN, robot.Q_MAX)
        mujoco.mj_forward(model, data)
        jacp, jacr = np.zeros((3, model.nv)), np.zeros((3, model.nv))
        mujoco.mj_jacSite(model, data, jacp, jacr, site)
        ours = controller.site_jacobian(
            data.site_xpos[site][None], data.xanchor[joints][None], data.xaxis[joints][None]
        )[0]
        np.testing.assert_allclose(ours, np.vstack([jacp[:, :7], jacr[:, :7]]), atol=1e-10)


def test_dls_steps_converge_to_a_reachable_pose():
    model, data = _robot()
    site = model.site(robot.TCP_SITE).id
    joints = np.array([model.joint(n).id for n in robot.JOINT_NAMES])
    data.qpos[:7] = robot.HOME_Q
    mujoco.mj_kinematics(model, data)
    target_pos = data.site_xpos[site] + np.array([0.1, -0.08, -0.15])
    target_mat = Rotation.from_rotvec([0.0, 0.0, 0.4]).as_matrix() @ data.site_xmat[site].reshape(3, 3)
    cfg = controller.ControllerConfig()
    errors = []
    for _ in range(15):
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        cur_p, cur_m = data.site_xpos[site][None], data.site_xmat[site].reshape(1, 3, 3)
        err = controller.pose_error(cur_p, cur_m, target_pos[None], target_mat[None])
        errors.append(np.linalg.norm(err))
        jac = controller.site_jacobian(cur_p, data.xanchor[joints][None], data.xaxis[joints][None])
        data.qpos[:7] = controller.dls_step(data.qpos[None, :7].copy(), jac, err, cfg).q_target[0]
    assert errors[-1] < 1e-3 < errors[0]
    assert all(b <= a + 1e-9 for a, b in zip(errors, errors[1:], strict=False))


def test_dls_step_keeps_targets_inside_joint_limits():
    cfg = controller.ControllerConfig()
    q = robot.Q_MAX[None] - 0.01
    jac = np.tile(np.eye(6, 7), (1, 1, 1))
    res = controller.dls_step(q, jac, np.full((1, 6), 0.05), cfg, q_home=robot.Q_MAX)
    assert np.all(res.q_target <= robot.Q_MAX - cfg.limit_margin + 1e-12)
    assert res.limited[0]
    home = robot.HOME_Q[None]
    big = controller.dls_step(home, jac, np.full((1, 6), 5.0), cfg)
    assert big.scaled[0] and not big.limited[0]
    assert np.max(np.abs(big.q_target - home)) <= cfg.max_joint_step + 1e-12


def test_gripper_command_mapping():
    np.testing.assert_allclose(controller.gripper_command_to_ctrl(np.array([0.0, 0.5, 1.0, -1.0, 2.0])),
                               [0.04, 0.02, 0.0, 0.04, 0.0])
