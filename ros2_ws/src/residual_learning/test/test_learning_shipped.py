"""The shipped checkpoints after the loader moved to safetensors.numpy: same bytes, same outputs.

- the numpy residual policy (residual_core, what the residual node runs) and the torch ResidualActor (what the
  trainer optimised) give the same residual on every shipped residual checkpoint, to float32 precision;
- ``save_checkpoint`` (now safetensors.numpy) writes what safetensors.torch wrote: re-saving the loaded weights gives
  the shipped file's header entries and data bytes. (Not always the same file bytes: safetensors writes the
  ``__metadata__`` keys in its hash-map order, which differs from process to process with either writer.)
- the torch sim base policy still loads from the numpy arrays.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from residual_core.checkpoint import (
    FORMAT_VERSION,
    checkpoint_paths,
    checkpoint_root,
    default_base_checkpoint,
    load_checkpoint,
    read_manifest,
    save_checkpoint,
)
from residual_core.residual_policy import ResidualPolicy
from residual_core.tasks import TASK_NAMES
from residual_learning.base_policy import BASE_FEATURE_DIM, BasePolicy
from residual_learning.networks import ResidualActor
from safetensors.torch import save as torch_save

REPO = Path(__file__).resolve().parents[4]
SHIPPED = REPO / "checkpoints"
RESIDUALS = [SHIPPED / "residual" / t for t in TASK_NAMES if checkpoint_paths(SHIPPED / "residual" / t)[0].is_file()]
ROBUST = sorted(p.with_suffix("") for p in (SHIPPED / "residual_robust").glob("*.safetensors"))
"""Residuals of issue 11's RL recipe (BC base population, randomised physics, composed from the target), per task
trained so far."""
TD3 = sorted(p.with_suffix("") for p in (SHIPPED / "residual_td3").glob("*.safetensors"))
"""The TD3 residuals that were the defaults until residual-dagger's replaced them (docs/RESULTS.md measured them)."""
REACTIVE_EXPERT_TASKS = ("stand_cup_up",)
"""Defaults that imitated the task's memory-free expert (franka_sim.experts.REACTIVE_EXPERTS), not its phase machine."""


def split_safetensors(blob: bytes) -> tuple[dict, bytes]:
    """(header as a dict, data bytes) of a safetensors file."""
    n = struct.unpack("<Q", blob[:8])[0]
    return json.loads(blob[8 : 8 + n]), blob[8 + n :]


def test_checkpoint_root_is_the_repository_folder_or_the_environment_variable(monkeypatch, tmp_path):
    monkeypatch.delenv("RESIDUAL_VLA_CHECKPOINTS", raising=False)
    monkeypatch.chdir(tmp_path)  # the current directory plays no part
    assert checkpoint_root() == SHIPPED
    assert default_base_checkpoint() == SHIPPED / "base" / "base_policy"
    monkeypatch.setenv("RESIDUAL_VLA_CHECKPOINTS", str(tmp_path))
    assert checkpoint_root() == tmp_path


def test_every_task_ships_a_residual():
    assert len(RESIDUALS) == len(TASK_NAMES)


@pytest.mark.parametrize("stem", RESIDUALS + ROBUST + TD3, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_numpy_and_torch_forward_agree_on_shipped_residual(stem):
    policy = ResidualPolicy.from_checkpoint(stem)
    tensors, manifest = load_checkpoint(stem, expected_kind="residual")
    actor = ResidualActor(**manifest.network["kwargs"])
    actor.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()})
    actor.eval()
    rng = np.random.default_rng(0)
    mean, std = np.asarray(manifest.normalization["obs_mean"]), np.asarray(manifest.normalization["obs_std"])
    obs = (mean + std * rng.normal(size=(256, policy.obs_dim)) * 2).astype(np.float32)
    with torch.no_grad():
        ref = actor(torch.from_numpy(obs)).numpy()
    u = policy.raw(obs)
    assert np.abs(ref).max() > 1e-3  # a trained residual, not the zero initialisation
    # float32 sums in another order: a few ulp of the pre-activations, which are larger in the imitation-trained
    # residuals (seen: 2.6e-6 on pick_place's); 1e-5 of the bound is 0.1 micrometre per step
    np.testing.assert_allclose(u, ref, rtol=0, atol=1e-5)
    # float32 kernels for one row and for a batch differ by a few ulp on some CPUs (seen: 1.2e-7 at 0.26)
    np.testing.assert_allclose(policy(obs[0]), ref[0] * np.asarray(manifest.action_scale), rtol=0, atol=1e-6)


