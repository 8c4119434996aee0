"""``IsaacLabBatch``: the part of ``mujoco.batch.Batch`` that :class:`~franka_sim.sim.BatchSim` uses, with the physics
stepped in Isaac Lab 3's environment (its Newton physics with the MuJoCo Warp solver) by a worker process.

Isaac Lab 3 pins Python 3.12, numpy 2.5, mujoco 3.12, warp-lang 1.17, newton 1.6.1 and a CUDA torch: it cannot share
.venv, so it lives in its own environment (``make isaac-env``: ``build/isaaclab-venv``, ~7 GB) and the physics runs
in a worker there (franka_sim/isaaclab_worker.py), over pipes (franka_sim/isaaclab_wire.py). The scene is the MJCF
BatchSim compiles (textures dropped), turned into USD by Isaac Lab's own ``MjcfConverter``: no downloaded asset.

Division of work, so that everything above the physics stays the project's code:

* **host** (this process): a CPU ``mujoco.batch.Batch`` of the same model holds every world's state and computes the
  derived fields (site poses, joint axes: ``forward``) from the state the worker returns, exactly, in float64;
  resets to keyframes, ``get_data``/``get_model`` are that batch's. So the controller, tasks, rewards and experts read
  the same arrays as on the mujoco backend.
* **worker**: integrates. ``step(nstep, stage)`` sends the control of every world and the state (qpos, qvel, act,
  time) of the worlds whose state the host changed since the worker last returned it (resets, the controller's
  writes to ``act``), runs ``nstep`` solver steps, and returns the new state of every world (in the worker's
  precision: float32 for Newton); the host then computes ``stage``'s derived fields.

Per-world model fields (``expand``, franka_sim.dynamics' randomization): the host batch holds them; rows that changed
since they were last sent go with the next step, the worker writes them into MuJoCo Warp's per-world model (Newton
gives those fields a world dimension) and, after ``set_const``, recomputes the derived constants (subtree masses,
inverse weights, ``actuator_acc0``) as Newton does for a changed inertial. Only :data:`EXPANDABLE` fields (the ones
franka_sim.dynamics draws). ``set_models`` raises ``NotImplementedError``.
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import mujoco
import mujoco.batch
import numpy as np

from franka_sim import isaaclab_wire

REPO_ROOT = Path(__file__).resolve().parents[4]
DEFAULT_PYTHON = REPO_ROOT / "build" / "isaaclab-venv" / "bin" / "python"
INSTALL_HINT = "run `make isaac-env` (Isaac Lab 3 in its own Python 3.12 environment, build/isaaclab-venv, ~7 GB)"
WORKER = Path(__file__).resolve().parent / "isaaclab_worker.py"

_STAGE_NONE = int(mujoco.mjtStage.mjSTAGE_NONE)
_SENT_STATE = ("qpos", "qvel", "act", "time")
"""State the worker integrates: sent when the host changed it, returned after every step."""
_MOCAP_STATE = ("mocap_pos", "mocap_quat")
EXPANDABLE = frozenset({"body_mass", "body_inertia", "geom_friction", "actuator_gainprm", "actuator_biasprm"})
"""Model fields the isaaclab backend can hold per world (what franka_sim.dynamics randomizes)."""
"""State the host alone sets (per-episode placements): sent when changed."""


def isaaclab_python() -> Path:
    """The Isaac Lab environment's interpreter: $RESIDUAL_ISAACLAB_PYTHON, else build/isaaclab-venv/bin/python."""
    return Path(os.environ.get("RESIDUAL_ISAACLAB_PYTHON", DEFAULT_PYTHON))


def isaaclab_available() -> bool:
    """Whether the Isaac Lab environment exists (it is not started to check)."""
    return isaaclab_python().is_file()


