"""Dynamics and placement randomisation: per-episode draws applied to their simulation only, the nominal model
unchanged when off, latency delays commands by whole control steps, softer servos lag, named shifts valid."""

import dataclasses

import numpy as np
import pytest
from franka_sim.dynamics import (
    NOMINAL,
    PLACEMENT_FIELDS,
    SHIFTS,
    TRAINING,
    DynamicsDraw,
    DynamicsRandomization,
    resolve_shift,
    widen_placement,
)
from franka_sim.sim import SimConfig
from franka_sim.tasks import TASKS, make_task
from franka_sim.vector_env import VectorEnvConfig, VectorFrankaEnv
from residual_core.tasks import TASK_NAMES


def _env(task="cube_lift", n=2, dynamics=None, placement=1.0):
    cfg = VectorEnvConfig(sim=SimConfig(dynamics=dynamics or DynamicsRandomization(), nthread=1),
                          terminate_on_success=False, autoreset=False, placement_scale=placement)
    return VectorFrankaEnv(task, n, seed=0, config=cfg)


def _targets(env, steps, seed=3):
    """A fixed sequence of absolute targets: small offsets from the first TCP pose, gripper closing halfway."""
    rng = np.random.default_rng(seed)
    pos0, quat0 = env.tcp_pose()
    return [(pos0 + rng.uniform(-0.02, 0.02, pos0.shape) * (k + 1), quat0, np.full(env.num_envs, 0.5))
            for k in range(steps)]


def _run(env, seeds, steps=6):
    env.reset(seeds=seeds)
    qs = [env.joint_positions()]
    for pos, quat, grip in _targets(env, steps):
        env.step_targets(pos, quat, grip, np.zeros((env.num_envs, 7)))
        qs.append(env.joint_positions())
    return np.array(qs)


def test_randomisation_off_is_the_nominal_model_bit_for_bit():
    a = _run(_env(), [5, 6])
    b = _run(_env(dynamics=DynamicsRandomization(object_mass=(1.0, 1.0))), [5, 6])
    np.testing.assert_array_equal(a, b)
    assert not DynamicsRandomization().enabled and TRAINING.enabled


def test_draws_depend_on_the_episode_seed_only_and_leave_its_start_unchanged():
    dyn = DynamicsRandomization(object_mass=(0.5, 2.0), friction=(0.5, 1.5), arm_stiffness=(0.5, 2.0),
                                action_latency=(0, 2))
    env = _env(dynamics=dyn)
    env.reset(seeds=[11, 12])
    first = list(env.sim.dynamics)
    start = env.object_poses()["cube"][0].copy(), env.joint_positions().copy()
    env.reset(seeds=[12, 11])  # the same seeds in swapped envs
    assert env.sim.dynamics == first[::-1]
    assert all(d != NOMINAL for d in first) and first[0] != first[1]
    nominal = _env()
    nominal.reset(seeds=[11, 12])
    np.testing.assert_array_equal(nominal.object_poses()["cube"][0], start[0])
    np.testing.assert_array_equal(nominal.joint_positions(), start[1])


def test_each_simulation_gets_its_own_model_fields():
    dyn = DynamicsRandomization(object_mass=(0.5, 2.0), friction=(0.5, 1.5), arm_stiffness=(0.5, 2.0))
    env = _env(dynamics=dyn)
    env.reset(seeds=[1, 2])
    m = env.sim.model
    cube = m.site_bodyid[m.site("cube").id]
    act = env.sim.arm_actuators
    for i, d in enumerate(env.sim.dynamics):
        mi = env.sim.batch.get_model(i)
        assert mi.body_mass[cube] == pytest.approx(m.body_mass[cube] * d.mass_scale)
        np.testing.assert_allclose(mi.body_inertia[cube], m.body_inertia[cube] * d.mass_scale)
        np.testing.assert_allclose(mi.geom_friction[:, 0], m.geom_friction[:, 0] * d.friction_scale)
        np.testing.assert_allclose(mi.actuator_gainprm[act, 0], m.actuator_gainprm[act, 0] * d.stiffness_scale)
        np.testing.assert_allclose(mi.actuator_biasprm[act, 2],
                                   m.actuator_biasprm[act, 2] * np.sqrt(d.stiffness_scale))
        # the static mocap bodies and the robot keep their masses
        assert mi.body_mass[m.body("fr3_link1").id] == m.body_mass[m.body("fr3_link1").id]


def test_resetting_one_simulation_does_not_disturb_another():
    dyn = DynamicsRandomization(object_mass=(0.5, 2.0), arm_stiffness=(0.5, 2.0))
    ref, env = _env(dynamics=dyn), _env(dynamics=dyn)
    for e in (ref, env):
        e.reset(seeds=[7, 8])
    targets = _targets(ref, 6)
    for k, (pos, quat, grip) in enumerate(targets):
        if k == 3:
            env.reset(ids=[1], seeds=[99])  # env 1 gets another episode (and draw) mid-way
        ref.step_targets(pos, quat, grip, np.zeros((2, 7)))
        env.step_targets(pos, quat, grip, np.zeros((2, 7)))
    np.testing.assert_array_equal(ref.joint_positions()[0], env.joint_positions()[0])


