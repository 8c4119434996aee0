"""The physics worker of the isaaclab backend: runs in Isaac Lab 3's own environment (``make isaac-env``).

Started by :class:`~franka_sim.isaaclab_batch.IsaacLabBatch` as ``<isaac-env>/bin/python isaaclab_worker.py`` with
pipes on stdin/stdout (franka_sim/isaaclab_wire.py frames). It imports nothing of ours but the wire format and the
scene pipeline (isaaclab_repairs.py), both by path: this
environment pins Python 3.12, numpy 2.5, mujoco 3.12, warp-lang 1.17, newton 1.6.1 and a CUDA torch, none of which
can share the project's .venv.

What it does with the scene the host sends (the MJCF text ``BatchSim`` compiles, textures removed):

1. **Asset**: Isaac Lab's own ``isaaclab.sim.converters.MjcfConverter`` (kit-less: the ``isaacsim-asset-isolated``
   importer, i.e. ``mujoco-usd-converter``) writes the scene as USD, physics variant ``mujoco`` (MuJoCo's actuators,
   tendon, equality and contact parameters as ``MjcPhysics`` attributes), cached per scene text, then four measured
   mismatches with Newton's import repaired (isaaclab_repairs.py).
2. **Physics**: the USD is loaded into a Newton ``ModelBuilder`` (Isaac Lab 3's physics; ``add_usd``), replicated
   ``nsim`` times as separate worlds, and stepped by Newton's ``SolverMuJoCo`` (the MuJoCo Warp solver Isaac Lab 3's
   ``newton_mjwarp`` physics preset uses) with the host's solver options (timestep, integrator, cone, impratio,
   iterations, tolerances). The arm servos and the gripper actuator are MuJoCo-native ``CTRL_DIRECT`` actuators
   driven by ``control.mujoco.ctrl``, so the host's controller commands them as it commands CPU MuJoCo.
3. **State**: MuJoCo Warp's own data is the state (``update_data_interval=0``: Newton never rewrites it), in
   MuJoCo's conventions (qpos/qvel/act); the host's arrays map onto it by joint and actuator (bodies matched by
   name), so free-joint quaternions and velocities need no conversion.

Messages (header ``cmd``): ``init`` (xml, nsim, device, options, joints/bodies/geoms/actuators to map) -> what was
built and repaired; ``step`` (ctrl; the state of the worlds to write; per-world model rows; nstep) -> qpos, qvel,
act, time of every world; ``close``. An exception is sent back as ``{"error": ...}`` and the worker keeps serving.
"""

from __future__ import annotations

import copy
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import isaaclab_wire  # noqa: E402  (this file runs as a script in the other environment)
import numpy as np  # noqa: E402
from isaaclab_repairs import (  # noqa: E402
    articulate_orphans,
    author_limit_solref,
    convert_scene,
    fix_gravcomp_attribute,
    label_tail,
    set_inertials,
    unfreeze_jointed_children,
)


