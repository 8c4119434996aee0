import numpy as np
import pytest
from residual_core.action import apply_delta
from residual_core.safety import EnvelopeConfig, apply_envelope
from scipy.spatial.transform import Rotation

CFG = EnvelopeConfig()
TCP_POS = np.array([0.5, 0.0, 0.3])
TCP_QUAT = Rotation.from_euler("xyz", [np.pi, 0, 0]).as_quat()  # pointing down


def test_default_box_covers_table_level_grasps():
    assert CFG.workspace_min[2] < 0.0 < 0.02 < CFG.workspace_max[2]
    assert CFG.workspace_min == (0.25, -0.40, -0.005) and CFG.workspace_max == (0.80, 0.40, 0.60)


def test_small_action_passes_unchanged():
    a = np.array([0.01, -0.02, 0.005, 0.05, 0.0, -0.1, 0.7])
    res = apply_envelope(a, TCP_POS, TCP_QUAT, last_gripper=0.0)
    assert not res.clipped and not res.rejected and res.reasons == ()
    np.testing.assert_allclose(res.action, a, atol=1e-12)
    tpos, tquat = apply_delta(TCP_POS, TCP_QUAT, a)
    np.testing.assert_allclose(res.target_pos, tpos)
    assert (Rotation.from_quat(res.target_quat) * Rotation.from_quat(tquat).inv()).magnitude() < 1e-12


def test_translation_step_is_scaled_along_its_direction():
    a = np.array([0.06, 0.08, 0.0, 0, 0, 0, 0.0])  # norm 0.1
    res = apply_envelope(a, TCP_POS, TCP_QUAT, 0.0)
    assert res.reasons == ("translation_step",) and res.clipped
    np.testing.assert_allclose(res.action[:3], [0.03, 0.04, 0.0])
    np.testing.assert_allclose(res.target_pos, TCP_POS + [0.03, 0.04, 0.0])


def test_rotation_step_is_scaled_to_max_angle():
    a = np.array([0, 0, 0, 0.0, 0.0, 0.5, 0.0])
    res = apply_envelope(a, TCP_POS, TCP_QUAT, 0.0)
    assert res.reasons == ("rotation_step",)
    np.testing.assert_allclose(res.action[3:6], [0, 0, 0.25])
    rel = Rotation.from_quat(res.target_quat) * Rotation.from_quat(TCP_QUAT).inv()
    assert rel.magnitude() == pytest.approx(0.25)


def test_rotation_beyond_pi_keeps_its_true_direction():
    # A rotation vector of angle 2*pi - 0.1 about +z is a 0.1 rad rotation about -z.
    a = np.array([0, 0, 0, 0, 0, 2 * np.pi - 0.1, 0.0])
    res = apply_envelope(a, TCP_POS, TCP_QUAT, 0.0)
    np.testing.assert_allclose(res.action[3:6], [0, 0, -0.1], atol=1e-9)
    assert res.reasons == ()


@pytest.mark.parametrize(
    "tcp, step, reason",
    [
        ([0.26, 0.0, 0.3], [-0.03, 0, 0], "workspace_x_min"),
        ([0.79, 0.0, 0.3], [0.03, 0, 0], "workspace_x_max"),
        ([0.5, -0.39, 0.3], [0, -0.03, 0], "workspace_y_min"),
        ([0.5, 0.39, 0.3], [0, 0.03, 0], "workspace_y_max"),
        ([0.5, 0.0, 0.01], [0, 0, -0.03], "workspace_z_min"),
        ([0.5, 0.0, 0.59], [0, 0, 0.03], "workspace_z_max"),
    ],
)
def test_workspace_faces(tcp, step, reason):
    a = np.concatenate([step, [0, 0, 0, 1.0]])
    res = apply_envelope(a, np.array(tcp), TCP_QUAT, 1.0)
    assert res.reasons == (reason,) and res.clipped
    lo, hi = np.array(CFG.workspace_min), np.array(CFG.workspace_max)
    assert np.all(res.target_pos >= lo) and np.all(res.target_pos <= hi)
    np.testing.assert_allclose(res.action[:3], res.target_pos - np.array(tcp))


def test_gripper_bounds():
    res = apply_envelope(np.array([0, 0, 0, 0, 0, 0, 1.4]), TCP_POS, TCP_QUAT, 0.0)
    assert res.action[6] == 1.0 and res.reasons == ("gripper_bounds",)
    res = apply_envelope(np.array([0, 0, 0, 0, 0, 0, -0.1]), TCP_POS, TCP_QUAT, 0.0)
    assert res.action[6] == 0.0 and res.reasons == ("gripper_bounds",)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("index", [0, 4, 6])
def test_non_finite_action_is_rejected_holding_pose_and_gripper(bad, index):
    a = np.array([0.01, 0, 0, 0, 0, 0, 0.0])
    a[index] = bad
    res = apply_envelope(a, TCP_POS, TCP_QUAT, last_gripper=1.0)
    assert res.rejected and not res.clipped and res.reasons == ("nan_rejected",)
    np.testing.assert_array_equal(res.action, [0, 0, 0, 0, 0, 0, 1.0])
    np.testing.assert_array_equal(res.target_pos, TCP_POS)
    assert (Rotation.from_quat(res.target_quat) * Rotation.from_quat(TCP_QUAT).inv()).magnitude() < 1e-12


