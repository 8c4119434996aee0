"""Model action conventions -> ours: the (H, 7) action contract every backend returns.

Ours (docs/CONTRACTS.md): dx dy dz m, rotation vector rad, gripper 0 open .. 1 closed. :class:`ActionAdapter`
undoes a model's convention (roll-pitch-yaw rotation, gripper 1 = open, scaled actions); :data:`ACTION_CONVENTIONS`
names the common ones. :class:`BackendError` is what every backend raises when a server fails or answers
something unusable.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

ACTION_DIM = 7


class BackendError(RuntimeError):
    """The policy server failed, timed out or answered something we cannot use."""


@dataclass(frozen=True)
class ActionAdapter:
    """Converts a model's raw actions (H, D >= 7) to ours (H, 7): first 3 translation, next 3 rotation, then gripper."""

    rotation: str = "rotvec"
    """How columns 3-5 encode the rotation step: "rotvec" (axis * angle) or "rpy" (extrinsic x-y-z Euler, as the
    Bridge/OpenVLA datasets use); converted to a rotation vector with scipy."""
    translation_scale: float = 1.0
    """Multiplies columns 0-2 to get metres (models trained on normalised deltas need their scale here)."""
    rotation_scale: float = 1.0
    """Multiplies columns 3-5 (before the rpy/rotvec conversion) to get radians."""
    gripper_open: float = 0.0
    """The model's gripper value meaning "open" (ours: 0). Bridge/OpenVLA: 1.0; openpi LIBERO: -1.0."""
    gripper_closed: float = 1.0
    """The model's gripper value meaning "closed" (ours: 1). Bridge/OpenVLA: 0.0; openpi LIBERO: 1.0."""
    binarize_gripper: bool = False
    """Snap the converted gripper command to 0 or 1 (threshold 0.5)."""
    max_actions: int = 0
    """Keep at most this many actions of a chunk (0: all)."""

    def __post_init__(self) -> None:
        if self.rotation not in ("rotvec", "rpy"):
            raise ValueError(f"rotation must be 'rotvec' or 'rpy', got {self.rotation!r}")
        if self.gripper_open == self.gripper_closed:
            raise ValueError(f"gripper_open and gripper_closed must differ, both are {self.gripper_open}")
        for name in ("translation_scale", "rotation_scale"):
            if not np.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)}")
        if self.max_actions < 0:
            raise ValueError(f"max_actions must be >= 0, got {self.max_actions}")

    def __call__(self, raw: Any) -> np.ndarray:
        a = np.asarray(raw, dtype=np.float64)
        if a.ndim == 1:
            a = a[None, :]
        if a.ndim != 2 or a.shape[1] < ACTION_DIM or a.shape[0] == 0:
            raise BackendError(f"expected actions of shape (H, >=7) or (>=7,), got {np.shape(raw)}")
        if self.max_actions:
            a = a[: self.max_actions]
        out = np.empty((len(a), ACTION_DIM))
        out[:, 0:3] = a[:, 0:3] * self.translation_scale
        rot = a[:, 3:6] * self.rotation_scale
        if self.rotation == "rpy":
            finite = np.all(np.isfinite(rot), axis=1)
            out[:, 3:6] = np.nan
            if finite.any():
                out[finite, 3:6] = Rotation.from_euler("xyz", rot[finite]).as_rotvec()
        else:
            out[:, 3:6] = rot
        g = (a[:, 6] - self.gripper_open) / (self.gripper_closed - self.gripper_open)
        g = np.clip(g, 0.0, 1.0)
        out[:, 6] = (g > 0.5).astype(np.float64) if self.binarize_gripper else g
        out[~np.isfinite(a[:, 6]), 6] = np.nan  # clip() would have hidden a NaN gripper
        return out


ACTION_CONVENTIONS: dict[str, ActionAdapter] = {
    "ours": ActionAdapter(),
    "openpi_libero": ActionAdapter(gripper_open=-1.0, gripper_closed=1.0),
    "bridge": ActionAdapter(rotation="rpy", gripper_open=1.0, gripper_closed=0.0, binarize_gripper=True),
}
"""Named model action conventions (``action_convention`` parameter; empty: the backend's default)."""


def adapter_from_params(params: dict, default: ActionAdapter) -> ActionAdapter:
    """The adapter named by the ``action_convention`` parameter (empty: ``default``), with the node's scale and
    max-actions parameters applied."""
    name = params.get("action_convention") or ""
    if name and name not in ACTION_CONVENTIONS:
        raise ValueError(f"unknown action_convention {name!r}; known: {', '.join(ACTION_CONVENTIONS)}")
    base = ACTION_CONVENTIONS[name] if name else default
    return replace(
        base,
        translation_scale=float(params.get("action_translation_scale", base.translation_scale)),
        rotation_scale=float(params.get("action_rotation_scale", base.rotation_scale)),
        max_actions=int(params.get("action_max_actions", base.max_actions)),
    )
