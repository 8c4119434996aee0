"""Scripted experts (privileged state machines) for the five tasks, and a human-teleop-like demo generator.

An expert reads the batched :class:`~franka_sim.tasks.base.TaskState` of its env (index ``i``) and outputs a
7-D action (residual_core.action layout). Each task's expert is a list of phases; a phase computes a target
TCP pose and gripper command from the *current* state, the expert servos the TCP towards it (translation and
rotation per step capped), and the phase ends when the target is reached (and held long enough) or times out.

:func:`teleop_demo` runs an expert with an :class:`ExpertStyle` that imitates a human teleoperator: per-episode
speed, Gaussian action noise, hesitation pauses, a random via point on the approach, and occasional
misaligned descents that are then corrected.

Modules: :mod:`.machine` (phase machine, style, grasp geometry), :mod:`.primitives` (via/pick/place phases
shared by tasks), one module per task with its phase builder (``cube_lift``, ``pick_place``, ``stack_cube``,
``close_drawer``, ``stand_cup_up``), :mod:`.scripted` (the task -> builder dict and :class:`ScriptedExpert`),
:mod:`.styles` (teleop styles) and :mod:`.rollout` (episode recording, teleop demos).
"""

from franka_sim.experts.machine import (
    ExpertStyle,
    Phase,
    PhaseBuilder,
    PhaseMachine,
    Target,
    closest_orientation,
    down_with_finger_axis,
    grasp_orientation_for_box,
)
from franka_sim.experts.rollout import Episode, run_expert_episode, teleop_demo
from franka_sim.experts.scripted import PHASE_BUILDERS, REACTIVE_EXPERTS, ExpertKind, ScriptedExpert, make_expert
from franka_sim.experts.styles import teleop_style

__all__ = [
    "PHASE_BUILDERS",
    "REACTIVE_EXPERTS",
    "ExpertKind",
    "Episode",
    "ExpertStyle",
    "Phase",
    "PhaseBuilder",
    "PhaseMachine",
    "ScriptedExpert",
    "Target",
    "closest_orientation",
    "down_with_finger_axis",
    "grasp_orientation_for_box",
    "make_expert",
    "run_expert_episode",
    "teleop_demo",
    "teleop_style",
]
