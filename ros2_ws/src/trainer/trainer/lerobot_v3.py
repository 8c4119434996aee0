"""LeRobotDataset v3.0 layout and writer for state-only datasets (no images, no video); reading and checks:
:mod:`trainer.lerobot_v3_read`.

Our own implementation of the v3.0 on-disk layout, written from the format as huggingface/lerobot defines it
(codebase version "v3.0": ``src/lerobot/datasets/`` and its dataset docs); no LeRobot code is used or needed
(pyarrow + pandas only)::

    meta/info.json          codebase_version, fps, features, totals, path templates, splits
    meta/stats.json         per numeric feature: min max mean std count q01 q10 q50 q90 q99 (per component)
    meta/tasks.parquet      pandas frame indexed by the task string (index name "task"), column task_index
    meta/episodes/chunk-000/file-000.parquet   one row per episode (where its frames live + our meta columns)
    data/chunk-XXX/file-YYY.parquet            one row per frame, many episodes per file, snappy

A data file is closed near ``data_file_size_mb`` (episodes are never split across files); a chunk folder holds
``chunks_size`` files. Per-frame default columns: timestamp (float32, frame_index / fps), frame_index,
episode_index, index (global) and task_index. Features of shape (1,) are plain Arrow columns, vectors (n,) are
Arrow fixed_size_list columns, as LeRobot stores them.

Extending (all layout/naming lives in this module):
- image features: store an Arrow struct {bytes: binary, path: string} column (Hugging Face ``Image``) and
  per-channel stats of shape (3, 1, 1) scaled to [0, 1];
- video features: encode frames to ``VIDEO_PATH`` files (rolled like the data files), set ``info["video_path"]``,
  add ``videos/<key>/{chunk_index,file_index,from_timestamp,to_timestamp}`` columns to the episodes parquet and
  the video's encoding info to its feature entry; ``validate`` already checks the template;
- a v2.1 export (openpi reads only v2.1): one parquet per episode at
  ``data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet``, ``meta/episodes.jsonl``,
  ``meta/tasks.jsonl`` and ``meta/episodes_stats.jsonl``; build it from ``read_dataset`` + ``episode_frames`` and
  reuse ``FeatureSpec.arrow_type`` and ``feature_stats``.
"""

from __future__ import annotations

import json
import os
import shutil
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

CODEBASE_VERSION = "v3.0"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
CHUNK_FILE_PATTERN = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DATA_PATH = "data/" + CHUNK_FILE_PATTERN + ".parquet"
EPISODES_PATH = "meta/episodes/" + CHUNK_FILE_PATTERN + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE_PATTERN + ".mp4"
VIDEO_FILES_SIZE_MB = 200
COMPRESSION = "snappy"

POLICY_PREFIXES = ("observation", "action")
"""LeRobot takes any column whose name starts with one of these as a policy input/output."""

QUANTILES = {"q01": 0.01, "q10": 0.10, "q50": 0.50, "q90": 0.90, "q99": 0.99}
STATS_KEYS = ("min", "max", "mean", "std", "count", *QUANTILES)
EPISODE_COLUMNS = (
    "episode_index",
    "tasks",
    "length",
    "data/chunk_index",
    "data/file_index",
    "dataset_from_index",
    "dataset_to_index",
    "meta/episodes/chunk_index",
    "meta/episodes/file_index",
)
INFO_KEYS = (
    "codebase_version",
    "robot_type",
    "total_episodes",
    "total_frames",
    "total_tasks",
    "chunks_size",
    "data_files_size_in_mb",
    "video_files_size_in_mb",
    "fps",
    "splits",
    "data_path",
    "video_path",
    "features",
)
_ARROW_SCALARS = {"float32": pa.float32(), "float64": pa.float64(), "int64": pa.int64(), "bool": pa.bool_()}
UNSUPPORTED_DTYPES = ("image", "video")
_LAYOUT_ENTRIES = frozenset({"meta", "data", "videos", "images"})  # what overwrite=True may delete
_META_KINDS = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}


def is_policy_key(name: str) -> bool:
    """True if LeRobot would take this column as a policy input/output (name starts with a POLICY_PREFIXES entry)."""
    return name.startswith(POLICY_PREFIXES)


