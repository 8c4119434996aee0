"""Base populations: one unperturbed member plays exactly as the single base; members drawn per episode seed;
delay, chunk length, noise and bias do what they say; bad population files are refused with the reason."""

import json

import numpy as np
import pytest
from residual_core.action import ActionSpec
from residual_core.checkpoint import CheckpointError, default_base_checkpoint
from residual_learning.base_policy import BasePolicy
from trainer.base_population import BasePopulation, Member, PopulationRunner, read_members
from trainer.closed_loop import BaseChunkRunner
from trainer.franka_backend import FrankaSimBackend

BASE = str(default_base_checkpoint())


@pytest.fixture(scope="module")
def backend():
    b = FrankaSimBackend("cube_lift", 3, seed=0)
    yield b
    b.close()


def _play(runner, backend, seeds, steps=20, zero=True):
    """Actions of ``steps`` steps from the episodes ``seeds`` (the sim stepped with zero actions: the same states
    for every runner)."""
    backend.reset(seeds)
    runner.reset(seeds=seeds) if isinstance(runner, PopulationRunner) else runner.reset()
    out = []
    for _ in range(steps):
        out.append(runner.act(backend.state()))
        backend.step(np.zeros((backend.num_envs, 7)))
    return np.array(out)


def test_one_unperturbed_member_plays_exactly_as_the_single_base(backend):
    single = BaseChunkRunner(BasePolicy.from_checkpoint(BASE), backend.instruction, backend.num_envs)
    pop = PopulationRunner(BasePopulation.from_members([Member(BASE)]), backend.instruction, backend.num_envs)
    np.testing.assert_array_equal(_play(single, backend, [1, 2, 3]), _play(pop, backend, [1, 2, 3]))


def test_members_are_drawn_from_the_episode_seed(backend):
    members = [Member(BASE), Member(BASE, action_noise=0.2), Member(BASE, delay_steps=2), Member(BASE, action_bias=0.5)]
    runner = PopulationRunner(BasePopulation.from_members(members), backend.instruction, backend.num_envs)
    runner.reset(seeds=[10, 11, 12])
    first = runner.member.copy()
    runner.reset(seeds=[12, 10, 11])
    np.testing.assert_array_equal(runner.member, first[[2, 0, 1]])
    runner.reset(env_ids=[1], seeds=[10])
    assert runner.member[1] == first[0]
    drawn = set()
    for s in range(40):
        runner.reset(env_ids=[0], seeds=[s])
        drawn.add(int(runner.member[0]))
    assert drawn == {0, 1, 2, 3}


def test_delay_chunk_length_noise_and_bias(backend):
    def play(member, seeds=(4, 5, 6)):
        return _play(PopulationRunner(BasePopulation.from_members([member]), backend.instruction, backend.num_envs),
                     backend, list(seeds))

    plain = play(Member(BASE))
    delayed = play(Member(BASE, delay_steps=2))
    assert np.all(delayed[:2] == 0.0)
    # (the states are the same: the sim is stepped with zero actions) the delayed stream is the plain one, later
    np.testing.assert_array_equal(delayed[2:], plain[:-2])
    short = play(Member(BASE, execute_steps=4))
    np.testing.assert_array_equal(short[:4], plain[:4])  # the same first chunk, then a re-plan from a later state
    assert not np.array_equal(short[4:8], plain[4:8])
    bound = ActionSpec().high[:6]
    noisy = play(Member(BASE, action_noise=0.1))
    diff = (noisy - plain)[..., :6] / bound
    assert 0.05 < np.std(diff) < 0.15 and np.all(noisy[..., 6] == plain[..., 6])
    biased = play(Member(BASE, action_bias=0.3))
    offset = (biased - plain)[..., :6]
    inside = np.all(np.abs(plain[..., :6]) < bound - 0.3 * bound, axis=-1)  # rows the clip did not touch
    per_env = [offset[inside[:, e], e] for e in range(3)]
    for rows in per_env:  # one constant offset per episode, within +-0.3 of the bound
        assert len(rows) and np.allclose(rows, rows[0]) and np.all(np.abs(rows[0]) <= 0.3 * bound + 1e-12)
    assert not np.allclose(per_env[0][0], per_env[1][0])


@pytest.mark.parametrize(("content", "match"), [
    ("not json", "not JSON"),
    ('{"members": []}', "non-empty list"),
    ('{"members": [{"ckpt": "x"}]}', "member 0 must be an object with 'checkpoint'"),
    ('{"members": [{"checkpoint": "BASE", "action_noise": 2.0}]}', "member 0: action_noise"),
    ('{"members": [{"checkpoint": "BASE", "delay_steps": -1}]}', "member 0: delay_steps"),
    ('{"members": [{"checkpoint": "BASE", "execute_steps": 0}]}', "member 0: execute_steps"),
])
def test_bad_population_files_are_refused_with_the_reason(tmp_path, content, match):
    path = tmp_path / "pop.json"
    path.write_text(content.replace("BASE", BASE))
    with pytest.raises(ValueError, match=match):
        BasePopulation.load(path)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="base population file not found"):
        BasePopulation.load(tmp_path / "none.json")
    path = tmp_path / "pop.json"
    path.write_text(json.dumps({"members": [{"checkpoint": str(tmp_path / "missing_base")}]}))
    with pytest.raises(CheckpointError, match="missing_base is incomplete"):
        BasePopulation.load(path)


def test_the_shipped_population_files_are_valid():
    """(Their BC members are made by tools/make_bases.sh into runs/bases/: not loaded here.)"""
    train = read_members("checkpoints/bases/population.json")
    held_out = read_members("checkpoints/bases/held_out.json")
    assert len(train) >= 6 and len(held_out) >= 3
    assert not {m.checkpoint for m in held_out if "seed" in m.checkpoint} & {m.checkpoint for m in train}
    bc_only = read_members("checkpoints/bases/population_bc.json")
    assert {m.checkpoint for m in bc_only} <= {m.checkpoint for m in train}
    assert all(m.action_noise == 0 and m.action_bias == 0 and m.delay_steps == 0 and m.execute_steps is None
               for m in bc_only)
    shipped = [m for m in train if m.checkpoint.endswith("base/base_policy")]
    pop = BasePopulation.from_members(shipped)
    assert pop.members and pop.describe()["members"][0]["checkpoint"]
