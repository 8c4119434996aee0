"""StateWait: a step's trigger waits for the state it must be computed on (lockstep, sim time)."""

from __future__ import annotations

import pytest
from residual_ros.lockstep import StateWait


def test_item_passes_when_the_state_is_in_else_waits_for_every_input():
    w = StateWait(("joint_states", "tcp_pose"))
    w.arrived("joint_states", 100)
    w.arrived("tcp_pose", 100)
    assert w.offer("step 2", 100) == "step 2" and not w.holding
    assert w.offer("step 3", 150) is None and w.holding  # step 3's state (stamp 150) not in yet
    assert w.arrived("tcp_pose", 150) is None and w.holding  # joint states still at 100
    assert w.arrived("joint_states", 150) == "step 3" and not w.holding


def test_expire_releases_the_held_item_once():
    w = StateWait()
    assert w.offer("a", 10) is None
    assert w.expire() == "a" and w.expire() is None
    assert w.arrived("joint_states", 10) is None  # nothing held any more


def test_disabled_never_holds_and_unknown_inputs_are_refused():
    w = StateWait(enabled=False)
    assert w.offer("x", 10**12) == "x" and not w.holding
    with pytest.raises(KeyError, match="'images' is not watched"):
        w.arrived("images", 1)
    with pytest.raises(ValueError, match="at least one input"):
        StateWait(())


def test_lockstep_judges_an_input_no_earlier_than_its_stamp():
    """/clock can arrive after the step's state: in lockstep the input is judged at its own stamp (as offline); real
    time keeps the clock, whatever the stamp says."""
    lock, real = StateWait(), StateWait(enabled=False)
    assert lock.judged_at(10.0, 10_050_000_000) == 10.05  # the clock one step behind the state
    assert lock.judged_at(10.1, 10_050_000_000) == 10.1  # a later clock stands
    assert real.judged_at(10.0, 10_050_000_000) == 10.0
    assert (lock.ahead_of_clock, real.ahead_of_clock) == (1, 0)
