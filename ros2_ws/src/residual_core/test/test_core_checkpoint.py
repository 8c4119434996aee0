import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from residual_core.checkpoint import (
    FORMAT_VERSION,
    CheckpointCorruptError,
    CheckpointError,
    CheckpointNotFoundError,
    KindMismatchError,
    LayoutMismatchError,
    Manifest,
    TaskMismatchError,
    UnsupportedFormatVersionError,
    checkpoint_paths,
    code_version,
    load_checkpoint,
    read_manifest,
    save_checkpoint,
)
from residual_core.observation import build_observation_batch, layout_for_task, make_layout
from residual_core.residual_policy import ResidualPolicy

DATA = Path(__file__).resolve().parent / "data"
LAYOUT = layout_for_task("cube_lift")


def residual_manifest(**overrides) -> Manifest:
    kwargs = dict(
        kind="residual",
        task="cube_lift",
        observation_layout=LAYOUT,
        normalization={"obs_mean": [0.0] * LAYOUT.size},
        action_scale=[0.01, 0.01, 0.01, 0.05, 0.05, 0.05, 1.0],
        network={"class": "Test", "kwargs": {"a": 1}},
        training={"lr": 3e-4, "batch": np.int64(256), "hidden": (8, 8), "log_dir": Path("/tmp/x")},
        steps=123,
        evaluation={"success_rate": np.float32(0.5)},
    )
    kwargs.update(overrides)
    return Manifest(**kwargs)


def tensors():
    return {
        "w": torch.arange(12, dtype=torch.float32).reshape(3, 4),
        "b": np.array([1.5, -2.0], dtype=np.float64),
        "i": torch.tensor([1, 2, 3], dtype=torch.int64),
    }


@pytest.fixture()
def saved(tmp_path):
    path = save_checkpoint(tmp_path / "ckpt", tensors(), residual_manifest())
    return path


def test_round_trip(saved, tmp_path):
    assert saved == tmp_path / "ckpt.safetensors"
    assert (tmp_path / "ckpt.json").is_file()
    loaded, manifest = load_checkpoint(
        tmp_path / "ckpt", expected_kind="residual", expected_task="cube_lift", expected_layout=LAYOUT
    )
    np.testing.assert_array_equal(loaded["w"], tensors()["w"].numpy())
    assert isinstance(loaded["w"], np.ndarray) and loaded["w"].dtype == np.float32
    assert loaded["b"].dtype == np.float64 and loaded["b"].tolist() == [1.5, -2.0]
    assert loaded["i"].tolist() == [1, 2, 3]
    assert manifest.observation_layout == LAYOUT
    assert manifest.training == {"lr": 3e-4, "batch": 256, "hidden": [8, 8], "log_dir": "/tmp/x"}
    assert manifest.evaluation == {"success_rate": 0.5}
    assert manifest.steps == 123 and manifest.format_version == FORMAT_VERSION
    assert re.fullmatch(r"[0-9a-f]{64}", manifest.weights_sha256)
    assert manifest.code_version == code_version() and manifest.code_version.startswith("0.1.0")
    # Any of the three spellings of the path loads the same checkpoint.
    for p in (tmp_path / "ckpt.safetensors", tmp_path / "ckpt.json", str(tmp_path / "ckpt")):
        assert load_checkpoint(p)[1] == manifest


def test_manifest_json_is_plain_and_ordered(saved):
    data = json.loads(saved.with_suffix(".json").read_text())
    assert next(iter(data)) == "format_version"
    assert data["observation_layout"][0] == ["obj/cube/pos", 3]
    assert set(data) == {f.name for f in dataclasses.fields(Manifest)}


def test_save_does_not_modify_manifest_and_leaves_no_temp_files(tmp_path):
    m = residual_manifest()
    save_checkpoint(tmp_path / "a.safetensors", tensors(), m)
    assert m.weights_sha256 == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.safetensors"]


