"""Checkpoints that are internally consistent (the manifest's sha256 matches the weights) but poisoned are refused by
every loader: load_checkpoint, read_manifest (what the arbiter reads), ResidualPolicy and BasePolicy."""

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
from residual_core.checkpoint import (
    ActionScaleError,
    LayoutMismatchError,
    Manifest,
    NonFiniteValuesError,
    load_checkpoint,
    read_manifest,
    save_checkpoint,
)
from residual_core.observation import layout_for_task
from residual_core.residual_policy import ResidualPolicy
from residual_learning.base_policy import BASE_FEATURE_DIM, BasePolicy, BasePolicyNet
from residual_learning.networks import ResidualActor, save_residual_checkpoint
from safetensors.numpy import load_file, save_file

SCALE = [0.01, 0.01, 0.01, 0.05, 0.05, 0.05, 1.0]


def residual_checkpoint(tmp_path: Path, task: str = "pick_place", name: str = "res") -> Path:
    """A small ResidualActor saved for ``task``; returns the stem. It loads cleanly as written."""
    torch.manual_seed(0)
    layout = layout_for_task(task)
    actor = ResidualActor(layout.size, hidden=(8, 8))
    with torch.no_grad():
        actor.mlp.linears[-1].weight.normal_(0, 0.3)
    stem = save_residual_checkpoint(tmp_path / name, actor, layout, task, SCALE, {}, 1, {}).with_suffix("")
    ResidualPolicy.from_checkpoint(stem, expected_task=task, expected_layout=layout)
    return stem


def base_checkpoint(tmp_path: Path) -> Path:
    net = BasePolicyNet(horizon=2, hidden=(8,))
    stem = tmp_path / "base"
    manifest = Manifest(kind="base", task="all", network=net.config(), training={"execute_steps": 2})
    save_checkpoint(stem, dict(net.state_dict()), manifest)
    BasePolicy.from_checkpoint(stem)
    return stem


def poison_weight(stem: Path, tensor: str, value: float) -> Path:
    """Write ``value`` into one element of ``tensor`` and recompute the manifest's sha256: internally consistent."""
    weights, manifest = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    tensors = load_file(weights)
    tensors[tensor].reshape(-1)[3] = value
    save_file(tensors, weights)
    data = json.loads(manifest.read_text())
    data["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    manifest.write_text(json.dumps(data))
    return weights


def rewrite_manifest(stem: Path, **changes) -> Path:
    """Change manifest keys; the weights (and so their sha256) are untouched: still internally consistent."""
    path = stem.with_suffix(".json")
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_residual_weights_with_a_matching_sha256_are_refused(tmp_path, value):
    stem = residual_checkpoint(tmp_path)
    weights = poison_weight(stem, "mlp.linears.1.weight", value)
    assert read_manifest(stem).weights_sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    message = re.escape(f"weights {weights} hold NaN or inf in 1 tensor(s): mlp.linears.1.weight (1 of 64 values)")
    with pytest.raises(NonFiniteValuesError, match=message):
        load_checkpoint(stem)
    with pytest.raises(NonFiniteValuesError, match=message):
        ResidualPolicy.from_checkpoint(stem, expected_task="pick_place", expected_layout=layout_for_task("pick_place"))


def test_non_finite_base_weights_with_a_matching_sha256_are_refused(tmp_path):
    stem = base_checkpoint(tmp_path)
    weights = poison_weight(stem, "net.0.weight", float("nan"))
    with pytest.raises(NonFiniteValuesError, match=re.escape(f"weights {weights} hold NaN or inf in 1 tensor(s): "
                                                              f"net.0.weight (1 of {8 * BASE_FEATURE_DIM} values)")):
        BasePolicy.from_checkpoint(stem)


def test_non_finite_manifest_numbers_are_refused(tmp_path):
    stem = residual_checkpoint(tmp_path)
    data = json.loads(stem.with_suffix(".json").read_text())
    obs_std = data["normalization"]["obs_std"]
    obs_std[5] = float("nan")
    path = rewrite_manifest(stem, normalization=dict(data["normalization"], obs_std=obs_std))
    assert "NaN" in path.read_text()  # json.dumps writes it and json.loads reads it back: only a check refuses it
    with pytest.raises(NonFiniteValuesError, match=re.escape(f"manifest {path}: manifest.normalization.obs_std[5] is "
                                                             "nan")):
        read_manifest(stem)


@pytest.mark.parametrize("scale", [[1e6] * 7, [0.01, 0.01, 0.06, 0.05, 0.05, 0.05, 1.0],
                                   [0.01, 0.01, 0.01, 0.05, 0.05, 0.3, 1.0], [0.01] * 6 + [1.5]])
def test_residual_bound_outside_the_action_spec_is_refused(tmp_path, scale):
    stem = residual_checkpoint(tmp_path)
    path = rewrite_manifest(stem, action_scale=scale)
    for load in (read_manifest, load_checkpoint, ResidualPolicy.from_checkpoint):  # read_manifest: the arbiter's
        with pytest.raises(ActionScaleError, match=re.escape(f"manifest {path}: the residual bound action_scale")):
            load(stem)
    with pytest.raises(ActionScaleError, match=r"dx 1e\+06 > 0\.05 \(ActionSpec\.max_translation\); dy 1e\+06"):
        read_manifest(rewrite_manifest(stem, action_scale=[1e6] * 7))


def test_negative_or_short_residual_bound_is_refused(tmp_path):
    stem = residual_checkpoint(tmp_path)
    rewrite_manifest(stem, action_scale=[0.01, -0.01, 0.01, 0.05, 0.05, 0.05, 1.0])
    with pytest.raises(ActionScaleError, match="dy -0.01 < 0"):
        read_manifest(stem)
    rewrite_manifest(stem, action_scale=[0.01] * 3)
    with pytest.raises(ActionScaleError, match=r"7 values are needed, got shape \(3,\)"):
        read_manifest(stem)


@pytest.mark.parametrize("trained_for", ["pick_place", "cube_lift"])
def test_residual_relabelled_with_another_task_is_refused(tmp_path, trained_for):
    """pick_place's layout has stack_cube's size (57): only the object names tell them apart; cube_lift's is 44."""
    stem = residual_checkpoint(tmp_path, task=trained_for)
    path = rewrite_manifest(stem, task="stack_cube")
    objects = list(layout_for_task(trained_for).object_names)
    message = re.escape(f"manifest {path} names task 'stack_cube', but its observation layout (objects {objects}")
    for load in (read_manifest, load_checkpoint):
        with pytest.raises(LayoutMismatchError, match=message):
            load(stem)
    expected = r"is not stack_cube's \(objects \['cube', 'base_cube'\], 57 values\)"
    with pytest.raises(LayoutMismatchError, match=expected):
        ResidualPolicy.from_checkpoint(stem, expected_task="stack_cube")

