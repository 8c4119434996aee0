"""Where the shipped checkpoints live.

The repository ships them in ``checkpoints/`` at its root: ``checkpoints/base/base_policy.*`` (the frozen
sim base policy) and ``checkpoints/residual/<task>.*`` (the best residual per task). Set
``RESIDUAL_VLA_CHECKPOINTS`` to use another folder.
"""

from __future__ import annotations

import os
from pathlib import Path


def checkpoint_root() -> Path:
    env = os.environ.get("RESIDUAL_VLA_CHECKPOINTS")
    if env:
        return Path(env)
    for start in (Path(__file__).resolve(), Path.cwd().resolve()):
        for d in (start, *start.parents):
            if (d / "checkpoints" / "base").is_dir():
                return d / "checkpoints"
    raise FileNotFoundError(
        "no checkpoints/ folder found above this package or the current directory; "
        "set RESIDUAL_VLA_CHECKPOINTS to the folder holding base/ and residual/")


def default_base_checkpoint() -> Path:
    return checkpoint_root() / "base" / "base_policy"


def default_residual_checkpoint(task: str) -> Path:
    return checkpoint_root() / "residual" / task
