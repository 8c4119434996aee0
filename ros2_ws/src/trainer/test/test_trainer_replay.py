"""n-step accumulation and the replay ring buffer."""

import numpy as np
import pytest
from trainer.replay import NStepAccumulator, ReplayBuffer


def _push(acc, t, rew, term=False, trunc=False):
    obs = np.full((1, 2), float(t), np.float32)
    nxt = np.full((1, 2), float(t + 1), np.float32)
    return acc.push(obs, np.full((1, 1), float(t), np.float32), np.array([rew]), nxt, np.array([term]),
                    np.array([trunc]))


def test_n_step_returns_and_discounts():
    g = 0.9
    acc = NStepAccumulator(n=3, gamma=g, num_envs=1)
    assert _push(acc, 0, 1.0) is None
    assert _push(acc, 1, 2.0) is None
    o, a, r, no, d = _push(acc, 2, 3.0)
    assert o[0, 0] == 0 and a[0, 0] == 0
    assert r[0] == pytest.approx(1 + g * 2 + g * g * 3)
    assert no[0, 0] == 3  # bootstraps from the state after step 2
    assert d[0] == pytest.approx(g**3)


def test_terminal_flushes_with_zero_discount_and_truncation_bootstraps():
    g = 0.5
    acc = NStepAccumulator(n=3, gamma=g, num_envs=1)
    _push(acc, 0, 1.0)
    o, a, r, no, d = _push(acc, 1, 4.0, term=True)
    assert list(o[:, 0]) == [0, 1]
    assert r == pytest.approx([1 + g * 4, 4])
    assert np.all(d == 0) and np.all(no[:, 0] == 2)
    _push(acc, 10, 1.0)
    o, a, r, no, d = _push(acc, 11, 1.0, trunc=True)
    assert d == pytest.approx([g**2, g])  # truncation is not a terminal: bootstrap from the last state
    assert _push(acc, 20, 1.0) is None  # nothing left over from the finished episode


def test_envs_are_independent():
    acc = NStepAccumulator(n=2, gamma=1.0, num_envs=2)
    obs = np.zeros((2, 1), np.float32)
    out = acc.push(obs, np.zeros((2, 1)), np.array([1.0, 5.0]), obs, np.array([False, True]), np.array([False, False]))
    assert out is not None and out[2].tolist() == [5.0]
    out = acc.push(obs, np.zeros((2, 1)), np.array([2.0, 7.0]), obs, np.array([False, False]), np.array([False, False]))
    assert out[2].tolist() == [3.0]


def test_ring_buffer_wraps_samples_and_round_trips(tmp_path):
    buf = ReplayBuffer(5, obs_dim=2, act_dim=1)
    for i in range(7):
        buf.add_batch(np.full((1, 2), i), np.full((1, 1), i), np.array([i]), np.full((1, 2), i + 1), np.array([0.9]))
    assert len(buf) == 5
    assert sorted(buf.ret.tolist()) == [2, 3, 4, 5, 6]  # the two oldest were overwritten
    batch = buf.sample(64, np.random.default_rng(0))
    assert set(batch["ret"].tolist()) <= {2, 3, 4, 5, 6}
    assert np.all(batch["obs"][:, 0] == batch["ret"])
    buf.save(tmp_path / "b.npz")
    other = ReplayBuffer(5, 2, 1)
    other.load(tmp_path / "b.npz")
    assert np.array_equal(other.obs, buf.obs) and other.ptr == buf.ptr and len(other) == 5
    with pytest.raises(ValueError, match="obs_dim=3"):
        ReplayBuffer(5, 3, 1).load(tmp_path / "b.npz")
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(5, 2, 1).sample(1, np.random.default_rng(0))


def test_steps_not_stored_make_no_transition_and_cannot_follow_stored_ones():
    """Probing (residual-train --probe-alpha): a prefix's steps are not transitions; the first stored step starts the
    env's n-step queue."""
    acc = NStepAccumulator(n=2, gamma=0.5, num_envs=2)
    obs, act = np.zeros((2, 1), np.float32), np.zeros((2, 1), np.float32)
    no = np.array([False, False])
    assert acc.push(obs, act, np.array([5.0, 1.0]), obs, no, no, store=np.array([False, True])) is None
    o, a, r, nxt, d = acc.push(obs + 1, act, np.array([2.0, 2.0]), obs + 2, no, no, store=np.array([True, True]))
    np.testing.assert_allclose(r, [1.0 + 0.5 * 2.0])  # env 1's first two steps; env 0's unstored 5.0 is in no return
    with pytest.raises(ValueError, match="not stored after stored"):
        acc.push(obs, act, np.zeros(2), obs, no, no, store=np.array([False, True]))
