import numpy as np
import pytest
from residual_core.augment import AugmentConfig, PoseAugmenter
from scipy.spatial.transform import Rotation


def poses(n: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    pos = rng.uniform(-0.5, 0.5, size=(n, k, 3))
    quat = Rotation.random(n * k, rng=seed).as_quat().reshape(n, k, 4)
    return pos, quat, np.ones((n, k), dtype=bool)


def test_deterministic_for_a_seed_and_different_across_seeds():
    pos, quat, present = poses(8, 2)

    def run(seed):
        aug = PoseAugmenter(seed=seed)
        aug.reset(8)
        outs = [aug.apply(pos, quat, present) for _ in range(3)]
        aug.reset_env(3)
        outs.append(aug.apply(pos, quat, present))
        return outs

    a, b, c = run(7), run(7), run(8)
    for x, y in zip(a, b, strict=True):
        for u, v in zip(x, y, strict=True):
            np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[0][0], c[0][0])


def test_inputs_are_not_modified():
    pos, quat, present = poses(4, 1)
    copies = pos.copy(), quat.copy(), present.copy()
    aug = PoseAugmenter(seed=0)
    aug.reset(4)
    aug.apply(pos, quat, present)
    for orig, cpy in zip((pos, quat, present), copies, strict=True):
        np.testing.assert_array_equal(orig, cpy)


def test_sigma_drawn_uniformly_per_episode():
    aug = PoseAugmenter(max_sigma=0.005, seed=1)
    sigma = aug.reset(20000)
    assert sigma.min() >= 0 and sigma.max() <= 0.005
    assert sigma.mean() == pytest.approx(0.0025, abs=5e-5)
    before = aug.sigma
    new = aug.reset_env([2, 5])
    after = aug.sigma
    np.testing.assert_array_equal(after[[2, 5]], new)
    np.testing.assert_array_equal(np.delete(after, [2, 5]), np.delete(before, [2, 5]))
    assert not np.array_equal(new, before[[2, 5]])


def test_noise_statistics_match_sigma():
    n, k = 4000, 2
    pos, quat, present = poses(n, k)
    aug = PoseAugmenter(max_sigma=0.004, dropout_p=0.0, rot_noise_per_m=10.0, seed=2)
    aug.reset(n)
    aug._sigma[:] = 0.004  # fix sigma to check the per-step noise distribution
    npos, nquat, npresent = aug.apply(pos, quat, present)
    assert npresent.all()
    dpos = (npos - pos).reshape(-1, 3)
    np.testing.assert_allclose(dpos.std(axis=0), 0.004, rtol=0.05)
    np.testing.assert_allclose(dpos.mean(axis=0), 0.0, atol=3e-4)
    # Left-multiplied noise rotation: R_noisy * R^-1; its angle is |N(0, 0.04^2)|, E|x| = s * sqrt(2/pi).
    noise = Rotation.from_quat(nquat.reshape(-1, 4)) * Rotation.from_quat(quat.reshape(-1, 4)).inv()
    angles = noise.magnitude()
    assert angles.mean() == pytest.approx(0.04 * np.sqrt(2 / np.pi), rel=0.05)
    assert np.sqrt(np.mean(angles**2)) == pytest.approx(0.04, rel=0.05)
    # Axis uniform on the sphere: the mean axis is close to zero.
    axes = noise.as_rotvec() / angles[:, None]
    assert np.linalg.norm(axes.mean(axis=0)) < 0.05


def test_zero_sigma_means_no_noise():
    pos, quat, present = poses(10, 2)
    aug = PoseAugmenter(max_sigma=0.0, dropout_p=0.0, seed=3)
    aug.reset(10)
    npos, nquat, npresent = aug.apply(pos, quat, present)
    np.testing.assert_array_equal(npos, pos)
    rel = Rotation.from_quat(nquat.reshape(-1, 4)) * Rotation.from_quat(quat.reshape(-1, 4)).inv()
    assert rel.magnitude().max() < 1e-12
    assert npresent.all()


def test_dropout_rate_and_independence():
    n, k = 20000, 2
    pos, quat, present = poses(n, k)
    aug = PoseAugmenter(dropout_p=0.1, seed=4)
    aug.reset(n)
    _, _, npresent = aug.apply(pos, quat, present)
    dropped = ~npresent
    assert dropped.mean() == pytest.approx(0.1, abs=0.006)
    both = (dropped[:, 0] & dropped[:, 1]).mean()
    assert both == pytest.approx(0.01, abs=0.003)  # independent per object


def test_absent_objects_stay_absent_and_untouched():
    pos, quat, present = poses(3, 2)
    present[0, 1] = False
    quat[0, 1] = 0.0  # invalid quaternion of an absent object must not break anything
    pos[0, 1] = np.nan
    aug = PoseAugmenter(dropout_p=0.0, seed=5)
    aug.reset(3)
    npos, nquat, npresent = aug.apply(pos, quat, present)
    assert not npresent[0, 1]
    np.testing.assert_array_equal(nquat[0, 1], 0.0)
    assert np.all(np.isnan(npos[0, 1]))
    assert npresent[0, 0]


def test_errors():
    with pytest.raises(ValueError, match="dropout_p must be in \\[0, 1\\], got 1.5"):
        PoseAugmenter(dropout_p=1.5)
    with pytest.raises(ValueError, match="max_sigma must be finite and >= 0"):
        AugmentConfig(max_sigma=-1.0)
    aug = PoseAugmenter(seed=0)
    pos, quat, present = poses(2, 1)
    with pytest.raises(RuntimeError, match="call reset"):
        aug.apply(pos, quat, present)
    aug.reset(3)
    with pytest.raises(ValueError, match=r"obj_pos must have shape \(3, K, 3\) for 3 environments"):
        aug.apply(pos, quat, present)
    with pytest.raises(ValueError, match=r"env ids must be integers in \[0, 3\)"):
        aug.reset_env(3)
    with pytest.raises(ValueError, match="num_envs must be a positive integer"):
        aug.reset(0)


def test_from_config():
    cfg = AugmentConfig(max_sigma=0.002, dropout_p=0.2, rot_noise_per_m=5.0)
    aug = PoseAugmenter.from_config(cfg, seed=0)
    assert aug.config == cfg


def test_fixed_sigma_uses_the_stated_level_every_episode():
    aug = PoseAugmenter(max_sigma=0.005, dropout_p=0.0, seed=3, fixed_sigma=True)
    assert np.all(aug.reset(8) == 0.005)
    assert np.all(aug.reset_env([1, 2]) == 0.005)
    free = PoseAugmenter(max_sigma=0.005, dropout_p=0.0, seed=3)
    s = free.reset(64)
    assert np.all((s >= 0) & (s <= 0.005)) and s.std() > 0
