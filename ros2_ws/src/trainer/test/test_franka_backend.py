"""The trainer's franka_sim backend takes max_reward from the task, which derives it from declared term bounds."""

import json

import numpy as np
import pytest
from franka_sim.tasks import make_task, reward_spec
from residual_core.tasks import TASK_NAMES
from trainer.franka_backend import FrankaSimBackend


@pytest.mark.parametrize("name", TASK_NAMES)
def test_backend_max_reward_is_the_tasks(name):
    backend = FrankaSimBackend(name, num_envs=2, seed=0)
    try:
        assert backend.max_reward == make_task(name).max_reward() == reward_spec(make_task(name))["max_reward"]
        backend.reset(seeds=[0, 1])
        step = backend.step(np.zeros((2, 7)))
        assert np.all(step.reward <= backend.max_reward)
    finally:
        backend.close()


def test_reward_spec_fits_a_manifest():
    """What residual_train can write under ``manifest.training.reward``: plain JSON, stable across calls."""
    spec = reward_spec(make_task("stack_cube"))
    assert json.loads(json.dumps(spec, sort_keys=True)) == spec == reward_spec(make_task("stack_cube"))
    assert {"task", "config_type", "config", "terms", "max_reward"} <= set(spec)