@dataclass(frozen=True)
class FeatureSpec:
    """dtype, shape and optional per-component names of one per-frame column."""

    dtype: str
    """"float32", "float64", "int64" or "bool" (image/video not supported yet)."""
    shape: tuple[int, ...]
    """(n,) with n >= 1; (1,) is stored as a plain column, (n,) as an Arrow fixed_size_list."""
    names: list[str] | None = None
    """Per-component names written to info.json (length n), or None."""

    def __post_init__(self) -> None:
        if self.dtype in UNSUPPORTED_DTYPES:
            raise NotImplementedError(
                f"dtype {self.dtype!r}: image/video features are not supported yet by this state-only writer "
                "(see the lerobot_v3 module docstring for how to add them)"
            )
        if self.dtype not in _ARROW_SCALARS:
            raise ValueError(f"dtype {self.dtype!r} not supported; use one of {sorted(_ARROW_SCALARS)}")
        shape = tuple(self.shape) if isinstance(self.shape, tuple | list) else ()
        if len(shape) != 1 or not isinstance(shape[0], int | np.integer) or shape[0] < 1:
            raise ValueError(f"shape {self.shape!r} not supported: only 1-D shapes (n,) with n >= 1")
        object.__setattr__(self, "shape", (int(shape[0]),))
        if self.names is not None:
            names = list(self.names)
            if len(names) != shape[0] or not all(isinstance(n, str) for n in names):
                raise ValueError(f"names {self.names!r} must be {shape[0]} strings (one per component)")
            object.__setattr__(self, "names", names)

    @property
    def arrow_type(self) -> pa.DataType:
        """The Arrow type of this column in the data parquet files."""
        scalar = _ARROW_SCALARS[self.dtype]
        return scalar if self.shape == (1,) else pa.list_(scalar, self.shape[0])

    def to_info(self) -> dict[str, Any]:
        """The feature's entry in info.json."""
        return {"dtype": self.dtype, "shape": list(self.shape), "names": self.names}

    @classmethod
    def from_info(cls, entry: dict[str, Any]) -> FeatureSpec:
        """Parse a feature entry of info.json (names given as a dict of lists are dropped)."""
        names = entry.get("names")
        return cls(entry["dtype"], tuple(entry["shape"]), names if isinstance(names, list) else None)


DEFAULT_FEATURES: dict[str, FeatureSpec] = {
    "timestamp": FeatureSpec("float32", (1,)),
    "frame_index": FeatureSpec("int64", (1,)),
    "episode_index": FeatureSpec("int64", (1,)),
    "index": FeatureSpec("int64", (1,)),
    "task_index": FeatureSpec("int64", (1,)),
}
"""Per-frame columns the writer adds to every dataset (listed in info.json after the user features)."""


def feature_stats(values: np.ndarray) -> dict[str, list]:
    """Per-component min, max, mean, std (population), count and q01..q99 of (N, n) values, computed in float64."""
    v = np.asarray(values).reshape(len(values), -1).astype(np.float64)
    if len(v) == 0:
        raise ValueError("no values to compute stats of")
    stats = {
        "min": v.min(axis=0).tolist(),
        "max": v.max(axis=0).tolist(),
        "mean": v.mean(axis=0).tolist(),
        "std": v.std(axis=0).tolist(),
        "count": [len(v)],
    }
    for key, q in QUANTILES.items():
        stats[key] = np.quantile(v, q, axis=0).tolist()
    return stats


def _to_arrow(values: np.ndarray, spec: FeatureSpec) -> pa.Array:
    flat = pa.array(np.ascontiguousarray(values).reshape(-1), type=_ARROW_SCALARS[spec.dtype])
    return flat if spec.shape == (1,) else pa.FixedSizeListArray.from_arrays(flat, spec.shape[0])


def to_numpy(column: pa.ChunkedArray | pa.Array, spec: FeatureSpec) -> np.ndarray:
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    parts = [(c if spec.shape == (1,) else c.flatten()).to_numpy(zero_copy_only=False) for c in chunks]
    flat = np.concatenate(parts) if parts else np.zeros(0)
    return flat.astype(np.dtype(spec.dtype), copy=False).reshape(-1, *spec.shape)


