"""The base node's episode/step source: explicit episode ids, never inferred from a step going backwards."""

import json

import pytest
from vla_base_node.episodes import EpisodeClock, Tick, parse_status


def status(episode: int, step: int) -> str:
    return json.dumps({"episode": episode, "step": step, "task": "cube_lift", "done": False})


def test_parse_status():
    assert parse_status(status(3, 17)) == (3, 17)
    with pytest.raises(ValueError, match="not a simulator episode status.*'step'"):
        parse_status(json.dumps({"episode": 1}))
    with pytest.raises(ValueError, match="not a simulator episode status"):
        parse_status("episode 1")


@pytest.mark.parametrize("text", [
    '{"episode": 1e999, "step": 0}',  # inf: int() raised OverflowError
    '{"episode": 1, "step": 1e999}',
    '{"episode": -1, "step": 0}',  # an EefAction's episode is a uint32: the setter raised AssertionError
    f'{{"episode": {2**32}, "step": 0}}',
    f'{{"episode": 1, "step": {2**64}}}',
    '{"episode": 1.5, "step": 0}',
    '{"episode": true, "step": 0}',
    '{"episode": "1", "step": 0}',
    "[" * 100_000,  # RecursionError in json
])
def test_a_garbage_status_is_a_value_error_and_nothing_else(text):
    with pytest.raises(ValueError, match="not a simulator episode status"):
        parse_status(text)


def test_lockstep_ticks_when_both_the_step_message_and_its_status_are_in():
    c = EpisodeClock(lockstep=True, follow_sim=True)
    assert c.on_status(1, 0) is None
    assert c.on_sim_step(0) == Tick(1, 0, new_episode=False)
    assert c.on_sim_step(1) is None  # /sim/step 1 overtook its status: wait for it
    assert c.on_status(1, 1) == Tick(1, 1, False)
    # Re-published (the sim got no command for it): the same step again, as a repeat (answer again, compute nothing)
    assert c.on_status(1, 1) is None and c.on_sim_step(1) == Tick(1, 1, False, repeat=True)
    assert c.on_status(1, 2) is None and c.on_sim_step(2) == Tick(1, 2, False)
    assert c.on_status(1, 0) is None and c.on_sim_step(0) is None  # a step going back is NOT a new episode
    # Reset: the sim's episode 2 starts at step 0 (and at any other step: the id decides, not the step).
    assert c.on_status(2, 0) is None and c.on_sim_step(0) == Tick(2, 0, new_episode=True)
    assert c.on_status(2, 1) is None and c.on_sim_step(1) == Tick(2, 1, False)
    assert c.on_status(3, 5) is None and c.on_sim_step(5) == Tick(3, 5, True)
    # A step message of the old episode arriving with the new status is not the new episode's step.
    assert c.on_status(4, 0) is None and c.on_sim_step(6) is None


def test_real_time_following_the_simulator_restarts_steps_on_a_new_episode():
    c = EpisodeClock(lockstep=False, follow_sim=True)
    assert c.on_timer() is None  # no episode yet: nothing to act for
    c.on_status(1, 0)
    assert [c.on_timer() for _ in range(3)] == [Tick(1, 0, False), Tick(1, 1, False), Tick(1, 2, False)]
    c.on_status(1, 40)  # the sim's own step count does not matter in real time
    assert c.on_timer() == Tick(1, 3, False)
    c.on_status(2, 0)
    assert c.on_timer() == Tick(2, 0, True) and c.on_timer() == Tick(2, 1, False)
    with pytest.raises(ValueError, match="/sim/reset"):
        c.reset()


def test_own_counter_is_advanced_by_reset():
    c = EpisodeClock(lockstep=False, follow_sim=False)
    assert [c.on_timer() for _ in range(2)] == [Tick(1, 0, False), Tick(1, 1, False)]
    assert c.reset() == 2
    assert c.on_timer() == Tick(2, 0, True)
    with pytest.raises(ValueError, match="lockstep needs"):
        EpisodeClock(lockstep=True, follow_sim=False)


def test_only_lockstep_repeats_and_only_the_last_step():
    c = EpisodeClock(lockstep=True, follow_sim=True)
    c.on_status(1, 3)
    assert c.on_sim_step(3) == Tick(1, 3, False)
    assert c.on_sim_step(3).repeat and c.on_sim_step(2) is None  # an older step is never answered again
    rt = EpisodeClock(lockstep=False, follow_sim=True)
    rt.on_status(1, 0)
    assert rt.on_timer() == Tick(1, 0, False) and not rt.on_timer().repeat


def test_status_stamp():
    from vla_base_node.episodes import status_stamp_ns

    assert status_stamp_ns('{"episode": 1, "step": 3, "stamp_ns": 150000000}') == 150_000_000
    assert status_stamp_ns('{"episode": 1, "step": 3}') == -1 and status_stamp_ns("not json") == -1


def test_a_garbage_status_stamp_is_none():
    from vla_base_node.episodes import status_stamp_ns

    for text in ('{"stamp_ns": 1e999}', '{"stamp_ns": -5}', '{"stamp_ns": "7"}', "[" * 100_000, "[1]"):
        assert status_stamp_ns(text) == -1, text  # was an OverflowError / RecursionError
