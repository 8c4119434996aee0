"""Object pose noise and dropout used while training the residual (docs/CONTRACTS.md, "Pose noise and dropout").

Per episode and environment, a noise level ``sigma ~ U(0, max_sigma)`` is drawn. At every step each object's
position gets N(0, sigma^2) noise per axis, its orientation a rotation about a uniformly random axis with
angle ~ N(0, (sigma * rot_noise_per_m)^2) (applied on the left, in the base frame), and each object is
independently dropped (present = 0) with probability ``dropout_p``. The same numbers come out for the same
seed and the same sequence of calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation


@dataclass(frozen=True)
class AugmentConfig:
    """Pose noise and dropout levels (defaults from the object-centric residual work)."""

    max_sigma: float = 0.005
    """Upper bound of the per-episode position noise standard deviation (m); sigma ~ U(0, max_sigma)."""
    dropout_p: float = 0.1
    """Probability that an object's pose is dropped (present = 0) at a step, independently per object."""
    rot_noise_per_m: float = 10.0
    """Orientation noise per metre of position noise: the rotation angle's std is sigma * this (rad/m)."""
    fixed_sigma: bool = False
    """Use sigma = max_sigma in every episode instead of U(0, max_sigma) (evaluation at a stated noise level)."""

    def __post_init__(self) -> None:
        if not (np.isfinite(self.max_sigma) and self.max_sigma >= 0):
            raise ValueError(f"max_sigma must be finite and >= 0, got {self.max_sigma}")
        if not 0.0 <= self.dropout_p <= 1.0:
            raise ValueError(f"dropout_p must be in [0, 1], got {self.dropout_p}")
        if not (np.isfinite(self.rot_noise_per_m) and self.rot_noise_per_m >= 0):
            raise ValueError(f"rot_noise_per_m must be finite and >= 0, got {self.rot_noise_per_m}")


class PoseAugmenter:
    """Per-episode noise levels for N parallel environments and per-step noise/dropout of K object poses."""

    def __init__(
        self,
        max_sigma: float = 0.005,
        dropout_p: float = 0.1,
        rot_noise_per_m: float = 10.0,
        seed: int | None = None,
        fixed_sigma: bool = False,
    ):
        self.config = AugmentConfig(max_sigma=max_sigma, dropout_p=dropout_p, rot_noise_per_m=rot_noise_per_m,
                                    fixed_sigma=fixed_sigma)
        self._rng = np.random.default_rng(seed)
        self._sigma: np.ndarray | None = None

    @classmethod
    def from_config(cls, config: AugmentConfig, seed: int | None = None) -> PoseAugmenter:
        return cls(config.max_sigma, config.dropout_p, config.rot_noise_per_m, seed, config.fixed_sigma)

    def _draw_sigma(self, n: int) -> np.ndarray:
        sigma = self._rng.uniform(0.0, self.config.max_sigma, size=n)
        return np.full(n, self.config.max_sigma) if self.config.fixed_sigma else sigma

    @property
    def num_envs(self) -> int:
        return 0 if self._sigma is None else len(self._sigma)

    @property
    def sigma(self) -> np.ndarray:
        """The current per-environment noise levels (N,) (a copy)."""
        if self._sigma is None:
            raise RuntimeError("PoseAugmenter: call reset(num_envs) before using it")
        return self._sigma.copy()

    def reset(self, num_envs: int) -> np.ndarray:
        """Start an episode in every environment: draw and return sigma (num_envs,)."""
        if int(num_envs) != num_envs or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        self._sigma = self._draw_sigma(int(num_envs))
        return self._sigma.copy()

    def reset_env(self, env_ids: int | Sequence[int] | np.ndarray) -> np.ndarray:
        """Start a new episode in the given environment(s): redraw and return their sigma."""
        if self._sigma is None:
            raise RuntimeError("PoseAugmenter: call reset(num_envs) before reset_env")
        ids = np.atleast_1d(np.asarray(env_ids))
        if ids.dtype.kind not in "iu" or np.any(ids < 0) or np.any(ids >= len(self._sigma)):
            raise ValueError(f"env ids must be integers in [0, {len(self._sigma)}), got {env_ids!r}")
        self._sigma[ids] = self._draw_sigma(len(ids))
        return self._sigma[ids].copy()

    def apply(
        self, obj_pos: np.ndarray, obj_quat: np.ndarray, present: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One step of noise and dropout for (N, K, 3) positions, (N, K, 4) x, y, z, w quaternions, (N, K) present.

        Returns new arrays (the inputs are not modified). Objects absent on input stay absent and untouched;
        a dropped object keeps its (noisy) pose values, which the observation builder then zeroes.
        """
        if self._sigma is None:
            raise RuntimeError("PoseAugmenter: call reset(num_envs) before apply")
        pos = np.array(obj_pos, dtype=np.float64)
        quat = np.array(obj_quat, dtype=np.float64)
        present = np.asarray(present).astype(bool)
        n = len(self._sigma)
        if pos.ndim != 3 or pos.shape[0] != n or pos.shape[2] != 3:
            raise ValueError(f"obj_pos must have shape ({n}, K, 3) for {n} environments, got {pos.shape}")
        k = pos.shape[1]
        if quat.shape != (n, k, 4):
            raise ValueError(f"obj_quat must have shape {(n, k, 4)}, got {quat.shape}")
        if present.shape != (n, k):
            raise ValueError(f"present must have shape {(n, k)}, got {present.shape}")

        # Draw everything every step, whatever is present, so the stream depends only on the seed and shapes.
        sigma = self._sigma[:, None]  # (N, 1)
        pos_noise = self._rng.standard_normal((n, k, 3)) * sigma[..., None]
        axis = self._rng.standard_normal((n, k, 3))
        angle = self._rng.standard_normal((n, k)) * sigma * self.config.rot_noise_per_m
        keep = self._rng.random((n, k)) >= self.config.dropout_p

        norm = np.linalg.norm(axis, axis=-1, keepdims=True)
        rotvec = np.divide(axis, norm, out=np.zeros_like(axis), where=norm > 0) * angle[..., None]
        perturb = present & np.all(np.isfinite(quat), axis=-1)
        pos[present] += pos_noise[present]
        if perturb.any():
            quat[perturb] = (Rotation.from_rotvec(rotvec[perturb]) * Rotation.from_quat(quat[perturb])).as_quat()
        return pos, quat, present & keep
