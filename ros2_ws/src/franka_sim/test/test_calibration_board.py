"""The opt-in calibration board (SceneConfig.calibration_board): visual only, so the physics is bit-identical with it
and without it, the default scene is unchanged, and the camera sees the board where the mount says."""

from __future__ import annotations

import cv2
import franka_sim  # noqa: F401  (sets MUJOCO_GL before mujoco is imported)
import mujoco
import numpy as np
from franka_sim.env import EnvConfig, FrankaTaskEnv
from franka_sim.scene import CALIBRATION_BOARD_MOUNT, SceneConfig
from franka_sim.sim import SimConfig
from residual_core.markers import CALIBRATION_BOARD


def _env(board: bool) -> FrankaTaskEnv:
    cfg = None if not board else EnvConfig(sim=SimConfig(nthread=1, scene=SceneConfig(calibration_board=True)))
    return FrankaTaskEnv("cube_lift", image_size=(480, 640), config=cfg)


def test_board_is_visual_only_and_physics_is_bit_identical():
    plain, board = _env(False), _env(True)
    assert SceneConfig().calibration_board is False
    m0, m1 = plain.model, board.model
    names = {m1.geom(i).name for i in range(m1.ngeom)} - {m0.geom(i).name for i in range(m0.ngeom)}
    assert len(names) == len(CALIBRATION_BOARD) and m1.ngeom == m0.ngeom + len(CALIBRATION_BOARD)
    for name in names:
        g = m1.geom(name)
        assert g.contype == 0 and g.conaffinity == 0 and g.bodyid == m1.body("fr3_hand").id
    for field in ("body_mass", "body_inertia", "body_ipos", "body_iquat", "dof_armature"):
        assert np.array_equal(getattr(m0, field), getattr(m1, field)), field
    rng = np.random.default_rng(0)
    plain.reset(seed=3)
    board.reset(seed=3)
    for _ in range(40):
        action = rng.uniform(-1.0, 1.0, 7)
        plain.step(action)
        board.step(action)
    d0, d1 = plain.get_data(), board.get_data()
    assert np.array_equal(d0.qpos, d1.qpos) and np.array_equal(d0.qvel, d1.qvel)
    assert mujoco.mj_stateSize(m0, mujoco.mjtState.mjSTATE_PHYSICS) == mujoco.mj_stateSize(
        m1, mujoco.mjtState.mjSTATE_PHYSICS)
    plain.close()
    board.close()


def test_the_scene_camera_sees_the_board_at_home():
    env = _env(True)
    env.reset(seed=0)
    gray = cv2.cvtColor(env.render(), cv2.COLOR_RGB2GRAY)
    detector = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_4X4_50))
    _, ids, _ = detector.detectMarkers(gray)
    seen = set() if ids is None else set(ids.ravel().tolist())
    assert len(seen & {m.marker_id for m in CALIBRATION_BOARD}) >= 3, seen
    assert CALIBRATION_BOARD_MOUNT[0][1] > 0.1  # beside the fingers, not between them
    env.close()
