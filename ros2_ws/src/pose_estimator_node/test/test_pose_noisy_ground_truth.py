"""Noisy ground truth: exact without noise, the configured noise and dropout statistics, seeding, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from pose_estimator_node.noisy_ground_truth import NoisyGroundTruth, NoisyGroundTruthConfig
from scipy.spatial.transform import Rotation

CUBE = ([0.5, 0.05, 0.02], list(Rotation.from_euler("z", 0.3).as_quat()), 1.0)
TARGET = ([0.55, -0.1, 0.0], [0.0, 0.0, 0.0, 1.0], 1.0)


def test_without_noise_poses_pass_unchanged_in_task_order():
    out = NoisyGroundTruth(["cube", "target"]).apply({"target": TARGET, "cube": CUBE, "mug": CUBE})
    assert [p.name for p in out] == ["cube", "target"] and [p.status for p in out] == ["seen", "seen"]
    np.testing.assert_allclose(out[0].pos, CUBE[0])
    assert abs(abs(np.dot(out[0].quat_xyzw, CUBE[1])) - 1.0) < 1e-12 and out[0].confidence == 1.0


def test_noise_and_dropout_follow_the_configuration():
    cfg = NoisyGroundTruthConfig(noise_pos_m=0.004, noise_rot_rad=0.03, dropout_p=0.2, seed=5)
    gt = NoisyGroundTruth(["cube", "target"], cfg)
    outs = [gt.apply({"cube": CUBE, "target": TARGET}) for _ in range(3000)]
    flat = [p for out in outs for p in out]
    dropped = np.mean([p.status == "dropped" for p in flat])
    assert dropped == pytest.approx(0.2, abs=0.02)  # 6000 draws: std 0.005
    assert all(p.confidence == 0.0 for p in flat if p.status == "dropped")
    cube = [p for out in outs for p in out[:1]]
    d = np.array([p.pos for p in cube]) - CUBE[0]
    assert d.std(axis=0) == pytest.approx([0.004] * 3, rel=0.05)
    assert np.abs(d.mean(axis=0)).max() < 3e-4
    angles = np.array([(Rotation.from_quat(p.quat_xyzw) * Rotation.from_quat(CUBE[1]).inv()).magnitude()
                       for p in cube])
    assert np.sqrt(np.mean(angles ** 2)) == pytest.approx(0.03, rel=0.05)  # |N(0, s^2)| has RMS s
    again = NoisyGroundTruth(["cube", "target"], cfg).apply({"cube": CUBE, "target": TARGET})
    np.testing.assert_array_equal(again[0].pos, outs[0][0].pos)  # same seed, same stream


def test_missing_unseen_and_invalid_objects_pass_as_not_seen():
    gt = NoisyGroundTruth(["cube", "target"], NoisyGroundTruthConfig(noise_pos_m=0.01, noise_rot_rad=0.1))
    out = gt.apply({"cube": (CUBE[0], CUBE[1], 0.0)})
    assert [(p.status, p.confidence) for p in out] == [("missing", 0.0), ("missing", 0.0)]
    np.testing.assert_array_equal(out[0].pos, CUBE[0])  # untouched
    assert not np.any(out[1].quat_xyzw)
    out = gt.apply({"cube": ([np.nan, 0.0, 0.0], CUBE[1], 1.0), "target": (TARGET[0], [0.0, 0.0, 0.0, 0.0], 1.0)})
    assert [p.status for p in out] == ["missing", "missing"]


@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_hostile_values_pass_as_missing_instead_of_raising(noise):
    """The fault tester's finite but enormous quaternions (1e155 .. 1e200) overflowed the norm and scipy raised."""
    gt = NoisyGroundTruth(["cube", "target"], NoisyGroundTruthConfig(noise_pos_m=noise, noise_rot_rad=10 * noise))
    for quat in ([1e200, 1e200, 0.0, 0.0], [1e155, 0.0, 0.0, 0.0], [0.0, 0.0, -1e180, 1.0]):
        out = gt.apply({"cube": (CUBE[0], quat, 1.0), "target": ([0.0, 1e300, 0.0], TARGET[1], 1.0)})
        assert [(p.status, p.confidence) for p in out] == [("missing", 0.0), ("missing", 0.0)], quat
        assert not any(np.any(p.pos) or np.any(p.quat_xyzw) for p in out)  # nothing of it is passed on
    out = gt.apply({"cube": (CUBE[0], CUBE[1], 2.0), "target": TARGET})  # a confidence outside [0, 1]
    assert [p.status for p in out] == ["missing", "seen"]


def test_config_is_validated():
    with pytest.raises(ValueError, match="noise_rot_rad=0.1 needs noise_pos_m > 0"):
        NoisyGroundTruthConfig(noise_rot_rad=0.1)
    with pytest.raises(ValueError, match="dropout_p must be in"):
        NoisyGroundTruthConfig(dropout_p=1.5)
    with pytest.raises(ValueError, match="noise_pos_m must be finite and >= 0"):
        NoisyGroundTruthConfig(noise_pos_m=-0.1)
    with pytest.raises(ValueError, match="at least one object"):
        NoisyGroundTruth([])
