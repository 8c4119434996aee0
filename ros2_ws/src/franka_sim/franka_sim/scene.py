"""Task scenes composed in code: a table at z = 0, the FR3 attached at the world origin (``fr3_link0`` = world =
base frame), lights, two fixed cameras (the scene camera and a front one), and the task's objects.

Physics options live here (not in the robot model): implicitfast integrator, elliptic friction cones, a high
``impratio`` so that finger friction holds objects firmly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import mujoco
import numpy as np
from residual_core.action import CONTROL_DT
from residual_core.markers import CALIBRATION_BOARD
from residual_core.sim_camera import (
    SIM_CAMERA_FOVY,
    SIM_CAMERA_LOOKAT,
    SIM_CAMERA_POS,
    SIM_FRONT_CAMERA_POS,
    look_at_xyaxes,
)

from franka_sim import markers, robot

if TYPE_CHECKING:
    from franka_sim.tasks.base import Task

WORLD_CONTYPE = 1
WORLD_CONAFFINITY = 3
"""Table and objects collide with each other (1) and with the robot (2)."""

CALIBRATION_BOARD_MOUNT = ((0.0, 0.15, 0.0), (-0.8355, 0.0, 0.0, 0.5495))
"""The calibration board's frame in the ``fr3_hand`` body (pos, quat x y z w) when ``SceneConfig.calibration_board``:
15 cm out along the hand's y (beside the fingers), its face (z) turned 113 deg about the hand's -x so that it faces the
scene camera at the home pose (the camera is along (0, 0.92, -0.40) in the hand frame there), its image up along
the hand's -z (up) (a bracket on the real hand would do the same)."""

TABLE_HALF = (0.75, 0.7, 0.02)
TABLE_CENTER = (0.3, 0.0, -0.02)


@dataclass(frozen=True)
class PhysicsConfig:
    """MuJoCo options of the task scenes."""

    timestep: float = 0.005
    """Physics timestep (s)."""
    substeps: int = 10
    """Physics steps per control step; timestep * substeps must equal CONTROL_DT (0.05 s)."""
    impratio: float = 10.0
    """Ratio of frictional to normal constraint impedance (higher: less slip)."""
    iterations: int = 100
    """Largest number of constraint-solver iterations."""
    ls_iterations: int = 50
    """Largest number of line-search iterations of the solver."""
    noslip_iterations: int = 0
    """Extra no-slip solver iterations (0: off)."""

    def __post_init__(self) -> None:
        if self.timestep <= 0 or self.substeps < 1:
            raise ValueError(f"need timestep > 0 and substeps >= 1, got {self.timestep}, {self.substeps}")
        if abs(self.timestep * self.substeps - CONTROL_DT) > 1e-9:
            raise ValueError(
                f"timestep * substeps must equal CONTROL_DT={CONTROL_DT}: {self.timestep} * {self.substeps} "
                f"= {self.timestep * self.substeps}"
            )


@dataclass(frozen=True)
class CameraConfig:
    """A fixed camera (pinhole, square pixels); by default the scene camera."""

    name: str = "scene_camera"
    """Camera name in the model."""
    pos: tuple[float, float, float] = SIM_CAMERA_POS
    """Optical centre in the base frame (m); default residual_core.sim_camera's (the pose estimator reads it too)."""
    lookat: tuple[float, float, float] = SIM_CAMERA_LOOKAT
    """Point the optical axis passes through (m)."""
    fovy: float = SIM_CAMERA_FOVY
    """Vertical field of view (degrees)."""

    def __post_init__(self) -> None:
        if not 1.0 < self.fovy < 179.0:
            raise ValueError(f"fovy must be in (1, 179) degrees, got {self.fovy}")
        if np.allclose(self.pos, self.lookat):
            raise ValueError(f"camera pos {self.pos} equals lookat {self.lookat}")

    def xyaxes(self) -> list[float]:
        """MuJoCo camera x (image right) and y (image up) axes; the camera looks along its -z."""
        return look_at_xyaxes(self.pos, self.lookat)


