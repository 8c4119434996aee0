"""Where the closed loop composes commands from: the measured TCP (training, the arbiter) or the previous target while
the arm tracks it (trainer.closed_loop, residual-eval --compose-from target)."""

import numpy as np
import pytest
from franka_sim.dynamics import DynamicsRandomization, Shift
from residual_core.checkpoint import default_base_checkpoint
from residual_learning.base_policy import BasePolicy
from trainer.closed_loop import ClosedLoop
from trainer.franka_backend import FrankaSimBackend

STEP = np.array([0.0, 0.01, 0.0, 0.0, 0.0, 0.0, 1.0])  # 1 cm along y per control step, gripper open


def _travel(compose_from: str, latency: int, steps: int = 8) -> float:
    backend = FrankaSimBackend("cube_lift", num_envs=1, shift=Shift(DynamicsRandomization(
        action_latency=(latency, latency))))
    loop = ClosedLoop(backend, BasePolicy.from_checkpoint(default_base_checkpoint()), compose_from=compose_from)
    loop.reset([4])
    y0 = loop.state.tcp_pos[0, 1]
    for _ in range(steps):
        loop.step(STEP[None])
    backend.close()
    return float(loop.state.tcp_pos[0, 1] - y0)


def test_with_latency_composing_from_the_tracked_target_keeps_the_policys_path():
    """One step of command latency: composed from the measured TCP the arm covers about half of each step (the
    measured pose lags the commands), composed from the tracked target all of it, one step late."""
    measured, target = _travel("measured", 1), _travel("target", 1)
    assert measured < 0.06, measured            # 8 steps of 1 cm, about half covered
    assert target == pytest.approx(0.07, abs=0.01), target  # 7 of them applied (one step late)


def test_without_latency_both_origins_give_the_same_motion():
    assert _travel("measured", 0) == pytest.approx(_travel("target", 0), abs=2e-3)


def test_a_target_the_arm_does_not_track_is_not_composed_from():
    backend = FrankaSimBackend("cube_lift", num_envs=1)
    loop = ClosedLoop(backend, BasePolicy.from_checkpoint(default_base_checkpoint()), compose_from="target",
                      track_tolerance=(0.05, 0.5))
    loop.reset([4])
    loop._target[0][0] += [0.0, 0.2, 0.0]  # e.g. the arm was blocked, or moved by a reflex
    pos, _ = loop.origin()
    np.testing.assert_allclose(pos, loop.state.tcp_pos)
    with pytest.raises(ValueError, match="compose_from"):
        ClosedLoop(backend, BasePolicy.from_checkpoint(default_base_checkpoint()), compose_from="tcp")
    backend.close()
