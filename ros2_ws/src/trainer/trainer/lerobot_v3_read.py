"""Reading and checking a LeRobotDataset v3.0 written by :class:`trainer.lerobot_v3.DatasetWriter` (or LeRobot).

The layout, names and Arrow conversions are :mod:`trainer.lerobot_v3`'s; this module reads them back
(:func:`read_dataset`: meta tables in memory, frame columns on demand) and checks a folder against them
(:func:`validate`: our own format checks, the ones lerobot-doctor's format section also makes).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from trainer.lerobot_v3 import (
    CODEBASE_VERSION,
    DEFAULT_FEATURES,
    EPISODE_COLUMNS,
    EPISODES_PATH,
    INFO_KEYS,
    INFO_PATH,
    STATS_KEYS,
    STATS_PATH,
    TASKS_PATH,
    UNSUPPORTED_DTYPES,
    FeatureSpec,
    read_column,
    template_fields,
    to_numpy,
)


@dataclass
class LeRobotDataset:
    """A v3.0 dataset on disk: its meta tables in memory, frame columns read on demand."""

    root: Path
    info: dict
    tasks: pd.DataFrame
    episodes: pd.DataFrame
    stats: dict
    features: dict[str, FeatureSpec] = field(init=False)

    def __post_init__(self) -> None:
        self.features = {
            name: FeatureSpec.from_info(entry)
            for name, entry in self.info["features"].items()
            if entry["dtype"] not in UNSUPPORTED_DTYPES
        }

    @property
    def num_frames(self) -> int:
        """Total frames (info.json total_frames)."""
        return int(self.info["total_frames"])

    @property
    def num_episodes(self) -> int:
        """Total episodes (info.json total_episodes)."""
        return int(self.info["total_episodes"])

    def data_path(self, chunk_index: int, file_index: int) -> Path:
        """The data parquet file at (chunk_index, file_index)."""
        return self.root / self.info["data_path"].format(chunk_index=int(chunk_index), file_index=int(file_index))

    def data_files(self) -> list[Path]:
        """The data files the episodes refer to, in (chunk, file) order."""
        pairs = self.episodes[["data/chunk_index", "data/file_index"]].drop_duplicates()
        return [self.data_path(c, f) for c, f in sorted(pairs.itertuples(index=False, name=None))]

    def _spec(self, name: str) -> FeatureSpec:
        if name not in self.features:
            kind = self.info["features"].get(name, {}).get("dtype")
            if kind in UNSUPPORTED_DTYPES:
                raise NotImplementedError(f"feature {name!r} is a {kind}: image/video columns cannot be read yet")
            raise KeyError(f"no feature {name!r}; features: {sorted(self.features)}")
        return self.features[name]

    def column(self, name: str) -> np.ndarray:
        """All frames of one feature, shape (N, *feature shape), in the declared dtype."""
        spec = self._spec(name)
        return read_column(self.data_files(), name, spec)

    def episode_frames(self, episode_index: int) -> dict[str, np.ndarray]:
        """Every column of one episode, each of shape (T, *feature shape)."""
        rows = self.episodes[self.episodes["episode_index"] == episode_index]
        if len(rows) != 1:
            raise KeyError(f"episode {episode_index} not in {self.root} ({self.num_episodes} episodes)")
        row = rows.iloc[0]
        path = self.data_path(row["data/chunk_index"], row["data/file_index"])
        table = pq.read_table(path, columns=list(self.features), filters=[("episode_index", "=", int(episode_index))])
        return {name: to_numpy(table[name], spec) for name, spec in self.features.items()}


def _load_info(root: Path) -> dict:
    path = root / INFO_PATH
    if not path.is_file():
        raise FileNotFoundError(f"{root} is not a LeRobot dataset: {INFO_PATH} is missing")
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(info, dict) or info.get("codebase_version") != CODEBASE_VERSION:
        version = info.get("codebase_version") if isinstance(info, dict) else None
        raise ValueError(f"{root}: codebase_version {version!r}, this reader handles only {CODEBASE_VERSION!r}")
    return info


def _load_episodes(root: Path) -> pd.DataFrame:
    paths = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not paths:
        raise FileNotFoundError(f"{root}: no episodes parquet under meta/episodes/")
    episodes = pd.concat([pq.read_table(p).to_pandas() for p in paths], ignore_index=True)
    return episodes.sort_values("episode_index", ignore_index=True)


def read_dataset(root: str | Path) -> LeRobotDataset:
    """Open a LeRobotDataset v3.0 folder (clear error if it is not one)."""
    root = Path(root)
    info = _load_info(root)
    tasks = pd.read_parquet(root / TASKS_PATH)
    tasks.index.name = "task"
    stats = json.loads((root / STATS_PATH).read_text()) if (root / STATS_PATH).is_file() else {}
    return LeRobotDataset(root=root, info=info, tasks=tasks, episodes=_load_episodes(root), stats=stats)


def validate(root: str | Path) -> list[str]:
    """Our own v3.0 format checks of a dataset folder: a list of problems, [] when it is fine."""
    root = Path(root)
    try:
        info = _load_info(root)
    except (FileNotFoundError, ValueError) as err:
        return [str(err)]
    problems = _check_info_keys(info)
    if problems:
        return problems  # every later check needs these keys and counts
    problems = _check_info_values(info)
    try:
        features = {
            name: FeatureSpec.from_info(entry)
            for name, entry in info["features"].items()
            if entry["dtype"] not in UNSUPPORTED_DTYPES
        }
        episodes = _load_episodes(root)
        tasks = pd.read_parquet(root / TASKS_PATH)
    except (KeyError, TypeError, ValueError, NotImplementedError, OSError, pa.ArrowException) as err:
        return [*problems, f"cannot read the features, episodes or tasks: {err!r}"]
    wrong_defaults = [n for n, s in DEFAULT_FEATURES.items() if features.get(n) != s]
    if wrong_defaults:
        problems.append(f"info.json features lack the default columns (or give other dtypes/shapes): {wrong_defaults}")
    missing_columns = [c for c in EPISODE_COLUMNS if c not in episodes.columns]
    if missing_columns:
        problems.append(f"episodes parquet lacks columns {missing_columns}")
    else:
        problems += _check_episodes_table(root, info, episodes)
    tasks_ok = tasks.index.name == "task" and "task_index" in tasks.columns
    problems += _check_tasks(info, tasks, episodes)
    if not (wrong_defaults or missing_columns) and tasks_ok and _is_data_path(info["data_path"]):
        problems += _check_data(root, info, features, episodes, tasks)
    problems += _check_stats(root, features)
    return problems


def _is_data_path(template: Any) -> bool:
    return (
        isinstance(template, str)
        and not os.path.isabs(template)
        and template.endswith(".parquet")
        and template_fields(template) == {"chunk_index", "file_index"}
    )


def _check_info_keys(info: dict) -> list[str]:
    problems = [f"info.json lacks key {k!r}" for k in INFO_KEYS if k not in info]
    for key, least in (("total_episodes", 0), ("total_frames", 0), ("total_tasks", 0), ("chunks_size", 1), ("fps", 1)):
        value = info.get(key, least)
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            problems.append(f"info.json {key} = {value!r} is not an int >= {least}")
    features = info.get("features", {})
    if not isinstance(features, dict) or not all(isinstance(e, dict) for e in features.values()):
        problems.append("info.json features is not a dict of feature entries")
    return problems


def _check_info_values(info: dict) -> list[str]:
    problems = []
    if not _is_data_path(info["data_path"]):
        problems.append(
            f"info.json data_path {info['data_path']!r} is not a relative .parquet template using exactly "
            "{chunk_index} and {file_index}"
        )
    has_video = any(e.get("dtype") == "video" for e in info["features"].values())
    video_path = info["video_path"]
    if not has_video and video_path is not None:
        problems.append(f"info.json video_path is {video_path!r} but no feature is a video (must be null)")
    video_fields = template_fields(video_path) if isinstance(video_path, str) else set()
    if has_video and video_fields != {"video_key", "chunk_index", "file_index"}:
        problems.append(f"info.json video_path {video_path!r} must use {{video_key}}, {{chunk_index}}, {{file_index}}")
    if info["splits"] != {"train": f"0:{info['total_episodes']}"}:
        problems.append(f"info.json splits {info['splits']!r} do not cover the {info['total_episodes']} episodes")
    return problems


def _check_episodes_table(root: Path, info: dict, episodes: pd.DataFrame) -> list[str]:
    problems = []
    if len(episodes) != info["total_episodes"]:
        problems.append(f"info.json total_episodes = {info['total_episodes']} but episodes parquet has {len(episodes)}")
    if episodes["episode_index"].tolist() != list(range(len(episodes))):
        problems.append("episodes' episode_index is not 0..E-1")
    to_index = episodes["dataset_to_index"].to_numpy()
    from_index = episodes["dataset_from_index"].to_numpy()
    if len(episodes) and (from_index[0] != 0 or (from_index[1:] != to_index[:-1]).any()):
        problems.append("episodes' dataset_from_index/dataset_to_index are not contiguous from 0")
    if (to_index - from_index != episodes["length"].to_numpy()).any():
        problems.append("episodes' length differs from dataset_to_index - dataset_from_index")
    if len(episodes) and int(to_index[-1]) != info["total_frames"]:
        problems.append(f"info.json total_frames = {info['total_frames']} but the episodes end at {int(to_index[-1])}")
    if (episodes["data/file_index"] >= info["chunks_size"]).any():
        problems.append(f"a data/file_index is >= chunks_size {info['chunks_size']}")
    meta_pairs = zip(episodes["meta/episodes/chunk_index"], episodes["meta/episodes/file_index"], strict=True)
    meta_files = {EPISODES_PATH.format(chunk_index=int(c), file_index=int(f)) for c, f in meta_pairs}
    on_disk = {p.relative_to(root).as_posix() for p in (root / "meta" / "episodes").glob("chunk-*/file-*.parquet")}
    if meta_files != on_disk:
        problems.append(f"meta/episodes/chunk_index/file_index name {sorted(meta_files)}, files are {sorted(on_disk)}")
    return problems


def _check_data(
    root: Path, info: dict, features: dict[str, FeatureSpec], episodes: pd.DataFrame, tasks: pd.DataFrame
) -> list[str]:
    chunk_col = episodes["data/chunk_index"].to_numpy()
    file_col = episodes["data/file_index"].to_numpy()
    pairs = sorted(set(zip(chunk_col.tolist(), file_col.tolist(), strict=True)))
    referenced = [info["data_path"].format(chunk_index=c, file_index=f) for c, f in pairs]
    on_disk = sorted(p.relative_to(root).as_posix() for p in (root / "data").rglob("*") if p.is_file())
    problems = []
    if sorted(referenced) != on_disk:
        problems.append(f"data files on disk {on_disk} differ from those the episodes name {sorted(referenced)}")
    defaults = ["index", "frame_index", "episode_index", "task_index"]
    columns: dict[str, list[np.ndarray]] = {n: [] for n in defaults}
    file_of_row = []
    for number, rel in enumerate(referenced):
        if not (root / rel).is_file():
            return [*problems, f"{rel} is missing"]
        schema = pq.read_schema(root / rel)
        for name, spec in features.items():
            if name not in schema.names:
                problems.append(f"{rel}: column {name!r} (declared in info.json) is missing")
            elif not schema.field(name).type.equals(spec.arrow_type):
                found = schema.field(name).type
                problems.append(f"{rel}: column {name!r} is {found}, info.json says {spec.arrow_type}")
        extra = [n for n in schema.names if n not in features]
        if extra:
            problems.append(f"{rel}: columns {extra} are not declared in info.json features")
        if any(n not in schema.names for n in defaults):
            return problems
        table = pq.read_table(root / rel, columns=defaults)
        for name in defaults:
            columns[name].append(to_numpy(table[name], DEFAULT_FEATURES[name])[:, 0])
        file_of_row.append(np.full(len(table), number))
    data = {n: np.concatenate(v) for n, v in columns.items()}
    rows_of_file = np.concatenate(file_of_row)
    rows = len(rows_of_file)
    if rows != info["total_frames"]:
        problems.append(f"info.json total_frames = {info['total_frames']} but the data files hold {rows} rows")
    bad = np.flatnonzero(data["index"] != np.arange(rows))
    if bad.size:
        problems.append(f"index is not contiguous 0..N-1: row {bad[0]} holds index {data['index'][bad[0]]}")
    task_of_index = {int(i): t for t, i in zip(tasks.index, tasks["task_index"], strict=True)}
    unknown = sorted(set(np.unique(data["task_index"]).tolist()) - set(task_of_index))
    if unknown:
        problems.append(f"task_index values {unknown[:5]} are not in tasks.parquet")
    file_number = {pair: number for number, pair in enumerate(pairs)}
    starts = episodes["dataset_from_index"].to_numpy()
    stops = episodes["dataset_to_index"].to_numpy()
    for i, e in enumerate(episodes["episode_index"].tolist()):
        start, stop = int(starts[i]), int(stops[i])
        where = f"episode {e} (rows {start}:{stop})"
        if not 0 <= start <= stop <= rows:
            problems.append(f"{where}: outside the {rows} data rows")
            break
        if (data["episode_index"][start:stop] != e).any():
            problems.append(f"{where}: the episode_index column differs from {e}")
        if (data["frame_index"][start:stop] != np.arange(stop - start)).any():
            problems.append(f"{where}: frame_index does not run 0..{stop - start - 1}")
        if (rows_of_file[start:stop] != file_number[(int(chunk_col[i]), int(file_col[i]))]).any():
            problems.append(f"{where}: not all rows are in data file ({chunk_col[i]}, {file_col[i]}) as listed")
        named = {task_of_index.get(t) for t in np.unique(data["task_index"][start:stop]).tolist()}
        if not named <= set(episodes["tasks"].iloc[i]):
            problems.append(f"{where}: frames' tasks {sorted(map(str, named))} are not all in the episode's tasks")
        if len(problems) > 20:
            problems.append("... (further problems not listed)")
            break
    return problems


def _check_tasks(info: dict, tasks: pd.DataFrame, episodes: pd.DataFrame) -> list[str]:
    problems = []
    if tasks.index.name != "task" or "task_index" not in tasks.columns:
        return [f"tasks.parquet must be indexed by 'task' with a task_index column, got index {tasks.index.name!r} "
                f"and columns {list(tasks.columns)}"]
    if len(tasks) != info["total_tasks"]:
        problems.append(f"info.json total_tasks = {info['total_tasks']} but tasks.parquet has {len(tasks)} tasks")
    if sorted(tasks["task_index"].tolist()) != list(range(len(tasks))):
        problems.append("tasks.parquet task_index is not 0..K-1")
    if "tasks" in episodes.columns:
        unknown = {t for ts in episodes["tasks"] for t in ts} - set(tasks.index)
        if unknown:
            problems.append(f"episodes name tasks missing from tasks.parquet: {sorted(unknown)[:5]}")
    return problems


def _check_stats(root: Path, features: dict[str, FeatureSpec]) -> list[str]:
    path = root / STATS_PATH
    if not path.is_file():
        return [f"{STATS_PATH} is missing"]
    try:
        stats = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        return [f"{STATS_PATH} is not valid JSON: {err}"]
    problems = []
    for name, spec in features.items():
        entry = stats.get(name)
        if not isinstance(entry, dict):
            problems.append(f"{STATS_PATH} has no entry for feature {name!r}")
            continue
        missing = [k for k in STATS_KEYS if k not in entry]
        if missing:
            problems.append(f"{STATS_PATH}[{name!r}] lacks {missing}")
        wrong = [k for k in STATS_KEYS if k in entry and np.shape(entry[k]) != ((1,) if k == "count" else spec.shape)]
        if wrong:
            problems.append(f"{STATS_PATH}[{name!r}]: {wrong} do not have shape {spec.shape} (count: (1,))")
    return problems
