"""The default backend: the shipped sim base policy (residual_learning.base_policy), the VLA stand-in.

It reads the privileged state the node collects (object poses in the task's order, proprioception) and the
instruction, exactly as the trainer's BaseChunkRunner does, and returns the first ``execute_steps`` actions
of the predicted chunk, so the chunk broker re-plans when they are used up: the same open-loop execution
as in training and ``residual-eval``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from residual_core.tasks import TASK_OBJECTS, check_task
from residual_learning.base_policy import BasePolicy, base_features_batch, embed_instruction


@dataclass
class SimBCConfig:
    checkpoint: str = ""
    """Base checkpoint path (no suffix needed); empty: the shipped checkpoints/base/base_policy."""
    task: str = "cube_lift"
    """Task whose objects fill the policy's object slots, in residual_core.tasks.TASK_OBJECTS order."""


class SimBCBackend:
    name = "sim_bc"

    def __init__(self, cfg: SimBCConfig):
        self.objects = TASK_OBJECTS[check_task(cfg.task)]
        path = cfg.checkpoint
        if not path:
            from residual_core.checkpoint import default_base_checkpoint

            path = default_base_checkpoint()
        self.policy = BasePolicy.from_checkpoint(Path(path))
        self.embedding: np.ndarray | None = None

    @property
    def chunk_length(self) -> int:
        """Actions played per chunk: the checkpoint's execute_steps (from its manifest); the node's default horizon."""
        return int(self.policy.execute_steps)

    def reset(self, instruction: str) -> None:
        self.embedding = embed_instruction(instruction)

    def infer(self, observation: dict) -> np.ndarray:
        if self.embedding is None:
            self.reset(observation["instruction"])
        st = observation["state"]
        pos = np.stack([np.asarray(st["objects"][k][:3]) for k in self.objects])[None]
        quat = np.stack([np.asarray(st["objects"][k][3:7]) for k in self.objects])[None]
        quat[~np.isfinite(quat).all(-1) | (np.linalg.norm(quat, axis=-1) < 1e-9)] = (0.0, 0.0, 0.0, 1.0)
        present = np.array([[bool(st["object_present"][k]) for k in self.objects]])
        feats = base_features_batch(pos, quat, present, st["joint_pos"][None], np.reshape(st["gripper_width"], 1),
                                    st["tcp_pos"][None], st["tcp_quat"][None], self.embedding)
        return self.policy.predict_chunk(feats)[0][: self.policy.execute_steps]

    def close(self) -> None:
        pass


def make_sim_bc(params: dict) -> SimBCBackend:
    return SimBCBackend(SimBCConfig(checkpoint=str(params.get("base_checkpoint", "")),
                                    task=str(params.get("task", "cube_lift"))))
