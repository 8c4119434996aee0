import numpy as np
import pytest
from residual_core.action import (
    ACTION_DIM,
    CONTROL_DT,
    DEFAULT_RESIDUAL_SCALE,
    ActionSpec,
    apply_delta,
    clip_action,
    compose_action,
    compose_actions_batch,
    compose_scaled_action,
    compose_scaled_actions_batch,
    pose_delta,
    residual_bound_problems,
)
from scipy.spatial.transform import Rotation

RNG = np.random.default_rng(0)


def random_actions(n: int, rng=RNG) -> np.ndarray:
    a = rng.uniform(-1, 1, size=(n, ACTION_DIM)) * ActionSpec().high
    a[:, 6] = rng.uniform(0, 1, size=n)
    return a


def test_constants():
    assert ACTION_DIM == 7
    assert CONTROL_DT == pytest.approx(0.05)
    assert DEFAULT_RESIDUAL_SCALE.shape == (7,)


def test_clip_action_bounds_and_batch():
    spec = ActionSpec()
    a = np.array([0.2, -0.2, 0.01, 1.0, -1.0, 0.1, 1.5])
    out = clip_action(a, spec)
    np.testing.assert_allclose(out, [0.05, -0.05, 0.01, 0.25, -0.25, 0.1, 1.0])
    batch = clip_action(np.stack([a, -a]))
    assert batch.shape == (2, 7)
    assert batch[1, 6] == 0.0


def test_apply_delta_and_pose_delta_round_trip():
    pos = np.array([0.4, 0.1, 0.3])
    quat = Rotation.from_euler("xyz", [3.0, 0.1, -0.4]).as_quat()
    action = np.array([0.01, -0.02, 0.03, 0.1, -0.05, 0.2, 1.0])
    tpos, tquat = apply_delta(pos, quat, action)
    np.testing.assert_allclose(tpos, pos + action[:3])
    # Rotation applied on the left, in the base frame.
    expected = Rotation.from_rotvec(action[3:6]) * Rotation.from_quat(quat)
    assert (Rotation.from_quat(tquat) * expected.inv()).magnitude() < 1e-12
    np.testing.assert_allclose(pose_delta(pos, quat, tpos, tquat), action[:6], atol=1e-12)


def test_apply_delta_and_pose_delta_batched_equal_single():
    rng = np.random.default_rng(4)
    pos = rng.uniform(0.2, 0.6, size=(6, 3))
    quat = Rotation.random(6, rng=4).as_quat()
    actions = random_actions(6, rng)
    tpos, tquat = apply_delta(pos, quat, actions)
    assert tpos.shape == (6, 3) and tquat.shape == (6, 4)
    for i in range(6):
        p1, q1 = apply_delta(pos[i], quat[i], actions[i])
        np.testing.assert_allclose(tpos[i], p1)
        np.testing.assert_allclose(tquat[i], q1)
    np.testing.assert_allclose(pose_delta(pos, quat, tpos, tquat), actions[:, :6], atol=1e-12)


def test_compose_zero_residual_returns_base():
    for base in random_actions(20):
        res = compose_action(base, np.zeros(7))
        np.testing.assert_allclose(res.action, base, atol=1e-12)
        np.testing.assert_array_equal(res.residual, np.zeros(7))
        assert res.clipped is False


def test_compose_matches_contract_maths():
    base = np.array([0.01, 0.02, -0.01, 0.1, 0.0, -0.2, 0.3])
    u = np.array([0.5, -1.0, 0.2, 1.0, 0.3, -0.7, 0.4])
    res = compose_action(base, u)
    r = u * DEFAULT_RESIDUAL_SCALE
    np.testing.assert_allclose(res.residual, r)
    np.testing.assert_allclose(res.action[:3], base[:3] + r[:3])
    rot = (Rotation.from_rotvec(r[3:6]) * Rotation.from_rotvec(base[3:6])).as_rotvec()
    np.testing.assert_allclose(res.action[3:6], rot, atol=1e-12)
    assert res.action[6] == pytest.approx(0.7)
    assert not res.clipped
    # Rotations do not commute: composing in the other order gives a measurably different result.
    other = (Rotation.from_rotvec(base[3:6]) * Rotation.from_rotvec(r[3:6])).as_rotvec()
    assert np.linalg.norm(other - res.action[3:6]) > 1e-5


def test_compose_clamps_residual_and_clips_action():
    base = np.array([0.049, 0.0, 0.0, 0.0, 0.0, 0.0, 0.9])
    u = np.array([3.0, -2.0, 0.0, 0.0, 0.0, 0.0, 0.5])
    res = compose_action(base, u)
    np.testing.assert_allclose(res.residual[:2], [0.01, -0.01])  # clamped to +-scale
    assert res.action[0] == pytest.approx(0.05)  # clipped to the action bound
    assert res.action[1] == pytest.approx(-0.01)
    assert res.action[6] == 1.0  # gripper clipped
    assert res.clipped