def test_overwrite_replaces_both_files(saved, tmp_path):
    save_checkpoint(tmp_path / "ckpt", {"x": torch.ones(2)}, residual_manifest(steps=5))
    loaded, manifest = load_checkpoint(saved)
    assert set(loaded) == {"x"} and manifest.steps == 5


def test_checkpoint_paths_keep_dots_in_stem():
    assert checkpoint_paths("runs/policy.v2") == (Path("runs/policy.v2.safetensors"), Path("runs/policy.v2.json"))
    assert checkpoint_paths("runs/p.json")[0] == Path("runs/p.safetensors")


def test_not_found_names_missing_files(tmp_path, saved):
    with pytest.raises(CheckpointNotFoundError, match=r"missing \[.*nothing\.safetensors.*nothing\.json"):
        load_checkpoint(tmp_path / "nothing")
    saved.with_suffix(".json").unlink()
    with pytest.raises(CheckpointNotFoundError, match=r"missing \['[^']*ckpt\.json'\]"):
        load_checkpoint(saved)


def test_bad_json_is_corrupt(saved):
    saved.with_suffix(".json").write_text("{not json")
    with pytest.raises(CheckpointCorruptError, match="is not valid JSON"):
        load_checkpoint(saved)
    saved.with_suffix(".json").write_text("[1, 2]")
    with pytest.raises(CheckpointCorruptError, match="must hold a JSON object, got list"):
        load_checkpoint(saved)


def rewrite_manifest(weights: Path, **changes):
    path = weights.with_suffix(".json")
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is KeyError:
            del data[key]
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def test_missing_or_unknown_manifest_fields_are_corrupt(saved):
    rewrite_manifest(saved, steps=KeyError, extra=1)
    with pytest.raises(CheckpointCorruptError, match=r"missing \['steps'\], unknown \['extra'\]"):
        load_checkpoint(saved)


def test_invalid_manifest_values_are_corrupt(saved):
    rewrite_manifest(saved, kind="critic")
    with pytest.raises(CheckpointCorruptError, match="kind must be one of"):
        load_checkpoint(saved)
    rewrite_manifest(saved, kind="residual", observation_layout=[["a", -1]])
    with pytest.raises(CheckpointCorruptError, match="positive int"):
        load_checkpoint(saved)


def test_format_version_errors(saved):
    rewrite_manifest(saved, format_version=2)
    with pytest.raises(UnsupportedFormatVersionError, match="format_version 2; this code reads version 1"):
        load_checkpoint(saved)
    rewrite_manifest(saved, format_version="1")
    with pytest.raises(CheckpointCorruptError, match="no integer format_version"):
        load_checkpoint(saved)


def test_sha_mismatch_and_truncated_weights_are_corrupt(saved):
    blob = saved.read_bytes()
    saved.write_bytes(blob[:-10])
    with pytest.raises(CheckpointCorruptError, match="sha256 .* the manifest says"):
        load_checkpoint(saved)
    # Even with a matching sha the truncated file is refused by the safetensors parser.
    import hashlib

    rewrite_manifest(saved, weights_sha256=hashlib.sha256(blob[:-10]).hexdigest())
    with pytest.raises(CheckpointCorruptError, match="not a valid safetensors file"):
        load_checkpoint(saved)


def test_kind_task_layout_mismatch(saved, tmp_path):
    with pytest.raises(KindMismatchError, match="is a residual checkpoint, expected base"):
        load_checkpoint(saved, expected_kind="base")
    with pytest.raises(TaskMismatchError, match="trained for task 'cube_lift', expected 'pick_place'"):
        load_checkpoint(saved, expected_task="pick_place")
    with pytest.raises(
        LayoutMismatchError,
        match=r"differs from the expected one \(57 values\): field #4 differs: "
        r"expected 'obj/target/pos' \(size 3\), got 'proprio/joint_pos' \(size 7\)",
    ):
        load_checkpoint(saved, expected_layout=make_layout(["cube", "target"]))
    with pytest.raises(ValueError, match="expected_kind must be one of"):
        load_checkpoint(saved, expected_kind="critic")
    # Every specific error is a CheckpointError and a ValueError.
    assert issubclass(LayoutMismatchError, CheckpointError) and issubclass(CheckpointError, ValueError)


