"""The data flywheel's collect and distill stages: pld-collect writes what the base saw and what was executed,
pld-distill fine-tunes a loadable base on it (subprocess runs of the CLIs on the real simulator, shipped policies)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from residual_core.action import clip_action
from residual_core.checkpoint import default_base_checkpoint, load_checkpoint, read_manifest
from residual_core.tasks import TASK_INSTRUCTIONS
from residual_learning.base_policy import BasePolicy
from trainer.closed_loop import BaseChunkRunner
from trainer.franka_backend import FrankaSimBackend
from trainer.lerobot_v3_read import read_dataset, validate
from trainer.pld_collect import PLD_SEED_OFFSET, environment_state, split_environment_state, takeover_step
from trainer.pld_distill import dataset_sha256, dataset_targets

BIN = Path(sys.executable).parent


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / cmd[0]), *cmd[1:]], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pld") / "ds"
    r = run("pld-collect", "--tasks", "close_drawer", "--episodes", "3", "--num-envs", "3", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| close_drawer |" in r.stdout
    return out


def test_takeover_is_drawn_from_the_seed_within_the_prefix_range():
    draws = [takeover_step(s, 0.6, 100) for s in range(2000)]
    assert min(draws) == 0 and max(draws) == 60 and len(set(draws)) > 40
    assert draws == [takeover_step(s, 0.6, 100) for s in range(2000)]
    assert {takeover_step(s, 0.0, 100) for s in range(50)} == {0}


def test_environment_state_round_trips_into_the_base_slots():
    rng = np.random.default_rng(0)
    pos, quat = rng.normal(size=(4, 1, 3)), rng.normal(size=(4, 1, 4))
    p, q, present = split_environment_state(environment_state(pos, quat))
    np.testing.assert_array_equal(p[:, :1], pos)
    np.testing.assert_array_equal(q[:, :1], quat)
    assert present[:, 0].all() and not present[:, 1].any() and not p[:, 1].any()
    np.testing.assert_array_equal(q[:, 1], np.tile([0.0, 0.0, 0.0, 1.0], (4, 1)))  # an empty slot: a valid rotation


def test_collected_episodes_record_the_prefix_the_takeover_and_the_outcome(dataset):
    assert validate(dataset) == []
    ds = read_dataset(dataset)
    assert ds.num_episodes == 3 and list(ds.tasks.index) == [TASK_INSTRUCTIONS["close_drawer"]]
    eps = ds.episodes
    assert eps["success"].all() and set(eps["task_name"]) == {"close_drawer"}
    first = PLD_SEED_OFFSET + 3 * 1_000_000  # close_drawer is the fourth task
    backend = FrankaSimBackend("close_drawer", 1, seed=0)
    horizon = backend.horizon
    backend.close()
    assert all(first <= s < first + 12 for s in eps["seed"])
    for i in range(ds.num_episodes):
        f = ds.episode_frames(i)
        take, seed = int(eps["takeover_step"][i]), int(eps["seed"][i])
        assert take == min(takeover_step(seed, 0.6, horizon), len(f["action"]))
        acting = f["intervention"][:, 0]
        assert not acting[:take].any() and acting[take:].all()
        assert not np.abs(f["complementary_info.residual"][:take]).any()  # the base alone in the prefix
        assert np.abs(f["complementary_info.residual"][take:]).sum() > 0
        np.testing.assert_allclose(f["action"][:take], clip_action(f["complementary_info.base_action"][:take]),
                                   atol=1e-6)
        assert f["next.success"][-1, 0] and f["next.done"][-1, 0] and not f["next.done"][:-1].any()


def test_the_recorded_observation_is_what_the_base_saw(dataset):
    """Frame 0 of each episode, turned into base features by pld-distill, equals what the base computes at that seed's
    reset: the dataset holds the base's real inputs."""
    ds = read_dataset(dataset)
    feats, chunks, mask, per_task = dataset_targets(ds, horizon=16)
    assert per_task == {TASK_INSTRUCTIONS["close_drawer"]: ds.num_frames} and chunks.shape == (ds.num_frames, 16, 7)
    last = int(ds.episodes["length"][0]) - 1  # the first episode's last frame: only its own action is labelled
    assert mask[last].tolist() == [True] + [False] * 15 and mask[0].all()
    backend = FrankaSimBackend("close_drawer", 1, seed=0)
    base = BasePolicy.from_checkpoint(default_base_checkpoint())
    runner = BaseChunkRunner(base, TASK_INSTRUCTIONS["close_drawer"], 1)
    start = 0
    for i in range(ds.num_episodes):
        backend.reset([int(ds.episodes["seed"][i])])
        np.testing.assert_allclose(feats[start], runner.features(backend.state())[0], atol=1e-6)
        start += int(ds.episodes["length"][i])
    backend.close()


