"""ChunkBroker: one action per step, latency handling, temporal ensembling, running dry, re-plan requests."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from vla_base_node.chunk_broker import ChunkBroker, weighted_median

DT = 0.05


def chunk(start_value: float, n: int = 4, gripper: float = 0.0) -> np.ndarray:
    """Actions whose dx encodes (start_value + i) so each emitted action can be traced to its chunk row."""
    a = np.zeros((n, 7))
    a[:, 0] = start_value + np.arange(n)
    a[:, 6] = gripper
    return a


def test_emits_chunk_actions_in_order_then_holds_with_last_gripper():
    b = ChunkBroker(horizon=4, control_dt=DT)
    assert b.add_chunk(0, chunk(100, gripper=1.0)).accepted
    out = [b.next_action(t) for t in range(6)]
    assert [o.action[0] for o in out[:4]] == [100, 101, 102, 103]
    assert [o.source for o in out] == ["chunk"] * 4 + ["hold"] * 2
    assert [o.step for o in out] == list(range(6))
    for o in out[4:]:
        assert o.ran_dry and o.n_predictions == 0 and o.chunk_start is None
        np.testing.assert_array_equal(o.action, [0, 0, 0, 0, 0, 0, 1.0])  # zero delta, gripper kept closed
    assert b.dry_steps == 2


def test_hold_before_first_chunk_uses_initial_gripper():
    b = ChunkBroker(horizon=4, control_dt=DT, initial_gripper=0.0)
    o = b.next_action(0)
    assert o.ran_dry and o.replan
    np.testing.assert_array_equal(o.action, np.zeros(7))


def test_late_chunk_skips_actions_already_in_the_past():
    b = ChunkBroker(horizon=8, control_dt=DT)
    for t in range(3):
        b.next_action(t)  # steps 0..2 emitted (holding) while inference of step 0 ran
    res = b.add_chunk(0, chunk(10, n=8))
    assert res.accepted and res.discarded_past == 3 and res.usable == 5
    o = b.next_action(3)
    assert o.action[0] == 13 and o.chunk_start == 0 and o.remaining == 4


def test_entirely_stale_chunk_is_rejected():
    b = ChunkBroker(horizon=4, control_dt=DT)
    for t in range(10):
        b.next_action(t)
    res = b.add_chunk(2, chunk(0))
    assert not res.accepted and res.reason == "stale" and res.discarded_past == 4


@pytest.mark.parametrize(
    ("bad", "reason"),
    [(np.full((4, 7), np.nan), "non_finite"), (np.zeros((4, 6)), "bad_shape"), (np.zeros((0, 7)), "bad_shape")],
)
def test_bad_chunks_are_rejected_and_never_emitted(bad, reason):
    b = ChunkBroker(horizon=4, control_dt=DT)
    b.replan_started(0)
    res = b.add_chunk(0, bad)
    assert not res.accepted and res.reason == reason
    assert not b.pending  # a failed delivery frees the request slot
    assert b.next_action(0).ran_dry


def test_long_chunk_truncated_to_horizon_and_single_action_accepted():
    b = ChunkBroker(horizon=2, control_dt=DT)
    b.add_chunk(0, chunk(0, n=5))
    assert [b.next_action(t).source for t in range(3)] == ["chunk", "chunk", "hold"]
    b.add_chunk(3, np.array([0.01, 0, 0, 0, 0, 0, 1]))  # OpenVLA returns one action (7,)
    o = b.next_action(3)
    assert o.source == "chunk" and o.action[0] == 0.01


def test_no_ensemble_newest_chunk_wins():
    b = ChunkBroker(horizon=4, control_dt=DT, ensemble="none")
    b.add_chunk(0, chunk(100))
    b.next_action(0)
    b.add_chunk(1, chunk(200))
    o = b.next_action(1)
    assert o.action[0] == 200 and o.n_predictions == 2 and o.source == "chunk" and o.chunk_start == 1


def test_temporal_ensemble_matches_act_weights():
    decay = 0.5
    b = ChunkBroker(horizon=4, control_dt=DT, ensemble="temporal", ensemble_decay=decay)
    b.add_chunk(0, chunk(100))  # predicts dx = 102 for step 2
    b.add_chunk(1, chunk(200))  # predicts dx = 201 for step 2
    b.add_chunk(2, chunk(300))  # predicts dx = 300 for step 2
    for t in range(2):
        b.next_action(t)
    o = b.next_action(2)
    w = np.exp(-decay * np.arange(3))
    expected = (w @ np.array([102.0, 201.0, 300.0])) / w.sum()
    assert o.source == "ensemble" and o.n_predictions == 3
    assert o.action[0] == pytest.approx(expected)
    assert o.action[0] < np.mean([102.0, 201.0, 300.0])  # oldest weighted most


def test_temporal_ensemble_rotation_and_gripper():
    b = ChunkBroker(horizon=2, control_dt=DT, ensemble="temporal", ensemble_decay=0.0)
    a1 = np.zeros((2, 7))
    a2 = np.zeros((2, 7))
    a3 = np.zeros((2, 7))
    a1[:, 5], a2[:, 5], a3[:, 5] = 0.1, 0.2, 0.3  # rotations about z
    a1[:, 6], a2[:, 6], a3[:, 6] = 1.0, 0.0, 1.0  # two say close, one says open
    for a in (a1, a2, a3):
        b.add_chunk(0, a)
    o = b.next_action(0)
    np.testing.assert_allclose(o.action[3:6], [0, 0, 0.2], atol=1e-9)  # mean of coaxial rotations
    assert o.action[6] == 1.0  # weighted median: a vote, never a half-closed 0.67
    rots = Rotation.from_rotvec([[0.2, 0, 0], [0, 0.2, 0]])
    b2 = ChunkBroker(horizon=1, control_dt=DT, ensemble="temporal", ensemble_decay=0.0)
    for rv in rots.as_rotvec():
        b2.add_chunk(0, np.r_[0, 0, 0, rv, 0])
    got = Rotation.from_rotvec(b2.next_action(0).action[3:6])
    assert (got.inv() * rots[0]).magnitude() == pytest.approx((got.inv() * rots[1]).magnitude(), abs=1e-9)


def test_weighted_median():
    assert weighted_median(np.array([0.0, 1.0, 1.0]), np.ones(3)) == 1.0
    assert weighted_median(np.array([0.0, 1.0]), np.array([0.7, 0.3])) == 0.0
    assert weighted_median(np.array([0.3]), np.array([1.0])) == 0.3


def test_replan_requested_when_remaining_below_threshold_and_not_while_pending():
    b = ChunkBroker(horizon=4, control_dt=DT, replan_threshold=2)
    b.add_chunk(0, chunk(0))  # covers 0..3
    flags = [(o.remaining, o.replan) for o in (b.next_action(t) for t in range(2))]
    assert flags == [(3, False), (2, False)]
    o = b.next_action(2)
    assert o.remaining == 1 and o.replan
    b.replan_started(2)
    assert b.pending
    o = b.next_action(3)
    assert o.remaining == 0 and not o.replan  # already in flight
    b.replan_failed()
    assert b.next_action(4).replan


def test_auto_threshold_follows_measured_latency():
    b = ChunkBroker(horizon=10, control_dt=DT)
    assert b.effective_replan_threshold() == 1  # no latency known: re-plan when the chunk is used up
    b.note_latency(0.14)  # a 140 ms VLA: 3 steps of latency
    assert b.effective_replan_threshold() == 4
    b.note_latency(10.0)
    assert b.effective_replan_threshold() == 10  # never beyond the horizon
    assert ChunkBroker(horizon=6, control_dt=DT, ensemble="temporal").effective_replan_threshold() == 6


def test_steps_must_increase_and_reset_starts_over():
    b = ChunkBroker(horizon=4, control_dt=DT)
    b.add_chunk(0, chunk(0))
    b.next_action(5)
    with pytest.raises(ValueError, match="step 5 is not after the last emitted step 5"):
        b.next_action(5)
    b.reset()
    assert b.last_step is None and b.next_action(0).ran_dry  # old chunks are gone


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"horizon": 0}, "horizon"),
        ({"control_dt": 0.0}, "control_dt"),
        ({"ensemble": "mean"}, "ensemble"),
        ({"replan_threshold": 9}, "replan_threshold"),
        ({"initial_gripper": 2.0}, "initial_gripper"),
    ],
)
def test_config_errors_name_the_bad_value(kwargs, match):
    args = {"horizon": 4, "control_dt": DT, **kwargs}
    with pytest.raises(ValueError, match=match):
        ChunkBroker(**args)


def test_concurrent_producer_and_consumer_emit_one_action_per_step():
    b = ChunkBroker(horizon=8, control_dt=DT, ensemble="temporal")
    steps = 2000

    def producer():
        for s in range(0, steps, 3):
            b.add_chunk(s, chunk(s, n=8))

    th = threading.Thread(target=producer)
    th.start()
    emitted = [b.next_action(t).step for t in range(steps)]
    th.join()
    assert emitted == list(range(steps))
