"""Noisy ground truth: the simulator's object poses with the training-time noise and dropout (no rclpy).

The noise and dropout are :class:`residual_core.augment.PoseAugmenter`'s (docs/CONTRACTS.md, "Pose noise and
dropout"), with a fixed noise level: position noise N(0, noise_pos_m^2) per axis, orientation noise a rotation
about a uniformly random axis with angle ~ N(0, noise_rot_rad^2), each object dropped with probability
``dropout_p`` per message. PoseAugmenter ties the rotation noise to the position noise (angle std = sigma *
rot_noise_per_m), so ``noise_rot_rad`` > 0 needs ``noise_pos_m`` > 0.

Output: one entry per task object, in the task's order. A dropped object keeps its (noisy) pose with confidence
0 (what "not seen" means in ObjectPose); an object with confidence 0 is passed on untouched with confidence 0; one
missing from the input or not usable (residual_ros.validate.object_values_reason: not finite, out of range, not a unit
quaternion, a confidence outside [0, 1]) as all zeros with confidence 0: nothing unusable reaches the noise maths
(a quaternion of 1e200 made scipy raise) or the output.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from residual_core.augment import PoseAugmenter
from residual_ros.validate import object_values_reason


@dataclass(frozen=True)
class NoisyGroundTruthConfig:
    """Noise and dropout added to the ground truth."""

    noise_pos_m: float = 0.0
    """Standard deviation of the position noise per axis (m)."""
    noise_rot_rad: float = 0.0
    """Standard deviation of the orientation noise angle (rad); needs noise_pos_m > 0 when > 0."""
    dropout_p: float = 0.0
    """Probability that an object is reported as not seen (confidence 0) in a message."""
    seed: int = 0
    """Seed of the noise and dropout stream."""

    def __post_init__(self) -> None:
        for name in ("noise_pos_m", "noise_rot_rad"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {v}")
        if self.noise_rot_rad > 0 and self.noise_pos_m == 0:
            raise ValueError(f"noise_rot_rad={self.noise_rot_rad} needs noise_pos_m > 0: residual_core.augment "
                             "draws the rotation noise as noise_pos_m * rot_noise_per_m")
        if not 0.0 <= self.dropout_p <= 1.0:
            raise ValueError(f"dropout_p must be in [0, 1], got {self.dropout_p}")


@dataclass(frozen=True)
class PassedPose:
    """One object as passed on."""

    name: str
    """Object name."""
    pos: np.ndarray
    """(3,) position (m), base frame."""
    quat_xyzw: np.ndarray
    """(4,) orientation; all zeros when the object was missing from the input."""
    confidence: float
    """Input confidence, or 0 when dropped or missing."""
    status: str
    """"seen", "dropped" (by the dropout draw) or "missing" (absent, unseen or invalid on input)."""


class NoisyGroundTruth:
    """Applies noise and dropout to one message's object poses at a time (one PoseAugmenter environment)."""

    def __init__(self, object_names: Sequence[str], config: NoisyGroundTruthConfig = NoisyGroundTruthConfig()):
        if not object_names:
            raise ValueError("object_names must name at least one object")
        self.object_names = tuple(object_names)
        self.config = config
        rot_per_m = config.noise_rot_rad / config.noise_pos_m if config.noise_pos_m > 0 else 0.0
        self.augmenter = PoseAugmenter(max_sigma=config.noise_pos_m, dropout_p=config.dropout_p,
                                       rot_noise_per_m=rot_per_m, seed=config.seed, fixed_sigma=True)
        self.augmenter.reset(1)

    def apply(self, objects: Mapping[str, tuple[Sequence[float], Sequence[float], float]]) -> list[PassedPose]:
        """``objects``: name -> (pos (3,), quat_xyzw (4,), confidence). Names that are not task objects are ignored."""
        k = len(self.object_names)
        pos, quat = np.zeros((1, k, 3)), np.zeros((1, k, 4))
        present = np.zeros((1, k), dtype=bool)
        conf = np.zeros(k)
        for i, name in enumerate(self.object_names):
            if name not in objects or object_values_reason(name, *objects[name]):
                continue
            p, q, c = objects[name]
            pos[0, i], quat[0, i], conf[i] = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64), c
            present[0, i] = c > 0
        noisy_pos, noisy_quat, kept = self.augmenter.apply(pos, quat, present)
        out = []
        for i, name in enumerate(self.object_names):
            if not present[0, i]:
                out.append(PassedPose(name, pos[0, i], quat[0, i], 0.0, "missing"))
            elif kept[0, i]:
                out.append(PassedPose(name, noisy_pos[0, i], noisy_quat[0, i], float(conf[i]), "seen"))
            else:
                out.append(PassedPose(name, noisy_pos[0, i], noisy_quat[0, i], 0.0, "dropped"))
        return out
