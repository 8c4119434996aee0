"""Open-loop replay of a recorded action sequence: for debugging the graph and the robot without a model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vla_base_node.backends.adapters import ACTION_DIM


@dataclass
class ReplayConfig:
    """Replays a recorded action sequence (T, 7) open-loop: for debugging the graph and the robot without a model."""

    path: str = ""
    """``.npy`` (T, 7) float array or ``.csv`` (T rows of 7 numbers, optional header row) in our convention."""
    horizon: int = 8
    """Actions returned per inference."""


class ReplayBackend:
    """``infer`` returns actions[step : step + horizon]; past the end, zero-delta actions with the final gripper."""

    def __init__(self, cfg: ReplayConfig, name: str = "replay"):
        self.cfg, self.name = cfg, name
        path = Path(cfg.path)
        if path.suffix == ".npy":
            actions = np.load(path, allow_pickle=False)
        elif path.suffix == ".csv":
            actions = np.loadtxt(path, delimiter=",", ndmin=2, skiprows=_header_rows(path))
        else:
            raise ValueError(f"replay file must be .npy or .csv, got {cfg.path!r}")
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 2 or actions.shape[1] != ACTION_DIM or len(actions) == 0:
            raise ValueError(f"replay file {cfg.path} must hold (T, 7) actions, got shape {actions.shape}")
        if not np.all(np.isfinite(actions)):
            raise ValueError(f"replay file {cfg.path} holds non-finite actions")
        if cfg.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {cfg.horizon}")
        self.actions = actions
        self.instruction = ""

    def reset(self, instruction: str) -> None:
        self.instruction = instruction

    def infer(self, observation: dict) -> np.ndarray:
        step = int(observation["step"])
        out = np.zeros((self.cfg.horizon, ACTION_DIM))
        out[:, 6] = self.actions[-1, 6]
        part = self.actions[step : step + self.cfg.horizon]
        out[: len(part)] = part
        return out

    def close(self) -> None:
        pass


def _header_rows(path: Path) -> int:
    with open(path) as f:
        first = f.readline()
    try:
        [float(v) for v in first.split(",")]
        return 0
    except ValueError:
        return 1


def make_replay(params: dict) -> ReplayBackend:
    """The ReplayBackend configured by the node's parameters (a dict; absent keys: defaults)."""
    return ReplayBackend(ReplayConfig(path=params.get("replay_path", ""), horizon=int(params.get("horizon", 8))))