def test_distilled_base_records_parent_and_dataset_and_loads_as_a_base(dataset, tmp_path):
    out = tmp_path / "distilled"
    r = run("pld-distill", "--dataset", str(dataset), "--out", str(out), "--epochs", "2", "--eval-episodes", "0")
    assert r.returncode == 0, r.stderr[-3000:]
    man = read_manifest(out)
    t = man.training
    assert t["kind"] == "pld_distill" and t["dataset"]["sha256"] == dataset_sha256(dataset)
    assert t["parent"]["weights_sha256"] == read_manifest(default_base_checkpoint()).weights_sha256
    assert t["dataset"]["collection"]["alpha"] == 0.6
    child, parent = BasePolicy.from_checkpoint(out), BasePolicy.from_checkpoint(default_base_checkpoint())
    assert child.execute_steps == parent.execute_steps
    x = np.random.default_rng(0).normal(size=(3, parent.net.feature_dim)).astype(np.float32)
    assert not np.allclose(child.predict_chunk(x), parent.predict_chunk(x))  # it did learn something
    r2 = run("pld-distill", "--dataset", str(dataset), "--out", str(tmp_path / "again"), "--epochs", "2",
             "--eval-episodes", "0")
    assert r2.returncode == 0, r2.stderr[-2000:]
    first, again = load_checkpoint(out)[0], load_checkpoint(tmp_path / "again")[0]  # deterministic for a seed
    assert first.keys() == again.keys() and all(np.array_equal(first[k], again[k]) for k in first)
    ev = run("residual-eval", "--task", "close_drawer", "--episodes", "1", "--num-envs", "1", "--no-residual",
             "--base-checkpoint", str(out))
    assert ev.returncode == 0, ev.stderr[-2000:]


def test_bad_options_and_an_existing_dataset_are_refused_with_nothing_lost(dataset, tmp_path):
    r = run("pld-collect", "--alpha", "1.5", "--out", str(tmp_path / "x"))
    assert r.returncode != 0 and "alpha" in r.stderr
    before = sorted(p.name for p in dataset.rglob("*"))
    r = run("pld-collect", "--tasks", "close_drawer", "--episodes", "1", "--out", str(dataset))
    assert r.returncode == 2 and "overwrite" in r.stderr
    assert sorted(p.name for p in dataset.rglob("*")) == before
    r = run("pld-distill", "--dataset", str(tmp_path / "missing"))
    assert r.returncode == 2 and "pld-distill:" in r.stderr
    assert json.loads((dataset / "meta" / "pld_collect.json").read_text())["tasks"][0]["kept"] == 3


def test_control_sources_and_a_quantity_subset(dataset, tmp_path):
    """--source teleop records scripted teleop-like demos in the same format (no base, no residual);
    --source base keeps the base's own successes (never an intervention); --episodes-per-task takes the first N."""
    out = tmp_path / "teleop"
    r = run("pld-collect", "--source", "teleop", "--tasks", "close_drawer", "--episodes", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    ds = read_dataset(out)
    assert validate(out) == [] and set(ds.episodes["source"]) == {"teleop"} and ds.episodes["success"].all()
    f = ds.episode_frames(0)
    assert not f["intervention"].any() and not np.abs(f["complementary_info.base_action"]).any()
    assert np.abs(f["action"]).sum() > 0
    out = tmp_path / "base"
    r = run("pld-collect", "--source", "base", "--tasks", "close_drawer", "--episodes", "2", "--num-envs", "2",
            "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    ds = read_dataset(out)
    assert ds.episodes["success"].all() and not ds.column("intervention").any()
    assert not np.abs(ds.column("complementary_info.residual")).any()
    full = read_dataset(dataset)
    feats, _, _, per_task = dataset_targets(full, horizon=16, episodes_per_task=1)
    assert len(feats) == int(full.episodes["length"][0]) == sum(per_task.values())
