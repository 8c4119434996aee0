"""The Franka FR3 arm + Franka Hand as a MuJoCo model, built in code with ``mujoco.MjSpec``.

Sources of the numbers (published facts; no model files were copied):

- Kinematics: Franka's documentation, "Robot and interface specifications" (Craig / modified DH):
  a, d, alpha per joint, flange d = 0.107 m, hand rotated -pi/4 about the flange z axis, TCP 0.1034 m
  from the flange along z (franka_description's ``fr3_hand_tcp``).
- Joint position, velocity and torque limits: Franka docs, "Limits for Franka Research 3".
- Link masses: C. Gaz, M. Cognetti, A. Oliva, P. Robuffo Giordano, A. De Luca, "Dynamic Identification of
  the Franka Emika Panda Robot With Retrieval of Feasible Parameters Using Penalty-Based Optimization",
  IEEE RA-L 2019 (Panda values; the FR3 links have nearly the same masses). Hand 0.73 kg, fingers 0.015 kg
  each (franka_description). Inertias are *approximate*: each link's mass is spread over its primitive
  collision shapes by volume and MuJoCo computes the inertia from them.
- Armature: the reflected rotor inertias Franka gives for the FR3 axes (A1-A2 0.6057, A3-A4 0.4625,
  A5-A7 0.2055 kg m^2), as quoted in Drake's franka_description README.
- Collision geometry: our own capsules / cylinders / boxes, sized by eye from Franka's published
  dimension drawings (approximate).

Actuation (our choices, see RobotConfig): gravity is compensated exactly (body ``gravcomp``); each arm joint has a
position servo (joint impedance) whose stiffness/damping are scaled by that joint's inertia at home so all joints
have the same bandwidth (100 rad/s, critically damped) and torques are clamped to the published limits; the servo
target is the actuator's activation, integrated from a target-velocity control, so the controller can ramp it
(see franka_sim.sim). The gripper: two slide fingers (0-0.04 m each) coupled by a joint equality, one position
actuator on their mean opening (filtered command, 70 N per finger at most), high-friction box pads (condim 4).

Naming: the spec is built with bare names (``link0``, ``joint1``, ``hand_tcp``...) and attached to a scene
with the prefix ``fr3_`` (see :func:`attach_robot`), which gives the franka_description names
(``fr3_link0``, ``fr3_joint1``, ``fr3_hand_tcp``, ``fr3_finger_joint1``...).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np
from scipy.spatial.transform import Rotation

PREFIX = "fr3_"
"""Name prefix the robot gets when attached to a scene."""

JOINT_NAMES: tuple[str, ...] = tuple(f"{PREFIX}joint{i}" for i in range(1, 8))
FINGER_JOINT_NAMES: tuple[str, ...] = (f"{PREFIX}finger_joint1", f"{PREFIX}finger_joint2")
ARM_ACTUATOR_NAMES: tuple[str, ...] = tuple(f"{PREFIX}actuator{i}" for i in range(1, 8))
GRIPPER_ACTUATOR_NAME = f"{PREFIX}gripper"
BASE_BODY = f"{PREFIX}link0"
HAND_BODY = f"{PREFIX}hand"
TCP_SITE = f"{PREFIX}hand_tcp"
HOME_KEY = f"{PREFIX}home"
"""The home keyframe (robot at HOME_Q, gripper open) as named in a scene."""
FINGER_BODIES: tuple[str, ...] = (f"{PREFIX}leftfinger", f"{PREFIX}rightfinger")
FINGER_PAD_GEOMS: tuple[str, ...] = (f"{PREFIX}leftfinger_pad", f"{PREFIX}rightfinger_pad")

# Craig-convention DH parameters of joints 1..7 (Franka docs): frame i = RotX(alpha) TransX(a) RotZ(q) TransZ(d).
DH_A = np.array([0.0, 0.0, 0.0, 0.0825, -0.0825, 0.0, 0.088])
DH_D = np.array([0.333, 0.0, 0.316, 0.0, 0.384, 0.0, 0.0])
DH_ALPHA = np.array([0.0, -np.pi / 2, np.pi / 2, np.pi / 2, -np.pi / 2, np.pi / 2, np.pi / 2])
FLANGE_D = 0.107
HAND_YAW = -np.pi / 4
TCP_OFFSET = 0.1034
FINGER_BASE_Z = 0.0584
"""Finger joint origins along the hand z axis (franka_description)."""

# FR3 limits (Franka docs, "Limits for Franka Research 3").
Q_MIN = np.array([-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159])
Q_MAX = np.array([2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159])
DQ_MAX = np.array([2.62, 2.62, 2.62, 2.62, 5.26, 4.18, 5.26])
TAU_MAX = np.array([87.0, 87.0, 87.0, 87.0, 12.0, 12.0, 12.0])
REFLECTED_INERTIA = np.array(
    [0.605721456, 0.605721456, 0.462474144, 0.462474144, 0.205544064, 0.205544064, 0.205544064]
)
LINK_MASSES = np.array([4.970684, 0.646926, 3.228604, 3.587895, 1.225946, 1.666555, 0.735522])
HAND_MASS = 0.73
FINGER_MASS = 0.015
FINGER_MAX = 0.04
"""Largest opening of one finger (m); the hand opens to 0.08 m."""

HOME_Q = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
"""Home joint configuration: TCP pointing down, ~0.3 m in front of the base, ~0.48 m high."""

ROBOT_CONTYPE = 2
ROBOT_CONAFFINITY = 1
"""Robot geoms collide with the world and objects (contype 1) but not with each other."""


@dataclass(frozen=True)
class RobotConfig:
    """Tunable physical parameters of the simulated robot."""

    bandwidth: float = 100.0
    """Natural frequency of every joint's position servo (rad/s). Each joint gets kp = bandwidth^2 * M_ii and
    kv = 2 * damping_ratio * bandwidth * M_ii, with M_ii the joint-space inertia (armature included) at HOME_Q,
    so all joints respond equally fast and a Cartesian step keeps its direction."""
    damping_ratio: float = 1.0
    """Damping ratio of the joint servos."""
    joint_damping: float = 1.0
    """Passive viscous damping on every arm joint (N m s / rad)."""
    armature_scale: float = 1.0
    """Multiplier on the published reflected rotor inertias used as joint armature."""
    torque_limits: bool = True
    """Clamp actuator torques to Franka's published torque limits."""
    finger_damping: float = 10.0
    """Viscous damping of each finger joint (N s / m). (Large values make a held object chatter.)"""
    finger_armature: float = 1.0
    """Reflected inertia of each finger's drive (kg): the real fingers sit behind a high-ratio gear, so a finger
    that momentarily loses contact must not slam shut."""
    pad_margin: float = 0.001
    """Contact margin of the finger pads (m): contacts are kept while a pad hovers within it (no flicker)."""
    gripper_time_constant: float = 0.1
    """The gripper target follows its command through a first-order filter with this time constant (s), so the
    fingers close smoothly (~0.1 m/s, like the real hand) instead of slamming into objects."""
    gripper_kp: float = 2000.0
    """Gripper tendon position gain (N / m); the tendon is the mean finger opening."""
    gripper_force_limit: float = 140.0
    """Largest gripper tendon force (N); each finger pushes with half of it (70 N continuous on the real hand)."""
    pad_friction: tuple[float, float, float] = (1.5, 0.02, 0.0001)
    """Finger pad friction: sliding, torsional (m), rolling (m)."""

    def __post_init__(self) -> None:
        if self.bandwidth <= 0:
            raise ValueError(f"bandwidth must be > 0 rad/s, got {self.bandwidth}")
        if self.gripper_time_constant <= 0 or self.gripper_kp <= 0:
            raise ValueError(f"need gripper_time_constant > 0 and gripper_kp > 0, got {self.gripper_time_constant}, "
                             f"{self.gripper_kp}")
        if self.damping_ratio <= 0 or self.armature_scale < 0 or self.joint_damping < 0:
            raise ValueError(
                f"need damping_ratio > 0, armature_scale >= 0, joint_damping >= 0; got {self.damping_ratio}, "
                f"{self.armature_scale}, {self.joint_damping}"
            )