@pytest.mark.parametrize("stem", [*RESIDUALS, *ROBUST, *TD3, SHIPPED / "base" / "base_policy"],
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_saving_the_loaded_weights_reproduces_the_shipped_bytes(stem, tmp_path):
    tensors, manifest = load_checkpoint(stem)
    shipped = checkpoint_paths(stem)[0].read_bytes()
    assert hashlib.sha256(shipped).hexdigest() == manifest.weights_sha256
    header, data = split_safetensors(shipped)
    assert header["__metadata__"] == {"format": "residual_core", "format_version": str(FORMAT_VERSION)}
    assert split_safetensors(save_checkpoint(tmp_path / "copy", tensors, manifest).read_bytes()) == (header, data)
    # ... and torch tensors in, or the old safetensors.torch writer, give the same file.
    as_torch = {k: torch.from_numpy(v) for k, v in tensors.items()}
    assert split_safetensors(save_checkpoint(tmp_path / "copy_t", as_torch, manifest).read_bytes()) == (header, data)
    assert split_safetensors(torch_save(as_torch, metadata=header["__metadata__"])) == (header, data)


def test_shipped_base_policy_loads_from_numpy_weights():
    base = BasePolicy.from_checkpoint(default_base_checkpoint())
    tensors, _ = load_checkpoint(default_base_checkpoint(), expected_kind="base")
    for k, v in base.net.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), tensors[k])
    chunk = base.predict_chunk(np.zeros(BASE_FEATURE_DIM, dtype=np.float32))
    assert chunk.shape == (base.net.horizon, 7) and np.all(np.isfinite(chunk))


@pytest.mark.parametrize("stem", ROBUST, ids=lambda p: p.name)
def test_robust_residuals_record_their_recipe(stem):
    """The manifest says what the residual was trained against: the base population, the physics, the composition."""
    _, manifest = load_checkpoint(stem, expected_kind="residual")
    training = manifest.training
    assert stem.name == manifest.task
    assert training["compose_from"] == "target"
    assert training["base_population"]["source"] == "checkpoints/bases/population_bc.json"
    assert len(training["base_population"]["members"]) == 5
    assert training["dynamics"]["kind"] == "per_episode_draws"


def test_the_default_residuals_record_how_they_were_trained():
    """Every default comes from residual-dagger with issue 11's recipe (the training population of bases, physics drawn
    per episode, the perception model fitted to the camera estimator); stand_cup_up's imitated the memory-free expert
    and was kept on a validation half through i.i.d. pose noise; the replaced TD3 residuals are kept in
    checkpoints/residual_td3."""
    assert sorted(p.name for p in RESIDUALS) == sorted(TASK_NAMES)
    assert sorted(p.name for p in TD3) == sorted(TASK_NAMES)
    for stem in RESIDUALS:
        training = load_checkpoint(stem, expected_kind="residual")[1].training
        assert training["algorithm"] == "dagger"
        assert training["base_population"]["source"] == "checkpoints/bases/population.json"
        assert len(training["base_population"]["members"]) == 9
        assert training["perception"]["kind"] == "fitted_camera_model"
        assert training["perception"]["path"] == "checkpoints/perception/camera.json"
        assert training["perception"]["iid_fraction"] == 0.5  # exact poses seen in training too (docs/RESULTS.md)
        assert training["dynamics"]["kind"] == "per_episode_draws"
        assert training["compose_from"] == "measured"
        reactive = stem.name in REACTIVE_EXPERT_TASKS
        assert training["expert"].get("kind", "phases") == ("reactive" if reactive else "phases")
        protocol = read_manifest(stem).evaluation["protocol"]
        assert protocol.get("iid_fraction", 0.0) == (0.5 if reactive else 0.0)
        for stem_td3 in TD3:  # the replaced residual is another network, not a copy
            if stem_td3.name == stem.name:
                assert read_manifest(stem_td3).weights_sha256 != read_manifest(stem).weights_sha256