class World:
    """``nsim`` Newton worlds of one scene, stepped by SolverMuJoCo, with the host's index maps."""

    def __init__(self, header: dict):
        import mujoco
        import newton
        import warp as wp
        from pxr import Usd

        wp.config.log_level = wp.LOG_WARNING
        # Newton's two expected notices for our scenes, documented in the README (the pads' 1 mm margin dropped for
        # its CCD; a mocap body's weld to the world made a world root): one line each per worker is noise.
        warnings.filterwarnings("ignore", message=r".*zeroed for NATIVECCD/MULTICCD compatibility.*")
        warnings.filterwarnings("ignore", message=r".*outside articulations as standalone world roots.*")
        t0 = time.perf_counter()
        self.wp, self.mujoco = wp, mujoco
        self.nsim = int(header["nsim"])
        self.device = header.get("device", "cpu")
        opt = header["options"]
        usd = convert_scene(header["xml"])
        t_convert = time.perf_counter() - t0
        stage = Usd.Stage.Open(str(usd))
        prim = stage.GetDefaultPrim()
        vset = prim.GetVariantSets().GetVariantSet("Physics")
        if vset and "mujoco" in vset.GetVariantNames():
            vset.SetVariantSelection("mujoco")

        self.fixes = fix_gravcomp_attribute(stage)
        self.fixes["kinematic_flags_cleared"] = unfreeze_jointed_children(stage)
        self.fixes["limit_solref_authored"] = author_limit_solref(stage, header["joint_solreflimit"])
        scene = newton.ModelBuilder()
        newton.solvers.SolverMuJoCo.register_custom_attributes(scene)
        scene.add_usd(stage)
        self.fixes["inertials_set"] = set_inertials(scene, header["bodies"], wp)
        self.fixes["articulations_added"] = articulate_orphans(scene)
        builder = newton.ModelBuilder()
        newton.solvers.SolverMuJoCo.register_custom_attributes(builder)
        builder.replicate(scene, self.nsim)
        self.model = builder.finalize(device=self.device)
        det = wp.DeterministicMode.RUN_TO_RUN if opt.get("deterministic", True) else None
        kwargs = dict(separate_worlds=True, update_data_interval=0, use_mujoco_contacts=True, disable_sensors=True,
                      nconmax=int(opt["nconmax"]), njmax=int(opt["njmax"]),
                      iterations=int(opt["iterations"]), ls_iterations=int(opt["ls_iterations"]),
                      solver=int(opt["solver"]), integrator=int(opt["integrator"]), cone=int(opt["cone"]),
                      impratio=float(opt["impratio"]), tolerance=float(opt["tolerance"]),
                      ls_tolerance=float(opt["ls_tolerance"]))
        if det is not None:
            kwargs["deterministic"] = det
        self.solver = newton.solvers.SolverMuJoCo(self.model, **kwargs)
        self.dt = float(opt["timestep"])
        self.graph = bool(opt.get("graph", True))
        self._graphs: dict[int, object] = {}
        """Captured Warp graph per nstep (absent: not yet run; None: run once eagerly, capture next)."""
        self.state_a, self.state_b = self.model.state(), self.model.state()
        self.control = self.model.control()
        self.mjm, self.mjd = self.solver.mj_model, self.solver.mjw_data
        self._map(header)
        self.setup_s = time.perf_counter() - t0
        self.convert_s = t_convert

    def _map(self, header: dict) -> None:
        """Index maps host -> worker for qpos, qvel, act and ctrl, from the host's joints and actuators."""
        m, mj = self.mjm, self.mujoco
        labels = getattr(self.model, "body_label", None) or self.model.body_key
        to_newton = self.solver.mjc_body_to_newton.numpy()[0]
        names = ["world" if b == 0 else label_tail(labels[int(to_newton[b])]) for b in range(m.nbody)]
        self.bmap = np.array([names.index(n) for n in header["body_names"]], dtype=np.int64)
        self.inertia0_host = np.asarray(header["body_inertia0"], dtype=np.float64)
        self.inertia0_here = np.asarray(self.solver.mjw_model.body_inertia.numpy()[0], dtype=np.float64)
        g2s = self.solver.mjc_geom_to_newton_shape.numpy()[0]
        geom_names = {label_tail(self.model.shape_label[int(g2s[g])]): g for g in range(m.ngeom) if g2s[g] >= 0}
        self.gmap_host, self.gmap = [], []
        for i, (name, collides) in enumerate(header["geoms"]):
            if name in geom_names:
                self.gmap_host.append(i)
                self.gmap.append(geom_names[name])
            elif collides:
                raise ValueError(f"colliding geom {name!r} (host geom {i}) is not in the converted scene")
        qmap, dmap, jmap = [], [], {}
        for j, (body, jtype, nth) in enumerate(header["joints"]):
            cand = [b for b, n in enumerate(names) if n == body]
            if len(cand) != 1:
                raise ValueError(f"body {body!r} of host joint {j} matches {len(cand)} bodies of the converted scene")
            jnts = [k for k in range(m.njnt) if m.jnt_bodyid[k] == cand[0]]
            if nth >= len(jnts) or int(m.jnt_type[jnts[nth]]) != int(jtype):
                raise ValueError(f"host joint {j} (body {body!r}, type {jtype}, #{nth}) has no match in the "
                                 f"converted scene (that body's joint types: {[int(m.jnt_type[k]) for k in jnts]})")
            k = jnts[nth]
            jmap[j] = k
            nq, nv = {0: (7, 6), 1: (4, 3), 2: (1, 1), 3: (1, 1)}[int(jtype)]
            qmap += range(m.jnt_qposadr[k], m.jnt_qposadr[k] + nq)
            dmap += range(m.jnt_dofadr[k], m.jnt_dofadr[k] + nv)
        if len(qmap) != m.nq or len(dmap) != m.nv:
            raise ValueError(f"the converted scene has nq={m.nq}, nv={m.nv}; the host's joints cover {len(qmap)}, "
                             f"{len(dmap)}")
        umap = []
        for i, (trntype, target) in enumerate(header["actuators"]):
            if trntype == int(mj.mjtTrn.mjTRN_JOINT):
                cand = [a for a in range(m.nu)
                        if m.actuator_trntype[a] == trntype and m.actuator_trnid[a, 0] == jmap[target]]
            else:
                cand = [a for a in range(m.nu) if m.actuator_trntype[a] == trntype]
            if len(cand) != 1:
                raise ValueError(f"host actuator {i} (transmission {trntype}) matches {len(cand)} converted actuators")
            umap.append(cand[0])
        if sorted(umap) != list(range(m.nu)) or m.na != len(header["act_of_actuator"]):
            raise ValueError(f"actuators do not map one to one (nu={m.nu}, na={m.na}, host {len(umap)})")
        amap = [int(m.actuator_actadr[umap[i]]) for i in header["act_of_actuator"]]
        self.qmap, self.dmap, self.umap, self.amap = (np.array(x, dtype=np.int64) for x in (qmap, dmap, umap, amap))
        # Host mocap bodies (placed per episode) -> the converted scene's mocap ids (Newton makes every body welded
        # to the world a mocap body, so there are more of them here: the arm's base too).
        self.mocap_host, self.mocap_ids = [], []
        for i, body in enumerate(header.get("mocap_bodies", [])):
            b = names.index(body) if body in names else -1
            if b < 0 or m.body_mocapid[b] < 0:
                raise ValueError(f"mocap body {body!r} of the host is not a mocap body of the converted scene")
            self.mocap_host.append(i)
            self.mocap_ids.append(int(m.body_mocapid[b]))
        # control.mujoco.ctrl holds the CTRL_DIRECT actuators in the asset's (MJCF) order, which need not be the order
        # of the solver's MuJoCo actuators: the solver's own map says which column drives which actuator.
        ctrl = self.control.mujoco.ctrl
        n_ctrl = ctrl.shape[-1] if ctrl.ndim > 1 else ctrl.shape[0] // self.nsim
        source = self.solver.mjc_actuator_ctrl_source.numpy()
        column = self.solver.mjc_actuator_to_newton_idx.numpy()
        direct = int(type(self.solver).CtrlSource.CTRL_DIRECT)
        if n_ctrl != m.nu or np.any(source != direct):
            raise ValueError(f"expected {m.nu} MuJoCo-native (CTRL_DIRECT) actuators, control.mujoco.ctrl has "
                             f"{n_ctrl} columns per world and the sources are {source.tolist()}")
        self.ctrl_col = column[self.umap].astype(np.int64)

    def describe(self) -> dict:
        m = self.mjm
        return {"physics": "newton " + __import__("newton").__version__ + " (SolverMuJoCo)", "state_dtype": "float32",
                "nq": int(m.nq), "nv": int(m.nv), "nu": int(m.nu), "na": int(m.na), "ngeom": int(m.ngeom),
                "setup_s": self.setup_s, "convert_s": self.convert_s, "fixes": self.fixes,
                "gravity": [float(x) for x in m.opt.gravity], "integrator": int(m.opt.integrator),
                "cone": int(m.opt.cone), "impratio": float(m.opt.impratio)}

    def _run(self, nstep: int) -> None:
        """``nstep`` solver steps. With ``graph`` the first call runs eagerly (loading Warp's modules), the second
        captures the steps as a Warp graph (on the CPU device Warp 1.17 records the launches and replays them
        natively) and every call replays it: the state and control are read from the same device arrays, which the
        host writes between calls. The Newton states are outputs nobody reads (MuJoCo Warp's data is the state), so
        one state in and one out, never swapped, keep the graph's buffers fixed."""
        wp = self.wp

        def steps() -> None:
            for _ in range(nstep):
                self.solver.step(self.state_a, self.state_b, self.control, None, self.dt)

        if not self.graph:
            steps()
            return
        if nstep not in self._graphs:
            steps()
            self._graphs[nstep] = None
            return
        if self._graphs[nstep] is None:
            try:
                with wp.ScopedCapture(device=self.device) as capture:
                    steps()
                self._graphs[nstep] = capture.graph
            except Exception as e:  # noqa: BLE001  (fall back to launching from Python, loudly)
                print(f"isaaclab worker: graph capture failed ({e}); launching kernels one by one", file=sys.stderr)
                self.graph = False
                steps()
                return
        wp.capture_launch(self._graphs[nstep])

    def _set_model_rows(self, header: dict, arrays: dict[str, np.ndarray]) -> None:
        """Per-world model rows from the host (franka_sim.dynamics' draws) into MuJoCo Warp's per-world model, then,
        if asked, the derived constants, as Newton's solver does for a changed inertial (set_const_fixed, then
        set_const_0; mujoco_warp restores the state it borrows)."""
        ids = arrays.get("model_ids")
        if ids is not None:
            body_full = np.concatenate([[0], self.bmap])
            maps = {"body_mass": (np.arange(len(body_full)), body_full),
                    "body_inertia": (np.arange(len(body_full)), body_full),
                    "geom_friction": (np.array(self.gmap_host), np.array(self.gmap)),
                    "actuator_gainprm": (np.arange(len(self.umap)), self.umap),
                    "actuator_biasprm": (np.arange(len(self.umap)), self.umap)}
            for key, rows in arrays.items():
                if not key.startswith("model:"):
                    continue
                name = key[len("model:"):]
                if name not in maps:
                    raise ValueError(f"model field {name} cannot be set per world here")
                src, dst = maps[name]
                field = getattr(self.solver.mjw_model, name)
                cur = field.numpy()
                if cur.shape[0] != self.nsim:
                    raise ValueError(f"{name} has no world dimension in the solver's model ({cur.shape})")
                if name == "body_inertia":
                    rows = self._inertia_rows(rows[:, src], dst)
                else:
                    rows = rows[:, src]
                cur[np.ix_(ids, dst)] = rows
                field.assign(cur)
        if header.get("set_const"):
            with self.wp.ScopedDevice(self.device):
                self.solver._mujoco_warp.set_const_fixed(self.solver.mjw_model, self.mjd)
                self.solver._set_const_0_with_physical_meaninertia()

    def _inertia_rows(self, host_rows: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Host principal inertias -> the solver's. Newton re-derives each body's principal axes from the inertia
        tensor it was given, possibly in another order, so a row is applied as a scale of the body's nominal inertia
        (what franka_sim.dynamics draws); a row that is not a uniform scale of the nominal one is refused."""
        nominal_host = np.asarray(self.inertia0_host)  # (nbody, 3), world body first
        nominal_here = self.inertia0_here[dst]
        scale = host_rows.sum(axis=-1) / np.maximum(nominal_host.sum(axis=-1), 1e-12)
        if not np.allclose(host_rows, scale[..., None] * nominal_host, rtol=1e-5, atol=1e-12):
            raise ValueError("the isaaclab backend applies per-world inertias only as uniform scales of the nominal")
        return scale[..., None] * nominal_here

    def step(self, header: dict, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        d = self.mjd
        self._set_model_rows(header, arrays)
        ids = arrays.get("ids")
        if ids is not None and len(ids):
            for field, idx in (("qpos", self.qmap), ("qvel", self.dmap), ("act", self.amap)):
                if field in arrays:
                    cur = getattr(d, field).numpy()
                    cur[np.ix_(ids, idx)] = arrays[field]
                    getattr(d, field).assign(cur)
            for field in ("mocap_pos", "mocap_quat"):
                if field in arrays and self.mocap_ids:
                    cur = getattr(d, field).numpy()
                    for h, k in zip(self.mocap_host, self.mocap_ids, strict=True):
                        cur[ids, k] = arrays[field][:, h]
                    getattr(d, field).assign(cur)
            if "time" in arrays:
                cur = d.time.numpy()
                cur[ids] = arrays["time"]
                d.time.assign(cur)
        ctrl = np.zeros((self.nsim, self.mjm.nu), dtype=np.float32)
        ctrl[:, self.ctrl_col] = arrays["ctrl"]
        self.control.mujoco.ctrl.assign(ctrl.reshape(self.control.mujoco.ctrl.shape))
        self._run(int(header["nstep"]))
        return {"qpos": d.qpos.numpy()[:, self.qmap], "qvel": d.qvel.numpy()[:, self.dmap],
                "act": d.act.numpy()[:, self.amap], "time": d.time.numpy()}


class MujocoWorld:
    """The bridge's reference physics (``IsaacLabOptions.physics="mujoco"``): CPU MuJoCo on the scene as sent, one
    MjData per world, in whatever environment runs the worker, state in float64. It tests the bridge itself (framing,
    which state is sent when, mocap placements) without Isaac Lab: the host's layout maps one to one, and with the
    host's MuJoCo version the episodes are bit-identical to in-process ones."""

    def __init__(self, header: dict):
        import mujoco

        t0 = time.perf_counter()
        self.mujoco = mujoco
        self.nsim = int(header["nsim"])
        self.m = mujoco.MjModel.from_xml_string(header["xml"])
        self.models = [self.m] * self.nsim
        """Each world's model: the shared one until the host sends per-world rows."""
        self.d = [mujoco.MjData(self.m) for _ in range(self.nsim)]
        self.convert_s, self.setup_s = 0.0, time.perf_counter() - t0

    def describe(self) -> dict:
        m = self.m
        return {"physics": "mujoco " + self.mujoco.__version__, "state_dtype": "float64", "nq": int(m.nq),
                "nv": int(m.nv), "nu": int(m.nu),
                "na": int(m.na), "ngeom": int(m.ngeom), "setup_s": self.setup_s, "convert_s": 0.0, "fixes": {}}

    def step(self, header: dict, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        model_ids = arrays.get("model_ids")
        for k, i in enumerate([] if model_ids is None else model_ids):
            if self.models[i] is self.m:
                self.models[i] = copy.copy(self.m)
            for key, rows in arrays.items():
                if key.startswith("model:"):
                    getattr(self.models[i], key[len("model:"):])[...] = rows[k]
        if header.get("set_const"):
            for i in set(int(i) for i in ([] if model_ids is None else model_ids)):
                self.mujoco.mj_setConst(self.models[i], self.d[i])
        ids = arrays.get("ids")
        for k, i in enumerate([] if ids is None else ids):
            d = self.d[int(i)]
            for field in ("qpos", "qvel", "act", "mocap_pos", "mocap_quat"):
                if field in arrays:
                    getattr(d, field)[...] = arrays[field][k].reshape(getattr(d, field).shape)
            if "time" in arrays:
                d.time = float(arrays["time"][k])
        for i, d in enumerate(self.d):
            d.ctrl[:] = arrays["ctrl"][i]
            self.mujoco.mj_step(self.models[i], d, int(header["nstep"]))
        return {name: np.stack([np.atleast_1d(getattr(d, name)) for d in self.d])
                for name in ("qpos", "qvel", "act")} | {"time": np.array([d.time for d in self.d])}


def serve(inp, out) -> None:
    world = None
    while True:
        try:
            header, arrays = isaaclab_wire.read_message(inp)
        except EOFError:
            return
        cmd = header.get("cmd")
        try:
            if cmd == "init":
                world = MujocoWorld(header) if header.get("physics") == "mujoco" else World(header)
                isaaclab_wire.write_message(out, {"ok": True, **world.describe()})
            elif cmd == "step":
                if world is None:
                    raise RuntimeError("step before init")
                isaaclab_wire.write_message(out, {"ok": True}, world.step(header, arrays))
            elif cmd == "close":
                isaaclab_wire.write_message(out, {"ok": True})
                return
            else:
                raise ValueError(f"unknown command {cmd!r}")
        except Exception as e:  # the host raises it; the worker stays up for the next message
            isaaclab_wire.write_message(out, {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()})


def main() -> int:
    # stdout carries frames only: everything the libraries print goes to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(sys.stdin.buffer, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
