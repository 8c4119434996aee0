"""Object builders used by the task scenes: cubes, the flat target square, the drawer cabinet, the cup.

Every task object gets a site named after it (its pose is the object's pose) and its ArUco marker plates
(see :mod:`franka_sim.markers`). Objects collide with the table, each other and the robot, never by weld or
equality: grasping is contact and friction only.
"""

from __future__ import annotations

import mujoco
import numpy as np

from franka_sim import markers
from franka_sim.scene import WORLD_CONAFFINITY, WORLD_CONTYPE

BOX = mujoco.mjtGeom.mjGEOM_BOX
OBJECT_FRICTION = (1.0, 0.01, 0.0002)
"""Sliding, torsional, rolling friction of the movable objects."""

RED = (0.85, 0.12, 0.1, 1.0)
BLUE = (0.12, 0.3, 0.85, 1.0)
GREEN = (0.2, 0.75, 0.25, 1.0)


def add_cube(spec: mujoco.MjSpec, name: str, half: float, mass: float, rgba, pos=(0.5, 0.0, None)) -> mujoco.MjsBody:
    """A free cube of half-size ``half`` with site ``name`` at its centre and its markers on the top and side faces."""
    z = half if pos[2] is None else pos[2]
    body = spec.worldbody.add_body(name=name, pos=[pos[0], pos[1], z])
    body.add_freejoint(name=f"{name}_joint")
    body.add_geom(name=f"{name}_geom", type=BOX, size=[half] * 3, mass=mass, rgba=list(rgba), condim=4,
                  friction=list(OBJECT_FRICTION), contype=WORLD_CONTYPE, conaffinity=WORLD_CONAFFINITY)
    body.add_site(name=name, size=[0.005, 0, 0], rgba=[0, 0, 0, 0], group=4)
    markers.add_marker(spec, body, name)
    return body


def add_target_square(spec: mujoco.MjSpec, name: str, half: float) -> mujoco.MjsBody:
    """A flat, visual-only green square (a mocap body, placed per episode) with its marker at the centre."""
    body = spec.worldbody.add_body(name=name, pos=[0.5, 0.2, 0.0], mocap=True)
    body.add_geom(name=f"{name}_geom", type=BOX, pos=[0, 0, 0.0004], size=[half, half, 0.0004], rgba=list(GREEN),
                  contype=0, conaffinity=0, mass=0.0, density=0.0)
    body.add_site(name=name, size=[0.005, 0, 0], rgba=[0, 0, 0, 0], group=4)
    markers.add_marker(spec, body, name)
    return body


# Cabinet geometry (cabinet frame: origin on the table at the cabinet's centre, +x out of the drawer front, z up).
CABINET_DEPTH = 0.30
CABINET_WIDTH = 0.36
CABINET_HEIGHT = 0.22
DRAWER_Z = 0.095
"""Height of the drawer body's origin above the table (m)."""
DRAWER_TRAVEL = 0.22
PANEL_HALF = (0.0075, 0.17, 0.055)
HANDLE_HALF = (0.0225, 0.06, markers.HANDLE_HALF_THICKNESS)
HANDLE_POS = (CABINET_DEPTH / 2 + 2 * PANEL_HALF[0] + HANDLE_HALF[0], 0.0, 0.05)
"""Handle centre in the drawer frame (on the panel's outer face, at mid panel height)."""