@dataclass(frozen=True)
class IsaacLabOptions:
    """Options of the isaaclab backend (franka_sim.isaaclab_batch)."""

    deterministic: bool = True
    """Run MuJoCo Warp's kernels in Warp's run-to-run deterministic mode (matters on a GPU; CPU runs repeat anyway)."""
    nconmax: int = 96
    """Contacts allocated per world (as the warp backend)."""
    njmax: int = 256
    """Constraint rows allocated per world (as the warp backend)."""
    physics: Literal["newton", "mujoco"] = "newton"
    """newton: Isaac Lab 3's Newton physics (SolverMuJoCo on MuJoCo Warp), the backend. mujoco: the worker steps CPU
    MuJoCo on the scene it was sent instead, in whichever Python runs it (numpy and mujoco suffice): a reference that
    tests the bridge itself without Isaac Lab (tests/test_isaaclab_bridge.py)."""
    graph: bool = True
    """Capture a control step's solver steps as a Warp graph and replay it (on the CPU device Warp 1.17 replays the
    recorded launches natively); False: launch every kernel from Python each substep."""
    start_timeout_s: float = 600.0
    """Seconds to wait for the worker's first answer (converting the scene and compiling Warp's kernels: measured
    ~40 s cold, 11-16 s warm on 2 CPU cores; more on a loaded machine)."""


def scene_xml(spec: mujoco.MjSpec) -> str:
    """The scene's MJCF without textures (the marker images are buffer textures, which MJCF cannot hold; the
    physics never reads them)."""
    spec = spec.copy()
    for mat in spec.materials:
        mat.textures = [""] * int(mujoco.mjtTextureRole.mjNTEXROLE)
    for tex in list(spec.textures):
        spec.delete(tex)
    return spec.to_xml()


def _layout(model: mujoco.MjModel) -> dict:
    """How the host's qpos/qvel/act/ctrl are laid out, in names the worker can find in the converted scene."""
    joints = []
    for j in range(model.njnt):
        b = int(model.jnt_bodyid[j])
        nth = sum(1 for k in range(j) if model.jnt_bodyid[k] == b)
        joints.append([mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, b), int(model.jnt_type[j]), nth])
    bodies = []
    for b in range(1, model.nbody):
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, model.body_iquat[b])
        rot = rot.reshape(3, 3)
        inertia = rot @ np.diag(model.body_inertia[b]) @ rot.T
        bodies.append([mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, b), float(model.body_mass[b]),
                       [float(x) for x in model.body_ipos[b]], [float(x) for x in inertia.ravel()]])
    actuators = [[int(model.actuator_trntype[i]), int(model.actuator_trnid[i, 0])] for i in range(model.nu)]
    with_act = sorted((int(model.actuator_actadr[i]), i) for i in range(model.nu) if model.actuator_actadr[i] >= 0)
    o = model.opt
    options = {"timestep": float(o.timestep), "integrator": int(o.integrator), "cone": int(o.cone),
               "impratio": float(o.impratio), "iterations": int(o.iterations), "ls_iterations": int(o.ls_iterations),
               "solver": int(o.solver), "tolerance": float(o.tolerance), "ls_tolerance": float(o.ls_tolerance)}
    names = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, b) for b in range(1, model.nbody)]
    geoms = [[mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, g),
              bool(model.geom_contype[g] or model.geom_conaffinity[g])] for g in range(model.ngeom)]
    mocap = sorted((int(model.body_mocapid[b]), b) for b in range(model.nbody) if model.body_mocapid[b] >= 0)
    mocap_bodies = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, b) for _, b in mocap]
    solreflimit = {mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j): [float(x) for x in model.jnt_solref[j]]
                   for j in range(model.njnt) if mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j)}
    return {"joints": joints, "joint_solreflimit": solreflimit, "bodies": bodies, "body_names": names, "geoms": geoms,
            "body_inertia0": model.body_inertia.tolist(),
            "mocap_bodies": mocap_bodies,
            "actuators": actuators, "act_of_actuator": [i for _, i in with_act], "options": options}