def dh_transform(alpha: float, a: float, d: float, q: float = 0.0) -> np.ndarray:
    """4x4 Craig-convention transform RotX(alpha) TransX(a) RotZ(q) TransZ(d)."""
    ca, sa, cq, sq = np.cos(alpha), np.sin(alpha), np.cos(q), np.sin(q)
    return np.array(
        [
            [cq, -sq, 0.0, a],
            [sq * ca, cq * ca, -sa, -d * sa],
            [sq * sa, cq * sa, ca, d * ca],
            [0.0, 0.0, 0.0, 1.0],
        ]
    )


def forward_kinematics(q: np.ndarray) -> np.ndarray:
    """4x4 pose of the TCP in the base frame from the DH table (independent of MuJoCo, used to check it)."""
    T = np.eye(4)
    for i in range(7):
        T = T @ dh_transform(DH_ALPHA[i], DH_A[i], DH_D[i], q[i])
    flange = np.eye(4)
    flange[2, 3] = FLANGE_D
    hand = np.eye(4)
    hand[:3, :3] = Rotation.from_rotvec([0.0, 0.0, HAND_YAW]).as_matrix()
    tcp = np.eye(4)
    tcp[2, 3] = TCP_OFFSET
    return T @ flange @ hand @ tcp


def _link_frames_at_zero() -> list[np.ndarray]:
    """World poses (4x4) of link0..link7 at q = 0."""
    frames = [np.eye(4)]
    for i in range(7):
        frames.append(frames[-1] @ dh_transform(DH_ALPHA[i], DH_A[i], DH_D[i]))
    return frames