def add_cabinet(spec: mujoco.MjSpec) -> mujoco.MjsBody:
    """A cabinet (mocap body) with one drawer on a slide joint ``drawer_slide`` (0 = closed) and a flat pull.

    The site ``drawer_handle`` sits at the pull's centre, axes as the drawer's (x out of the front, z up).
    """
    wood = [0.55, 0.42, 0.3, 1.0]
    dark = [0.35, 0.27, 0.2, 1.0]
    kw = {"contype": WORLD_CONTYPE, "conaffinity": WORLD_CONAFFINITY, "mass": 0.0, "density": 0.0}
    cab = spec.worldbody.add_body(name="cabinet", pos=[0.75, 0.0, 0.0005], mocap=True)
    d2, w2, h = CABINET_DEPTH / 2, CABINET_WIDTH / 2, CABINET_HEIGHT
    cab.add_geom(name="cabinet_base", type=BOX, pos=[0, 0, 0.0425], size=[d2, w2, 0.0425], rgba=wood, **kw)
    cab.add_geom(name="cabinet_top", type=BOX, pos=[0, 0, h - 0.01], size=[d2, w2, 0.01], rgba=wood, **kw)
    cab.add_geom(name="cabinet_back", type=BOX, pos=[-d2 + 0.01, 0, h / 2], size=[0.01, w2, h / 2], rgba=wood, **kw)
    for side in (-1, 1):
        cab.add_geom(name=f"cabinet_side{'_l' if side > 0 else '_r'}", type=BOX, pos=[0, side * (w2 - 0.01), h / 2],
                     size=[d2, 0.01, h / 2], rgba=wood, **kw)

    drawer = cab.add_body(name="drawer", pos=[0.0, 0.0, DRAWER_Z])
    drawer.add_joint(name="drawer_slide", type=mujoco.mjtJoint.mjJNT_SLIDE, axis=[1, 0, 0], range=[0.0, DRAWER_TRAVEL],
                     damping=[8.0, 0.0, 0.0], frictionloss=1.0, armature=0.05)
    dkw = {"contype": WORLD_CONTYPE, "conaffinity": WORLD_CONAFFINITY}
    inner_d2, inner_w2 = d2 - 0.02, w2 - 0.025
    drawer.add_geom(name="drawer_bottom", type=BOX, pos=[0, 0, 0.0], size=[inner_d2, inner_w2, 0.005], mass=0.3,
                    rgba=dark, **dkw)
    drawer.add_geom(name="drawer_back", type=BOX, pos=[-inner_d2, 0, 0.04], size=[0.005, inner_w2, 0.04], mass=0.1,
                    rgba=dark, **dkw)
    for side in (-1, 1):
        drawer.add_geom(name=f"drawer_wall{'_l' if side > 0 else '_r'}", type=BOX, pos=[0, side * inner_w2, 0.04],
                        size=[inner_d2, 0.005, 0.04], mass=0.1, rgba=dark, **dkw)
    drawer.add_geom(name="drawer_panel", type=BOX, pos=[d2 + PANEL_HALF[0], 0, 0.05], size=list(PANEL_HALF), mass=0.3,
                    rgba=wood, **dkw)
    drawer.add_geom(name="drawer_pull", type=BOX, pos=list(HANDLE_POS), size=list(HANDLE_HALF), mass=0.05,
                    rgba=[0.75, 0.75, 0.78, 1.0], **dkw)
    drawer.add_site(name="drawer_handle", pos=list(HANDLE_POS), size=[0.005, 0, 0], rgba=[0, 0, 0, 0], group=4)
    markers.add_marker(spec, drawer, "drawer_handle", object_frame_in_body=(HANDLE_POS, (0.0, 0.0, 0.0, 1.0)))
    return cab


# Cup geometry (cup frame at mid height on the axis, z towards the opening).
CUP_HALF_HEIGHT = markers.CUP_HALF_HEIGHT
CUP_APOTHEM = markers.CUP_APOTHEM
CUP_WALL = 0.004
CUP_SIDES = markers.CUP_SIDES
CUP_BOTTOM_HALF = 0.003


def add_cup(spec: mujoco.MjSpec, name: str = "cup", mass: float = 0.1) -> mujoco.MjsBody:
    """A free cup: an octagonal wall of boxes and a bottom disk; its markers are on every second facet (the first
    along the cup's +x) and on the bottom."""
    body = spec.worldbody.add_body(name=name, pos=[0.5, 0.0, CUP_APOTHEM])
    body.add_freejoint(name=f"{name}_joint")
    color = [0.9, 0.88, 0.8, 1.0]
    facet_half = CUP_APOTHEM * np.tan(np.pi / CUP_SIDES)
    wall_mass = 0.8 * mass / CUP_SIDES
    for k in range(CUP_SIDES):
        phi = 2 * np.pi * k / CUP_SIDES
        r = CUP_APOTHEM - CUP_WALL / 2
        body.add_geom(name=f"{name}_wall{k}", type=BOX, pos=[r * np.cos(phi), r * np.sin(phi), 0.0],
                      quat=[np.cos(phi / 2), 0, 0, np.sin(phi / 2)], size=[CUP_WALL / 2, facet_half, CUP_HALF_HEIGHT],
                      mass=wall_mass, rgba=color, condim=4, friction=list(OBJECT_FRICTION), contype=WORLD_CONTYPE,
                      conaffinity=WORLD_CONAFFINITY)
    body.add_geom(name=f"{name}_bottom", type=mujoco.mjtGeom.mjGEOM_CYLINDER,
                  pos=[0, 0, -CUP_HALF_HEIGHT + CUP_BOTTOM_HALF], size=[CUP_APOTHEM - CUP_WALL / 2, CUP_BOTTOM_HALF, 0],
                  mass=0.2 * mass, rgba=color, condim=4, friction=list(OBJECT_FRICTION), contype=WORLD_CONTYPE,
                  conaffinity=WORLD_CONAFFINITY)
    body.add_site(name=name, size=[0.005, 0, 0], rgba=[0, 0, 0, 0], group=4)
    markers.add_marker(spec, body, name)
    return body
