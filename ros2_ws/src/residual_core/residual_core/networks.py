"""Residual policy networks (torch) and their numpy-only deployment form.

- :class:`MLP`: plain multilayer perceptron.
- :class:`ObsNormalizer`: observation mean/std in registered buffers, shared by the actor and the critic.
- :class:`ResidualActor`: observation normalisation (registered buffers) -> MLP -> tanh, last layer
  zero-initialised so a fresh actor outputs exactly 0 (base policy unchanged).
- :class:`CriticEnsemble`: ``num_critics`` Q networks evaluated in one batched pass (stacked weights,
  ``torch.baddbmm``), returning (num_critics, B).
- :class:`NumpyPolicy`: the ResidualActor forward pass in numpy from its state dict (no torch at run time).
- :class:`ResidualPolicy`: a residual checkpoint loaded for deployment: observation (D,) or (N, D) ->
  scaled residual action (7,) or (N, 7).
- :func:`save_residual_checkpoint`: writes a ResidualActor as a residual checkpoint.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from residual_core.action import ACTION_DIM
from residual_core.checkpoint import Manifest, load_checkpoint, save_checkpoint
from residual_core.observation import ObservationLayout
from residual_core.tasks import check_task

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "elu": F.elu,
    "gelu": F.gelu,
    "silu": F.silu,
}


def _check_dims(**dims: int) -> None:
    for name, v in dims.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")


class MLP(nn.Module):
    """Linear layers with an activation (and optional LayerNorm before it) between them; linear output."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: Sequence[int] = (256, 256),
        activation: str = "relu",
        layer_norm: bool = False,
    ):
        super().__init__()
        hidden = tuple(int(h) for h in hidden)
        _check_dims(in_dim=in_dim, out_dim=out_dim, **{f"hidden[{i}]": h for i, h in enumerate(hidden)})
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; known: {sorted(ACTIVATIONS)}")
        self.in_dim, self.out_dim, self.hidden = in_dim, out_dim, hidden
        self.activation = activation
        dims = (in_dim, *hidden, out_dim)
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.norms = nn.ModuleList(nn.LayerNorm(h) for h in hidden) if layer_norm else None
        self._act = ACTIVATIONS[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, linear in enumerate(self.linears[:-1]):
            x = linear(x)
            if self.norms is not None:
                x = self.norms[i](x)
            x = self._act(x)
        return self.linears[-1](x)


class ObsNormalizer(nn.Module):
    """Observation normalisation held in registered buffers ``obs_mean`` / ``obs_std`` (saved with the weights).

    ``normalize(obs) = clip((obs - obs_mean) / obs_std, -obs_clip, obs_clip)``; identity until
    :meth:`set_normalization` is called.
    """

    def __init__(self, obs_dim: int, obs_clip: float = 10.0):
        super().__init__()
        _check_dims(obs_dim=obs_dim)
        if not (math.isfinite(obs_clip) and obs_clip > 0):
            raise ValueError(f"obs_clip must be finite and > 0, got {obs_clip}")
        self.obs_dim, self.obs_clip = obs_dim, float(obs_clip)
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))

    def set_normalization(self, mean, std, min_std: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
        """Set the observation mean and std (obs_dim,); std is floored at ``min_std``. Returns the stored pair."""
        mean_t = torch.as_tensor(np.asarray(mean, dtype=np.float32))
        std_t = torch.as_tensor(np.asarray(std, dtype=np.float32))
        for name, t in (("mean", mean_t), ("std", std_t)):
            if t.shape != (self.obs_dim,):
                raise ValueError(f"normalization {name} must have shape ({self.obs_dim},), got {tuple(t.shape)}")
            if not torch.isfinite(t).all():
                raise ValueError(f"normalization {name} must be finite")
        with torch.no_grad():
            self.obs_mean.copy_(mean_t)
            self.obs_std.copy_(std_t.clamp_min(min_std))
        return self.obs_mean.clone(), self.obs_std.clone()

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        return ((obs - self.obs_mean) / self.obs_std).clamp(-self.obs_clip, self.obs_clip)


class ResidualActor(ObsNormalizer):
    """obs (..., obs_dim) -> u (..., act_dim) in [-1, 1]: ``tanh(MLP(clip((obs - mean) / std, +-obs_clip)))``.

    ReLU hidden layers. The last layer's weights and bias start at zero, so a new actor's residual is
    exactly 0 and training starts from the base policy's behaviour.
    """

    def __init__(
        self, obs_dim: int, act_dim: int = ACTION_DIM, hidden: Sequence[int] = (256, 256), obs_clip: float = 10.0
    ):
        super().__init__(obs_dim, obs_clip)
        self.act_dim = act_dim
        self.mlp = MLP(obs_dim, act_dim, hidden, activation="relu")
        self.hidden = self.mlp.hidden
        nn.init.zeros_(self.mlp.linears[-1].weight)
        nn.init.zeros_(self.mlp.linears[-1].bias)

    @property
    def init_kwargs(self) -> dict[str, Any]:
        """Constructor arguments, as stored in a checkpoint manifest's ``network.kwargs``."""
        return {
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "hidden": list(self.hidden),
            "obs_clip": self.obs_clip,
        }

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.mlp(self.normalize(obs)))