# Collision / visual shapes per link, written in *world* coordinates at q = 0 (arm straight up, elbow offset
# along +x), which is easier to check against the drawings; converted into link frames when building.
# (kind, point_a, point_b, radius): a capsule or cylinder from a to b.
_LINK_SHAPES: dict[int, list[tuple[str, tuple, tuple, float]]] = {
    1: [("capsule", (0, 0, 0.17), (0, 0, 0.27), 0.065)],
    2: [("cylinder", (0, -0.065, 0.333), (0, 0.065, 0.333), 0.065), ("capsule", (0, 0, 0.333), (0, 0, 0.50), 0.06)],
    3: [("capsule", (0, 0, 0.52), (0, 0, 0.649), 0.06), ("capsule", (0, 0, 0.649), (0.0825, 0, 0.649), 0.055)],
    4: [
        ("cylinder", (0.0825, -0.065, 0.649), (0.0825, 0.065, 0.649), 0.06),
        ("capsule", (0.0825, 0, 0.649), (0, 0, 0.73), 0.055),
    ],
    5: [("capsule", (0, 0, 0.73), (0, 0, 0.96), 0.05)],
    6: [("cylinder", (0, -0.06, 1.033), (0, 0.06, 1.033), 0.055), ("capsule", (0, 0, 1.033), (0.088, 0, 1.033), 0.045)],
    7: [("cylinder", (0.088, 0, 1.035), (0.088, 0, 0.935), 0.045)],
}


def _shape_volume(kind: str, a: np.ndarray, b: np.ndarray, r: float) -> float:
    length = float(np.linalg.norm(b - a))
    if kind == "capsule":
        return np.pi * r * r * length + 4.0 / 3.0 * np.pi * r**3
    return np.pi * r * r * length


def _add_default_classes(spec: mujoco.MjSpec, cfg: RobotConfig) -> None:
    main = spec.default
    main.geom.contype = ROBOT_CONTYPE
    main.geom.conaffinity = ROBOT_CONAFFINITY
    main.geom.rgba = [0.92, 0.92, 0.92, 1.0]
    main.geom.group = 0
    main.joint.damping = [cfg.joint_damping, 0.0, 0.0]
    pad = spec.add_default("pad", main)
    pad.geom.condim = 4
    pad.geom.friction = list(cfg.pad_friction)
    pad.geom.priority = 1
    pad.geom.rgba = [0.15, 0.15, 0.15, 1.0]
    pad.geom.solref = [0.01, 1.0]
    pad.geom.solimp = [0.95, 0.99, 0.001, 0.5, 2.0]
    pad.geom.margin = cfg.pad_margin


