"""residual-train --collectors on Ray (skipped without Ray: `make setup-ray`): one --sync collector gives the
in-process trainer's weights bit for bit; asynchronous collectors train and leave no Ray behind."""

import json
import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from safetensors.numpy import load_file  # noqa: E402
from trainer.residual_train import Trainer  # noqa: E402
from trainer.residual_train_args import Args  # noqa: E402
from trainer.td3 import TD3Config  # noqa: E402


def tiny(out, **kw) -> Args:
    opts = dict(task="cube_lift", out_dir=out, total_steps=96, num_envs=4, offline_episodes=2, warmup_steps=32,
                eval_every=48, eval_episodes=1, td3=TD3Config(batch_size=32, hidden=(32, 32)))
    return Args(**{**opts, **kw})


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (a run that finds Ray initialised leaves it running)."""
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def test_one_sync_collector_reproduces_the_in_process_trainer_exactly(local_ray, tmp_path):
    """Probing on, so the collector draws episode prefixes and exploration noise from the learner's generator
    between the learner's own draws: only a lent generator state keeps the numbers in the same order."""
    runs = {}
    for name, kw in (("local", {}), ("ray", {"collectors": 1, "sync": True})):
        summary = Trainer(tiny(tmp_path / name, probe_alpha=0.2, **kw)).train()
        runs[name] = summary
    assert runs["ray"]["collectors"] == 1 and runs["ray"]["collection"]["transitions"] > 0
    for ckpt in ("best", "last"):
        local, remote = (load_file(tmp_path / n / f"{ckpt}.safetensors") for n in ("local", "ray"))
        assert local.keys() == remote.keys()
        for k in local:
            assert local[k].dtype == remote[k].dtype and local[k].tobytes() == remote[k].tobytes(), (ckpt, k)
    meta = [json.loads((tmp_path / n / "state" / "meta.json").read_text()) for n in ("local", "ray")]
    for key in ("env_steps", "episodes", "next_seed", "rng", "updates"):
        assert meta[0][key] == meta[1][key], key
    assert ray.is_initialized()  # the module's Ray: the run did not shut down a Ray it did not start


def test_async_collectors_train_with_disjoint_seeds_and_stop_their_actors(local_ray, tmp_path):
    args = tiny(tmp_path / "async", collectors=2, round_steps=48, total_steps=192)
    trainer = Trainer(args)
    summary = trainer.train()
    assert summary["env_steps"] >= 192 and summary["collectors"] == 2 and not summary["sync"]
    col = summary["collection"]
    assert col["calls"] >= 4 and col["transitions"] == len(trainer.online) + len(trainer.offline)
    assert trainer.agent.updates > 0
    assert (tmp_path / "async" / "best.safetensors").is_file()
    assert sorted(np.asarray(trainer.collection.next_seeds) % 2) == [0, 1]  # collector i: the seeds = i (mod 2)
    deadline = time.monotonic() + 30  # the killed actors give their CPUs back
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ray.available_resources().get("CPU", 0) == 2
