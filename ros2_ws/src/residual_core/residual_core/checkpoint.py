"""The checkpoint format: ``<stem>.safetensors`` (weights) + ``<stem>.json`` (manifest). See docs/CONTRACTS.md.

Loading never executes code (no pickle, no torch.load): the weights are safetensors, the manifest is
plain JSON. A manifest that does not match what the loader expects (kind, task, observation layout) is
refused with an error that names the mismatch, and so is a consistent checkpoint (its sha256 matches) that must
not run: NaN or inf in the weights or the manifest, a residual bound (``action_scale``) outside the action spec,
a residual whose observation layout is not its own task's (:func:`check_manifest`, :func:`check_finite_tensors`).
Both files are written atomically (temporary file, then rename; the weights first): a crash between the two
renames leaves new weights next to the old manifest, which loading reports as a sha256 mismatch instead of
loading a wrong pair.

Format version 1 manifest keys: format_version, kind, task, observation_layout ([[name, size], ...] or
null), normalization, action_scale, network, training, steps, evaluation, code_version, created,
weights_sha256. Any change to these keys or their meaning bumps :data:`FORMAT_VERSION`.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import importlib.metadata
import json
import math
import numbers
import os
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from residual_core.action import ActionSpec, residual_bound_problems
from residual_core.observation import ObservationLayout, layout_for_task
from residual_core.tasks import TASK_NAMES

FORMAT_VERSION = 1
KINDS: tuple[str, ...] = ("base", "residual")
ALL_TASKS = "all"
"""Task of a multi-task (base) checkpoint; it matches any expected task."""
WEIGHTS_SUFFIX = ".safetensors"
MANIFEST_SUFFIX = ".json"


CHECKPOINTS_ENV = "RESIDUAL_VLA_CHECKPOINTS"
"""Environment variable naming the folder that holds ``base/`` and ``residual/`` (the shipped checkpoints)."""
_REPO_CHECKPOINTS = Path(__file__).resolve().parents[4] / "checkpoints"
"""``checkpoints/`` of the source checkout this module sits in (ros2_ws/src/residual_core/residual_core/)."""


def checkpoint_root() -> Path:
    """The folder of the shipped checkpoints: ``$RESIDUAL_VLA_CHECKPOINTS``, else the repository's ``checkpoints/``
    when this package runs from its source checkout (a fixed path relative to this file, not a search, and never
    the current directory). An installed package (colcon install, the Docker image) has no such folder and needs
    the environment variable; FileNotFoundError says so."""
    env = os.environ.get(CHECKPOINTS_ENV)
    if env:
        return Path(env)
    if (_REPO_CHECKPOINTS / "base").is_dir():
        return _REPO_CHECKPOINTS
    raise FileNotFoundError(
        f"no shipped checkpoints at {_REPO_CHECKPOINTS} (residual_core is not running from the source checkout); "
        f"set {CHECKPOINTS_ENV} to the folder holding base/ and residual/"
    )


def default_base_checkpoint() -> Path:
    """Stem of the shipped sim base policy: ``<checkpoint_root()>/base/base_policy``."""
    return checkpoint_root() / "base" / "base_policy"


def default_residual_checkpoint(task: str) -> Path:
    """Stem of the shipped residual for ``task``: ``<checkpoint_root()>/residual/<task>``."""
    return checkpoint_root() / "residual" / task


class CheckpointError(ValueError):
    """Base of every checkpoint loading error."""


class CheckpointNotFoundError(CheckpointError):
    """The weights file and/or the manifest does not exist."""


class CheckpointCorruptError(CheckpointError):
    """Unreadable manifest or weights, missing/invalid manifest fields, or a weights sha256 mismatch."""


class UnsupportedFormatVersionError(CheckpointError):
    """The manifest's format_version is not one this code reads."""


class KindMismatchError(CheckpointError):
    """The checkpoint is a base policy where a residual was expected, or the reverse."""


class TaskMismatchError(CheckpointError):
    """The checkpoint was trained for another task."""


class LayoutMismatchError(CheckpointError):
    """The checkpoint's observation layout differs from the expected one, or from its own task's layout."""


class UnsafeCheckpointError(CheckpointError):
    """The checkpoint is readable and its sha256 matches, but what it holds must not run (see the subclasses)."""


class NonFiniteValuesError(UnsafeCheckpointError):
    """NaN or inf in a weight tensor or in a number of the manifest."""