def test_huge_finite_values():
    # A translation of 1e308 m must not overflow the norm: it is scaled to the step limit along its direction.
    res = apply_envelope(np.array([1e308, 1e308, 0, 0, 0, 0, 0.0]), TCP_POS, TCP_QUAT, 0.0)
    assert not res.rejected and "translation_step" in res.reasons
    np.testing.assert_allclose(res.action[:3], [0.05 / np.sqrt(2), 0.05 / np.sqrt(2), 0.0])
    # A rotation vector whose angle overflows has no meaningful rotation: rejected like NaN.
    res = apply_envelope(np.array([0, 0, 0, 0, 1e308, 0, 1.0]), TCP_POS, TCP_QUAT, 0.0)
    assert res.rejected and res.reasons == ("nan_rejected",)
    np.testing.assert_array_equal(res.action, np.zeros(7))


def test_rejected_hold_outside_box_still_moves_target_inside():
    tcp = np.array([0.5, 0.0, 0.65])
    res = apply_envelope(np.full(7, np.nan), tcp, TCP_QUAT, 1.0)
    assert res.rejected and res.reasons == ("nan_rejected", "tcp_outside_workspace", "workspace_z_max")
    np.testing.assert_allclose(res.target_pos, [0.5, 0.0, 0.6])
    assert res.action[6] == 1.0


@pytest.mark.parametrize(
    "pos, quat",
    [
        ([np.nan, 0, 0.3], TCP_QUAT),
        (TCP_POS, [0, np.inf, 0, 1]),
        (TCP_POS, [0, 0, 0, 0]),
    ],
)
def test_invalid_tcp_pose_is_rejected_without_target(pos, quat):
    res = apply_envelope(np.zeros(7), np.array(pos), np.array(quat), last_gripper=0.3)
    assert res.rejected and res.reasons == ("tcp_pose_invalid",)
    assert res.target_pos is None and res.target_quat is None
    np.testing.assert_array_equal(res.action, [0, 0, 0, 0, 0, 0, 0.3])


def test_tcp_outside_box_is_pulled_back_inside():
    tcp = np.array([0.5, 0.0, 0.7])  # 10 cm above the box
    res = apply_envelope(np.zeros(7), tcp, TCP_QUAT, 0.0)
    assert res.reasons == ("tcp_outside_workspace", "workspace_z_max") and res.clipped
    assert res.target_pos[2] == pytest.approx(0.6)
    # Moving back in on its own is not a clip.
    res = apply_envelope(np.array([0, 0, -0.05, 0, 0, 0, 0]), np.array([0.5, 0, 0.62]), TCP_QUAT, 0.0)
    assert res.reasons == ("tcp_outside_workspace",) and not res.clipped


def test_argument_errors():
    with pytest.raises(ValueError, match=r"action must have shape \(7,\), got \(6,\)"):
        apply_envelope(np.zeros(6), TCP_POS, TCP_QUAT, 0.0)
    with pytest.raises(ValueError, match="tcp_pos must be"):
        apply_envelope(np.zeros(7), np.zeros(2), TCP_QUAT, 0.0)
    with pytest.raises(ValueError, match="last_gripper must be finite"):
        apply_envelope(np.zeros(7), TCP_POS, TCP_QUAT, np.nan)
    with pytest.raises(ValueError, match="must be below workspace_max"):
        EnvelopeConfig(workspace_min=(0.9, -0.4, 0.0))
    with pytest.raises(ValueError, match="max_translation_step must be finite and > 0"):
        EnvelopeConfig(max_translation_step=0.0)


def test_property_target_never_leaves_box_and_steps_are_bounded():
    """Random and adversarial actions and TCP poses: the hard guarantees hold every time."""
    rng = np.random.default_rng(0)
    lo, hi = np.array(CFG.workspace_min), np.array(CFG.workspace_max)
    specials = np.array([np.nan, np.inf, -np.inf, 1e308, -1e308, 1e-300, 0.0])
    for trial in range(3000):
        scale = 10.0 ** rng.uniform(-4, 3)
        a = rng.normal(size=7) * scale
        if trial % 5 == 0:  # adversarial entries
            idx = rng.integers(0, 7, size=rng.integers(1, 4))
            a[idx] = rng.choice(specials, size=len(idx))
        inside = trial % 3 != 0
        tcp = rng.uniform(lo, hi) if inside else rng.uniform(lo - 1.0, hi + 1.0)
        quat = Rotation.random(rng=rng).as_quat()
        last = rng.uniform(0, 1)
        res = apply_envelope(a, tcp, quat, last)
        assert np.all(np.isfinite(res.action))
        assert np.all(res.target_pos >= lo) and np.all(res.target_pos <= hi), (a, tcp)
        assert CFG.gripper_min <= res.action[6] <= CFG.gripper_max
        assert np.linalg.norm(res.action[3:6]) <= CFG.max_rotation_step + 1e-12
        rel = Rotation.from_quat(res.target_quat) * Rotation.from_quat(quat).inv()
        assert rel.magnitude() <= CFG.max_rotation_step + 1e-9
        if inside:
            assert np.linalg.norm(res.target_pos - tcp) <= CFG.max_translation_step + 1e-12
        if not np.all(np.isfinite(a)):
            assert res.rejected
        elif np.all(np.abs(a) < 1e6):
            assert not res.rejected
        if res.rejected:
            assert res.action[6] == last and np.all(res.action[3:6] == 0.0)
