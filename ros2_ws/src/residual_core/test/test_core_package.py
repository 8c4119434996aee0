"""Package-level rules: no rclpy, torch, MuJoCo or OpenCV anywhere in residual_core, and the per-step paths stay
fast."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "residual_core"
FORBIDDEN = ("rclpy", "rosidl", "torch", "mujoco", "cv2")
"""The deployment nodes import residual_core; these belong to residual_ros, residual_learning and franka_sim."""


def test_no_module_imports_rclpy_torch_mujoco_or_cv2():
    offenders = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                mods = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            offenders += [f"{path.name}:{node.lineno} {m}" for m in mods if m.split(".")[0] in FORBIDDEN]
    assert len(list(PACKAGE.glob("*.py"))) >= 8
    assert offenders == []


# Speed (the batched observation build, the numpy forward pass) is measured by benchmarks, not asserted here: see
# docs/BENCHMARKS.md (residual forward pass) and `python -m residual_learning.bench`.
