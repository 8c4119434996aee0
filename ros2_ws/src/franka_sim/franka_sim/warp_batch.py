"""``WarpBatch``: the part of ``mujoco.batch.Batch`` that :class:`~franka_sim.sim.BatchSim` uses, on MuJoCo Warp.

The same compiled MjModel runs as ``nsim`` worlds of ``mujoco_warp`` (``pip install mujoco-warp==4.0.0
warp-lang==1.19.0``: ``make setup-warp``) on a Warp device, ``"cpu"`` or ``"cuda:N"``. The controller, the tasks,
the rewards and the scripted experts stay on the host, unchanged: they read and write the numpy arrays that
:meth:`WarpBatch.bind` returns, as they do with ``mujoco.batch``.

Host mirrors, synced explicitly (the design; its cost is the price of keeping BatchSim unchanged):

* every bound field has a float64 host array of ``mujoco.batch``'s shape (``site_xmat`` is ``(nsim, nsite, 9)``);
* **sync-in** before every call (``step``, ``forward``, ``reset``, ``set_const``): the bound *state* fields
  (qpos, qvel, act, ctrl, mocap_pos, mocap_quat, time, ...) and the expanded model fields are copied host ->
  device (float64 -> float32), so every write made between calls reaches the device before it steps;
* **sync-out** after every call: the bound state fields and the bound *derived* fields (site_xpos, site_xmat,
  xanchor, xaxis, ...) are copied device -> host (float32 -> float64).

Per call that is ~650 bytes per world of float32 (pick_place: state ~300 B uploaded, state + derived ~650 B
downloaded) plus the overflow flags. Measured on the CPU device here: 0.07 ms (2 worlds) to 0.12 ms (1024 worlds) per
call for sync-in + sync-out, against 1.5 ms (2 worlds), 38 ms (64) and 570 ms (1024) for the control step's 10
substeps replayed from a graph: 5 % at 2 worlds, < 0.2 % from 64. On a GPU it is small PCIe transfers once per control
step (one call steps all ``substeps``), not per substep (not measured here). A round
trip float32 -> float64 -> float32 is exact, so re-uploading unchanged state changes nothing.

Semantics kept from ``mujoco.batch``: ``step(nstep, stage)`` runs ``nstep`` ``mjw.step`` calls, then computes
the stages up to ``stage`` at the new state (``mjSTAGE_POS``/``VEL``: ``mjw.kinematics`` when only kinematic
fields are bound, as by BatchSim, else ``fwd_position``/``fwd_velocity``), so site poses and joint axes are those of
the new state; ``reset(ids, keyframe, stage)`` resets the worlds ``ids`` to
keyframes (``mjw.reset_data_keyframe``; -1: the model's defaults) and discards their pending writes; ``bind``
returns live arrays; ``expand`` gives per-world model fields. Differences: the physics is float32 (CPU MuJoCo is
float64): over whole scripted-expert episodes (10 seeds) objects agree within 0.17 mm in cube_lift and pick_place,
0.3 mm in stack_cube, 1.1 mm in close_drawer and 19 mm in stand_cup_up (the cup; TCP 3.7 mm), with every first success
on the same control step (tools/backend_parity.py); ``forward`` and the stage of ``reset`` run on every world (a pure
function of the state, so the worlds not named only get derived fields refreshed a call early); ``step`` has no
``ids``.

Determinism (``WarpOptions.deterministic``, default on): mujoco_warp 4.0.0 has ``Model.opt.deterministic``, a
``DeterminismType`` bitmask (CONTACTS: contacts sorted by a geometric radix sort; CONSTRAINT: canonical
constraint-row order; ATOMICS: its kernels' atomic sums compiled with ``wp.DeterministicMode.RUN_TO_RUN``, Warp
1.19's bit-exact-on-the-same-GPU-architecture mode). Without it, GPU runs of the same seed can differ in the last
bits (atomic order) and then diverge. On the CPU device a Warp launch runs its threads one after another on one core,
so runs repeat bit for bit (test_warp_backend checks it with the default); there ``deterministic`` cost nothing
measurable (stack_cube, 64 worlds, graph replay: 56-78 ms per control step with it, 66-76 ms without; cube_lift, 2
worlds, kernels launched from Python: 110-150 ms either way: differences within run-to-run noise). Its GPU cost was
not measured here.

Per-world model fields (``expand``, the dynamics randomization of franka_sim.dynamics): mujoco_warp batches a
model field by giving it a leading world dimension (fields whose array spec starts with ``*``, indexed
``worldid % shape[0]``). ``expand`` replaces the device field by an ``(nsim, ...)`` copy, gives the constants
``mjw.set_const`` derives (subtree masses, inverse weights, ``actuator_acc0``) a world dimension too, and returns a
host mirror; ``set_const`` then recomputes each world's constants from its own masses. Under the 'mixed' shift (mass,
friction, servo stiffness, latency) the expert's episodes follow CPU MuJoCo's within 0.74 mm over 60 steps (cube_lift;
test_warp_backend). A field without a world dimension in mujoco_warp raises ``NotImplementedError``.

Overflow: mujoco_warp allocates contacts and constraint rows per world up front (``nconmax``, ``njmax``) and drops
what does not fit. After every call the worlds' overflow flags are read and an overflow of contacts or constraint
rows raises ``RuntimeError`` naming the option to raise (solver-iteration flags are ignored, as MuJoCo's warnings).

Graphs (``WarpOptions.graph``, default on): the ``nstep`` substeps (and the stage) of a step run eagerly at the first
call (loading Warp's modules), are captured as a Warp graph at the second and replayed from then on; capture is redone
after ``expand``/``set_models``. On CUDA that is a CUDA graph; on the CPU device Warp 1.19 records the launches and
replays them natively, without Python: measured here 2.3 ms instead of 115 ms per control step (2 worlds) and 43 ms
instead of 136-164 ms (64 worlds), with bit-identical trajectories (test_warp_backend compares both modes). If a
capture fails the batch warns and launches the kernels one by one. Not run on a GPU here (none on the development
machines).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import mujoco
import numpy as np

_STAGE_NONE = int(mujoco.mjtStage.mjSTAGE_NONE)
_STAGE_POS = int(mujoco.mjtStage.mjSTAGE_POS)
_STAGE_VEL = int(mujoco.mjtStage.mjSTAGE_VEL)
_STAGE_ACC = int(mujoco.mjtStage.mjSTAGE_ACC)

INSTALL_HINT = "run `make setup-warp` (installs setup/requirements-warp.txt into .venv)"

STATE_FIELDS = ("time", "qpos", "qvel", "act", "ctrl", "mocap_pos", "mocap_quat", "qfrc_applied", "xfrc_applied")
"""MjData fields that are simulation state (inputs): written by the caller, uploaded before every call."""

KINEMATIC_FIELDS = frozenset({"xpos", "xquat", "xmat", "xipos", "ximat", "xanchor", "xaxis", "geom_xpos",
                              "geom_xmat", "site_xpos", "site_xmat"})
"""Derived fields that ``mjw.kinematics`` computes: when only these are bound, stages POS/VEL run just kinematics."""

SET_CONST_OUTPUTS = ("body_subtreemass", "body_invweight0", "dof_invweight0", "actuator_acc0", "tendon_invweight0",
                     "tendon_length0")
"""Model constants ``mjw.set_const`` derives from expandable fields; given a world dimension with the first expand."""


def _import_warp():
    """(warp, mujoco_warp), or an ImportError that says how to install them."""
    try:
        import mujoco_warp
        import warp
    except ImportError as e:
        raise ImportError(f"the warp simulation backend needs mujoco_warp and warp-lang ({e}): {INSTALL_HINT}") from e
    return warp, mujoco_warp


def warp_available() -> bool:
    """Whether mujoco_warp and warp-lang import (without initialising Warp)."""
    try:
        _import_warp()
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class WarpOptions:
    """Options of the MuJoCo Warp backend (franka_sim.warp_batch)."""

    deterministic: bool = True
    """Set mujoco_warp's ``opt.deterministic`` to ``DeterminismType.ALL`` (sorted contacts, canonical constraint rows,
    run-to-run deterministic atomics): GPU runs of a seed repeat. CPU runs repeat either way."""
    nconmax: int = 96
    """Contacts allocated per world (our scenes peak at 24, stand_cup_up; an overflow raises)."""
    njmax: int = 256
    """Constraint rows allocated per world (our scenes peak at ~100, stand_cup_up: mujoco_warp's default of 64
    overflows there and in stack_cube; an overflow raises)."""
    graph: bool = True
    """Capture the substeps of a step as a Warp graph and replay it (a CUDA graph on GPUs, Warp's recorded CPU graph
    on the CPU device: ~50x faster there for a few worlds); False: launch every kernel from Python each substep."""
    quiet: bool = True
    """Silence Warp's per-module compile/load messages (warnings and errors still print)."""

    def __post_init__(self) -> None:
        if self.nconmax < 1 or self.njmax < 1:
            raise ValueError(f"need nconmax >= 1 and njmax >= 1, got {self.nconmax}, {self.njmax}")