def read_column(paths: list[Path], name: str, spec: FeatureSpec) -> np.ndarray:
    return np.concatenate([to_numpy(pq.read_table(p, columns=[name])[name], spec) for p in paths])


def template_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def _write_json(path: Path, obj: Any) -> None:
    """Write JSON through a temporary file and an atomic rename, so no half-written file is ever visible."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=4) + "\n")
    os.replace(tmp, path)


class DatasetWriter:
    """Writes episodes of per-frame arrays as a LeRobotDataset v3.0 (state-only); a context manager."""

    def __init__(
        self,
        root: str | Path,
        *,
        fps: int,
        features: dict[str, FeatureSpec],
        robot_type: str,
        overwrite: bool = False,
        data_file_size_mb: float = 100.0,
        chunks_size: int = 1000,
    ) -> None:
        if isinstance(fps, bool) or not isinstance(fps, int) or fps <= 0:
            raise ValueError(f"fps must be a positive int, got {fps!r}")
        if not data_file_size_mb > 0:
            raise ValueError(f"data_file_size_mb must be > 0, got {data_file_size_mb!r}")
        if isinstance(chunks_size, bool) or not isinstance(chunks_size, int) or chunks_size < 1:
            raise ValueError(f"chunks_size must be an int >= 1, got {chunks_size!r}")
        if not isinstance(robot_type, str):
            raise ValueError(f"robot_type must be a string, got {robot_type!r}")
        if not features:
            raise ValueError("features is empty: declare at least one per-frame feature")
        for name, spec in features.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"feature name {name!r} must be a non-empty string")
            if name in DEFAULT_FEATURES:
                raise ValueError(f"feature name {name!r} clashes with a default column {sorted(DEFAULT_FEATURES)}")
            if not isinstance(spec, FeatureSpec):
                raise ValueError(f"feature {name!r}: expected a FeatureSpec, got {type(spec).__name__}")
        self.root = Path(root)
        self._prepare_root(overwrite)
        self.fps = fps
        self.robot_type = robot_type
        self.features = dict(features)
        self.chunks_size = chunks_size
        self.data_file_size_mb = data_file_size_mb
        self._all_features = {**self.features, **DEFAULT_FEATURES}
        self._schema = pa.schema([(name, spec.arrow_type) for name, spec in self._all_features.items()])
        self._tasks: dict[str, int] = {}
        self._episodes: list[dict[str, Any]] = []
        self._meta_kinds: dict[str, type] | None = None
        self._total_frames = 0
        self._file_pos = (0, 0)  # (chunk_index, file_index) of the data file being written
        self._sink: pa.NativeFile | None = None
        self._pq_writer: pq.ParquetWriter | None = None
        self._file_frames = 0
        self._state = "open"  # -> "closed" (meta written) or "aborted" (exception in a with block)

    def _prepare_root(self, overwrite: bool) -> None:
        if not self.root.exists():
            return
        if not self.root.is_dir():
            raise FileExistsError(f"dataset root {self.root} exists and is not a directory")
        entries = sorted(p.name for p in self.root.iterdir())
        if not entries:
            return
        if not overwrite:
            raise FileExistsError(
                f"dataset root {self.root} is not empty ({', '.join(entries[:5])}); "
                "pass overwrite=True to replace it, or choose another folder"
            )
        foreign = [e for e in entries if e not in _LAYOUT_ENTRIES]
        if foreign:
            raise FileExistsError(
                f"refusing to overwrite {self.root}: it holds {foreign[:5]}, which are not part of a LeRobot "
                f"dataset (only {sorted(_LAYOUT_ENTRIES)} would be deleted); nothing was deleted"
            )
        for entry in entries:
            path = self.root / entry
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()

    @property
    def num_episodes(self) -> int:
        """Episodes added so far."""
        return len(self._episodes)

    def add_episode(self, frames: dict[str, np.ndarray], task: str, meta: dict[str, Any] | None = None) -> int:
        """Append one episode (arrays of leading dim T per feature) and return its episode index."""
        if self._state != "open":
            raise RuntimeError(f"writer for {self.root} is {self._state}; no more episodes can be added")
        if not isinstance(task, str) or not task:
            raise ValueError(f"task must be a non-empty string, got {task!r}")
        arrays, length = self._checked_frames(frames)
        meta_row, meta_kinds = self._checked_meta(meta)
        episode_index = len(self._episodes)
        task_index = self._tasks.get(task, len(self._tasks))
        table = self._episode_table(arrays, length, episode_index, task_index)
        chunk_index, file_index = self._write_data(table, length)
        self._tasks.setdefault(task, task_index)
        self._meta_kinds = meta_kinds
        self._episodes.append(
            {
                "episode_index": episode_index,
                "tasks": [task],
                "length": length,
                "data/chunk_index": chunk_index,
                "data/file_index": file_index,
                "dataset_from_index": self._total_frames,
                "dataset_to_index": self._total_frames + length,
                "meta/episodes/chunk_index": 0,
                "meta/episodes/file_index": 0,
                **meta_row,
            }
        )
        self._total_frames += length
        return episode_index

    def _checked_frames(self, frames: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        if not isinstance(frames, dict):
            raise ValueError(f"frames must be a dict of arrays, got {type(frames).__name__}")
        missing = [k for k in self.features if k not in frames]
        extra = [k for k in frames if k not in self.features]
        if missing or extra:
            raise ValueError(f"frames keys do not match the declared features: missing {missing}, extra {extra}")
        arrays: dict[str, np.ndarray] = {}
        lengths: dict[str, int] = {}
        for name, spec in self.features.items():
            arr = np.asarray(frames[name])
            if arr.ndim != 1 + len(spec.shape) or arr.shape[1:] != spec.shape:
                expected = ", ".join(map(str, spec.shape))
                raise ValueError(f"feature {name!r}: shape {arr.shape}, expected (T, {expected})")
            target = np.dtype(spec.dtype)
            if not np.can_cast(arr.dtype, target, casting="safe"):
                raise ValueError(
                    f"feature {name!r}: dtype {arr.dtype} cannot be stored losslessly as {spec.dtype}; "
                    f"cast it first (e.g. .astype(np.{spec.dtype}))"
                )
            arr = arr.astype(target, copy=False)
            if target.kind == "f" and not np.isfinite(arr).all():
                raise ValueError(f"feature {name!r}: {int(np.size(arr) - np.isfinite(arr).sum())} NaN/Inf values")
            arrays[name] = arr
            lengths[name] = len(arr)
        if len(set(lengths.values())) != 1:
            raise ValueError(f"features have different numbers of frames T: {lengths}")
        length = next(iter(lengths.values()))
        if length < 1:
            raise ValueError("episode has no frames (T = 0)")
        return arrays, length

    def _checked_meta(self, meta: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, type]]:
        meta = {} if meta is None else meta
        if not isinstance(meta, dict):
            raise ValueError(f"meta must be a dict or None, got {type(meta).__name__}")
        row: dict[str, Any] = {}
        kinds: dict[str, type] = {}
        for key, value in meta.items():
            if not isinstance(key, str) or not key or key in EPISODE_COLUMNS:
                raise ValueError(f"meta key {key!r} must be a non-empty string other than {list(EPISODE_COLUMNS)}")
            value = value.item() if isinstance(value, np.generic) else value
            kind = next((k for k in _META_KINDS if type(value) is k), None)
            if kind is None:
                raise ValueError(f"meta {key!r}: value {value!r} is not an int, float, str or bool scalar")
            row[key], kinds[key] = value, kind
        if self._meta_kinds is not None:
            if set(kinds) != set(self._meta_kinds):
                raise ValueError(
                    f"meta keys {sorted(kinds)} differ from the first episode's {sorted(self._meta_kinds)}"
                )
            for key, kind in self._meta_kinds.items():
                if kinds[key] is not kind and not (kind is float and kinds[key] is int):
                    given = kinds[key].__name__
                    raise ValueError(f"meta {key!r}: {given} value, earlier episodes gave {kind.__name__}")
                row[key] = float(row[key]) if kind is float else row[key]
            kinds = dict(self._meta_kinds)
            row = {key: row[key] for key in kinds}
        return row, kinds

    def _episode_table(self, arrays: dict[str, np.ndarray], length: int, episode_index: int, task_index: int):
        frame_index = np.arange(length, dtype=np.int64)
        columns = {
            **arrays,
            "timestamp": (frame_index / self.fps).astype(np.float32),
            "frame_index": frame_index,
            "episode_index": np.full(length, episode_index, dtype=np.int64),
            "index": frame_index + self._total_frames,
            "task_index": np.full(length, task_index, dtype=np.int64),
        }
        return pa.Table.from_arrays(
            [_to_arrow(columns[name], spec) for name, spec in self._all_features.items()], schema=self._schema
        )

    def _write_data(self, table: pa.Table, length: int) -> tuple[int, int]:
        """Write one episode's rows (one row group) and return the (chunk, file) it went to."""
        if self._pq_writer is not None:
            size = self._sink.tell()
            if size + size / self._file_frames * length >= self.data_file_size_mb * 1024**2:
                self._close_data_file()
                chunk_index, file_index = self._file_pos
                file_index += 1
                if file_index == self.chunks_size:
                    chunk_index, file_index = chunk_index + 1, 0
                self._file_pos = (chunk_index, file_index)
        if self._pq_writer is None:
            path = self.root / DATA_PATH.format(chunk_index=self._file_pos[0], file_index=self._file_pos[1])
            path.parent.mkdir(parents=True, exist_ok=True)
            self._sink = pa.OSFile(str(path), "wb")
            self._pq_writer = pq.ParquetWriter(self._sink, self._schema, compression=COMPRESSION)
            self._file_frames = 0
        self._pq_writer.write_table(table)
        self._file_frames += length
        return self._file_pos

    def _close_data_file(self) -> None:
        if self._pq_writer is not None:
            self._pq_writer.close()
            self._sink.close()
        self._pq_writer, self._sink = None, None

    def close(self) -> Path:
        """Finish the data files and write meta/ (info.json last, atomically); return the dataset root."""
        if self._state == "closed":
            return self.root
        if self._state == "aborted":
            raise RuntimeError(f"writer for {self.root} was aborted by an exception; meta/ was not written")
        if not self._episodes:
            raise ValueError(f"no episodes were added; nothing written to {self.root}")
        self._close_data_file()
        (self.root / "meta").mkdir(parents=True, exist_ok=True)
        tasks = pd.DataFrame(
            {"task_index": np.arange(len(self._tasks), dtype=np.int64)}, index=pd.Index(list(self._tasks), name="task")
        )
        tasks.to_parquet(self.root / TASKS_PATH, compression=COMPRESSION)
        episodes_path = self.root / EPISODES_PATH.format(chunk_index=0, file_index=0)
        episodes_path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(self._episodes_table(), episodes_path, compression=COMPRESSION)
        files = sorted({(ep["data/chunk_index"], ep["data/file_index"]) for ep in self._episodes})
        paths = [self.root / DATA_PATH.format(chunk_index=c, file_index=f) for c, f in files]
        stats = {
            name: feature_stats(read_column(paths, name, spec))
            for name, spec in self._all_features.items()
        }
        _write_json(self.root / STATS_PATH, stats)
        _write_json(self.root / INFO_PATH, self._info())
        self._state = "closed"
        return self.root

    def _episodes_table(self) -> pa.Table:
        types = {"tasks": pa.list_(pa.string())} | {k: _META_KINDS[v] for k, v in (self._meta_kinds or {}).items()}
        names = list(EPISODE_COLUMNS) + list(self._meta_kinds or {})
        return pa.table({n: pa.array([ep[n] for ep in self._episodes], type=types.get(n, pa.int64())) for n in names})

    def _info(self) -> dict[str, Any]:
        size = self.data_file_size_mb
        return {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": self.robot_type,
            "total_episodes": len(self._episodes),
            "total_frames": self._total_frames,
            "total_tasks": len(self._tasks),
            "chunks_size": self.chunks_size,
            "data_files_size_in_mb": int(size) if float(size).is_integer() else float(size),
            "video_files_size_in_mb": VIDEO_FILES_SIZE_MB,
            "fps": self.fps,
            "splits": {"train": f"0:{len(self._episodes)}"},
            "data_path": DATA_PATH,
            "video_path": None,
            "features": {name: spec.to_info() for name, spec in self._all_features.items()},
        }

    def _abort(self) -> None:
        """Close the open data file and leave meta/ unwritten (the folder is then not a dataset)."""
        self._close_data_file()
        if self._state == "open":
            self._state = "aborted"

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()
