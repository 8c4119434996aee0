"""The isaaclab worker's scene pipeline: our MJCF -> USD by Isaac Lab's converter, and the repairs its output needs.

Runs in Isaac Lab 3's environment (imported by franka_sim/isaaclab_worker.py by path, like isaaclab_wire.py). Each
repair fixes one measured mismatch between mujoco-usd-converter 0.6.1 (behind Isaac Lab's ``MjcfConverter``) and
Newton 1.6.1's USD import (docs/RESULTS.md, "Isaac Lab 3"): four on the USD stage or the Newton builder, each
returning what it changed so the worker can report it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

CACHE = Path(os.environ.get("ISAACLAB_BRIDGE_CACHE", Path.home() / ".cache" / "residual-isaaclab"))
"""Converted scenes, one folder per scene text's hash."""


def convert_scene(xml: str) -> Path:
    """The scene's USD, written by Isaac Lab's MjcfConverter (cached by the scene text's hash)."""
    from isaaclab.sim.converters import MjcfConverter, MjcfConverterCfg

    key = hashlib.sha256(xml.encode()).hexdigest()[:16]
    root = CACHE / key
    root.mkdir(parents=True, exist_ok=True)
    src = root / "scene.xml"
    if not src.exists():
        src.write_text(xml)
    cfg = MjcfConverterCfg(asset_path=str(src), usd_dir=str(root / "usd"), physics_variant="mujoco",
                           import_physics_scene=False, fix_base=None)
    return Path(MjcfConverter(cfg).usd_path)


def label_tail(label: str | None) -> str:
    """A converted element's own name: Newton labels bodies by USD path (``/scene/Geometry/link0/link1``), whose last
    component is the MJCF name the host sends."""
    return (label or "").rsplit("/", 1)[-1]


def fix_gravcomp_attribute(stage) -> dict:
    """mujoco-usd-converter 0.6.1 writes a body's gravity compensation as ``mjc:body:gravcomp``; Newton 1.6.1 reads
    ``mjc:gravcomp``: copy it across (without this the arm's links lose MuJoCo's gravcomp=1 and sag)."""
    from pxr import Sdf

    n = 0
    for prim in stage.Traverse():
        old = prim.GetAttribute("mjc:body:gravcomp")
        if old and old.HasAuthoredValue() and not prim.GetAttribute("mjc:gravcomp"):
            prim.CreateAttribute("mjc:gravcomp", Sdf.ValueTypeNames.Float, custom=True).Set(float(old.Get()))
            n += 1
    return {"gravcomp_attributes_copied": n}


def author_limit_solref(stage, solref: dict[str, list[float]]) -> int:
    """MJCF left at its default ``solreflimit`` (0.02, 1) is not written by the converter, and Newton then derives a
    joint limit's solref from its own limit stiffness (measured: (4.0, 0.011) on close_drawer's drawer slide, (3.6,
    0.012) on fr3_joint1), which makes the drawer's stop and the arm's limits softer than in MuJoCo. Author
    ``mjc:solreflimit`` on every joint prim from the host model's values (by joint name)."""
    from pxr import Sdf, UsdPhysics

    n = 0
    for prim in stage.Traverse():
        if not prim.IsA(UsdPhysics.Joint) or prim.GetName() not in solref:
            continue
        attr = prim.GetAttribute("mjc:solreflimit")
        if not (attr and attr.HasAuthoredValue()):
            prim.CreateAttribute("mjc:solreflimit", Sdf.ValueTypeNames.DoubleArray, custom=False).Set(
                [float(x) for x in solref[prim.GetName()]])
            n += 1
    return n


def unfreeze_jointed_children(stage) -> int:
    """mujoco-usd-converter 0.6.1 marks every body under a mocap body kinematic, also one that moves on its own joint
    (close_drawer's drawer, a slide inside the mocap cabinet); Newton allows kinematic bodies only at the root. Clear
    ``physics:kinematicEnabled`` on rigid bodies nested in another rigid body (in MJCF only a world child can be
    mocap). Returns how many were cleared."""
    from pxr import UsdPhysics

    n = 0
    for prim in stage.Traverse():
        attr = prim.GetAttribute("physics:kinematicEnabled")
        if not (attr and attr.Get()):
            continue
        parent = prim.GetParent()
        while parent and not parent.IsPseudoRoot() and not parent.HasAPI(UsdPhysics.RigidBodyAPI):
            parent = parent.GetParent()
        if parent and not parent.IsPseudoRoot():
            attr.Set(False)
            n += 1
    return n


def set_inertials(builder, bodies: list, wp) -> int:
    """Set each body's mass, centre of mass and inertia to the host model's. Newton 1.6.1's USD import accumulates
    the masses of the converter's nested link prims (measured: fr3_link1 17.45 kg, the whole arm's subtree, against
    0.63 kg in the MJCF), so the inertials are taken from the model the host compiled, by body name."""
    index = {label_tail(label): i for i, label in enumerate(builder.body_label)}
    n = 0
    for name, mass, com, inertia in bodies:
        i = index.get(name)
        if i is None:
            raise ValueError(f"body {name!r} of the host model is not in the converted scene")
        inertia = np.asarray(inertia, dtype=np.float64).reshape(3, 3)
        builder.body_mass[i] = float(mass)
        builder.body_inv_mass[i] = 1.0 / float(mass) if mass > 0 else 0.0
        builder.body_com[i] = wp.vec3(*com)
        builder.body_inertia[i] = wp.mat33(*inertia.ravel())
        inv = np.linalg.inv(inertia) if mass > 0 else np.zeros((3, 3))
        builder.body_inv_inertia[i] = wp.mat33(*inv.ravel())
        builder.body_lock_inertia[i] = True
        n += 1
    return n


def articulate_orphans(builder) -> list[str]:
    """The converter marks no articulation root on a jointed body under a static one (close_drawer's drawer slides in
    a cabinet welded to the world), and Newton refuses a joint with a parent body outside every articulation: give
    each run of consecutive unarticulated joints that holds such a joint its own articulation (a lone weld of a
    mocap body to the world, as pick_place's target, needs none). Returns the labels of the joints articulated."""
    orphans = [j for j, a in enumerate(builder.joint_articulation) if a < 0]
    runs: list[list[int]] = []
    for j in orphans:
        if runs and runs[-1][-1] == j - 1:
            runs[-1].append(j)
        else:
            runs.append([j])
    added = []
    for run in runs:
        if any(builder.joint_parent[j] != -1 for j in run):
            builder.add_articulation(run)
            added += run
    return [builder.joint_label[j] for j in added]