class WarpBatch:
    """``nsim`` worlds of ``model`` on MuJoCo Warp, with the ``mujoco.batch.Batch`` calls BatchSim makes."""

    def __init__(self, model: mujoco.MjModel, nsim: int, device: str = "cpu", options: WarpOptions | None = None):
        wp, mjw = _import_warp()
        if nsim < 1:
            raise ValueError(f"nsim must be >= 1, got {nsim}")
        self._wp, self._mjw = wp, mjw
        self.options = options or WarpOptions()
        if self.options.quiet:
            wp.config.log_level = wp.LOG_WARNING
        try:
            self.device = wp.get_device(device)
        except Exception as e:  # Warp raises RuntimeError/ValueError for unknown or unavailable devices
            raise ValueError(f"Warp device {device!r} is not available ({e}); use 'cpu' or 'cuda:N'") from e
        self.model = model
        self.nsim = int(nsim)
        self.nthread = 1
        self.persistent = True  # each world keeps its whole Data on the device
        self._template = mujoco.MjData(model)
        self._caller_model: mujoco.MjModel | None = None
        """The model of set_models (None: the batch's own)."""
        self.m = self._put_model(model)
        with wp.ScopedDevice(self.device):
            self.d = mjw.make_data(model, nworld=self.nsim, nconmax=self.options.nconmax, njmax=self.options.njmax)
        self._bound: dict[str, np.ndarray] = {}
        self._expanded: dict[str, np.ndarray] = {}
        self._graphs: dict[tuple[int, int], object] = {}
        """Warp graph per (nstep, stage); None: run eagerly once (modules loaded), capture at the next call."""
        self._graph_ok = self.options.graph
        benign = mjw.OverflowType.ITERATIONS | mjw.OverflowType.LS_ITERATIONS  # MuJoCo only warns about these
        self._bad_overflow = int(mjw.OverflowType.ALL) & ~int(benign)

    # ------------------------------------------------------------------ fields
    def bind(self, name: str) -> np.ndarray:
        """Live float64 (nsim, ...) host array of an MjData field, in ``mujoco.batch``'s shape. State fields are
        uploaded before every call; all bound fields are downloaded after every call."""
        if name in self._bound:
            return self._bound[name]
        dev = getattr(self.d, name, None)
        template = np.zeros(()) if name == "time" else getattr(self._template, name, None)
        if dev is None or not isinstance(template, np.ndarray) or not hasattr(dev, "numpy"):
            raise ValueError(f"{name} is not an MjData array field that the warp backend holds")
        shape = (self.nsim,) if name == "time" else (self.nsim, *template.shape)
        if int(np.prod(dev.shape)) * _components(dev) != int(np.prod(shape)):
            raise ValueError(f"{name}: mujoco_warp's array {dev.shape} does not match MjData's {template.shape}")
        host = np.zeros(shape, dtype=np.float64)
        host[...] = self._download(name, dev).reshape(shape)
        self._bound[name] = host
        self._graphs.clear()  # the stage a graph runs depends on which fields are bound
        return host

    def expand(self, name: str) -> np.ndarray:
        """Per-world values of a model field: a live float64 (nsim, ...) host array, uploaded before every call.
        After writing a field that ``mj_setConst`` reads (masses, inertias), call :meth:`set_const`."""
        if name in self._expanded:
            return self._expanded[name]
        template = getattr(self.model, name, None)
        if not isinstance(template, np.ndarray):
            raise ValueError(f"{name} is not an MjModel array field")
        self._batch_model_field(name)
        host = np.array(np.broadcast_to(template, (self.nsim, *template.shape)), dtype=np.float64)
        self._expanded[name] = host
        for derived in SET_CONST_OUTPUTS:  # so that set_const writes each world's own constants
            held = getattr(self.m, derived, None) is not None and getattr(self.model, derived).size
            if held and self._model_field_spec(derived) is not None:
                self._batch_model_field(derived)
        self._graphs.clear()  # captured graphs hold the old arrays
        return host

    def expanded(self, name: str) -> np.ndarray | None:
        """Read-only per-world values of an expanded field, or None."""
        host = self._expanded.get(name)
        if host is None:
            return None
        out = host.view()
        out.flags.writeable = False
        return out

    def _batch_model_field(self, name: str) -> None:
        """Give model field ``name`` a leading world dimension on the device (tiling its current values)."""
        wp = self._wp
        dev = getattr(self.m, name, None)
        spec = self._model_field_spec(name)
        if dev is None or spec is None:
            raise NotImplementedError(
                f"dynamics randomization on the warp backend: mujoco_warp 4.0.0 holds no per-world values of {name} "
                f"(only model fields whose array spec starts with '*' can differ between worlds)")
        if dev.shape[0] == self.nsim:
            return
        values = dev.numpy()
        tiled = np.ascontiguousarray(np.broadcast_to(values[:1], (self.nsim, *values.shape[1:])))
        setattr(self.m, name, wp.array(tiled, dtype=dev.dtype, device=self.device))

    def _model_field_spec(self, name: str):
        import dataclasses

        from mujoco_warp._src import types as mjw_types
        from mujoco_warp._src import warp_util

        for f in dataclasses.fields(mjw_types.Model):
            if f.name == name and warp_util.is_array_spec(f.type):
                shape = getattr(f.type, "shape", ())
                return f.type if shape and shape[0] == "*" else None
        return None

    # ------------------------------------------------------------------ calls
    def step(self, ids=None, nstep: int = 1, stage: int = _STAGE_NONE) -> None:
        """``nstep`` physics steps of every world, then the stages up to ``stage`` at the new state."""
        if ids is not None:
            raise NotImplementedError("WarpBatch.step steps every world (ids must be None)")
        if nstep < 1:
            raise ValueError(f"nstep must be >= 1, got {nstep}")
        self._sync_in()
        with self._wp.ScopedDevice(self.device):
            self._run_steps(int(nstep), int(stage))
        self._sync_out()

    def forward(self, ids=None, stage: int = _STAGE_ACC) -> None:
        """Compute the stages up to ``stage`` (every world: derived fields are a pure function of the state)."""
        self._sync_in()
        with self._wp.ScopedDevice(self.device):
            self._stage(int(stage))
        self._sync_out()

    def reset(self, ids=None, keyframe=-1, stage: int = _STAGE_ACC) -> None:
        """Reset the worlds ``ids`` (None: all) to ``keyframe`` (one for all or one per id; -1: the model's
        defaults), discarding their pending writes, then compute the stages up to ``stage``."""
        ids = np.arange(self.nsim) if ids is None else np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.nsim):
            raise ValueError(f"ids must be in [0, {self.nsim}), got {ids.tolist()}")
        keys = np.broadcast_to(np.asarray(keyframe, dtype=np.int64), ids.shape)
        if np.any((keys < -1) | (keys >= self.model.nkey)):
            raise ValueError(f"keyframe must be in [-1, {self.model.nkey}), got {np.unique(keys).tolist()}")
        wp, mjw = self._wp, self._mjw
        self._sync_in()
        with wp.ScopedDevice(self.device):
            per_world = np.full(self.nsim, -1, dtype=np.int32)
            per_world[ids] = keys
            defaults = np.zeros(self.nsim, dtype=bool)
            defaults[ids[keys < 0]] = True
            if defaults.any():
                mjw.reset_data(self.m, self.d, wp.array(defaults, dtype=bool))
            if (per_world >= 0).any():
                mjw.reset_data_keyframe(self.m, self.d, wp.array(per_world, dtype=int))
            self._stage(int(stage))
        self._sync_out()  # (mjw.reset_data clears the reset worlds' overflow flags)

    def set_const(self, ids=None) -> None:
        """Recompute the model constants derived from masses and inertias (``mjw.set_const``), per world."""
        self._sync_in()
        with self._wp.ScopedDevice(self.device):
            self._mjw.set_const(self.m, self.d)
        self._sync_out()

    def set_models(self, models) -> None:
        """Run every world on ``models`` (one MjModel of the batch's sizes) instead, or None for the batch's own."""
        if models is not None and not isinstance(models, mujoco.MjModel):
            raise NotImplementedError("WarpBatch.set_models takes one MjModel for every world (or None)")
        if self._expanded:
            raise ValueError("set_models after expand(): per-world fields would be lost")
        self.m = self._put_model(self.model if models is None else models)
        self._caller_model = models
        self._graphs.clear()

    def get_model(self, sim: int, model: mujoco.MjModel | None = None) -> mujoco.MjModel:
        """World ``sim``'s model: the batch's model with that world's expanded fields."""
        base = self._caller_model or self.model
        out = copy.copy(base) if model is None else model
        for name, host in self._expanded.items():
            getattr(out, name)[...] = host[sim]
        return out

    def get_data(self, sim: int, data: mujoco.MjData | None = None) -> mujoco.MjData:
        """World ``sim``'s state (time, qpos, qvel, act, ctrl, mocap) in an MjData, with ``mj_forward`` of that world's
        model run on it on the CPU (derived fields, contacts: CPU MuJoCo's at the Warp state)."""
        if data is None:
            data = mujoco.MjData(self.model)
        for name in STATE_FIELDS:
            dev = getattr(self.d, name, None)
            if dev is None:
                continue
            if name in self._bound:
                value = self._bound[name][sim]
            else:
                value = dev.numpy()[sim]
            if name == "time":
                data.time = float(value)
            else:
                getattr(data, name)[...] = np.asarray(value, dtype=np.float64).reshape(getattr(data, name).shape)
        mujoco.mj_forward(self.get_model(sim), data)
        return data

    # ------------------------------------------------------------------ internals
    def _put_model(self, model: mujoco.MjModel):
        """``model`` on the device, with the determinism of the options."""
        mjw = self._mjw
        with self._wp.ScopedDevice(self.device):
            m = mjw.put_model(model)
            m.opt.deterministic = mjw.DeterminismType.ALL if self.options.deterministic else mjw.DeterminismType.NONE
        return m

    def _stage(self, stage: int) -> None:
        mjw = self._mjw
        if stage <= _STAGE_NONE:
            return
        derived = set(self._bound) - set(STATE_FIELDS)
        if stage <= _STAGE_VEL and derived <= KINEMATIC_FIELDS:
            mjw.kinematics(self.m, self.d)
        elif stage == _STAGE_POS:
            mjw.fwd_position(self.m, self.d)
        elif stage == _STAGE_VEL:
            mjw.fwd_position(self.m, self.d)
            mjw.fwd_velocity(self.m, self.d)
        else:
            mjw.forward(self.m, self.d)

    def _run_steps(self, nstep: int, stage: int) -> None:
        wp, mjw = self._wp, self._mjw

        def run() -> None:
            for _ in range(nstep):
                mjw.step(self.m, self.d)
            self._stage(stage)

        key = (nstep, stage)
        if not self._graph_ok or key not in self._graphs:
            run()  # eager; this first call also loads every module the capture will need
            if self._graph_ok:
                self._graphs[key] = None
            return
        graph = self._graphs[key]
        if graph is None:
            try:  # nothing runs while capturing: the state is untouched if capture fails
                with wp.ScopedCapture(device=self.device, force_module_load=False) as capture:
                    run()
            except Exception as e:  # noqa: BLE001 - any capture failure: fall back to eager launches
                warnings.warn(f"WarpBatch: graph capture failed ({e}); launching kernels one by one",
                              RuntimeWarning, stacklevel=3)
                self._graph_ok = False
                run()
                return
            self._graphs[key] = graph = capture.graph
        wp.capture_launch(graph)

    @staticmethod
    def _download(name: str, dev) -> np.ndarray:
        """Device array ``dev`` as numpy (a view on the CPU device, a device -> host copy on CUDA)."""
        return dev.numpy()

    def _sync_in(self) -> None:
        for name, host in self._bound.items():
            if name in STATE_FIELDS:
                _upload(getattr(self.d, name), host)
        for name, host in self._expanded.items():
            _upload(getattr(self.m, name), host)

    def _sync_out(self) -> None:
        self._wp.synchronize_device(self.device)
        for name, host in self._bound.items():
            host[...] = self._download(name, getattr(self.d, name)).reshape(host.shape)
        flags = self.d.overflow.numpy()
        bad = np.flatnonzero(flags & self._bad_overflow)
        if bad.size:
            names = [t.name for t in self._mjw.OverflowType if t.value and (int(flags[bad[0]]) & t.value)
                     and t.name not in ("ALL",)]
            raise RuntimeError(
                f"mujoco_warp overflow in worlds {bad.tolist()} ({', '.join(names)}): contacts or constraint rows were "
                f"dropped; raise WarpOptions.nconmax ({self.options.nconmax}) / njmax ({self.options.njmax})")


def _components(dev) -> int:
    """Scalars per element of a Warp array (3 for vec3, 9 for mat33, 1 for float)."""
    length = getattr(dev.dtype, "_length_", None)
    return int(length) if length else 1


def _upload(dev, host: np.ndarray) -> None:
    """Copy float64 host values into Warp array ``dev`` (float32), whatever its vector/matrix element type."""
    if dev.device.is_cpu:
        dst = dev.numpy()  # a view of the device memory on the CPU device
        dst[...] = host.reshape(dst.shape)
    else:  # into the same device memory (captured graphs keep pointing at it)
        shape = (*dev.shape, *getattr(dev.dtype, "_shape_", ()))
        dev.assign(np.ascontiguousarray(host, dtype=np.float32).reshape(shape))
