"""The twin's physics: franka_sim's task scene (``FrankaTaskEnv``: the same model, physics, camera and tasks as the
sim) driven by one of the controller laws of :mod:`franka_twin.twin_core`. No rclpy.

Torque on position actuators: the MJCF's arm actuators are joint servos whose target is their activation
(``force = kp (act - q) - kv dq``, torque-limited to the FR3's limits). For the torque laws (``impedance``,
``stock_example``) the twin sets kv to zero once at start and, every physics step (5 ms), sets
``act = q + tau / kp``: the servo then applies exactly ``tau`` (within the torque limits), i.e. the arm is torque
controlled at 200 Hz, not 1 kHz. Gravity is compensated by the model's ``gravcomp``, as the FR3 does below the
controller. The ``stiff`` law keeps the servos as the sim runs them.
"""

from __future__ import annotations

import mujoco
import numpy as np
from franka_sim import camera, robot
from franka_sim.env import EnvConfig, FrankaTaskEnv
from franka_sim.scene import SceneConfig
from franka_sim.sim import SimConfig
from scipy.spatial.transform import Rotation

from franka_twin import twin_core as tc


class TwinRobot:
    """One FR3 + task scene in real time: ``advance`` runs whole physics steps under the chosen law."""

    def __init__(self, cfg: tc.TwinConfig):
        self.cfg = cfg
        self.env: FrankaTaskEnv | None = None
        self.task = ""
        self.time = 0.0  # physics time since the last reset (s)
        self.make(cfg.task)

    # --- scene ----------------------------------------------------------------------------------------------------
    def make(self, task: str) -> None:
        if self.env is not None:
            self.env.close()
        cfg = self.cfg
        env_cfg = None
        if cfg.calibration_board:  # opt-in: the default scene is built exactly as before
            env_cfg = EnvConfig(sim=SimConfig(nthread=1, scene=SceneConfig(calibration_board=True)))
        self.env = env = FrankaTaskEnv(task, render_camera=False, image_size=(cfg.image_height, cfg.image_width),
                                       config=env_cfg)
        self.task = task
        sim, m = env.sim, env.model
        self.sim = sim
        self.dt = float(m.opt.timestep)
        self.arm_act = sim.arm_actuators
        self.arm_actadr = sim.arm_activation_addresses
        self.grip_act = sim.gripper_actuator
        self.kp = m.actuator_gainprm[self.arm_act, 0].copy()
        self.kv = -m.actuator_biasprm[self.arm_act, 2].copy()
        if cfg.law != "stiff":
            m.actuator_biasprm[self.arm_act, 2] = 0.0  # torque emulation (module docstring)
            sim.batch.set_models(m)  # the batch runs its own copy of the model: hand it the changed one
        pose = cfg.camera_pose
        if pose is not None:
            self.place_camera(*pose)
        gains = tc.ImpedanceGains.stock_example() if cfg.law == "stock_example" else tc.ImpedanceGains.crisp()
        self.law = tc.ImpedanceLaw(gains, self.dt, robot.HOME_Q, q_limits=(robot.Q_MIN, robot.Q_MAX))

    def place_camera(self, pos: np.ndarray, quat_xyzw: np.ndarray) -> None:
        """Put the scene camera's optical frame at (pos, quat) in the base frame (= MuJoCo's world)."""
        camera.place_camera(self.env.model, self.env.config.sim.scene.camera.name, pos, quat_xyzw)
        self.sim.batch.set_models(self.env.model)  # the batch runs its own copy of the model

    def reset(self, task: str, seed: int) -> None:
        if task != self.task:
            self.make(task)
        self.env.reset(seed=seed)
        self.time = 0.0
        self.gripper_width_target = 2.0 * robot.FINGER_MAX
        self.activate()

    def activate(self) -> None:
        """(Re-)activate the controller at the measured pose."""
        pos, mat = self.sim.tcp_pos()[0], self.sim.tcp_mat()[0]
        self.law.activate(pos, mat)
        self.activated_at = (self.time, pos.copy())
        self.activated_pose = self.env.tcp_pose()
        self.q_hold = self.sim.joint_positions()[0]
        self._commanded, self._period_left = None, 0  # stiff: the next step starts a control period

    def hold(self) -> None:
        """Controller inactive (reflex, user stop): the brakes hold the current joints."""
        self.q_hold = self.sim.joint_positions()[0]

    # --- stepping ---------------------------------------------------------------------------------------------------
    def advance(self, n: int, target: tuple[np.ndarray, np.ndarray] | None, active: bool) -> None:
        """``n`` physics steps; ``target`` (pos, quat xyzw) is the newest accepted target (None: hold the pose the
        controller was activated at); ``active`` false: the controller is off and the arm held."""
        sim = self.sim
        if self.cfg.law == "stiff" and active:
            self._advance_stiff(n, target)
            return
        for _ in range(n):
            q, dq = sim.joint_positions()[0], sim.joint_velocities()[0]
            if not active:
                tau = self.kp * (self.q_hold - q) - self.kv * dq
            else:
                tau = self._law_torque(target, q, dq)
            sim.ctrl[0, self.arm_act] = 0.0
            if self.cfg.law == "stiff":  # held by the servo itself (kv kept)
                sim.act[0, self.arm_actadr] = self.q_hold
            else:
                sim.act[0, self.arm_actadr] = q + tau / self.kp
            sim.ctrl[0, self.grip_act] = np.clip(self.gripper_width_target / 2.0, 0.0, robot.FINGER_MAX)
            sim.batch.step(nstep=1, stage=int(mujoco.mjtStage.mjSTAGE_VEL))
            self.time += self.dt

    def _advance_stiff(self, n: int, target: tuple[np.ndarray, np.ndarray] | None) -> None:
        """The sim's tracking in real time: each command is one IK step whose servo ramp runs for one control period
        (``substeps`` physics steps), as ``FrankaTaskEnv.set_target_pose`` runs it. A period starts when a new target
        arrives (at once, whatever the phase: the sim executes each command for a full period from when it gets it)
        or when the previous period ran out (the same target again, as the sim given the same command)."""
        sim = self.sim
        pos, quat = target if target is not None else self.activated_pose
        for _ in range(n):
            if target is not self._commanded or self._period_left <= 0:
                grip = 1.0 - self.gripper_width_target / (2.0 * robot.FINGER_MAX)
                sim.command_pose(pos[None], quat[None], np.array([grip]))
                self._commanded, self._period_left = target, sim.substeps
            sim.ctrl[0, self.grip_act] = np.clip(self.gripper_width_target / 2.0, 0.0, robot.FINGER_MAX)
            sim.batch.step(nstep=1, stage=int(mujoco.mjtStage.mjSTAGE_VEL))
            self._period_left -= 1
            self.time += self.dt

    def _law_torque(self, target, q, dq) -> np.ndarray:
        law, sim = self.law, self.sim
        if target is not None:
            tpos, tquat = target
            tmat = Rotation.from_quat(tquat).as_matrix()
            if self.cfg.law == "stock_example":
                t0, start = self.activated_at
                tpos = tc.stock_arc_position(start, self.time - t0)
            law.filter_target(tpos, tmat)
        elif self.cfg.law == "stock_example":
            t0, start = self.activated_at
            law.filter_target(tc.stock_arc_position(start, self.time - t0), law.filtered[1])
        return law.torque(sim.tcp_pos()[0], sim.tcp_mat()[0], sim.jacobian()[0], q, dq).tau

    # --- state ------------------------------------------------------------------------------------------------------
    def tcp_pose(self) -> tuple[np.ndarray, np.ndarray]:
        return self.env.tcp_pose()

    def gripper_width(self) -> float:
        return self.env.gripper_width()

    def gripper_speed(self) -> float:
        m = self.env.model
        dofs = [int(m.jnt_dofadr[m.joint(n).id]) for n in robot.FINGER_JOINT_NAMES]
        return float(abs(self.sim.qvel[0, dofs].sum()))

    def success(self) -> bool:
        return self.env.success_now()
