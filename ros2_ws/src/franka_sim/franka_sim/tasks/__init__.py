"""The five task scenes: a plain dict from task name to task class (no registry magic)."""

from __future__ import annotations

from franka_sim.tasks.base import ResetSample, RewardTerm, Task, TaskState, reward_spec
from franka_sim.tasks.close_drawer import CloseDrawer
from franka_sim.tasks.cube_lift import CubeLift
from franka_sim.tasks.pick_place import PickPlace
from franka_sim.tasks.stack_cube import StackCube
from franka_sim.tasks.stand_cup_up import StandCupUp

TASKS: dict[str, type[Task]] = {
    "cube_lift": CubeLift,
    "pick_place": PickPlace,
    "stack_cube": StackCube,
    "close_drawer": CloseDrawer,
    "stand_cup_up": StandCupUp,
}


def make_task(name: str) -> Task:
    """A task instance with its default configuration; ValueError naming the known tasks otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]()


__all__ = ["TASKS", "ResetSample", "RewardTerm", "Task", "TaskState", "make_task", "reward_spec"]
