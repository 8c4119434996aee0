"""Write the frozen format-version-1 residual checkpoint that test_core_checkpoint.py must keep loading.

Run once per format version and commit the output; never regenerate it to make a failing test pass (that
test exists to catch code changes that break existing checkpoints):

    .venv/bin/python ros2_ws/src/residual_core/test/data/make_frozen_checkpoint.py

Writes, next to this script:
- ``frozen_residual_v1.safetensors`` / ``.json``: a small cube_lift ResidualActor (hidden 16x16) with
  non-trivial weights (its last layer is re-initialised so the output is not 0) and normalisation;
- ``frozen_residual_v1_expected.json``: raw robot/object states, the observations built from them, and the
  actor's torch outputs for them, computed when the file was frozen.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from residual_core.observation import build_observation_batch, layout_for_task
from residual_core.tasks import TASK_OBJECTS
from residual_learning.networks import ResidualActor, save_residual_checkpoint
from scipy.spatial.transform import Rotation

HERE = Path(__file__).resolve().parent
STEM = HERE / "frozen_residual_v1"
TASK = "cube_lift"


def main() -> Path:
    layout = layout_for_task(TASK)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    actor = ResidualActor(layout.size, hidden=(16, 16))
    with torch.no_grad():
        actor.mlp.linears[-1].weight.normal_(0.0, 0.5)
        actor.mlp.linears[-1].bias.normal_(0.0, 0.1)
    actor.set_normalization(rng.normal(0.0, 0.1, layout.size), rng.uniform(0.05, 0.5, layout.size))

    n, k = 4, len(TASK_OBJECTS[TASK])
    state = {
        "obj_pos": rng.uniform([0.4, -0.2, 0.0], [0.7, 0.2, 0.1], size=(n, k, 3)),
        "obj_quat": Rotation.random(n * k, rng=1).as_quat().reshape(n, k, 4),
        "present": np.array([[True], [True], [False], [True]]),
        "joint_pos": rng.uniform(-1, 1, size=(n, 7)),
        "joint_vel": rng.normal(0, 0.3, size=(n, 7)),
        "gripper_width": rng.uniform(0, 0.08, size=n),
        "tcp_pos": rng.uniform([0.3, -0.3, 0.05], [0.7, 0.3, 0.5], size=(n, 3)),
        "tcp_quat": Rotation.random(n, rng=2).as_quat(),
        "base_action": rng.uniform(-0.02, 0.02, size=(n, 7)),
    }
    obs = build_observation_batch(layout, **state)
    with torch.no_grad():
        raw = actor(torch.from_numpy(obs)).numpy()
    action_scale = [0.01, 0.01, 0.01, 0.05, 0.05, 0.05, 1.0]
    path = save_residual_checkpoint(
        STEM,
        actor,
        layout,
        TASK,
        action_scale,
        training={"algorithm": "none", "note": "frozen format-stability fixture, not a trained policy"},
        steps=0,
        evaluation={},
    )
    expected = {
        "state": {key: value.tolist() for key, value in state.items()},
        "observation": obs.tolist(),
        "raw_output": raw.tolist(),
        "scaled_residual": (raw * np.array(action_scale)).tolist(),
    }
    lines = ",\n".join(f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in expected.items())
    (HERE / "frozen_residual_v1_expected.json").write_text("{\n" + lines + "\n}\n")
    print(f"wrote {path} and its manifest, and {HERE / 'frozen_residual_v1_expected.json'}")
    return path


if __name__ == "__main__":
    main()
