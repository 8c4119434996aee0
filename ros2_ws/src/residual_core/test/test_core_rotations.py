import numpy as np
import pytest
from residual_core.rotations import (
    compose_rotvecs,
    matrix_to_rot6d,
    quat_to_matrix,
    quat_to_rot6d,
    rot6d_to_matrix,
    wxyz_to_xyzw,
    xyzw_to_wxyz,
)
from scipy.spatial.transform import Rotation


def test_wxyz_xyzw_round_trip():
    q = Rotation.random(10, rng=0).as_quat()
    np.testing.assert_array_equal(xyzw_to_wxyz(q)[:, 0], q[:, 3])
    np.testing.assert_array_equal(wxyz_to_xyzw(xyzw_to_wxyz(q)), q)
    np.testing.assert_array_equal(wxyz_to_xyzw(np.array([1.0, 0, 0, 0])), [0, 0, 0, 1.0])


def test_rot6d_round_trip_and_shapes():
    rots = Rotation.random(20, rng=1)
    six = quat_to_rot6d(rots.as_quat())
    assert six.shape == (20, 6)
    np.testing.assert_allclose(rot6d_to_matrix(six), rots.as_matrix(), atol=1e-12)
    assert quat_to_rot6d(np.array([0, 0, 0, 1.0])).shape == (6,)
    np.testing.assert_allclose(quat_to_rot6d(np.array([0, 0, 0, 1.0])), [1, 0, 0, 0, 1, 0])
    nested = quat_to_rot6d(rots.as_quat().reshape(4, 5, 4))
    np.testing.assert_allclose(nested.reshape(20, 6), six)


def test_rot6d_to_matrix_orthonormalises_noisy_input():
    six = quat_to_rot6d(Rotation.random(5, rng=2).as_quat()) + np.random.default_rng(0).normal(0, 0.05, (5, 6))
    m = rot6d_to_matrix(six)
    np.testing.assert_allclose(m @ np.swapaxes(m, -1, -2), np.broadcast_to(np.eye(3), (5, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(m), 1.0, atol=1e-12)


def test_quat_to_matrix_non_unit_and_nan():
    q = np.array([[0, 0, 0, 2.0], [np.nan, 0, 0, 1], [0, 0, np.inf, 1]])
    m = quat_to_matrix(q)
    np.testing.assert_allclose(m[0], np.eye(3))
    assert np.all(np.isnan(m[1])) and np.all(np.isnan(m[2]))
    np.testing.assert_allclose(matrix_to_rot6d(m[0]), [1, 0, 0, 0, 1, 0])
    assert np.all(np.isnan(quat_to_rot6d(q[1])))
    with pytest.raises(ValueError, match="last axis of size 4"):
        quat_to_matrix(np.zeros(3))
    with pytest.raises(ValueError, match="zero norm"):
        quat_to_matrix(np.zeros(4))


def test_compose_rotvecs_matches_scipy_and_propagates_nan():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(10, 3)), rng.normal(size=(10, 3))
    expected = (Rotation.from_rotvec(a) * Rotation.from_rotvec(b)).as_rotvec()
    np.testing.assert_allclose(compose_rotvecs(a, b), expected, atol=1e-12)
    np.testing.assert_allclose(compose_rotvecs(a[0], b[0]), expected[0], atol=1e-12)
    a[2, 1] = np.nan
    out = compose_rotvecs(a, b)
    assert np.all(np.isnan(out[2])) and np.all(np.isfinite(np.delete(out, 2, axis=0)))
    with pytest.raises(ValueError, match="equal shape"):
        compose_rotvecs(np.zeros(3), np.zeros((1, 3)))


def test_quat_angle_is_the_rotation_between_either_sign_and_scale():
    from residual_core.rotations import quat_angle
    from scipy.spatial.transform import Rotation

    a = Rotation.from_euler("x", 0.3).as_quat()
    b = (Rotation.from_euler("z", 0.7) * Rotation.from_euler("x", 0.3)).as_quat()
    assert abs(float(quat_angle(a, b)) - 0.7) < 1e-9
    assert abs(float(quat_angle(a, -2.0 * b)) - 0.7) < 1e-9  # sign and scale do not matter
    np.testing.assert_allclose(quat_angle(np.stack([a, a]), np.stack([a, b])), [0.0, 0.7], atol=1e-7)
