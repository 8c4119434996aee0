"""Residual policy networks (torch), trained by the trainer; their numpy run-time form is
:mod:`residual_core.residual_policy` (the same forward pass, no torch).

- :class:`MLP`: plain multilayer perceptron.
- :class:`ObsNormalizer`: observation mean/std in registered buffers, shared by the actor and the critic.
- :class:`ResidualActor`: observation normalisation (registered buffers) -> MLP -> tanh, last layer
  zero-initialised so a fresh actor outputs exactly 0 (base policy unchanged).
- :class:`CriticEnsemble`: ``num_critics`` Q networks evaluated in one batched pass (stacked weights,
  ``torch.baddbmm``), returning (num_critics, B).
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
from residual_core.action import ACTION_DIM
from residual_core.checkpoint import Manifest, save_checkpoint
from residual_core.observation import ObservationLayout
from residual_core.tasks import check_task
from torch import nn

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
