"""The one closed loop: base chunk schedule + perception model + residual + action pipeline + sim backend.

``residual-train`` (its rollouts and periodic evaluation), ``residual-eval`` and the tests that compare the ROS
graph with offline evaluation all run this loop, so an episode offline is the episode the graph runs:

1. :class:`BaseChunkRunner` plays the frozen base as a VLA is played: it predicts a chunk of actions from the
   current state and executes ``execute_steps`` of them open-loop before re-planning (per env);
2. the perception model decides what the residual sees of the object poses: the true poses with pose noise and
   whole-object dropout (:class:`residual_core.augment.PoseAugmenter`; which objects are present is decided by
   ``residual_core.observation.present_mask``, the definition the residual node uses at run time), or the graph's
   camera path (:class:`trainer.camera_path.CameraPerception`: the rendered camera, the ArUco pose estimator and the
   residual node's pose inputs), or the model fitted to that estimator
   (:class:`trainer.perception_model.FittedPerception`: hand occlusion per step, the estimator's measured errors);
3. the residual (a function of the observations, in action units) is composed with the base by
   :class:`residual_core.pipeline.ActionPipeline` (the checkpoint's bound, the action spec, the safety envelope:
   what the arbiter runs);
4. the backend steps towards the pipeline's target pose and gripper command (``SimBackend.step_targets``), the
   command the arbiter sends and the sim node applies, through the same floating-point path.

Where a command is composed from (``compose_from``): ``measured``, the TCP pose measured at the step (what the arbiter
does by default); ``target``, the previous target while the arm is tracking it (within ``track_tolerance``), else the
measured pose (:func:`residual_core.pipeline.composition_origin`, the arbiter's ``compose_from``). With an arm that
lags its targets (action latency, a compliant controller), composing from the measured pose moves the arm only part
of each step the policy asks for (1/(L+1) with L steps of latency); composing from the tracked target keeps the
commanded path the policy's, delayed.

Per control step call :meth:`ClosedLoop.observe` once (it advances the base's chunk), then :meth:`ClosedLoop.step`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from residual_core.augment import PoseAugmenter
from residual_core.observation import build_observation_batch, present_mask
from residual_core.pipeline import (
    COMPOSE_FROM,
    TRACK_TOLERANCE,
    ActionPipeline,
    BatchPipelineResult,
    GripperMemory,
    composition_origin,
)
from residual_learning.base_policy import BasePolicy, base_features_batch, embed_instruction

from trainer.base_population import BasePopulation, PopulationRunner
from trainer.sim_backend import BatchState, SimBackend, StepResult

if TYPE_CHECKING:  # (not imported at run time: the camera path pulls in OpenCV and the pose estimator)
    from trainer.camera_path import CameraPerception
    from trainer.perception_model import FittedPerception

    Perception = PoseAugmenter | CameraPerception | FittedPerception
    """What the residual sees of the object poses: noise and dropout on the true poses, the camera path, or the model
    fitted to it."""


class BaseChunkRunner:
    """Per-env open-loop chunk execution of a :class:`BasePolicy` over a batch of envs."""

    def __init__(self, policy: BasePolicy, instruction: str, num_envs: int):
        self.policy = policy
        self.embedding = embed_instruction(instruction)
        self.num_envs = num_envs
        self.chunks: np.ndarray | None = None
        self.index = np.full(num_envs, policy.execute_steps, dtype=np.int64)

    def reset(self, env_ids: Sequence[int] | None = None) -> None:
        """Forget the current chunk of these envs (default all): their next step re-plans."""
        self.index[slice(None) if env_ids is None else np.asarray(env_ids)] = self.policy.execute_steps

    def features(self, s: BatchState) -> np.ndarray:
        present = np.ones(s.obj_pos.shape[:2], dtype=bool)
        return base_features_batch(s.obj_pos, s.obj_quat, present, s.joint_pos, s.gripper_width, s.tcp_pos,
                                   s.tcp_quat, self.embedding)

    def act(self, s: BatchState, env_ids: Sequence[int] | None = None) -> np.ndarray:
        """Base actions for the current step: (N, 7) for all envs, or (len(env_ids), 7) for a subset.

        Only the envs asked for advance in their chunk.
        """
        ids = np.arange(self.num_envs) if env_ids is None else np.asarray(env_ids, dtype=np.int64)
        replan = ids[self.index[ids] >= self.policy.execute_steps]
        if len(replan):
            feats = self.features(s)[replan]
            new = self.policy.predict_chunk(feats)
            if self.chunks is None:
                self.chunks = np.zeros((self.num_envs,) + new.shape[1:])
            self.chunks[replan] = new
            self.index[replan] = 0
        actions = self.chunks[ids, self.index[ids]]
        self.index[ids] += 1
        return actions


ResidualFn = Callable[[np.ndarray], np.ndarray]
"""Maps residual observations (N, D) to residual actions in action units (N, 7)."""


def residual_observation(object_names: Sequence[str], s: BatchState, base_actions: np.ndarray,
                         perception: Perception | None) -> tuple[np.ndarray, np.ndarray]:
    """The residual's observation (N, D) for the current state, through the perception model if one is given.

    Returns (observations, present mask (N, K)). A PoseAugmenter's dropouts become absent objects through
    :func:`residual_core.observation.present_mask` (a dropout is a pose that never arrived); the camera path (and its
    fitted model) says itself which objects are present (the residual node's rule on the estimator's poses).
    """
    if perception is None or isinstance(perception, PoseAugmenter):
        pos, quat = s.obj_pos, s.obj_quat
        arrived = np.ones(pos.shape[:2], dtype=bool)
        if perception is not None:
            pos, quat, arrived = perception.apply(pos, quat, arrived)
        present = present_mask(pos, quat, arrived)
    else:
        pos, quat, present = perception.view(s)
    obs = build_observation_batch(tuple(object_names), pos, quat, present, s.joint_pos, s.joint_vel,
                                  s.gripper_width, s.tcp_pos, s.tcp_quat, base_actions)
    return obs, present


@dataclass
class LoopObservation:
    """What the policies see at one control step (rows: the envs asked for)."""

    base: np.ndarray
    """(n, 7) base actions of this step."""
    residual_obs: np.ndarray
    """(n, D) residual observations (built on ``base``)."""
    present: np.ndarray
    """(n, K) which objects the residual saw."""


@dataclass
class LoopStep:
    """One control step of every env."""

    result: StepResult
    """Reward and success from the backend."""
    pipeline: BatchPipelineResult
    """What the pipeline commanded and why."""


class ClosedLoop:
    """Runs :mod:`this module's <trainer.closed_loop>` loop over the ``num_envs`` envs of a backend."""

    def __init__(self, backend: SimBackend, base: BasePolicy | BasePopulation, pipeline: ActionPipeline | None = None,
                 perception: Perception | None = None, compose_from: str = "measured",
                 track_tolerance: tuple[float, float] = TRACK_TOLERANCE):
        if compose_from not in COMPOSE_FROM:
            raise ValueError(f"compose_from must be one of {COMPOSE_FROM}, got {compose_from!r}")
        self.compose_from = compose_from
        self.track_tolerance = (float(track_tolerance[0]), float(track_tolerance[1]))
        """compose_from target: the previous target is the origin while the measured TCP is within this distance (m)
        and angle (rad) of it."""
        self._target: tuple[np.ndarray, np.ndarray] | None = None
        self.backend = backend
        self.pipeline = pipeline or ActionPipeline()
        self.perception = perception
        # one base, or a population of them (trainer.base_population: a member drawn per episode from its seed)
        self.runner = (PopulationRunner(base, backend.instruction, backend.num_envs) if isinstance(base, BasePopulation)
                       else BaseChunkRunner(base, backend.instruction, backend.num_envs))
        self.gripper = GripperMemory(backend.num_envs)
        self.state: BatchState | None = None

    @property
    def num_envs(self) -> int:
        return self.backend.num_envs

    def reset(self, seeds: Sequence[int], env_ids: Sequence[int] | None = None) -> None:
        """New episodes from ``seeds`` in ``env_ids`` (default all): sim, base chunk, perception, gripper memory."""
        self.backend.reset(seeds, env_ids=None if env_ids is None else list(env_ids))
        if isinstance(self.runner, PopulationRunner):
            self.runner.reset(env_ids, seeds=seeds)
        else:
            self.runner.reset(env_ids)
        if self.perception is not None:
            if env_ids is None or self.perception.num_envs != self.num_envs:
                self.perception.reset(self.num_envs)
            else:
                self.perception.reset_env(np.asarray(env_ids, dtype=np.int64))
        self.gripper.reset(env_ids)
        self.state = self.backend.state()
        s = self.state
        if self._target is None or env_ids is None:  # a new episode starts from where the arm is
            self._target = (s.tcp_pos.copy(), s.tcp_quat.copy())
        else:
            ids = np.asarray(env_ids, dtype=np.int64)
            self._target[0][ids], self._target[1][ids] = s.tcp_pos[ids], s.tcp_quat[ids]

    def origin(self) -> tuple[np.ndarray, np.ndarray]:
        """(N, 3), (N, 4): the poses this step's commands are composed from (``compose_from``)."""
        s = self.state
        if self.compose_from == "measured":
            return s.tcp_pos, s.tcp_quat
        return composition_origin(s.tcp_pos, s.tcp_quat, *self._target, self.track_tolerance)

    def observe(self, env_ids: Sequence[int] | None = None) -> LoopObservation:
        """The base actions (advancing the chunks of ``env_ids``, default all) and the residual's observations."""
        if self.state is None:
            raise RuntimeError("ClosedLoop.observe before reset")
        ids = np.arange(self.num_envs) if env_ids is None else np.asarray(env_ids, dtype=np.int64)
        base = np.zeros((self.num_envs, 7))
        base[ids] = self.runner.act(self.state, ids)
        obs, present = residual_observation(self.backend.object_names, self.state, base, self.perception)
        return LoopObservation(base=base[ids], residual_obs=obs[ids], present=present[ids])

    def step(self, base: np.ndarray, residual: np.ndarray | None = None) -> LoopStep:
        """Compose (N, 7) base actions with (N, 7) residuals in action units (None: the base alone, through the same
        bounds and envelope), command the result and step every env."""
        s = self.state
        origin_pos, origin_quat = self.origin()
        out = self.pipeline.step_batch(base, residual, origin_pos, origin_quat, self.gripper.value)
        self.gripper.update(out)
        # A row without a target (invalid measured TCP: never in simulation) holds the measured pose.
        pos = np.where(out.has_target[:, None], out.target_pos, s.tcp_pos)
        quat = np.where(out.has_target[:, None], out.target_quat, s.tcp_quat)
        self._target = (pos.copy(), quat.copy())
        result = self.backend.step_targets(pos, quat, out.actions[:, 6], out.actions)
        self.state = self.backend.state()
        return LoopStep(result=result, pipeline=out)
