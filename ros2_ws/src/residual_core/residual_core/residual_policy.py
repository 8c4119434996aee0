"""The residual policy at run time, in numpy only (no torch): what the residual node, the evaluation and the
demo load from a residual checkpoint.

- :class:`NumpyPolicy`: a ResidualActor's forward pass (``residual_learning.networks.ResidualActor``, the torch
  network the trainer optimises) in numpy, built from its state dict.
- :class:`ResidualPolicy`: a residual checkpoint loaded for deployment: observation (D,) or (N, D) ->
  scaled residual action (7,) or (N, 7).

The weights are read with ``safetensors.numpy`` (:func:`residual_core.checkpoint.load_checkpoint`); a test checks
that this forward pass equals the torch actor's on the shipped checkpoints to float32 precision.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from residual_core.checkpoint import CheckpointCorruptError, Manifest, load_checkpoint
from residual_core.observation import ObservationLayout


def _as_float32(value: Any) -> np.ndarray:
    """A numpy float32 copy of an array or of a torch tensor (duck-typed, so torch is never imported here)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(value), dtype=np.float32)


class NumpyPolicy:
    """A ResidualActor's forward pass in numpy (float32), built from its state dict.

    ``__call__(obs)`` takes (D,) or (N, D) and returns u in [-1, 1] as (act_dim,) or (N, act_dim) float32.
    """

    def __init__(self, state_dict: Mapping[str, Any], obs_clip: float = 10.0):
        def arr(key: str) -> np.ndarray:
            if key not in state_dict:
                raise ValueError(f"state dict has no {key!r}; keys: {sorted(state_dict)}")
            return _as_float32(state_dict[key])

        self.mean = arr("obs_mean")
        std = arr("obs_std")
        if np.any(std <= 0):
            raise ValueError("obs_std must be > 0 everywhere")
        self.inv_std = (1.0 / std).astype(np.float32)
        self.obs_clip = np.float32(obs_clip)
        self.weights: list[np.ndarray] = []  # (in, out), transposed from torch's (out, in)
        self.biases: list[np.ndarray] = []
        i = 0
        while f"mlp.linears.{i}.weight" in state_dict:
            self.weights.append(np.ascontiguousarray(arr(f"mlp.linears.{i}.weight").T))
            self.biases.append(arr(f"mlp.linears.{i}.bias"))
            i += 1
        if not self.weights:
            raise ValueError(f"state dict has no mlp.linears.0.weight: not a ResidualActor; keys: {sorted(state_dict)}")
        dims = [self.mean.shape[0]] + [w.shape[1] for w in self.weights]
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if w.shape != (dims[k], dims[k + 1]) or b.shape != (dims[k + 1],):
                raise ValueError(f"layer {k} has weight {w.shape[::-1]} and bias {b.shape}: they do not chain")
        self.obs_dim, self.act_dim = dims[0], dims[-1]

    @classmethod
    def from_actor(cls, actor: Any) -> NumpyPolicy:
        """From a torch ``ResidualActor`` (anything with ``state_dict()`` and ``obs_clip``)."""
        return cls(actor.state_dict(), actor.obs_clip)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float32)
        if x.ndim not in (1, 2) or x.shape[-1] != self.obs_dim:
            raise ValueError(f"observation must be ({self.obs_dim},) or (N, {self.obs_dim}), got {x.shape}")
        x = np.clip((x - self.mean) * self.inv_std, -self.obs_clip, self.obs_clip)
        last = len(self.weights) - 1
        for k in range(last):
            x = x @ self.weights[k]
            x += self.biases[k]
            np.maximum(x, 0.0, out=x)
        x = x @ self.weights[last]
        x += self.biases[last]
        return np.tanh(x, out=x)


class ResidualPolicy:
    """A residual checkpoint ready to run: ``policy(obs)`` -> scaled residual action ``u * action_scale``."""

    def __init__(self, actor: NumpyPolicy, manifest: Manifest):
        layout = manifest.observation_layout
        if layout is None or layout.size != actor.obs_dim:
            raise ValueError(
                f"manifest layout ({layout and layout.size} values) does not fit the actor ({actor.obs_dim})"
            )
        scale = np.asarray(manifest.action_scale, dtype=np.float64)
        if scale.shape != (actor.act_dim,) or np.any(scale < 0):
            raise ValueError(f"action_scale must be {actor.act_dim} values >= 0, got {manifest.action_scale}")
        self.actor = actor
        self.manifest = manifest
        self.layout: ObservationLayout = layout
        self.task: str = manifest.task
        self.action_scale = scale

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        expected_task: str | None = None,
        expected_layout: ObservationLayout | None = None,
    ) -> ResidualPolicy:
        """Load a residual checkpoint (errors: the CheckpointError subclasses of residual_core.checkpoint)."""
        tensors, manifest = load_checkpoint(
            path, expected_kind="residual", expected_task=expected_task, expected_layout=expected_layout
        )
        net = manifest.network
        if net.get("class") != "ResidualActor" or not isinstance(net.get("kwargs"), dict):
            raise CheckpointCorruptError(f"checkpoint {path}: network must be a ResidualActor, got {net}")
        try:
            actor = NumpyPolicy(tensors, obs_clip=float(net["kwargs"].get("obs_clip", 10.0)))
            policy = cls(actor, manifest)
        except ValueError as exc:
            raise CheckpointCorruptError(f"checkpoint {path}: {exc}") from None
        for name, buf in (("obs_mean", actor.mean), ("obs_std", 1.0 / actor.inv_std)):
            stored = manifest.normalization.get(name)
            if stored is None or not np.allclose(stored, buf, rtol=1e-5, atol=1e-6):
                raise CheckpointCorruptError(f"checkpoint {path}: manifest normalization[{name!r}] != weights' {name}")
        return policy

    @property
    def obs_dim(self) -> int:
        return self.actor.obs_dim

    def raw(self, obs: np.ndarray) -> np.ndarray:
        """The network output u in [-1, 1], (7,) or (N, 7) float32."""
        return self.actor(obs)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """Scaled residual action (7,) or (N, 7) float64 for an observation (D,) or (N, D)."""
        return self.actor(obs) * self.action_scale