def _changed_worlds(current: dict[str, np.ndarray], last: dict[str, np.ndarray] | None, nsim: int) -> np.ndarray:
    """Indices of the worlds in which any of the (nsim, ...) arrays ``current`` differs from ``last`` (every world
    when nothing was sent yet; none when ``current`` is empty)."""
    if not current:
        return np.zeros(0, dtype=np.int64)
    if last is None:
        return np.arange(nsim, dtype=np.int64)
    changed = np.zeros(nsim, dtype=bool)
    for name, cur in current.items():
        changed |= (cur != last[name]).reshape(nsim, -1).any(axis=1)
    return np.flatnonzero(changed).astype(np.int64)


class IsaacLabBatch:
    """``nsim`` worlds of ``model`` stepped in Isaac Lab 3's environment, with the ``mujoco.batch.Batch`` calls
    BatchSim makes. ``spec``: the MjSpec ``model`` was compiled from (the scene sent to the worker)."""

    def __init__(self, model: mujoco.MjModel, nsim: int, spec: mujoco.MjSpec, device: str = "cpu",
                 options: IsaacLabOptions | None = None):
        if nsim < 1:
            raise ValueError(f"nsim must be >= 1, got {nsim}")
        python = isaaclab_python()
        if not python.is_file():
            raise ImportError(f"the isaaclab backend needs Isaac Lab 3's environment ({python} is missing): "
                              f"{INSTALL_HINT}")
        self.options = options or IsaacLabOptions()
        self.model = model
        self.nsim = int(nsim)
        self.device = device
        self.nthread = 1
        self.persistent = True
        self._host = mujoco.batch.Batch(model, self.nsim, nthread=1, persistent=True)
        self._state = {name: self._host.bind(name)
                       for name in _SENT_STATE + (_MOCAP_STATE if model.nmocap else ())}
        """The state sent to the worker (live host arrays); it returns the _SENT_STATE part after every step."""
        self._ctrl = self._host.bind("ctrl")
        self._expanded: dict[str, np.ndarray] = {}
        self._model_sent: dict[str, np.ndarray] | None = None
        """The expanded model fields as last sent (None: not sent since a field was expanded: every world goes)."""
        self._const_pending = False
        self._returned: dict[str, np.ndarray] | None = None
        """The state the worker last returned (None: nothing yet, every world is sent)."""
        layout = _layout(model)
        self._proc = subprocess.Popen([str(python), str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        t0 = time.perf_counter()
        self.info, _ = self._call({"cmd": "init", "xml": scene_xml(spec), "nsim": self.nsim,
                                                "physics": self.options.physics,
                                                "device": device, **layout,
                                                "options": {**layout["options"], "nconmax": self.options.nconmax,
                                                            "njmax": self.options.njmax,
                                                            "deterministic": self.options.deterministic,
                                                            "graph": self.options.graph}},
                                               timeout_s=self.options.start_timeout_s)
        self.info["start_s"] = time.perf_counter() - t0
        self._dtype = np.dtype(self.info.get("state_dtype", "float32"))
        """The worker's state precision (Newton: float32), used for what is sent."""

    # ------------------------------------------------------------------ transport
    def _call(self, header: dict, arrays: dict[str, np.ndarray] | None = None,
              timeout_s: float | None = None) -> tuple[dict, dict[str, np.ndarray]]:
        if self._proc.poll() is not None:
            raise RuntimeError(f"the Isaac Lab worker exited with code {self._proc.returncode} (its stderr is above)")
        try:
            isaaclab_wire.write_message(self._proc.stdin, header, arrays)
            if timeout_s is not None and not select.select([self._proc.stdout], [], [], timeout_s)[0]:
                self._proc.kill()
                self._proc.wait()
                raise RuntimeError(f"the Isaac Lab worker did not answer {header.get('cmd')!r} within "
                                   f"{timeout_s:.0f} s (IsaacLabOptions.start_timeout_s)")
            reply, out = isaaclab_wire.read_message(self._proc.stdout)
        except (BrokenPipeError, EOFError) as e:
            code = self._proc.wait(timeout=10)
            raise RuntimeError(f"the Isaac Lab worker died (exit code {code}; its stderr is above): {e}") from e
        if "error" in reply:
            raise RuntimeError(f"Isaac Lab worker: {reply['error']}\n{reply.get('traceback', '')}")
        return reply, out

    def close(self) -> None:
        """Stop the worker (also done at exit)."""
        proc = getattr(self, "_proc", None)
        if proc is None or proc.poll() is not None:
            return
        try:
            isaaclab_wire.write_message(proc.stdin, {"cmd": "close"})
            proc.stdin.close()
            proc.wait(timeout=30)
        except (OSError, ValueError, subprocess.TimeoutExpired):  # pipes already closed at interpreter exit
            proc.kill()
            proc.wait()

    def __del__(self) -> None:
        self.close()

    # ------------------------------------------------------------------ mujoco.batch.Batch's calls
    def bind(self, name: str) -> np.ndarray:
        """Live (nsim, ...) float64 array of an MjData field (the host batch's)."""
        return self._host.bind(name)

    def step(self, ids=None, nstep: int = 1, stage: int = _STAGE_NONE) -> None:
        """``nstep`` physics steps of every world in the worker, then ``stage``'s derived fields on the host."""
        if ids is not None:
            raise NotImplementedError("the isaaclab backend steps every world (ids=None), as the warp backend")
        arrays = {"ctrl": self._ctrl.astype(self._dtype)}
        dirty = _changed_worlds(self._state, self._returned, self.nsim)
        if len(dirty):
            arrays["ids"] = dirty
            arrays.update({name: cur[dirty].astype(self._dtype) for name, cur in self._state.items()})
        changed = _changed_worlds(self._expanded, self._model_sent, self.nsim)
        if len(changed):
            arrays["model_ids"] = changed
            arrays.update({"model:" + name: cur[changed].astype(self._dtype) for name, cur in self._expanded.items()})
            self._model_sent = {name: cur.copy() for name, cur in self._expanded.items()}
        _, out = self._call({"cmd": "step", "nstep": int(nstep), "set_const": self._const_pending}, arrays)
        self._const_pending = False
        for name in _SENT_STATE:
            self._state[name][...] = out[name].reshape(self._state[name].shape)
        self._returned = {name: cur.copy() for name, cur in self._state.items()}
        if stage != _STAGE_NONE:
            self._host.forward(stage=stage)

    def forward(self, ids=None, stage: int = int(mujoco.mjtStage.mjSTAGE_ACC)) -> None:
        self._host.forward(ids, stage=stage)

    def reset(self, ids=None, keyframe=-1, stage: int = int(mujoco.mjtStage.mjSTAGE_ACC)) -> None:
        """Reset worlds on the host; they are sent to the worker with the next step (their state changed)."""
        self._host.reset(ids, keyframe=keyframe, stage=stage)

    def get_model(self, sim: int, model: mujoco.MjModel | None = None) -> mujoco.MjModel:
        return self._host.get_model(sim, model)

    def get_data(self, sim: int, data: mujoco.MjData | None = None) -> mujoco.MjData:
        return self._host.get_data(sim, data)

    def expand(self, name: str) -> np.ndarray:
        """Per-world values of a model field (live (nsim, ...) array of the host batch), sent to the worker when they
        change. After writing masses or inertias call :meth:`set_const`."""
        if name not in EXPANDABLE:
            raise NotImplementedError(f"{name}: the isaaclab backend holds per world only {sorted(EXPANDABLE)}")
        if name not in self._expanded:
            self._expanded[name] = self._host.expand(name)
            self._model_sent = None
        return self._expanded[name]

    def expanded(self, name: str) -> np.ndarray | None:
        return self._expanded.get(name)

    def set_const(self, ids=None) -> None:
        """Recompute the derived constants on the host now and in the worker with the next step."""
        self._host.set_const(ids)
        self._const_pending = True

    def set_models(self, models) -> None:
        raise NotImplementedError("set_models is not built for the isaaclab backend")