@dataclass(frozen=True)
class SceneConfig:
    """Everything a task scene is built from, besides the task."""

    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    """Simulation options."""
    robot: robot.RobotConfig = field(default_factory=robot.RobotConfig)
    """Robot physical parameters."""
    camera: CameraConfig = field(default_factory=CameraConfig)
    """Scene camera placement."""
    front_camera: CameraConfig = field(
        default_factory=lambda: CameraConfig(name="front_camera", pos=SIM_FRONT_CAMERA_POS))
    """The second, front camera's placement (the pose estimator's second view; residual_core.sim_camera)."""

    calibration_board: bool = False
    """Opt-in, visual only: mount ``residual_core.markers.CALIBRATION_BOARD`` on the hand (``fr3_hand``) at
    ``CALIBRATION_BOARD_MOUNT``, facing the scene camera at the home pose, for an eye-to-hand calibration
    (``residual-handeye``). Its plates have no contacts and no mass: the physics is that of the scene without it."""

    def __post_init__(self) -> None:
        if self.camera.name == self.front_camera.name:
            raise ValueError(f"the two cameras need distinct names, both are {self.camera.name!r}")


def base_scene(cfg: SceneConfig) -> mujoco.MjSpec:
    """Table, floor, lights, cameras and the robot; no task objects yet."""
    spec = mujoco.MjSpec()
    spec.modelname = "franka_scene"
    spec.compiler.degree = False
    opt = spec.option
    opt.timestep = cfg.physics.timestep
    opt.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    opt.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    opt.impratio = cfg.physics.impratio
    opt.iterations = cfg.physics.iterations
    opt.ls_iterations = cfg.physics.ls_iterations
    opt.noslip_iterations = cfg.physics.noslip_iterations
    spec.visual.global_.offwidth = 1280
    spec.visual.global_.offheight = 960
    spec.visual.quality.offsamples = 0
    spec.visual.quality.shadowsize = 0

    spec.add_texture(name="floor_tex", type=mujoco.mjtTexture.mjTEXTURE_2D, builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
                     rgb1=[0.3, 0.32, 0.35], rgb2=[0.25, 0.27, 0.3], width=256, height=256)
    spec.add_material(name="floor_mat", textures=["", "floor_tex"], texrepeat=[6, 6], texuniform=True)
    spec.add_material(name="table_mat", rgba=[0.62, 0.5, 0.38, 1.0])

    wb = spec.worldbody
    wb.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, pos=[0, 0, -0.75], size=[3, 3, 0.1],
                material="floor_mat", contype=0, conaffinity=0)
    wb.add_geom(name="table", type=mujoco.mjtGeom.mjGEOM_BOX, pos=list(TABLE_CENTER), size=list(TABLE_HALF),
                material="table_mat", contype=WORLD_CONTYPE, conaffinity=WORLD_CONAFFINITY,
                friction=[1.0, 0.005, 0.0001])
    wb.add_light(name="key_light", pos=[0.4, -0.3, 1.8], dir=[0, 0.15, -1], diffuse=[0.7, 0.7, 0.7],
                 specular=[0.1, 0.1, 0.1], castshadow=False)
    wb.add_light(name="fill_light", pos=[1.4, 0.8, 1.2], dir=[-0.6, -0.4, -0.6], diffuse=[0.35, 0.35, 0.35],
                 specular=[0.0, 0.0, 0.0], castshadow=False)
    for cam in (cfg.camera, cfg.front_camera):
        wb.add_camera(name=cam.name, pos=list(cam.pos), xyaxes=cam.xyaxes(), fovy=cam.fovy)
    robot.attach_robot(spec, cfg.robot)
    return spec


def build_scene(task: Task, cfg: SceneConfig | None = None) -> mujoco.MjSpec:
    """The full scene of ``task``: base scene plus the task's objects."""
    cfg = cfg or SceneConfig()
    spec = base_scene(cfg)
    task.build(spec)
    if cfg.calibration_board:
        markers.add_board(spec, spec.body(robot.HAND_BODY), CALIBRATION_BOARD, "calibration_board",
                          CALIBRATION_BOARD_MOUNT)
    return spec