class ActionScaleError(UnsafeCheckpointError):
    """A residual's bound (manifest action_scale) lies outside the action spec (:class:`ActionSpec` bounds)."""


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """``<residual_core version>[+g<short git hash>[.dirty]]``; the hash part is left out outside a git checkout."""
    try:
        version = importlib.metadata.version("residual_core")
    except importlib.metadata.PackageNotFoundError:
        from residual_core import __version__ as version
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "--short=10", "HEAD")
    if not commit:
        return version
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{version}+g{commit}" + (".dirty" if dirty else "")


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@dataclass(kw_only=True)
class Manifest:
    """Everything needed to rebuild, validate and understand a checkpoint's weights."""

    kind: str
    """"base" or "residual"."""
    task: str
    """One of TASK_NAMES, or "all" for a multi-task base policy."""
    observation_layout: ObservationLayout | None = None
    """The residual's observation layout; None for base policies that use their own input layout."""
    normalization: dict[str, list[float]] = field(default_factory=dict)
    """Normalisation statistics by name (e.g. obs_mean, obs_std), as plain lists."""
    action_scale: list[float] = field(default_factory=list)
    """Per-component scale of the network's [-1, 1] output (7 values for a residual)."""
    network: dict[str, Any] = field(default_factory=dict)
    """Network class name and constructor kwargs: {"class": ..., "kwargs": {...}}."""
    training: dict[str, Any] = field(default_factory=dict)
    """Training configuration (JSON-serialisable)."""
    steps: int = 0
    """Environment (or gradient, for a base) steps trained."""
    evaluation: dict[str, Any] = field(default_factory=dict)
    """Evaluation summary (e.g. success rate, episodes)."""
    code_version: str = field(default_factory=lambda: code_version())
    """Code that wrote it: package version + short git hash (see :func:`code_version`)."""
    created: str = field(default_factory=_now_iso)
    """Creation time, ISO 8601 UTC."""
    weights_sha256: str = ""
    """sha256 of the .safetensors file; filled in by :func:`save_checkpoint`."""
    format_version: int = FORMAT_VERSION
    """Version of this manifest format."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.task not in TASK_NAMES and not (self.task == ALL_TASKS and self.kind == "base"):
            allowed = TASK_NAMES + ((ALL_TASKS,) if self.kind == "base" else ())
            raise ValueError(f"task {self.task!r} is not valid for a {self.kind} checkpoint; use one of {allowed}")
        if self.kind == "residual" and self.observation_layout is None:
            raise ValueError("a residual checkpoint needs its observation_layout")
        if self.observation_layout is not None and not isinstance(self.observation_layout, ObservationLayout):
            raise ValueError(f"observation_layout must be an ObservationLayout, got {type(self.observation_layout)}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, numbers.Integral) or self.steps < 0:
            raise ValueError(f"steps must be an int >= 0, got {self.steps!r}")
        self.steps = int(self.steps)
        if not all(_is_number(v) and math.isfinite(v) for v in self.action_scale):
            raise ValueError(f"action_scale must be finite numbers, got {self.action_scale}")
        self.action_scale = [float(v) for v in self.action_scale]
        if not isinstance(self.normalization, Mapping):
            raise ValueError(f"normalization must be a dict, got {type(self.normalization).__name__}")
        for name, values in self.normalization.items():
            if not isinstance(values, list | tuple | np.ndarray) or not all(_is_number(v) for v in values):
                raise ValueError(f"normalization[{name!r}] must be a list of numbers")
        self.normalization = {str(k): [float(v) for v in values] for k, values in self.normalization.items()}
        for name in ("network", "training", "evaluation"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} must be a dict, got {type(getattr(self, name)).__name__}")
        if not isinstance(self.format_version, int) or isinstance(self.format_version, bool):
            raise ValueError(f"format_version must be an int, got {self.format_version!r}")

    @property
    def compose_from(self) -> str:
        """Where the residual's commands were composed from in training (``residual-train --compose-from``):
        measured or target; measured for checkpoints made before that option."""
        return str(self.training.get("compose_from", "measured"))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (the layout as [[name, size], ...])."""
        out = {"format_version": self.format_version}
        out.update((f.name, getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "format_version")
        out["observation_layout"] = None if self.observation_layout is None else self.observation_layout.to_list()
        return _jsonable(out, "manifest")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """Inverse of :meth:`to_dict`; ValueError naming missing, unknown or invalid keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(names - set(data))
        unknown = sorted(set(data) - names)
        if missing or unknown:
            raise ValueError(f"manifest keys: missing {missing}, unknown {unknown}")
        kwargs = dict(data)
        if kwargs["observation_layout"] is not None:
            kwargs["observation_layout"] = ObservationLayout.from_json(kwargs["observation_layout"])
        return cls(**kwargs)


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _jsonable(value: Any, where: str) -> Any:
    """A JSON-ready copy of ``value`` (numpy and Path converted); ValueError naming non-finite or odd values."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist(), where)
    if isinstance(value, np.generic):
        return _jsonable(value.item(), where)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is {value}: JSON manifests hold finite numbers only (store null instead)")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise ValueError(f"{where} has type {type(value).__name__}, which a JSON manifest cannot hold")


def _pretty_json(value: Any, indent: int = 0) -> str:
    """Indented JSON with every list of scalars on one line (readable normalisation vectors and layouts)."""
    if isinstance(value, dict) and value:
        pad = " " * (indent + 2)
        items = [f"{pad}{json.dumps(k)}: {_pretty_json(v, indent + 2)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    if isinstance(value, list) and any(isinstance(v, dict | list) and v for v in value):
        pad = " " * (indent + 2)
        return "[\n" + ",\n".join(pad + _pretty_json(v, indent + 2) for v in value) + "\n" + " " * indent + "]"
    return json.dumps(value, allow_nan=False)


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(weights, manifest) paths for ``path`` given as the stem or either file."""
    p = Path(path)
    if p.suffix in (WEIGHTS_SUFFIX, MANIFEST_SUFFIX):
        p = p.with_suffix("")
    return p.with_name(p.name + WEIGHTS_SUFFIX), p.with_name(p.name + MANIFEST_SUFFIX)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; checkpoints are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: str | os.PathLike, tensors: Mapping[str, Any], manifest: Manifest) -> Path:
    """Write ``tensors`` (name -> np.ndarray or torch.Tensor) and ``manifest``; returns the .safetensors path.

    ``path`` may be the stem or either file's name. The written manifest is a copy of ``manifest`` with
    weights_sha256 set (the argument is not modified). Written with ``safetensors.numpy`` (torch tensors are
    converted with ``.detach().cpu().numpy()``, duck-typed, so this module never imports torch): the same header
    entries and data bytes as ``safetensors.torch`` wrote before (a test checks it on the shipped checkpoints).
    """
    from safetensors.numpy import save as st_save

    weights_path, manifest_path = checkpoint_paths(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    out: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch.Tensor
            value = value.detach().cpu().numpy()
        if not isinstance(value, np.ndarray):
            raise ValueError(f"tensor {name!r} must be a torch.Tensor or np.ndarray, got {type(value).__name__}")
        out[str(name)] = np.ascontiguousarray(value)
    blob = st_save(out, metadata={"format": "residual_core", "format_version": str(FORMAT_VERSION)})
    final = dataclasses.replace(manifest, weights_sha256=hashlib.sha256(blob).hexdigest())
    text = _pretty_json(final.to_dict()) + "\n"
    _atomic_write(weights_path, blob)
    _atomic_write(manifest_path, text.encode())
    return weights_path


def read_manifest(path: str | os.PathLike) -> Manifest:
    """The validated manifest of a checkpoint (weights not read). Raises the CheckpointError subclasses."""
    weights_path, manifest_path = checkpoint_paths(path)
    missing = [str(p) for p in (weights_path, manifest_path) if not p.is_file()]
    if missing:
        raise CheckpointNotFoundError(f"checkpoint {weights_path.with_suffix('')} is incomplete: missing {missing}")
    try:
        data = json.loads(manifest_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointCorruptError(f"manifest {manifest_path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CheckpointCorruptError(f"manifest {manifest_path} must hold a JSON object, got {type(data).__name__}")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise CheckpointCorruptError(f"manifest {manifest_path} has no integer format_version (got {version!r})")
    if version != FORMAT_VERSION:
        raise UnsupportedFormatVersionError(
            f"manifest {manifest_path} has format_version {version}; this code reads version {FORMAT_VERSION}"
        )
    try:
        _jsonable(data, "manifest")  # json.loads reads NaN, Infinity and 1e999; the writer never writes them
    except ValueError as exc:
        raise NonFiniteValuesError(f"manifest {manifest_path}: {exc}") from None
    try:
        manifest = Manifest.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise CheckpointCorruptError(f"manifest {manifest_path} is invalid: {exc}") from None
    return check_manifest(manifest, manifest_path)


def check_manifest(manifest: Manifest, source: str | os.PathLike) -> Manifest:
    """``manifest`` if what it describes may run, else the error naming ``source`` (its file) and what is wrong.

    A well-formed manifest can still describe a checkpoint that must not run; for a residual, refused are:

    - a residual bound (``action_scale``) outside the action spec: :class:`ActionScaleError` unless it is 7 values,
      each in [0, the default :class:`ActionSpec` bound of its component] (max_translation, max_rotation, 1 for the
      gripper; :func:`residual_core.action.residual_bound_problems`). The arbiter clamps the residual to this
      bound, so a bound of 1e6 would let any residual through;
    - an observation layout that is not the layout of the manifest's own task
      (:func:`residual_core.observation.layout_for_task`): :class:`LayoutMismatchError`. A checkpoint relabelled
      with another task would otherwise pass every check against that task's name.

    :func:`read_manifest` calls this, so every loader (:func:`load_checkpoint`, ``ResidualPolicy``,
    ``BasePolicy``) and every reader of the manifest alone (the arbiter's residual bound) gets these checks.
    """
    if manifest.kind != "residual":
        return manifest
    problems = residual_bound_problems(manifest.action_scale)
    if problems:
        raise ActionScaleError(
            f"manifest {source}: the residual bound action_scale {manifest.action_scale} is outside the action spec "
            f"(each component >= 0 and <= {ActionSpec().high.tolist()}): {'; '.join(problems)}"
        )
    layout, task = manifest.observation_layout, manifest.task
    expected = layout_for_task(task)
    mismatch = expected.describe_mismatch(layout)
    if mismatch:
        raise LayoutMismatchError(
            f"manifest {source} names task {task!r}, but its observation layout (objects {list(layout.object_names)}, "
            f"{layout.size} values) is not {task}'s (objects {list(expected.object_names)}, {expected.size} values): "
            f"{mismatch}. Was the checkpoint relabelled with another task?"
        )
    return manifest


def load_checkpoint(
    path: str | os.PathLike,
    expected_kind: str | None = None,
    expected_task: str | None = None,
    expected_layout: ObservationLayout | None = None,
) -> tuple[dict[str, Any], Manifest]:
    """Load (tensors as np.ndarray by name, manifest), refusing a checkpoint that does not match expectations.

    Checks, in order: both files exist, the manifest parses, has format version 1, finite numbers and passes
    :func:`check_manifest` (a residual's bound within the action spec, its layout its task's), kind, task (a base
    checkpoint with task "all" matches any task), observation layout, then the weights' sha256 and format, and that
    every floating-point tensor is finite (a matching sha256 only says the weights are the ones the manifest was
    written for, not that they are sane: NaN weights are refused with :class:`NonFiniteValuesError`).
    """
    if expected_kind is not None and expected_kind not in KINDS:
        raise ValueError(f"expected_kind must be one of {KINDS} or None, got {expected_kind!r}")
    weights_path, _ = checkpoint_paths(path)
    manifest = read_manifest(path)
    if expected_kind is not None and manifest.kind != expected_kind:
        raise KindMismatchError(f"checkpoint {weights_path} is a {manifest.kind} checkpoint, expected {expected_kind}")
    if expected_task is not None and manifest.task != expected_task and manifest.task != ALL_TASKS:
        raise TaskMismatchError(
            f"checkpoint {weights_path} was trained for task {manifest.task!r}, expected {expected_task!r}"
        )
    if expected_layout is not None:
        if manifest.observation_layout is None:
            raise LayoutMismatchError(f"checkpoint {weights_path} has no observation layout; expected one")
        mismatch = expected_layout.describe_mismatch(manifest.observation_layout)
        if mismatch:
            raise LayoutMismatchError(
                f"checkpoint {weights_path} observation layout ({manifest.observation_layout.size} values) differs "
                f"from the expected one ({expected_layout.size} values): {mismatch}"
            )
    blob = weights_path.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if digest != manifest.weights_sha256:
        raise CheckpointCorruptError(
            f"weights {weights_path} have sha256 {digest[:16]}..., the manifest says "
            f"{manifest.weights_sha256[:16]}...: the file was changed, truncated or belongs to another manifest"
        )
    from safetensors.numpy import load as st_load

    try:
        tensors = st_load(blob)
    except Exception as exc:  # safetensors raises its own error type for malformed files
        raise CheckpointCorruptError(f"weights {weights_path} are not a valid safetensors file: {exc}") from None
    check_finite_tensors(tensors, weights_path)
    return tensors, manifest


def check_finite_tensors(tensors: Mapping[str, np.ndarray], source: str | os.PathLike) -> None:
    """:class:`NonFiniteValuesError` naming ``source`` and each floating-point tensor that holds NaN or inf."""
    bad = []
    for name, t in tensors.items():
        if t.dtype.kind in "fc":
            count = t.size - int(np.count_nonzero(np.isfinite(t)))
            if count:
                bad.append(f"{name} ({count} of {t.size} values)")
    if bad:
        raise NonFiniteValuesError(
            f"weights {source} hold NaN or inf in {len(bad)} tensor(s): {', '.join(bad)}. The sha256 matches the "
            "manifest, so the file was written like this (a diverged training run?) or rewritten with its manifest"
        )
