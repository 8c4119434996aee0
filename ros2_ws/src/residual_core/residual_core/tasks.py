"""The five tasks' shared facts: names, language instructions, and the ordered task-relevant objects.

The simulator, the trainer and the ROS nodes all read these, so a task's observation layout is the same
everywhere.
"""

from __future__ import annotations

TASK_NAMES: tuple[str, ...] = ("cube_lift", "pick_place", "stack_cube", "close_drawer", "stand_cup_up")

TASK_INSTRUCTIONS: dict[str, str] = {
    "cube_lift": "pick up the red cube and lift it",
    "pick_place": "put the red cube in the green target area",
    "stack_cube": "stack the red cube on top of the blue cube",
    "close_drawer": "close the drawer",
    "stand_cup_up": "stand the cup upright",
}

# Ordered task-relevant objects whose 6-DoF poses the residual observes (see docs/CONTRACTS.md).
TASK_OBJECTS: dict[str, tuple[str, ...]] = {
    "cube_lift": ("cube",),
    "pick_place": ("cube", "target"),
    "stack_cube": ("cube", "base_cube"),
    "close_drawer": ("drawer_handle",),
    "stand_cup_up": ("cup",),
}


def check_task(task: str) -> str:
    """Return ``task`` if it is known, else raise ValueError naming the known tasks."""
    if task not in TASK_OBJECTS:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(TASK_NAMES)}")
    return task
