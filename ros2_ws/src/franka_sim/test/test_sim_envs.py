"""Environments: every task resets and steps with finite observations; seeded resets reproduce episodes."""

import franka_sim  # noqa: F401
import numpy as np
import pytest
from franka_sim import robot
from franka_sim.env import FrankaTaskEnv
from franka_sim.sim import BatchSim, SimConfig
from franka_sim.tasks import TASKS, make_task
from franka_sim.vector_env import VectorFrankaEnv
from residual_core.tasks import TASK_INSTRUCTIONS, TASK_NAMES, TASK_OBJECTS


def _random_actions(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.uniform(-1.0, 1.0, (n, 7)) * np.array([0.03, 0.03, 0.03, 0.15, 0.15, 0.15, 1.0])
    a[:, 6] = rng.uniform(0.0, 1.0, n)
    return a


def test_all_tasks_are_built():
    assert set(TASKS) == set(TASK_NAMES)


@pytest.mark.parametrize("task", TASK_NAMES)
def test_task_resets_and_steps_with_finite_observations(task):
    env = FrankaTaskEnv(task, seed=1)
    obs, info = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    assert obs["object_pos"].shape == (len(TASK_OBJECTS[task]), 3)
    for action in _random_actions(20, 2):
        obs, reward, terminated, truncated, info = env.step(action)
        for key, value in obs.items():
            assert np.all(np.isfinite(value)), f"{task}: non-finite {key}"
        assert np.isfinite(reward)
        names = {t.name for t in env._task.reward_terms}
        assert set(info["reward_terms"]) == set(info["reward_terms_weighted"]) == names
        weights = {t.name: t.weight for t in env._task.reward_terms}
        for name, raw in info["reward_terms"].items():
            assert info["reward_terms_weighted"][name] == pytest.approx(weights[name] * raw)
        assert reward == pytest.approx(sum(info["reward_terms_weighted"].values()))
        if terminated or truncated:
            env.reset()
    assert env.instruction == TASK_INSTRUCTIONS[task]
    assert env.task == task and env.horizon == make_task(task).horizon
    poses = env.object_poses()
    assert tuple(poses) == TASK_OBJECTS[task]
    for pos, quat in poses.values():
        assert pos.shape == (3,) and abs(np.linalg.norm(quat) - 1.0) < 1e-9
    tcp_pos, tcp_quat = env.tcp_pose()
    assert tcp_pos.shape == (3,) and abs(np.linalg.norm(tcp_quat) - 1.0) < 1e-9
    assert env.joint_positions().shape == (7,) and env.joint_velocities().shape == (7,)
    assert 0.0 <= env.gripper_width() <= 0.081
    assert isinstance(env.is_success(), bool)


def _rollout(env: FrankaTaskEnv, seed: int, actions: np.ndarray) -> list[dict]:
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for a in actions:
        obs, *_ = env.step(a)
        out.append(obs)
    return out


@pytest.mark.parametrize("task", ["pick_place", "close_drawer"])
def test_fixed_seed_reproduces_an_episode_bitwise(task):
    actions = _random_actions(30, 3)
    a = _rollout(FrankaTaskEnv(task), 7, actions)
    env = FrankaTaskEnv(task)
    b = _rollout(env, 7, actions)
    c = _rollout(env, 7, actions)  # same env, reset again
    for oa, ob, oc in zip(a, b, c, strict=True):
        for key in oa:
            assert np.array_equal(oa[key], ob[key]) and np.array_equal(oa[key], oc[key]), key
    d = _rollout(env, 8, actions)
    assert not np.array_equal(a[0]["object_pos"], d[0]["object_pos"])


def test_physics_is_identical_for_any_thread_count():
    task = make_task("stack_cube")
    results = []
    for nthread in (1, 2):
        sim = BatchSim(task, 4, SimConfig(nthread=nthread))
        rngs = [np.random.default_rng(i) for i in range(4)]
        sim.reset(np.arange(4), [task.sample_reset(r) for r in rngs], rngs)
        for a in _random_actions(15, 4):
            sim.step(np.tile(a, (4, 1)))
        results.append(sim.qpos.copy())
    assert np.array_equal(results[0], results[1])


def test_vector_env_shapes_autoreset_and_reproducibility():
    n = 3
    envs = [VectorFrankaEnv("cube_lift", n, seed=5) for _ in range(2)]
    obs = [e.reset()[0] for e in envs]
    assert obs[0]["object_pos"].shape == (n, 1, 3) and obs[0]["joint_pos"].shape == (n, 7)
    assert np.array_equal(obs[0]["object_pos"], obs[1]["object_pos"])
    assert not np.array_equal(obs[0]["object_pos"][0], obs[0]["object_pos"][1])
    horizon = envs[0].horizon
    zero = np.zeros((n, 7))
    for _ in range(horizon):
        outs = [e.step(zero) for e in envs]
        for key in outs[0][0]:
            assert np.array_equal(outs[0][0][key], outs[1][0][key])
    _, reward, terminated, truncated, info = outs[0]
    assert reward.shape == (n,) and np.all(truncated) and not np.any(terminated)
    assert np.all(info["done"]) and "final_obs" in info
    assert np.all(envs[0].elapsed == 0)  # auto-reset happened
    assert not np.array_equal(info["final_obs"]["object_pos"], envs[0].observations()["object_pos"])
    pos, quat = envs[0].object_poses()["cube"]
    assert pos.shape == (n, 3) and quat.shape == (n, 4)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown task"):
        FrankaTaskEnv("fold_laundry")
    env = VectorFrankaEnv("cube_lift", 2, seed=0)
    env.reset()
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros((3, 7)))
    with pytest.raises(ValueError, match="non-finite"):
        env.step(np.full((2, 7), np.nan))
    single = FrankaTaskEnv("cube_lift")
    with pytest.raises(RuntimeError, match="reset"):
        single.step(np.zeros(7))


def test_gymnasium_env_checker_passes():
    import warnings

    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unbounded Box warnings
        check_env(FrankaTaskEnv("stack_cube", render_camera=True, image_size=(64, 64)), skip_render_check=False)


def test_vector_env_per_env_seeds_fix_the_episode_start_whatever_the_index():
    a = VectorFrankaEnv("stack_cube", 3, seed=0)
    b = VectorFrankaEnv("stack_cube", 3, seed=1)
    oa, _ = a.reset(seeds=[11, 12, 13])
    ob, _ = b.reset(ids=[2], seeds=[11])
    assert np.array_equal(oa["object_pos"][0], ob["object_pos"][2])
    assert np.array_equal(oa["joint_pos"][0], ob["joint_pos"][2])
    assert not np.array_equal(oa["object_pos"][0], oa["object_pos"][1])
    with pytest.raises(ValueError, match="one seed per reset env"):
        a.reset(ids=[0, 1], seeds=[1])


def test_public_actuators_and_success_now():
    env = FrankaTaskEnv("cube_lift", seed=0)
    env.reset(seed=0)
    m, sim = env.model, env.sim
    assert [m.actuator(int(i)).name for i in sim.arm_actuators] == list(robot.ARM_ACTUATOR_NAMES)
    assert list(sim.arm_activation_addresses) == [int(m.actuator_actadr[i]) for i in sim.arm_actuators]
    assert m.actuator(sim.gripper_actuator).name == robot.GRIPPER_ACTUATOR_NAME
    assert env.success_now() is env.is_success() is False
