import pytest
from residual_core.observation import layout_for_task
from residual_core.tasks import TASK_INSTRUCTIONS, TASK_NAMES, TASK_OBJECTS, check_task


def test_every_task_has_instruction_and_objects():
    assert set(TASK_NAMES) == set(TASK_INSTRUCTIONS) == set(TASK_OBJECTS)
    assert len(TASK_NAMES) == 5
    for task in TASK_NAMES:
        assert TASK_INSTRUCTIONS[task].strip()
        assert len(TASK_OBJECTS[task]) >= 1
        assert len(set(TASK_OBJECTS[task])) == len(TASK_OBJECTS[task])


def test_contract_object_names():
    assert TASK_OBJECTS["pick_place"] == ("cube", "target")
    assert TASK_OBJECTS["stack_cube"] == ("cube", "base_cube")


def test_check_task():
    assert check_task("cube_lift") == "cube_lift"
    with pytest.raises(ValueError, match="unknown task 'lift'; known tasks: cube_lift"):
        check_task("lift")


@pytest.mark.parametrize("task", TASK_NAMES)
def test_layout_size_per_task(task):
    # 13 values per object + 24 proprioception + 7 base action.
    assert layout_for_task(task).size == 13 * len(TASK_OBJECTS[task]) + 31