class CriticEnsemble(ObsNormalizer):
    """``num_critics`` independent Q(obs, act) MLPs evaluated together; forward returns (num_critics, B).

    The observation is normalised like the actor's (:class:`ObsNormalizer`, shared by all members); the
    action (the raw residual u in [-1, 1]) is used as is. Weights are stacked per layer as (C, in, out) and
    applied with one ``torch.baddbmm`` per layer. Each member is initialised like ``nn.Linear`` (uniform in
    +-1/sqrt(fan_in)), independently. ReLU hidden layers, optional per-member LayerNorm before them.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int = ACTION_DIM,
        num_critics: int = 2,
        hidden: Sequence[int] = (256, 256),
        layer_norm: bool = False,
        obs_clip: float = 10.0,
    ):
        super().__init__(obs_dim, obs_clip)
        hidden = tuple(int(h) for h in hidden)
        _check_dims(
            obs_dim=obs_dim,
            act_dim=act_dim,
            num_critics=num_critics,
            **{f"hidden[{i}]": h for i, h in enumerate(hidden)},
        )
        self.obs_dim, self.act_dim, self.num_critics, self.hidden = obs_dim, act_dim, num_critics, hidden
        self.layer_norm = layer_norm
        dims = (obs_dim + act_dim, *hidden, 1)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(dims[:-1], dims[1:], strict=True):
            bound = 1.0 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(torch.empty(num_critics, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(num_critics, 1, fan_out).uniform_(-bound, bound)))
        if layer_norm:
            self.norm_gains = nn.ParameterList(nn.Parameter(torch.ones(num_critics, 1, h)) for h in hidden)
            self.norm_biases = nn.ParameterList(nn.Parameter(torch.zeros(num_critics, 1, h)) for h in hidden)

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return {
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "num_critics": self.num_critics,
            "hidden": list(self.hidden),
            "layer_norm": self.layer_norm,
            "obs_clip": self.obs_clip,
        }

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """obs (B, obs_dim), act (B, act_dim) -> Q (num_critics, B)."""
        if obs.ndim != 2 or act.ndim != 2 or obs.shape[0] != act.shape[0]:
            raise ValueError(f"obs and act must be (B, dim) with equal B, got {tuple(obs.shape)}, {tuple(act.shape)}")
        x = torch.cat([self.normalize(obs), act], dim=-1).unsqueeze(0).expand(self.num_critics, -1, -1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b, x, w)
            if i < last:
                if self.layer_norm:
                    x = F.layer_norm(x, x.shape[-1:]) * self.norm_gains[i] + self.norm_biases[i]
                x = F.relu(x)
        return x.squeeze(-1)


class NumpyPolicy:
    """A :class:`ResidualActor`'s forward pass in numpy (float32), built from its state dict.

    ``__call__(obs)`` takes (D,) or (N, D) and returns u in [-1, 1] as (act_dim,) or (N, act_dim) float32.
    """

    def __init__(self, state_dict: Mapping[str, Any], obs_clip: float = 10.0):
        def arr(key: str) -> np.ndarray:
            if key not in state_dict:
                raise ValueError(f"state dict has no {key!r}; keys: {sorted(state_dict)}")
            v = state_dict[key]
            v = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
            return np.ascontiguousarray(v, dtype=np.float32)

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
    def from_actor(cls, actor: ResidualActor) -> NumpyPolicy:
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
        from residual_core.checkpoint import CheckpointCorruptError

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


def save_residual_checkpoint(
    path: str | os.PathLike,
    actor: ResidualActor,
    layout: ObservationLayout,
    task: str,
    action_scale: Sequence[float],
    training: Mapping[str, Any],
    steps: int,
    evaluation: Mapping[str, Any],
) -> Path:
    """Write ``actor`` as a residual checkpoint (weights + manifest); returns the .safetensors path."""
    check_task(task)
    if layout.size != actor.obs_dim:
        raise ValueError(f"layout has {layout.size} values but the actor takes obs_dim={actor.obs_dim}")
    scale = [float(v) for v in action_scale]
    if len(scale) != actor.act_dim:
        raise ValueError(f"action_scale has {len(scale)} values, the actor outputs {actor.act_dim}")
    manifest = Manifest(
        kind="residual",
        task=task,
        observation_layout=layout,
        normalization={"obs_mean": actor.obs_mean.tolist(), "obs_std": actor.obs_std.tolist()},
        action_scale=scale,
        network={"class": "ResidualActor", "kwargs": actor.init_kwargs},
        training=dict(training),
        steps=int(steps),
        evaluation=dict(evaluation),
    )
    state = {k: v.detach().to(torch.float32) for k, v in actor.state_dict().items()}
    return save_checkpoint(path, state, manifest)
