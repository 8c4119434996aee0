"""The same scripted-expert episodes on two physics backends, and how far apart they end up.

:func:`expert_rollout` runs one :class:`~franka_sim.experts.ScriptedExpert` per env in a
:class:`~franka_sim.vector_env.VectorFrankaEnv` of the given backend (episodes seeded per env, no early
termination), recording the TCP and object positions after every control step and the step of each env's first
success. :func:`compare` reports the initial-state difference (object poses, joints), the largest TCP and object
deviation over the steps compared, and the first-success steps. Used by tools/backend_parity.py (all tasks, a table
and JSON) and test_warp_backend.py (a subset, in CI).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from franka_sim.experts import ScriptedExpert
from franka_sim.isaaclab_batch import IsaacLabOptions
from franka_sim.sim import SimConfig
from franka_sim.vector_env import VectorEnvConfig, VectorFrankaEnv
from franka_sim.warp_batch import WarpOptions


@dataclass
class Rollout:
    """One backend's expert episodes (N envs, T control steps)."""

    backend: str
    initial_obj_pos: np.ndarray
    """(N, K, 3) object positions after the reset."""
    initial_obj_quat: np.ndarray
    """(N, K, 4) object orientations (x, y, z, w) after the reset."""
    initial_joints: np.ndarray
    """(N, 7) arm joints after the reset."""
    tcp: np.ndarray
    """(T + 1, N, 3) TCP positions, the reset's first."""
    obj: np.ndarray
    """(T + 1, N, K, 3) object positions, the reset's first."""
    first_success: list[int | None]
    """Per env: the first control step (1-based) after which the task succeeded, or None."""
    setup_s: float
    """Seconds to build the env, reset it and run its first control step (Warp: compiling its kernels, or loading
    them from its kernel cache)."""
    step_s: float
    """Seconds per control step (all envs) over the rollout, the first one excepted."""


def expert_rollout(task: str, seeds: list[int], steps: int | None = None, backend: str = "mujoco",
                   device: str = "cpu", stop_after_success: int | None = None,
                   warp: WarpOptions | None = None, isaaclab: IsaacLabOptions | None = None) -> Rollout:
    """Scripted-expert episodes of ``task`` from ``seeds`` (one env each) on ``backend``.

    ``steps``: control steps (default: the task's horizon). ``stop_after_success``: stop this many steps after every
    env has succeeded (None: run all ``steps``). ``warp``, ``isaaclab``: options of those backends (default: their
    defaults)."""
    t0 = time.perf_counter()
    sim = SimConfig(backend=backend, device=device, nthread=1, warp=warp or WarpOptions(),
                    isaaclab=isaaclab or IsaacLabOptions())
    cfg = VectorEnvConfig(sim=sim, terminate_on_success=False, autoreset=False)
    env = VectorFrankaEnv(task, len(seeds), config=cfg)
    env.reset(ids=np.arange(len(seeds)), seeds=list(seeds))
    names = list(env.objects)
    obs = env.observations()
    init_pos, init_quat, init_q = obs["object_pos"].copy(), obs["object_quat"].copy(), obs["joint_pos"].copy()
    experts = [ScriptedExpert(task) for _ in seeds]
    for e in experts:
        e.reset()

    def positions() -> tuple[np.ndarray, np.ndarray]:
        s = env.sim.task_state(with_action=False)
        return s.tcp_pos.copy(), np.stack([s.obj_pos[n] for n in names], axis=1)

    tcp, obj = positions()
    tcps, objs = [tcp], [obj]
    first: list[int | None] = [None] * len(seeds)
    steps = env.horizon if steps is None else int(steps)
    setup_s, t1, done_at = 0.0, 0.0, None
    for t in range(1, steps + 1):
        if t == 2:
            t1 = time.perf_counter()
            setup_s = t1 - t0
        state = env.sim.task_state()
        actions = np.stack([e.act(state, i) for i, e in enumerate(experts)])
        _, _, _, _, info = env.step(actions)
        tcp, obj = positions()
        tcps.append(tcp)
        objs.append(obj)
        for i, ok in enumerate(info["success"]):
            if ok and first[i] is None:
                first[i] = t
        if stop_after_success is not None and done_at is None and all(f is not None for f in first):
            done_at = t
        if done_at is not None and t >= done_at + stop_after_success:
            break
    if len(tcps) <= 2:
        setup_s = time.perf_counter() - t0
    step_s = (time.perf_counter() - t1) / (len(tcps) - 2) if len(tcps) > 2 else 0.0
    env.close()
    return Rollout(backend, init_pos, init_quat, init_q, np.array(tcps), np.array(objs), first, setup_s, step_s)


@dataclass
class Parity:
    """How far a rollout on another backend is from the reference rollout."""

    task: str
    envs: int
    steps: int
    """Control steps compared (the shorter rollout's)."""
    initial_obj_pos_m: float
    """Largest difference of the initial object positions (m)."""
    initial_obj_quat: float
    """Largest difference of the initial object quaternion components (sign-aligned)."""
    initial_joints_rad: float
    """Largest difference of the initial arm joints (rad)."""
    max_tcp_mm: float
    """Largest TCP position difference over the steps compared (mm)."""
    max_obj_mm: float
    """Largest object position difference over the steps compared (mm)."""
    first_success_ref: list[int | None]
    first_success_other: list[int | None]
    max_success_step_diff: int | None
    """Largest |difference| of the first-success steps; None if an env succeeded on one backend only."""
    ref_step_ms: float
    other_step_ms: float
    other_setup_s: float

    def as_dict(self) -> dict:
        return asdict(self)


def compare(task: str, ref: Rollout, other: Rollout) -> Parity:
    """The deviation of ``other`` from ``ref`` (same task, seeds and envs)."""
    t = min(len(ref.tcp), len(other.tcp))
    q_ref, q_other = ref.initial_obj_quat, other.initial_obj_quat
    sign = np.where(np.sum(q_ref * q_other, axis=-1, keepdims=True) < 0, -1.0, 1.0)
    diffs = []
    for a, b in zip(ref.first_success, other.first_success, strict=True):
        if (a is None) != (b is None):
            diffs = None
            break
        if a is not None:
            diffs.append(abs(a - b))
    return Parity(
        task=task, envs=ref.tcp.shape[1], steps=t - 1,
        initial_obj_pos_m=float(np.abs(ref.initial_obj_pos - other.initial_obj_pos).max(initial=0.0)),
        initial_obj_quat=float(np.abs(q_ref - sign * q_other).max(initial=0.0)),
        initial_joints_rad=float(np.abs(ref.initial_joints - other.initial_joints).max()),
        max_tcp_mm=1000.0 * float(np.linalg.norm(ref.tcp[:t] - other.tcp[:t], axis=-1).max()),
        max_obj_mm=1000.0 * float(np.linalg.norm(ref.obj[:t] - other.obj[:t], axis=-1).max(initial=0.0)),
        first_success_ref=list(ref.first_success), first_success_other=list(other.first_success),
        max_success_step_diff=None if diffs is None else max(diffs, default=0),
        ref_step_ms=1000.0 * ref.step_s, other_step_ms=1000.0 * other.step_s, other_setup_s=other.setup_s)
