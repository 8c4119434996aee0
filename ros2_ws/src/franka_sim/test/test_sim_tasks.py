"""Task definitions as pure logic: declarative reward terms, success predicates on synthetic states, resets."""

import franka_sim  # noqa: F401
import numpy as np
import pytest
from franka_sim.tasks import TASKS, TaskState, make_task, rewards
from franka_sim.tasks.stand_cup_up import lying_cup_quat
from residual_core.tasks import TASK_NAMES, TASK_OBJECTS
from scipy.spatial.transform import Rotation

DOWN = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])


def _state(obj_pos: dict, obj_mat: dict | None = None, tcp=(0.3, 0.0, 0.4), width=0.08, joints=None, episode=None):
    n = 1
    obj_mat = obj_mat or {}
    return TaskState(
        tcp_pos=np.array([tcp], dtype=float),
        tcp_mat=DOWN[None].copy(),
        gripper_width=np.array([width]),
        obj_pos={k: np.array([v], dtype=float) for k, v in obj_pos.items()},
        obj_mat={k: (np.array([obj_mat[k]]) if k in obj_mat else np.eye(3)[None]) for k in obj_pos},
        joints={k: np.array([v]) for k, v in (joints or {}).items()},
        episode={k: np.array([v]) for k, v in (episode or {}).items()},
        action=np.zeros((n, 7)),
    )


@pytest.mark.parametrize("name", TASK_NAMES)
def test_tasks_are_declarative(name):
    task = make_task(name)
    assert task.objects == TASK_OBJECTS[name]
    assert 50 <= task.horizon <= 200
    terms = task.reward_terms
    assert len({t.name for t in terms}) == len(terms) and "success" in {t.name for t in terms}
    for t in terms:
        assert callable(t.func) and np.isfinite(t.weight)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_resets_are_randomised_and_seeded(name):
    task = make_task(name)
    a = task.sample_reset(np.random.default_rng(0))
    b = task.sample_reset(np.random.default_rng(0))
    c = task.sample_reset(np.random.default_rng(1))
    flat = lambda s: np.concatenate([np.concatenate(v) for v in (*s.free_bodies.values(), *s.mocap.values())])  # noqa: E731
    assert np.array_equal(flat(a), flat(b)) and not np.array_equal(flat(a), flat(c))


def test_cube_lift_success_needs_ten_centimetres():
    task = TASKS["cube_lift"]()
    assert not task.success(_state({"cube": (0.5, 0.0, 0.11)}))[0]
    assert task.success(_state({"cube": (0.5, 0.0, 0.121)}))[0]


def test_pick_place_success_needs_inside_resting_and_released():
    task = TASKS["pick_place"]()
    inside = {"cube": (0.53, 0.02, 0.02), "target": (0.5, 0.0, 0.0)}
    assert task.success(_state(inside, width=0.08))[0]
    assert not task.success(_state(inside, tcp=(0.53, 0.02, 0.02), width=0.04))[0]  # still held
    assert not task.success(_state({"cube": (0.56, 0.0, 0.02), "target": (0.5, 0.0, 0.0)}))[0]  # outside
    assert not task.success(_state({"cube": (0.5, 0.0, 0.06), "target": (0.5, 0.0, 0.0)}))[0]  # in the air
    yawed = Rotation.from_euler("z", np.pi / 4).as_matrix()
    corner = {"cube": (0.5 + 0.045, 0.045, 0.02), "target": (0.5, 0.0, 0.0)}
    assert task.success(_state(corner, {"target": np.eye(3)}))[0]
    assert not task.success(_state(corner, {"target": yawed}))[0]  # the square is turned, the point is outside


def test_stack_success_needs_the_cube_on_the_base():
    task = TASKS["stack_cube"]()
    on = {"cube": (0.5, 0.005, 0.025 * 2 + 0.02), "base_cube": (0.5, 0.0, 0.025)}
    assert task.success(_state(on))[0]
    assert not task.success(_state({"cube": (0.5, 0.03, 0.07), "base_cube": (0.5, 0.0, 0.025)}))[0]
    assert not task.success(_state({"cube": (0.6, 0.0, 0.02), "base_cube": (0.5, 0.0, 0.025)}))[0]


def test_close_drawer_success_and_progress_reward():
    task = TASKS["close_drawer"]()
    pose = {"drawer_handle": (0.5, 0.0, 0.15)}
    open_state = _state(pose, joints={"drawer_slide": 0.1}, episode={"drawer_initial_opening": 0.15})
    closed_state = _state(pose, joints={"drawer_slide": 0.01}, episode={"drawer_initial_opening": 0.15})
    assert not task.success(open_state)[0] and task.success(closed_state)[0]
    _, raw_open, _ = task.rewards(open_state)
    _, raw_closed, _ = task.rewards(closed_state)
    assert raw_open["close"][0] == pytest.approx(1 / 3) and raw_closed["close"][0] > raw_open["close"][0]


def test_stand_cup_up_success_needs_upright_resting_released():
    task = TASKS["stand_cup_up"]()
    upright = {"cup": np.eye(3)}
    assert task.success(_state({"cup": (0.5, 0.0, 0.05)}, upright))[0]
    lying = {"cup": Rotation.from_quat(lying_cup_quat(0.3)).as_matrix()}
    assert not task.success(_state({"cup": (0.5, 0.0, 0.034)}, lying))[0]
    assert not task.success(_state({"cup": (0.5, 0.0, 0.05)}, upright, tcp=(0.5, 0.0, 0.085), width=0.068))[0]
    np.testing.assert_allclose(lying["cup"][:, 0], [0, 0, 1], atol=1e-12)  # marker facet faces up


def test_grasp_predicate_geometry():
    s = _state({"cube": (0.3, 0.0, 0.4)}, tcp=(0.3, 0.0, 0.4), width=0.041)
    assert rewards.is_grasped(s, "cube", 0.04)[0]
    assert not rewards.is_grasped(_state({"cube": (0.3, 0.0, 0.4)}, tcp=(0.3, 0.0, 0.4), width=0.08), "cube", 0.04)[0]
    assert not rewards.is_grasped(_state({"cube": (0.35, 0.0, 0.4)}, tcp=(0.3, 0.0, 0.4), width=0.041), "cube", 0.04)[0]
