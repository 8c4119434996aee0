"""The camera log the perception model is fitted to: per camera image and object, the true pose, the TCP pose, the
gripper width, the arm's joints and what the estimator published (trainer.perception_model; docs/PERCEPTION.md has
how to record one from a real camera)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from trainer.perception_geometry import cells, phases

# --- the camera log ------------------------------------------------------------------------------------------------
LOG_COLUMNS = ("task", "episode", "step", "object", "true_x", "true_y", "true_z", "true_qx", "true_qy", "true_qz",
               "true_qw", "tcp_x", "tcp_y", "tcp_z", "tcp_qx", "tcp_qy", "tcp_qz", "tcp_qw", "gripper_width",
               "q1", "q2", "q3", "q4", "q5", "q6", "q7", "detected", "est_x", "est_y", "est_z", "est_qx", "est_qy",
               "est_qz", "est_qw")
"""CSV columns of a camera log, one row per camera image and object (base frame, m, quaternions x y z w):
``episode`` any integer naming the episode (per-episode offsets are fitted from it), ``step`` the control step of the
image, ``q1``..``q7`` the arm's joint positions (rad; the arm's occlusion is computed from them), ``detected`` 1 when
the estimator published a pose with confidence at or above the residual's ``min_confidence``, else 0 (the est_*
columns are then ignored)."""


@dataclass
class CameraLog:
    """Rows of a camera log (see :data:`LOG_COLUMNS`), as arrays of equal length."""

    task: np.ndarray
    episode: np.ndarray
    step: np.ndarray
    object: np.ndarray
    true_pos: np.ndarray
    true_quat: np.ndarray
    tcp_pos: np.ndarray
    tcp_quat: np.ndarray
    gripper_width: np.ndarray
    joint_pos: np.ndarray
    detected: np.ndarray
    est_pos: np.ndarray
    est_quat: np.ndarray

    def __len__(self) -> int:
        return len(self.step)

    def __post_init__(self) -> None:
        n = len(self.step)
        shapes = {"true_pos": 3, "true_quat": 4, "tcp_pos": 3, "tcp_quat": 4, "joint_pos": 7, "est_pos": 3,
                  "est_quat": 4}
        for name in ("task", "episode", "object", "gripper_width", "detected"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"camera log: column {name} has {len(getattr(self, name))} rows, step has {n}")
        for name, width in shapes.items():
            if np.shape(getattr(self, name)) != (n, width):
                raise ValueError(f"camera log: {name} must be ({n}, {width}), got {np.shape(getattr(self, name))}")
        bad = ~(np.all(np.isfinite(self.true_pos), axis=1) & np.all(np.isfinite(self.tcp_pos), axis=1))
        if bad.any():
            raise ValueError(f"camera log: {int(bad.sum())} rows with a non-finite true or TCP position "
                             f"(first: row {int(np.flatnonzero(bad)[0])})")

    @classmethod
    def concat(cls, logs: Iterable[CameraLog]) -> CameraLog:
        logs = list(logs)
        if not logs:
            raise ValueError("no camera logs to join")
        return cls(**{f: np.concatenate([getattr(g, f) for g in logs]) for f in cls.__dataclass_fields__})

    def subset(self, mask: np.ndarray) -> CameraLog:
        return CameraLog(**{f: getattr(self, f)[mask] for f in self.__dataclass_fields__})

    def errors(self) -> tuple[np.ndarray, np.ndarray]:
        """Position error (n, 3) (estimate - truth, m) and orientation error angle (n,) (rad); NaN where missed."""
        pos = np.where(self.detected[:, None], self.est_pos - self.true_pos, np.nan)
        ang = np.full(len(self), np.nan)
        d = self.detected & np.all(np.isfinite(self.est_quat), axis=1) & (np.linalg.norm(self.est_quat, axis=1) > 0.5)
        if d.any():
            rel = Rotation.from_quat(self.est_quat[d]) * Rotation.from_quat(self.true_quat[d]).inv()
            ang[d] = rel.magnitude()
        return pos, ang

    def to_csv(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(LOG_COLUMNS)
            for i in range(len(self)):
                w.writerow([self.task[i], int(self.episode[i]), int(self.step[i]), self.object[i],
                            *(f"{v:.6f}" for v in self.true_pos[i]), *(f"{v:.6f}" for v in self.true_quat[i]),
                            *(f"{v:.6f}" for v in self.tcp_pos[i]), *(f"{v:.6f}" for v in self.tcp_quat[i]),
                            f"{self.gripper_width[i]:.6f}", *(f"{v:.6f}" for v in self.joint_pos[i]),
                            int(self.detected[i]),
                            *(f"{v:.6f}" for v in self.est_pos[i]), *(f"{v:.6f}" for v in self.est_quat[i])])

    @classmethod
    def from_csv(cls, path: Path) -> CameraLog:
        path = Path(path)
        with path.open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None or tuple(header) != LOG_COLUMNS:
                raise ValueError(f"{path}: not a camera log: the header must be {','.join(LOG_COLUMNS)}")
            rows = list(reader)
        if not rows:
            raise ValueError(f"{path}: the camera log has no rows")
        bad = [i + 2 for i, r in enumerate(rows) if len(r) != len(LOG_COLUMNS)]
        if bad:
            raise ValueError(f"{path}: line(s) {bad[:5]} do not have {len(LOG_COLUMNS)} fields")
        cols = list(zip(*rows, strict=True))
        try:
            num = lambda names: np.array([[float(v) for v in cols[LOG_COLUMNS.index(c)]] for c in names]).T  # noqa: E731
            return cls(task=np.array(cols[0]), episode=np.array([int(v) for v in cols[1]]),
                       step=np.array([int(v) for v in cols[2]]), object=np.array(cols[3]),
                       true_pos=num(LOG_COLUMNS[4:7]), true_quat=num(LOG_COLUMNS[7:11]),
                       tcp_pos=num(LOG_COLUMNS[11:14]), tcp_quat=num(LOG_COLUMNS[14:18]),
                       gripper_width=np.array([float(v) for v in cols[18]]), joint_pos=num(LOG_COLUMNS[19:26]),
                       detected=np.array([int(v) for v in cols[26]]).astype(bool),
                       est_pos=num(LOG_COLUMNS[27:30]), est_quat=num(LOG_COLUMNS[30:34]))
        except ValueError as e:
            raise ValueError(f"{path}: a field is not a number: {e}") from None


def log_cells(log: CameraLog, camera_positions: Sequence) -> np.ndarray:
    """(n,) the cell of every row (rows are one object each: computed as N=n, K=1)."""
    return cells(log.true_pos[:, None], log.true_quat[:, None], log.tcp_pos, log.tcp_quat, log.gripper_width,
                 log.joint_pos, camera_positions)[:, 0]


def log_phases(log: CameraLog) -> np.ndarray:
    return phases(log.true_pos[:, None], log.tcp_pos, log.gripper_width)[:, 0]
