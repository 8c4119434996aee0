"""A lockstep step of the sim node is FrankaTaskEnv.step: the arbiter's target apply_delta(tcp_t, a) applied with
sim_bridge.advance gives the same trajectory and the same episode end, for the same seed and actions."""

from __future__ import annotations

import numpy as np
import pytest
from franka_sim import sim_bridge as sb
from franka_sim.env import FrankaTaskEnv
from franka_sim.experts import ScriptedExpert
from residual_core.action import apply_delta, clip_action


def _state(env: FrankaTaskEnv) -> np.ndarray:
    parts = [env.joint_positions(), env.joint_velocities(), env.finger_positions(), *env.tcp_pose()]
    for pos, quat in env.object_poses().values():
        parts += [pos, quat]
    return np.concatenate(parts)


@pytest.mark.parametrize(("task", "seed"), [("cube_lift", 3), ("pick_place", 1)])
def test_target_pose_steps_reproduce_env_step(task, seed):
    """Contact-rich episodes (grasp, lift, carry) of the scripted expert with small noise on its actions."""
    ref, sim = FrankaTaskEnv(task), FrankaTaskEnv(task)
    ref.reset(seed=seed)
    sim.reset(seed=seed)
    machine = sb.EpisodeMachine(lockstep=True)
    machine.begin(task, seed, sim.horizon)
    machine.state_published(0.0)
    expert, rng = ScriptedExpert(task), np.random.default_rng(seed)
    worst = 0.0
    for t in range(ref.horizon):
        action = expert.act(ref.task_state(), 0) + np.r_[rng.normal(0, 0.002, 6), 0.0]
        _, _, terminated, truncated, info = ref.step(action)
        # What the arbiter sends for this action: the target from the measured TCP pose, gripper = final[6].
        tcp_pos, tcp_quat = sim.tcp_pose()
        final = clip_action(action)
        command, why = sb.command_from_target(*apply_delta(tcp_pos, tcp_quat, final), final[6])
        assert why == "ok" and machine.check_command(1, t).accepted
        report = sb.advance(sim, command)
        done = machine.advanced(report["success"])
        worst = max(worst, float(np.max(np.abs(_state(ref) - _state(sim)))))
        assert done == (terminated or truncated), f"episode end differs at step {t}"
        if done:
            break
        machine.state_published(0.0)
    assert info["success"] and machine.status(0.0).reason == "success"
    assert machine.step == ref.elapsed_steps
    assert worst < 1e-9, f"trajectories differ by {worst}"


def test_hold_is_a_zero_action():
    a, b = FrankaTaskEnv("cube_lift"), FrankaTaskEnv("cube_lift")
    a.reset(seed=5)
    b.reset(seed=5)
    for _ in range(5):
        a.step(np.array([0, 0, 0, 0, 0, 0, 1.0]))
        sb.advance(b, sb.hold_command(*b.tcp_pose(), 1.0))
    np.testing.assert_allclose(_state(a), _state(b), atol=1e-9)
