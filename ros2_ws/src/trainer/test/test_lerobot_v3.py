"""Tests of our LeRobotDataset v3.0 writer/reader/validator (trainer.lerobot_v3): round trips, layout, refusals."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from trainer.lerobot_v3 import (
    CODEBASE_VERSION,
    DEFAULT_FEATURES,
    EPISODE_COLUMNS,
    QUANTILES,
    DatasetWriter,
    FeatureSpec,
    is_policy_key,
)
from trainer.lerobot_v3_read import read_dataset, validate

FEATURES = {
    "observation.state": FeatureSpec("float32", (3,), ["x", "y", "z"]),
    "action": FeatureSpec("float32", (2,)),
    "observation.count": FeatureSpec("int64", (1,)),
    "next.success": FeatureSpec("bool", (1,)),
    "intervention": FeatureSpec("bool", (2,)),
    "complementary_info.base_action": FeatureSpec("float64", (2,)),
}
TASKS = ["pick up the cube", "push the cube"]


def _episode(rng: np.random.Generator, length: int) -> dict[str, np.ndarray]:
    state = rng.normal(size=(length, 3)).astype(np.float32)
    state[0] = [-0.0, np.finfo(np.float32).max, np.finfo(np.float32).smallest_subnormal]  # bit-exactness probes
    return {
        "observation.state": state,
        "action": rng.normal(size=(length, 2)).astype(np.float32),
        "observation.count": rng.integers(-(2**62), 2**62, size=(length, 1)),
        "next.success": (np.arange(length) == length - 1)[:, None],
        "intervention": rng.random((length, 2)) > 0.5,
        "complementary_info.base_action": rng.normal(size=(length, 2)),
    }


def _write(root: Path, n_episodes: int = 7, **kwargs) -> tuple[list[dict], list[str], list[dict]]:
    rng = np.random.default_rng(1)
    episodes, tasks, metas = [], [], []
    with DatasetWriter(root, fps=20, features=FEATURES, robot_type="franka", **kwargs) as writer:
        for e in range(n_episodes):
            frames = _episode(rng, int(rng.integers(20, 60)))
            task = TASKS[(e // 2) % 2]
            meta = {"seed": 100 + e, "takeover_step": float(e) / 2, "success": e % 3 == 0, "source": f"run{e}"}
            assert writer.add_episode(frames, task, meta) == e
            episodes.append(frames)
            tasks.append(task)
            metas.append(meta)
    return episodes, tasks, metas


@pytest.fixture(scope="module")
def rolled(tmp_path_factory) -> tuple[Path, list[dict], list[str], list[dict]]:
    """A dataset written with tiny data files (several episodes per file) and 2 files per chunk folder."""
    root = tmp_path_factory.mktemp("lerobot") / "rolled"
    episodes, tasks, metas = _write(root, data_file_size_mb=0.012, chunks_size=2)
    return root, episodes, tasks, metas


def test_round_trip_is_bit_exact_across_file_and_chunk_rollover(rolled):
    root, episodes, tasks, metas = rolled
    files = sorted((root / "data").rglob("*.parquet"))
    chunks = {f.parent.name for f in files}
    assert len(files) >= 3 and len(chunks) >= 2, files  # several data files and chunk folders were written
    ds = read_dataset(root)
    per_file = ds.episodes.groupby(["data/chunk_index", "data/file_index"]).size()
    assert per_file.max() >= 2, per_file  # files hold several episodes (rolled near the size, not per episode)
    assert (ds.num_episodes, ds.num_frames) == (len(episodes), sum(len(ep["action"]) for ep in episodes))

    for name, spec in FEATURES.items():
        expected = np.concatenate([ep[name] for ep in episodes])
        got = ds.column(name)
        assert got.dtype == np.dtype(spec.dtype) and got.shape == expected.shape, name
        assert got.tobytes() == expected.tobytes(), name

    start = 0
    for e, frames in enumerate(episodes):
        got = ds.episode_frames(e)
        assert set(got) == set(FEATURES) | set(DEFAULT_FEATURES)
        length = len(frames["action"])
        for name in FEATURES:
            assert got[name].tobytes() == frames[name].tobytes(), (e, name)
        np.testing.assert_array_equal(got["frame_index"][:, 0], np.arange(length))
        np.testing.assert_array_equal(got["index"][:, 0], np.arange(start, start + length))
        np.testing.assert_array_equal(got["episode_index"][:, 0], e)
        np.testing.assert_array_equal(got["timestamp"][:, 0], (np.arange(length) / 20).astype(np.float32))
        assert got["timestamp"].dtype == np.float32
        assert got["task_index"][0, 0] == TASKS.index(tasks[e])  # task indices in order of first use
        start += length

    row = ds.episodes.iloc[3]
    assert list(row["tasks"]) == [tasks[3]]
    assert {k: row[k] for k in metas[3]} == metas[3]


def test_written_dataset_validates_and_has_the_documented_layout(rolled):
    root, episodes, tasks, metas = rolled
    assert validate(root) == []

    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == CODEBASE_VERSION == "v3.0"
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] is None
    assert info["splits"] == {"train": f"0:{len(episodes)}"}
    assert (info["total_episodes"], info["total_tasks"], info["chunks_size"]) == (len(episodes), 2, 2)
    assert list(info["features"]) == [*FEATURES, *DEFAULT_FEATURES]
    assert info["features"]["observation.state"] == {"dtype": "float32", "shape": [3], "names": ["x", "y", "z"]}
    assert info["features"]["timestamp"] == {"dtype": "float32", "shape": [1], "names": None}

    tasks_df = pd.read_parquet(root / "meta/tasks.parquet")
    assert tasks_df.index.name == "task" and list(tasks_df.columns) == ["task_index"]
    assert tasks_df["task_index"].to_dict() == {TASKS[0]: 0, TASKS[1]: 1}

    episodes_table = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet")
    assert episodes_table.column_names == [*EPISODE_COLUMNS, *metas[0]]
    assert episodes_table.schema.field("tasks").type == pa.list_(pa.string())
    assert episodes_table.schema.field("success").type == pa.bool_()

    data = pq.ParquetFile(sorted((root / "data").rglob("*.parquet"))[0])
    assert data.schema_arrow.field("observation.state").type == pa.list_(pa.float32(), 3)
    assert data.schema_arrow.field("observation.count").type == pa.int64()
    assert data.metadata.row_group(0).column(0).compression == "SNAPPY"


def test_stats_match_numpy(rolled):
    root, episodes, _, _ = rolled
    stats = json.loads((root / "meta/stats.json").read_text())
    assert set(stats) == set(FEATURES) | set(DEFAULT_FEATURES)
    for name in FEATURES:
        values = np.concatenate([ep[name] for ep in episodes]).astype(np.float64)
        assert stats[name]["count"] == [len(values)]
        for key, fn in {"min": np.min, "max": np.max, "mean": np.mean, "std": np.std}.items():
            np.testing.assert_allclose(stats[name][key], fn(values, axis=0), rtol=1e-12, err_msg=f"{name} {key}")
        for key, q in QUANTILES.items():
            np.testing.assert_allclose(stats[name][key], np.quantile(values, q, axis=0), rtol=1e-12, err_msg=key)
    lengths = [len(ep["action"]) for ep in episodes]
    assert stats["index"]["max"] == [sum(lengths) - 1]
    assert stats["frame_index"]["max"] == [max(lengths) - 1]


def _copy(src: Path, dst: Path) -> Path:
    for path in src.rglob("*"):
        if path.is_file():
            (dst / path.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            (dst / path.relative_to(src)).write_bytes(path.read_bytes())
    return dst


def test_validate_names_an_edited_info_total(rolled, tmp_path):
    root = _copy(rolled[0], tmp_path / "ds")
    info = json.loads((root / "meta/info.json").read_text())
    info["total_frames"] += 1
    (root / "meta/info.json").write_text(json.dumps(info))
    problems = validate(root)
    assert problems and all("total_frames" in p for p in problems), problems


def test_validate_names_a_shifted_index_column(rolled, tmp_path):
    root = _copy(rolled[0], tmp_path / "ds")
    path = sorted((root / "data").rglob("*.parquet"))[1]
    table = pq.read_table(path)
    shifted = pa.array(table["index"].to_numpy() + 1, type=pa.int64())
    pq.write_table(table.set_column(table.schema.get_field_index("index"), "index", shifted), path)
    problems = validate(root)
    assert len(problems) == 1 and "index is not contiguous" in problems[0], problems


def test_validate_names_a_wrong_column_type_and_missing_stats(rolled, tmp_path):
    root = _copy(rolled[0], tmp_path / "ds")
    info = json.loads((root / "meta/info.json").read_text())
    info["features"]["action"]["dtype"] = "float64"
    (root / "meta/info.json").write_text(json.dumps(info))
    stats = json.loads((root / "meta/stats.json").read_text())
    del stats["observation.state"]["q99"]
    (root / "meta/stats.json").write_text(json.dumps(stats))
    problems = validate(root)
    assert any("column 'action'" in p and "float>[2], info.json says" in p and "double>[2]" in p for p in problems)
    assert any("observation.state" in p and "q99" in p for p in problems), problems


def test_read_dataset_refuses_a_folder_that_is_not_v3(rolled, tmp_path):
    with pytest.raises(FileNotFoundError, match="meta/info.json"):
        read_dataset(tmp_path)
    root = _copy(rolled[0], tmp_path / "ds")
    info = json.loads((root / "meta/info.json").read_text())
    info["codebase_version"] = "v2.1"
    (root / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="v2.1"):
        read_dataset(root)
    assert "v2.1" in validate(root)[0]


def _good(length: int = 5) -> dict[str, np.ndarray]:
    return _episode(np.random.default_rng(0), length)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.pop("action"), "missing \\['action'\\]"),
        (lambda f: f.update(extra=np.zeros((5, 1))), "extra \\['extra'\\]"),
        (lambda f: f.update(action=np.zeros((5, 3), np.float32)), "'action': shape \\(5, 3\\)"),
        (lambda f: f.update(action=np.zeros(5, np.float32)), "'action': shape \\(5,\\)"),
        (lambda f: f["action"].__setitem__((2, 1), np.nan), "'action': 1 NaN/Inf"),
        (lambda f: f.update(action=np.zeros((6, 2), np.float32)), "different numbers of frames"),
        (lambda f: f.update(action=np.zeros((5, 2))), "'action': dtype float64 cannot be stored losslessly"),
    ],
)
def test_writer_refuses_bad_frames_and_writes_nothing(tmp_path, change, message):
    root = tmp_path / "ds"
    writer = DatasetWriter(root, fps=10, features=FEATURES, robot_type="franka")
    frames = _good()
    change(frames)
    with pytest.raises(ValueError, match=message):
        writer.add_episode(frames, "task")
    assert not root.exists()  # nothing written
    assert writer.add_episode(_good(), "task") == 0  # the refused episode took no index
    writer.close()
    assert validate(root) == [] and read_dataset(root).num_frames == 5


def test_writer_refuses_inconsistent_meta(tmp_path):
    writer = DatasetWriter(tmp_path / "ds", fps=10, features=FEATURES, robot_type="franka")
    writer.add_episode(_good(), "task", {"seed": 1, "takeover_step": 2.0})
    with pytest.raises(ValueError, match="differ from the first episode"):
        writer.add_episode(_good(), "task", {"seed": 1})
    with pytest.raises(ValueError, match="'seed': str value"):
        writer.add_episode(_good(), "task", {"seed": "1", "takeover_step": 2.0})
    with pytest.raises(ValueError, match="not an int, float, str or bool"):
        writer.add_episode(_good(), "task", {"seed": [1], "takeover_step": 2.0})
    writer.add_episode(_good(), "other task", {"seed": np.int64(2), "takeover_step": 3})  # int into a float column
    root = writer.close()
    ds = read_dataset(root)
    assert ds.episodes["takeover_step"].tolist() == [2.0, 3.0] and ds.episodes["seed"].tolist() == [1, 2]
    assert ds.num_episodes == 2 and validate(root) == []


def test_writer_refuses_an_existing_root_unless_overwrite(rolled, tmp_path):
    root = _copy(rolled[0], tmp_path / "ds")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    with pytest.raises(FileExistsError, match="overwrite=True"):
        DatasetWriter(root, fps=10, features=FEATURES, robot_type="franka")
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before

    (root / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="notes.txt"):
        DatasetWriter(root, fps=10, features=FEATURES, robot_type="franka", overwrite=True)
    assert (root / "notes.txt").read_text() == "keep me" and (root / "meta/info.json").exists()

    (root / "notes.txt").unlink()
    with DatasetWriter(root, fps=10, features=FEATURES, robot_type="franka", overwrite=True) as writer:
        writer.add_episode(_good(), "task")
    assert read_dataset(root).num_episodes == 1 and validate(root) == []


def test_exception_in_with_block_leaves_no_info_json(tmp_path):
    root = tmp_path / "ds"
    with pytest.raises(RuntimeError, match="boom"):
        with DatasetWriter(root, fps=10, features=FEATURES, robot_type="franka") as writer:
            writer.add_episode(_good(), "task")
            raise RuntimeError("boom")
    assert not (root / "meta/info.json").exists()
    assert pq.read_table(root / "data/chunk-000/file-000.parquet").num_rows == 5  # the data file is closed cleanly
    with pytest.raises(FileNotFoundError, match="not a LeRobot dataset"):
        read_dataset(root)
    with pytest.raises(RuntimeError, match="aborted"):
        writer.close()


def test_writer_refuses_bad_declarations(tmp_path):
    with pytest.raises(NotImplementedError, match="not supported yet"):
        FeatureSpec("video", (3, 64, 64))
    with pytest.raises(ValueError, match="only 1-D shapes"):
        FeatureSpec("float32", (2, 2))
    with pytest.raises(ValueError, match="names"):
        FeatureSpec("float32", (2,), ["a"])
    with pytest.raises(ValueError, match="clashes with a default column"):
        DatasetWriter(tmp_path / "ds", fps=10, features={"index": FeatureSpec("int64", (1,))}, robot_type="x")
    with pytest.raises(ValueError, match="no episodes"):
        DatasetWriter(tmp_path / "ds", fps=10, features=FEATURES, robot_type="x").close()
    assert not (tmp_path / "ds").exists()


def test_is_policy_key():
    assert is_policy_key("observation.state") and is_policy_key("action") and is_policy_key("observation")
    assert not is_policy_key("complementary_info.base_action") and not is_policy_key("next.success")