def test_compose_gripper_only_clip_counts_as_clipped():
    res = compose_action(np.array([0, 0, 0, 0, 0, 0, 1.0]), np.array([0, 0, 0, 0, 0, 0, 1.0]))
    assert res.action[6] == 1.0 and res.clipped


def test_compose_single_equals_batch():
    rng = np.random.default_rng(1)
    base = random_actions(50, rng)
    u = rng.uniform(-1.3, 1.3, size=(50, 7))
    batch = compose_actions_batch(base, u)
    assert batch.actions.shape == (50, 7) and batch.clipped.shape == (50,)
    for i in range(50):
        single = compose_action(base[i], u[i])
        np.testing.assert_array_equal(single.action, batch.actions[i])
        np.testing.assert_array_equal(single.residual, batch.residuals[i])
        assert single.clipped == bool(batch.clipped[i])
    assert batch.clipped.any() and not batch.clipped.all()


def test_compose_scaled_equals_compose_raw():
    rng = np.random.default_rng(2)
    base = random_actions(30, rng)
    u = rng.uniform(-1.2, 1.2, size=(30, 7))
    raw = compose_actions_batch(base, u)
    scaled = compose_scaled_actions_batch(base, u * DEFAULT_RESIDUAL_SCALE)
    np.testing.assert_allclose(raw.actions, scaled.actions, atol=1e-15)
    np.testing.assert_array_equal(raw.clipped, scaled.clipped)
    single = compose_scaled_action(base[0], u[0] * DEFAULT_RESIDUAL_SCALE)
    np.testing.assert_allclose(single.action, raw.actions[0], atol=1e-15)


def test_compose_result_stays_within_bounds():
    rng = np.random.default_rng(3)
    spec = ActionSpec()
    base = rng.uniform(-1, 2, size=(500, 7))
    u = rng.uniform(-5, 5, size=(500, 7))
    out = compose_actions_batch(base, u, spec=spec).actions
    assert np.all(out >= spec.low - 1e-15) and np.all(out <= spec.high + 1e-15)


def test_compose_nan_passes_through_without_raising():
    base = np.zeros((2, 7))
    u = np.zeros((2, 7))
    u[0, 4] = np.nan
    res = compose_actions_batch(base, u)
    assert np.all(np.isnan(res.actions[0, 3:6]))
    assert np.all(np.isfinite(res.actions[1]))
    assert not res.clipped[0]


def test_compose_custom_scalar_scale():
    res = compose_action(np.zeros(7), np.full(7, 0.5), residual_scale=0.02)
    np.testing.assert_allclose(res.residual, np.full(7, 0.01))


@pytest.mark.parametrize(
    "base, u, scale, match",
    [
        (np.zeros(6), np.zeros(7), DEFAULT_RESIDUAL_SCALE, r"base must have shape \(7,\)"),
        (np.zeros(7), np.zeros((1, 7)), DEFAULT_RESIDUAL_SCALE, r"residual_raw must have shape \(7,\)"),
        (np.zeros(7), np.zeros(7), np.ones(6), "residual_scale must be"),
        (np.zeros(7), np.zeros(7), -np.ones(7), "residual_scale must be"),
    ],
)
def test_compose_errors(base, u, scale, match):
    with pytest.raises(ValueError, match=match):
        compose_action(base, u, scale)


def test_compose_batch_shape_mismatch():
    with pytest.raises(ValueError, match=r"residual_raw must have shape \(3, 7\)"):
        compose_actions_batch(np.zeros((3, 7)), np.zeros((4, 7)))


def test_residual_bound_problems_name_each_component_outside_the_spec():
    assert residual_bound_problems(DEFAULT_RESIDUAL_SCALE) == []
    assert residual_bound_problems(ActionSpec().high) == []  # the bound itself is allowed
    assert residual_bound_problems(np.zeros(ACTION_DIM)) == []
    assert residual_bound_problems([1e6, 0.01, -0.01, 0.05, np.nan, 0.26, 1.01]) == [
        "dx 1e+06 > 0.05 (ActionSpec.max_translation)", "dz -0.01 < 0", "dry is nan",
        "drz 0.26 > 0.25 (ActionSpec.max_rotation)", "gripper 1.01 > 1 (the gripper range)"]
    # another spec's bounds
    assert residual_bound_problems([0.1] * 6 + [1.0], ActionSpec(max_translation=0.1, max_rotation=0.1)) == []
    assert residual_bound_problems([0.01] * 6) == ["7 values are needed, got shape (6,)"]
    assert residual_bound_problems(0.01) == ["7 values are needed, got shape ()"]