def test_multitask_base_checkpoint_matches_any_task(tmp_path):
    m = Manifest(kind="base", task="all", network={"class": "X", "kwargs": {}})
    path = save_checkpoint(tmp_path / "base", {"w": torch.zeros(1)}, m)
    _, loaded = load_checkpoint(path, expected_kind="base", expected_task="stack_cube")
    assert loaded.observation_layout is None
    with pytest.raises(LayoutMismatchError, match="has no observation layout"):
        load_checkpoint(path, expected_layout=LAYOUT)


def test_manifest_validation_messages():
    with pytest.raises(ValueError, match="task 'all' is not valid for a residual checkpoint"):
        residual_manifest(task="all")
    with pytest.raises(ValueError, match="needs its observation_layout"):
        residual_manifest(observation_layout=None)
    with pytest.raises(ValueError, match="steps must be an int >= 0"):
        residual_manifest(steps=-1)


def test_non_json_values_are_refused_with_their_location(tmp_path):
    m = residual_manifest(evaluation={"returns": [1.0, float("nan")]})
    with pytest.raises(ValueError, match=r"manifest.evaluation.returns\[1\] is nan"):
        save_checkpoint(tmp_path / "x", tensors(), m)
    m = residual_manifest(training={"fn": print})
    with pytest.raises(ValueError, match="manifest.training.fn has type builtin_function_or_method"):
        save_checkpoint(tmp_path / "x", tensors(), m)
    assert not list(tmp_path.iterdir())


def test_read_manifest_does_not_need_weights_to_be_valid(saved):
    saved.write_bytes(b"garbage")
    assert read_manifest(saved).steps == 123


def test_frozen_v1_checkpoint_still_loads_and_computes_the_same():
    """Format stability: a checkpoint written by format version 1 code must keep loading unchanged."""
    stem = DATA / "frozen_residual_v1"
    expected = json.loads((DATA / "frozen_residual_v1_expected.json").read_text())
    tensors_, manifest = load_checkpoint(
        stem, expected_kind="residual", expected_task="cube_lift", expected_layout=LAYOUT
    )
    assert manifest.format_version == 1 and manifest.network["class"] == "ResidualActor"
    assert set(tensors_) == {
        "obs_mean",
        "obs_std",
        "mlp.linears.0.weight",
        "mlp.linears.0.bias",
        "mlp.linears.1.weight",
        "mlp.linears.1.bias",
        "mlp.linears.2.weight",
        "mlp.linears.2.bias",
    }
    # The observation builder still lays out these states exactly as it did.
    state = {k: np.asarray(v) for k, v in expected["state"].items()}
    obs = build_observation_batch(LAYOUT, **state)
    np.testing.assert_allclose(obs, np.asarray(expected["observation"], dtype=np.float32), rtol=0, atol=1e-6)
    policy = ResidualPolicy.from_checkpoint(stem, expected_task="cube_lift", expected_layout=LAYOUT)
    np.testing.assert_allclose(policy.raw(obs), expected["raw_output"], atol=1e-5)
    # float32 network: a few ulps differ between CPUs' BLAS kernels (1.8e-7 seen on a Haswell-core OpenBLAS),
    # so the scaled output is compared at the raw output's relative precision.
    np.testing.assert_allclose(policy(obs), expected["scaled_residual"], rtol=1e-5, atol=1e-7)


def test_manifest_accepts_numpy_numbers_and_stores_plain_floats():
    m = residual_manifest(
        action_scale=np.full(7, 0.5, dtype=np.float32),
        normalization={"obs_mean": np.zeros(LAYOUT.size, dtype=np.float32)},
        steps=np.int64(7),
    )
    assert m.action_scale == [0.5] * 7 and type(m.steps) is int
    assert all(type(v) is float for v in m.normalization["obs_mean"])
    with pytest.raises(ValueError, match="action_scale must be finite numbers"):
        residual_manifest(action_scale=[0.1, float("inf")])
