"""The simulation counterpart of a VLA: an instruction-conditioned, action-chunking base policy.

It reads privileged state (object poses + proprioception) instead of pixels: it stands in for a VLA's
*behaviour* (chunked open-loop actions, imperfect imitation of human demonstrations), not its perception.
Shared by the trainer (behaviour cloning, evaluation) and the ROS base node's sim_bc backend (deployment), so both
run the same features and the same network. It needs torch, so it lives here and not in residual_core.

Features (``BASE_FEATURE_LAYOUT``): for up to ``BASE_MAX_OBJECTS`` object slots (the task's objects in
``TASK_OBJECTS`` order, missing slots zero): position (3), rot6d (6), present (1); proprioception: joint
positions (7), gripper width (1), TCP position (3), TCP rot6d (6); the instruction embedding
(``INSTRUCTION_DIM``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from residual_core.action import ACTION_DIM
from residual_core.rotations import quat_to_rot6d
from torch import nn

BASE_MAX_OBJECTS = 2
INSTRUCTION_DIM = 32
_OBJ_FEATURES = 10
_PROPRIO_FEATURES = 17
BASE_STATE_DIM = BASE_MAX_OBJECTS * _OBJ_FEATURES + _PROPRIO_FEATURES
BASE_FEATURE_DIM = BASE_STATE_DIM + INSTRUCTION_DIM
BASE_FEATURE_LAYOUT: tuple[tuple[str, int], ...] = tuple(
    [(f"slot{k}/{f}", n) for k in range(BASE_MAX_OBJECTS) for f, n in (("pos", 3), ("rot6d", 6), ("present", 1))]
    + [("proprio/joint_pos", 7), ("proprio/gripper_width", 1), ("proprio/tcp_pos", 3), ("proprio/tcp_rot6d", 6),
       ("instruction", INSTRUCTION_DIM)]
)


def embed_instruction(text: str, dim: int = INSTRUCTION_DIM) -> np.ndarray:
    """Deterministic bag-of-words embedding of an instruction (unit norm, float32).

    Each lower-cased word maps to a fixed Gaussian vector seeded by its SHA-256; the embedding is their
    normalised mean. No download, no vocabulary file: the same text gives the same vector everywhere.
    """
    words = re.findall(r"[a-z0-9]+", text.lower())
    if not words:
        raise ValueError(f"instruction {text!r} has no words")
    vecs = [np.random.default_rng(int.from_bytes(hashlib.sha256(w.encode()).digest()[:8], "little"))
            .standard_normal(dim) for w in words]
    v = np.mean(vecs, axis=0)
    return (v / np.linalg.norm(v)).astype(np.float32)


def base_features_batch(obj_pos: np.ndarray, obj_quat: np.ndarray, present: np.ndarray, joint_pos: np.ndarray,
                        gripper_width: np.ndarray, tcp_pos: np.ndarray, tcp_quat: np.ndarray,
                        instruction_embedding: np.ndarray) -> np.ndarray:
    """(N, BASE_FEATURE_DIM) float32 features from batched privileged state.

    obj_pos (N,K,3), obj_quat (N,K,4) xyzw, present (N,K) with K <= BASE_MAX_OBJECTS; joint_pos (N,7);
    gripper_width (N,); tcp_pos (N,3); tcp_quat (N,4); instruction_embedding (INSTRUCTION_DIM,) or (N, .).
    """
    obj_pos = np.asarray(obj_pos, dtype=np.float64)
    n, k = obj_pos.shape[:2]
    if k > BASE_MAX_OBJECTS:
        raise ValueError(f"{k} objects given; the base policy has {BASE_MAX_OBJECTS} object slots")
    pres = np.asarray(present, dtype=np.float64).reshape(n, k)
    slots = np.zeros((n, BASE_MAX_OBJECTS, _OBJ_FEATURES))
    slots[:, :k, 0:3] = obj_pos * pres[..., None]
    slots[:, :k, 3:9] = quat_to_rot6d(np.asarray(obj_quat).reshape(n, k, 4)) * pres[..., None]
    slots[:, :k, 9] = pres
    emb = np.broadcast_to(np.asarray(instruction_embedding, dtype=np.float64), (n, INSTRUCTION_DIM))
    feats = np.concatenate([
        slots.reshape(n, -1),
        np.asarray(joint_pos, dtype=np.float64).reshape(n, 7),
        np.asarray(gripper_width, dtype=np.float64).reshape(n, 1),
        np.asarray(tcp_pos, dtype=np.float64).reshape(n, 3),
        quat_to_rot6d(np.asarray(tcp_quat).reshape(n, 4)),
        emb,
    ], axis=1)
    return feats.astype(np.float32)


class BasePolicyNet(nn.Module):
    """MLP from base features to a chunk of ``horizon`` 7-D actions, with input/output normalisation."""

    def __init__(self, feature_dim: int = BASE_FEATURE_DIM, horizon: int = 8,
                 hidden: tuple[int, ...] = (512, 512, 512)):
        super().__init__()
        self.feature_dim, self.horizon, self.hidden = feature_dim, horizon, tuple(hidden)
        layers: list[nn.Module] = []
        d = feature_dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.GELU()]
            d = h
        layers.append(nn.Linear(d, horizon * ACTION_DIM))
        self.net = nn.Sequential(*layers)
        self.register_buffer("feat_mean", torch.zeros(feature_dim))
        self.register_buffer("feat_std", torch.ones(feature_dim))
        self.register_buffer("act_mean", torch.zeros(ACTION_DIM))
        self.register_buffer("act_std", torch.ones(ACTION_DIM))

    def set_normalization(self, feat_mean, feat_std, act_mean, act_std) -> None:
        for name, v in (("feat_mean", feat_mean), ("feat_std", feat_std), ("act_mean", act_mean), ("act_std", act_std)):
            getattr(self, name).copy_(torch.as_tensor(np.asarray(v), dtype=torch.float32))

    def forward_normalized(self, feats: torch.Tensor) -> torch.Tensor:
        """Normalised action chunk (B, H, 7) — the space the BC loss is computed in."""
        x = (feats - self.feat_mean) / self.feat_std
        return self.net(x).view(-1, self.horizon, ACTION_DIM)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.forward_normalized(feats) * self.act_std + self.act_mean

    def config(self) -> dict:
        return {"class": "BasePolicyNet", "feature_dim": self.feature_dim, "horizon": self.horizon,
                "hidden": list(self.hidden)}


@dataclass
class BasePolicy:
    """Deployment wrapper: features -> action chunk in the action convention (gripper binarised)."""

    net: BasePolicyNet
    execute_steps: int
    """How many actions of each chunk are executed open-loop before re-planning."""

    @torch.no_grad()
    def predict_chunk(self, feats: np.ndarray) -> np.ndarray:
        """(N, D) or (D,) features -> (N, H, 7) or (H, 7) chunks, gripper in {0, 1}."""
        single = np.ndim(feats) == 1
        out = self.net(torch.as_tensor(np.atleast_2d(feats), dtype=torch.float32)).numpy().astype(np.float64)
        out[..., 6] = (out[..., 6] > 0.5).astype(np.float64)
        return out[0] if single else out

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> BasePolicy:
        from residual_core.checkpoint import load_checkpoint

        tensors, manifest = load_checkpoint(path, expected_kind="base")
        cfg = dict(manifest.network)
        if cfg.pop("class", None) != "BasePolicyNet":
            raise ValueError(f"{path}: base checkpoint network class is not BasePolicyNet: {manifest.network}")
        if cfg.get("feature_dim") != BASE_FEATURE_DIM:
            raise ValueError(f"{path}: base checkpoint expects {cfg.get('feature_dim')} features, this code builds "
                             f"{BASE_FEATURE_DIM}")
        net = BasePolicyNet(feature_dim=cfg["feature_dim"], horizon=cfg["horizon"], hidden=tuple(cfg["hidden"]))
        net.load_state_dict({k: torch.from_numpy(v) for k, v in tensors.items()})
        net.eval()
        return cls(net=net, execute_steps=int(manifest.training.get("execute_steps", cfg["horizon"])))
