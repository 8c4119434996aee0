"""ImageEpisodes: images joined with their simulated episode by stamp, in either arrival order; repeats alike."""

from __future__ import annotations

import pytest
from pose_estimator_node.episodes import ImageEpisodes, parse_status


def test_an_image_waits_for_its_status_and_a_new_episode_is_flagged_once():
    e = ImageEpisodes()
    assert e.image("img 0", 100) is None and e.holding  # the status of stamp 100 is not in yet
    assert e.status(1, 50) is None and e.holding  # another state's status releases nothing
    first = e.status(1, 100)
    assert (first.item, first.stamp_ns, first.new_episode, first.repeat) == ("img 0", 100, True, False)
    assert e.status(1, 150) is None  # status first, image second
    second = e.image("img 1", 150)
    assert (second.item, second.new_episode, second.repeat) == ("img 1", False, False)
    e.status(2, 200)  # the sim reset: episode 2's first state
    third = e.image("img 2", 200)
    assert third.new_episode and e.episode == 2


def test_a_re_published_image_is_a_repeat_and_needs_no_status():
    e = ImageEpisodes()
    e.status(1, 100)
    assert not e.image("a", 100).repeat
    again = e.image("a again", 100)
    assert again.repeat and not again.new_episode and not e.holding


def test_a_newer_image_replaces_the_held_one_and_expire_releases_without_an_episode():
    e = ImageEpisodes()
    e.status(3, 10)
    e.image("x", 10)
    assert e.image("old", 20) is None
    assert e.image("new", 30) is None and e.superseded == 1
    assert e.status(4, 20) is None  # the status of the superseded image releases nothing
    released = e.expire()
    assert (released.item, released.stamp_ns, released.new_episode) == ("new", 30, False)  # episode unknown: kept
    assert e.episode == 3 and e.expire() is None


def test_disabled_releases_every_image_at_once_never_as_a_new_episode():
    e = ImageEpisodes(enabled=False)
    for stamp in (5, 10, 20):
        r = e.image(stamp, stamp)
        assert r is not None and not r.new_episode and not r.repeat
    assert e.image("again", 20).repeat


def test_memory_of_statuses_is_bounded():
    e = ImageEpisodes(memory=2)
    for stamp in (1, 2, 3):
        e.status(7, stamp)
    assert e.image("forgotten", 1) is None  # the status of stamp 1 fell out of memory
    assert e.image("known", 3).new_episode


def test_parse_status_reads_episode_and_stamp_and_names_what_is_wrong():
    assert parse_status('{"episode": 3, "step": 0, "stamp_ns": 1500000000, "done": false}') == (3, 1_500_000_000)
    for text, match in (("nope", "not JSON"), ("[1]", "not a JSON object"), ('{"episode": 1}', "stamp_ns"),
                        ('{"episode": -1, "stamp_ns": 0}', "episode"), ('{"episode": true, "stamp_ns": 0}', "episode")):
        with pytest.raises(ValueError, match=match):
            parse_status(text)