def build_robot_spec(cfg: RobotConfig | None = None) -> mujoco.MjSpec:
    """The FR3 + hand as a spec with bare names (attach it with :func:`attach_robot`)."""
    cfg = cfg or RobotConfig()
    spec = mujoco.MjSpec()
    spec.modelname = "fr3"
    spec.compiler.degree = False
    _add_default_classes(spec, cfg)
    pad_class = spec.find_default("pad")

    frames = _link_frames_at_zero()
    link0 = spec.worldbody.add_body(name="link0")
    # The base is fixed to the world, so its mass (~0.63 kg in franka_description) only matters for display.
    link0.add_geom(name="link0_base", type=mujoco.mjtGeom.mjGEOM_CYLINDER, pos=[0, 0, 0.07], size=[0.09, 0.07, 0],
                   mass=0.4)
    link0.add_geom(name="link0_rear", type=mujoco.mjtGeom.mjGEOM_BOX, pos=[-0.09, 0, 0.05], size=[0.06, 0.07, 0.05],
                   mass=0.23)
    link0.add_site(name="base_site", size=[0.01, 0, 0], rgba=[1, 0, 0, 0], group=4)

    parent = link0
    for i in range(1, 8):
        rel = np.linalg.inv(frames[i - 1]) @ frames[i]
        quat_wxyz = Rotation.from_matrix(rel[:3, :3]).as_quat(scalar_first=True)
        body = parent.add_body(name=f"link{i}", pos=rel[:3, 3].tolist(), quat=quat_wxyz.tolist(), gravcomp=1.0)
        body.add_joint(
            name=f"joint{i}",
            type=mujoco.mjtJoint.mjJNT_HINGE,
            axis=[0.0, 0.0, 1.0],
            range=[Q_MIN[i - 1], Q_MAX[i - 1]],
            armature=float(REFLECTED_INERTIA[i - 1] * cfg.armature_scale),
        )
        world_to_link = np.linalg.inv(frames[i])
        shapes = _LINK_SHAPES[i]
        vols = []
        local = []
        for kind, a, b, r in shapes:
            pa = (world_to_link @ np.array([*a, 1.0]))[:3]
            pb = (world_to_link @ np.array([*b, 1.0]))[:3]
            local.append((kind, pa, pb, r))
            vols.append(_shape_volume(kind, pa, pb, r))
        for j, (kind, pa, pb, r) in enumerate(local):
            gtype = mujoco.mjtGeom.mjGEOM_CAPSULE if kind == "capsule" else mujoco.mjtGeom.mjGEOM_CYLINDER
            body.add_geom(
                name=f"link{i}_c{j}",
                type=gtype,
                fromto=[*pa.tolist(), *pb.tolist()],
                size=[r, 0, 0],
                mass=float(LINK_MASSES[i - 1] * vols[j] / sum(vols)),
                rgba=[0.92, 0.92, 0.92, 1.0] if j == 0 else [0.8, 0.8, 0.82, 1.0],
            )
        parent = body

    # Hand: at the flange, rotated -pi/4 about z. z points towards the fingers, fingers open along y.
    hand_quat = Rotation.from_rotvec([0.0, 0.0, HAND_YAW]).as_quat(scalar_first=True)
    hand = parent.add_body(name="hand", pos=[0.0, 0.0, FLANGE_D], quat=hand_quat.tolist(), gravcomp=1.0)
    hand.add_geom(name="hand_mount", type=mujoco.mjtGeom.mjGEOM_CYLINDER, pos=[0, 0, 0.0],
                  size=[0.04, 0.008, 0], mass=0.08, rgba=[0.2, 0.2, 0.2, 1])
    hand.add_geom(name="hand_body", type=mujoco.mjtGeom.mjGEOM_BOX, pos=[0, 0, 0.033], size=[0.025, 0.095, 0.025],
                  mass=HAND_MASS - 0.08)
    hand.add_site(name="hand_tcp", pos=[0.0, 0.0, TCP_OFFSET], size=[0.005, 0, 0], rgba=[1, 0, 0, 0.5], group=4)

    box = mujoco.mjtGeom.mjGEOM_BOX
    for side, quat in (("left", [1.0, 0.0, 0.0, 0.0]), ("right", [0.0, 0.0, 0.0, 1.0])):
        finger = hand.add_body(name=f"{side}finger", pos=[0.0, 0.0, FINGER_BASE_Z], quat=quat, gravcomp=1.0)
        finger.add_joint(
            name=f"finger_joint{1 if side == 'left' else 2}",
            type=mujoco.mjtJoint.mjJNT_SLIDE,
            axis=[0.0, 1.0, 0.0],
            range=[0.0, FINGER_MAX],
            armature=cfg.finger_armature,
            damping=[cfg.finger_damping, 0.0, 0.0],
        )
        finger.add_geom(name=f"{side}finger_body", type=box, pos=[0, 0.0135, 0.0265], size=[0.0105, 0.0085, 0.0265],
                        mass=FINGER_MASS * 0.7)
        finger.add_geom(name=f"{side}finger_pad", type=box, pos=[0, 0.0025, 0.040], size=[0.0095, 0.0025, 0.013],
                        mass=FINGER_MASS * 0.3, default=pad_class)

    # One actuator drives the mean finger opening; an equality keeps the two fingers equal (mechanical coupling).
    tendon = spec.add_tendon(name="finger_split")
    tendon.wrap_joint("finger_joint1", 0.5)
    tendon.wrap_joint("finger_joint2", 0.5)
    eq = spec.add_equality(type=mujoco.mjtEq.mjEQ_JOINT, name1="finger_joint1", name2="finger_joint2")
    eq.name = "finger_coupling"
    eq.data[:5] = [0.0, 1.0, 0.0, 0.0, 0.0]
    eq.solref = [0.01, 1.0]

    # Arm servos: the position target is the actuator's activation, integrated from the control (a target
    # velocity), so a control step's target ramps smoothly instead of jumping (see franka_sim.sim.BatchSim).
    for i in range(1, 8):
        act = spec.add_actuator(name=f"actuator{i}", target=f"joint{i}", trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.dyntype = mujoco.mjtDyn.mjDYN_INTEGRATOR
        act.gaintype = mujoco.mjtGain.mjGAIN_FIXED
        act.biastype = mujoco.mjtBias.mjBIAS_AFFINE
        act.actrange = [Q_MIN[i - 1], Q_MAX[i - 1]]
        act.actlimited = True
        act.ctrlrange = [-DQ_MAX[i - 1], DQ_MAX[i - 1]]
        act.ctrllimited = True
        if cfg.torque_limits:
            act.forcerange = [-TAU_MAX[i - 1], TAU_MAX[i - 1]]
            act.forcelimited = True
    grip = spec.add_actuator(name="gripper", target="finger_split", trntype=mujoco.mjtTrn.mjTRN_TENDON)
    grip.set_to_position(kp=cfg.gripper_kp, dampratio=1.0)
    grip.dyntype = mujoco.mjtDyn.mjDYN_FILTEREXACT
    grip.dynprm[0] = cfg.gripper_time_constant
    grip.ctrlrange = [0.0, FINGER_MAX]
    grip.ctrllimited = True
    grip.forcerange = [-cfg.gripper_force_limit, cfg.gripper_force_limit]
    grip.forcelimited = True

    spec.add_key(name="home", qpos=[*HOME_Q.tolist(), FINGER_MAX, FINGER_MAX], ctrl=[0.0] * 7 + [FINGER_MAX],
                 act=[*HOME_Q.tolist(), FINGER_MAX])
    _set_servo_gains(spec, cfg)
    return spec


def home_inertia_diagonal(model: mujoco.MjModel) -> np.ndarray:
    """Diagonal of the arm's joint-space inertia matrix (armature included) at HOME_Q, (7,)."""
    data = mujoco.MjData(model)
    data.qpos[:7] = HOME_Q
    mujoco.mj_forward(model, data)
    full = np.zeros((model.nv, model.nv))
    mujoco.mj_fullM(model, data, full)
    return np.diag(full)[:7].copy()


def _set_servo_gains(spec: mujoco.MjSpec, cfg: RobotConfig) -> None:
    """Joint servo gains from the inertia at home (see RobotConfig.bandwidth); needs a compile of the arm."""
    diag = home_inertia_diagonal(spec.compile())
    w, z = cfg.bandwidth, cfg.damping_ratio
    for i in range(1, 8):
        act = spec.actuator(f"actuator{i}")
        kp, kv = w * w * diag[i - 1], 2.0 * z * w * diag[i - 1]
        act.gainprm[0] = kp
        act.biasprm[:3] = [0.0, -kp, -kv]


def attach_robot(scene: mujoco.MjSpec, cfg: RobotConfig | None = None) -> mujoco.MjSpec:
    """Attach the robot to ``scene`` at the world origin with the ``fr3_`` prefix; returns the scene."""
    frame = scene.worldbody.add_frame(name="robot_mount")
    scene.attach(build_robot_spec(cfg), prefix=PREFIX, frame=frame)
    return scene


def robot_only_spec(cfg: RobotConfig | None = None) -> mujoco.MjSpec:
    """The robot alone in an empty world (with the ``fr3_`` names), for checks and viewing."""
    scene = mujoco.MjSpec()
    scene.modelname = "fr3_alone"
    scene.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    scene.option.timestep = 0.005
    return attach_robot(scene, cfg)