def test_latency_applies_each_command_whole_steps_later():
    lag = _env(n=1, dynamics=DynamicsRandomization(action_latency=(2, 2)))
    lag.reset(seeds=[4])
    assert lag.sim.dynamics[0].latency_steps == 2
    pos0, quat0 = lag.tcp_pose()
    ramp = [pos0 + np.array([[0.0, 0.015 * (k + 1), 0.0]]) for k in range(5)]
    y = []
    for target in ramp:
        lag.step_targets(target, quat0, np.zeros(1), np.zeros((1, 7)))
        y.append(lag.tcp_pose()[0][0, 1] - pos0[0, 1])
    # the first two steps hold the reset pose (servo settling only); then the arm follows the ramp two steps behind
    assert max(abs(v) for v in y[:2]) < 2e-3
    for k in range(2, 5):
        assert abs(y[k] - 0.015 * (k - 1)) < abs(y[k] - 0.015 * (k + 1)), (k, y)


def test_softer_servos_lag_the_commanded_motion():
    def tracking_error(scale):
        env = _env(n=1, dynamics=DynamicsRandomization(arm_stiffness=(scale, scale)))
        env.reset(seeds=[2])
        pos0, quat0 = env.tcp_pose()
        err = []
        for k in range(5):
            target = pos0 + np.array([[0.0, 0.01 * (k + 1), -0.01 * (k + 1)]])
            env.step_targets(target, quat0, np.zeros(1), np.zeros((1, 7)))
            err.append(np.linalg.norm(env.tcp_pose()[0] - target))
        return float(np.mean(err))

    soft, nominal = tracking_error(0.3), tracking_error(1.0)
    assert soft > 1.5 * nominal


def test_heavier_objects_weigh_more_on_the_table():
    """The cube's weight as the sim sees it (the normal force it rests with) follows the mass scale."""
    import mujoco

    env = _env(n=1, dynamics=DynamicsRandomization(object_mass=(3.0, 3.0)))
    env.reset(seeds=[0])
    for _ in range(10):
        env.step(np.zeros((1, 7)))
    m = env.sim.batch.get_model(0)
    d = env.sim.get_data(0)
    mujoco.mj_forward(m, d)  # (get_data computes kinematics with the shared model; forces need this one's masses)
    cube = m.body("cube").id
    force = np.zeros(6)
    normal = 0.0
    for c in range(d.ncon):
        con = d.contact[c]
        if cube in (m.geom_bodyid[con.geom1], m.geom_bodyid[con.geom2]):
            mujoco.mj_contactForce(m, d, c, force)
            normal += force[0]
    assert normal == pytest.approx(3.0 * 0.06 * 9.81, rel=0.05)


@pytest.mark.parametrize("task", TASK_NAMES)
def test_widened_placement_scales_every_range_about_its_centre(task):
    base = make_task(task)
    wide = widen_placement(base, 1.5)
    assert widen_placement(base, 1.0) is base
    for name in PLACEMENT_FIELDS[task]:
        lo, hi = getattr(base.cfg, name)
        wlo, whi = getattr(wide.cfg, name)
        assert whi - wlo == pytest.approx(1.5 * (hi - lo)) and wlo + whi == pytest.approx(lo + hi)
    others = {f.name for f in dataclasses.fields(base.cfg)} - set(PLACEMENT_FIELDS[task])
    assert all(getattr(base.cfg, f) == getattr(wide.cfg, f) for f in others)
    assert isinstance(wide, TASKS[task])
    env = _env(task, n=1, placement=1.5)
    assert env._task.cfg == wide.cfg


def test_bad_ranges_and_unknown_shifts_are_refused():
    with pytest.raises(ValueError, match="object_mass"):
        DynamicsRandomization(object_mass=(0.0, 1.0))
    with pytest.raises(ValueError, match="friction"):
        DynamicsRandomization(friction=(2.0, 1.0))
    with pytest.raises(ValueError, match="latency"):
        DynamicsRandomization(action_latency=(-1, 0))
    with pytest.raises(ValueError, match="known: nominal"):
        resolve_shift("moon")
    with pytest.raises(ValueError, match="placement scale"):
        widen_placement(make_task("cube_lift"), 0.0)


def test_every_named_shift_lies_outside_the_training_ranges():
    """A held-out shift must not be a condition training draws from (except the nominal one)."""
    def inside(lo_hi, value):
        return lo_hi[0] <= value <= lo_hi[1]

    for name, shift in SHIFTS.items():
        d = shift.dynamics
        if name == "nominal":
            assert not d.enabled and shift.placement_scale == 1.0
            continue
        if not shift.held_out:
            assert d.enabled and name == "latency1"
            continue
        outside = (shift.placement_scale != 1.0
                   or not all(inside(TRAINING.object_mass, v) for v in d.object_mass)
                   or not all(inside(TRAINING.friction, v) for v in d.friction)
                   or not all(inside(TRAINING.arm_stiffness, v) for v in d.arm_stiffness)
                   or not all(inside(TRAINING.action_latency, v) for v in d.action_latency))
        assert outside, name
    assert DynamicsDraw().as_dict() == {"mass_scale": 1.0, "friction_scale": 1.0, "stiffness_scale": 1.0,
                                        "latency_steps": 0}
