"""The batched simulation core shared by the single and the vector environment.

``BatchSim`` holds one compiled task scene and ``mujoco.batch.Batch`` of N simulations of it (stepped on a
thread pool in C; MuJoCo releases the GIL; with ``SimConfig.backend="warp"``, a
:class:`~franka_sim.warp_batch.WarpBatch`: the same calls on MuJoCo Warp), plus the numpy views of the fields
the controller, the rewards and the observations read. One control step: clip the actions, turn them into
task-space errors (the target is ``apply_delta(measured TCP pose, action)``, so the error *is* the action's
translation and rotation vector), one batched DLS IK step, let the joint servo targets ramp from the measured
joints to the IK solution over the step, then ``substeps`` physics steps per simulation (in C, on the batch's
threads).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

import mujoco
import mujoco.batch
import numpy as np
from residual_core.action import ActionSpec, clip_action
from scipy.spatial.transform import Rotation

from franka_sim import controller, robot
from franka_sim.dynamics import NOMINAL, DynamicsDraw, DynamicsRandomization
from franka_sim.isaaclab_batch import INSTALL_HINT as ISAACLAB_INSTALL_HINT
from franka_sim.isaaclab_batch import IsaacLabBatch, IsaacLabOptions, isaaclab_available, isaaclab_python
from franka_sim.scene import SceneConfig, build_scene
from franka_sim.tasks.base import ResetSample, Task, TaskState
from franka_sim.warp_batch import INSTALL_HINT as WARP_INSTALL_HINT
from franka_sim.warp_batch import WarpBatch, WarpOptions, warp_available

_STAGE_VEL = int(mujoco.mjtStage.mjSTAGE_VEL)
_STAGE_NONE = int(mujoco.mjtStage.mjSTAGE_NONE)

SimBackendName = Literal["mujoco", "warp", "isaaclab"]
"""Physics backends of :class:`BatchSim` (``SimConfig.backend``; the CLIs' ``--backend``)."""
SIM_BACKENDS: tuple[str, ...] = get_args(SimBackendName)


@dataclass(frozen=True)
class SimConfig:
    """Configuration of the simulation core (scene, controller, reset noise, threads)."""

    scene: SceneConfig = field(default_factory=SceneConfig)
    """Physics options, robot parameters, camera placement."""
    controller: controller.ControllerConfig = field(default_factory=controller.ControllerConfig)
    """Differential-IK parameters."""
    action_spec: ActionSpec = field(default_factory=ActionSpec)
    """Bounds actions are clipped to before they are applied."""
    joint_noise: float = 0.03
    """Initial arm joints are HOME_Q + U(-joint_noise, joint_noise) (rad)."""
    nthread: int = 0
    """Physics threads of the batch (0: all CPUs)."""
    persistent: bool = False
    """Keep one full MjData per simulation (needed to render or inspect contacts); else threads share MjData."""
    dynamics: DynamicsRandomization = field(default_factory=DynamicsRandomization)
    """Per-episode dynamics draws (franka_sim.dynamics); the default is the nominal model."""
    backend: SimBackendName = "mujoco"
    """Physics backend: mujoco (``mujoco.batch`` on ``nthread`` CPU threads, float64; the default), warp (MuJoCo Warp
    on ``device``, float32, same models; needs ``make setup-warp``; franka_sim.warp_batch) or isaaclab (Isaac Lab 3's
    Newton physics with the MuJoCo Warp solver, in a worker in its own Python 3.12 environment; needs
    ``make isaac-env``; franka_sim.isaaclab_batch)."""
    device: str = "cpu"
    """Device of the warp backend: "cpu" or "cuda:N". The mujoco backend runs on the CPU only."""
    warp: WarpOptions = field(default_factory=WarpOptions)
    """Options of the warp backend (determinism, contact and constraint capacity, graphs)."""
    isaaclab: IsaacLabOptions = field(default_factory=IsaacLabOptions)
    """Options of the isaaclab backend (determinism, contact and constraint capacity, start timeout)."""

    def __post_init__(self) -> None:
        if self.joint_noise < 0 or self.nthread < 0:
            raise ValueError(f"need joint_noise >= 0 and nthread >= 0, got {self.joint_noise}, {self.nthread}")
        _check_backend_name(self.backend, self.device)


def check_backend(backend: str, device: str = "cpu") -> None:
    """Raise ValueError, saying what to do, when ``backend`` on ``device`` cannot run in this environment (the CLIs
    call it first, so a missing extra is one line of error, not a traceback after loading the policies)."""
    _check_backend_name(backend, device)
    if backend == "warp" and not warp_available():
        raise ValueError(f"--backend warp needs mujoco_warp and warp-lang: {WARP_INSTALL_HINT}")
    if backend == "isaaclab" and not isaaclab_available():
        raise ValueError(f"--backend isaaclab needs Isaac Lab 3's environment ({isaaclab_python()} is missing): "
                         f"{ISAACLAB_INSTALL_HINT}")


def _check_backend_name(backend: str, device: str) -> None:
    """The checks that need nothing installed (SimConfig's and check_backend's)."""
    if backend not in SIM_BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(SIM_BACKENDS)}, got {backend!r}")
    if backend == "mujoco" and device != "cpu":
        raise ValueError(f"the mujoco backend runs on the CPU only (device {device!r}): use --backend warp for a GPU")


def make_batch(model: mujoco.MjModel, num_envs: int, cfg: SimConfig, spec: mujoco.MjSpec | None = None):
    """The physics batch of ``cfg.backend``: ``mujoco.batch.Batch``, :class:`~franka_sim.warp_batch.WarpBatch` or
    :class:`~franka_sim.isaaclab_batch.IsaacLabBatch` (the same calls; the last needs the ``spec`` of ``model``)."""
    if cfg.backend == "mujoco":
        return mujoco.batch.Batch(model, num_envs, nthread=cfg.nthread, persistent=cfg.persistent)
    if cfg.backend == "warp":
        return WarpBatch(model, num_envs, device=cfg.device, options=cfg.warp)  # ImportError: `make setup-warp`
    if spec is None:
        raise ValueError("the isaaclab backend needs the scene's MjSpec (make_batch(..., spec=...))")
    return IsaacLabBatch(model, num_envs, spec, device=cfg.device, options=cfg.isaaclab)  # ImportError: isaac-env


class BatchSim:
    """N simulations of one task scene with batched Cartesian control."""

    def __init__(self, task: Task, num_envs: int, cfg: SimConfig | None = None) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.task = task
        self.cfg = cfg or SimConfig()
        self.num_envs = num_envs
        self.spec = build_scene(task, self.cfg.scene)
        self.model = self.spec.compile()
        m = self.model
        self.substeps = self.cfg.scene.physics.substeps
        self.control_dt = self.cfg.scene.physics.timestep * self.substeps
        self.batch = make_batch(m, num_envs, self.cfg, spec=self.spec)

        self._arm_jnt = np.array([m.joint(n).id for n in robot.JOINT_NAMES])
        self._arm_qadr = m.jnt_qposadr[self._arm_jnt]
        self._arm_dadr = m.jnt_dofadr[self._arm_jnt]
        self._finger_qadr = np.array([m.jnt_qposadr[m.joint(n).id] for n in robot.FINGER_JOINT_NAMES])
        self._finger_dadr = np.array([m.jnt_dofadr[m.joint(n).id] for n in robot.FINGER_JOINT_NAMES])
        self._arm_act = np.array([m.actuator(n).id for n in robot.ARM_ACTUATOR_NAMES])
        self._grip_act = m.actuator(robot.GRIPPER_ACTUATOR_NAME).id
        self._arm_actadr = m.actuator_actadr[self._arm_act]
        self._grip_actadr = m.actuator_actadr[self._grip_act]
        # Steady ramp lag of the servos (kv / kp): the ramp's start is put this far ahead, per unit velocity.
        self._lead = -m.actuator_biasprm[self._arm_act, 2] / m.actuator_gainprm[self._arm_act, 0]
        self._tcp_site = m.site(robot.TCP_SITE).id
        self._obj_sites = {name: m.site(name).id for name in task.objects}
        self._task_qadr = {name: m.jnt_qposadr[m.joint(name).id] for name in task.task_joints}
        self._home_key = m.key(robot.HOME_KEY).id

        # Live views. Derived (output) fields must be bound before the first call to be filled by it.
        b = self.batch
        self.site_xpos = b.bind("site_xpos")
        self.site_xmat = b.bind("site_xmat")
        self.xanchor = b.bind("xanchor")
        self.xaxis = b.bind("xaxis")
        self.qpos = b.bind("qpos")
        self.qvel = b.bind("qvel")
        self.ctrl = b.bind("ctrl")
        self.act = b.bind("act")
        self.mocap_pos = b.bind("mocap_pos")
        self.mocap_quat = b.bind("mocap_quat")
        self.time = b.bind("time")
        self.episode = {k: np.zeros(num_envs) for k in task.episode_keys}
        self.last_action = np.zeros((num_envs, 7))
        self.last_ik: controller.IKResult | None = None
        # A valid state everywhere from the start (home posture, objects where the scene put them).
        self.batch.reset(keyframe=np.full(num_envs, self._home_key), stage=_STAGE_VEL)
        self.dynamics: list[DynamicsDraw] = [NOMINAL] * num_envs
        """Each simulation's current episode dynamics (drawn at its reset)."""
        self._dyn = _DynamicsFields(self) if self.cfg.dynamics.enabled else None

    # ---------------------------------------------------------------- reset
    def reset(self, ids: np.ndarray, samples: list[ResetSample], rngs: list[np.random.Generator]) -> None:
        """Reset the simulations ``ids`` to the home posture (+ joint noise) and the sampled object placement."""
        ids = np.asarray(ids, dtype=np.int64)
        if len(samples) != len(ids) or len(rngs) != len(ids):
            raise ValueError(
                f"need one sample and rng per id: {len(ids)} ids, {len(samples)} samples, {len(rngs)} rngs"
            )
        m = self.model
        self.batch.reset(ids, keyframe=np.full(len(ids), self._home_key), stage=_STAGE_NONE)
        noise = self.cfg.joint_noise
        for i, sample, rng in zip(ids, samples, rngs, strict=True):
            q0 = robot.HOME_Q + rng.uniform(-noise, noise, size=7)
            self.qpos[i, self._arm_qadr] = q0
            self.qpos[i, self._finger_qadr] = robot.FINGER_MAX
            self.act[i, self._arm_actadr] = q0
            self.ctrl[i, self._arm_act] = 0.0
            self.act[i, self._grip_actadr] = robot.FINGER_MAX
            self.ctrl[i, self._grip_act] = robot.FINGER_MAX
            for jname, (pos, quat) in sample.free_bodies.items():
                adr = m.jnt_qposadr[m.joint(jname).id]
                self.qpos[i, adr : adr + 3] = pos
                self.qpos[i, adr + 3 : adr + 7] = np.roll(np.asarray(quat, dtype=np.float64), 1)  # xyzw -> wxyz
            for jname, value in sample.joints.items():
                self.qpos[i, m.jnt_qposadr[m.joint(jname).id]] = value
            for bname, (pos, quat) in sample.mocap.items():
                mid = m.body_mocapid[m.body(bname).id]
                self.mocap_pos[i, mid] = pos
                self.mocap_quat[i, mid] = np.roll(np.asarray(quat, dtype=np.float64), 1)
            for key in self.task.episode_keys:
                self.episode[key][i] = sample.episode[key]
            self.last_action[i] = 0.0
            if self._dyn is not None:  # drawn last: the episode's start is that of the nominal model
                self.dynamics[i] = self.cfg.dynamics.sample(rng)
        if self._dyn is not None:
            self._dyn.apply(ids, [self.dynamics[i] for i in ids])
        self.batch.forward(ids, stage=_STAGE_VEL)
        if self._dyn is not None:
            self._dyn.reset_latency(ids, self.tcp_pos()[ids], self.tcp_mat()[ids])

    # ---------------------------------------------------------------- control
    @property
    def arm_actuators(self) -> np.ndarray:
        """(7,) ids of the arm's joint-servo actuators (robot.ARM_ACTUATOR_NAMES order)."""
        return self._arm_act.copy()

    @property
    def arm_activation_addresses(self) -> np.ndarray:
        """(7,) addresses of the arm actuators' activations in ``act`` (the servo targets the controller ramps)."""
        return self._arm_actadr.copy()

    @property
    def gripper_actuator(self) -> int:
        """Id of the gripper actuator (ctrl: the opening of each finger, m)."""
        return int(self._grip_act)

    def jacobian(self) -> np.ndarray:
        """(N, 6, 7) TCP Jacobian of every simulation at its current state."""
        return controller.site_jacobian(
            self.site_xpos[:, self._tcp_site], self.xanchor[:, self._arm_jnt], self.xaxis[:, self._arm_jnt]
        )

    def _apply_task_error(self, err: np.ndarray, gripper: np.ndarray) -> controller.IKResult:
        """IK step for the task-space error, then set the servos: the joint target ramps from the measured joints
        to the IK solution over the control step (target velocity as control, ramp start put ahead by the servo's
        steady ramp lag), so the arm moves smoothly and arrives within the step."""
        q = self.qpos[:, self._arm_qadr]
        result = controller.dls_step(q, self.jacobian(), err, self.cfg.controller)
        velocity = (result.q_target - q) / self.control_dt
        self.ctrl[:, self._arm_act] = velocity
        self.act[:, self._arm_actadr] = q + self._lead * velocity
        self.ctrl[:, self._grip_act] = controller.gripper_command_to_ctrl(gripper)
        self.last_ik = result
        return result

    def step(self, actions: np.ndarray) -> np.ndarray:
        """Apply (N, 7) actions for one control step; returns the clipped actions actually applied."""
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape != (self.num_envs, 7):
            raise ValueError(f"actions must have shape ({self.num_envs}, 7), got {actions.shape}")
        if not np.all(np.isfinite(actions)):
            bad = np.nonzero(~np.all(np.isfinite(actions), axis=-1))[0]
            raise ValueError(f"non-finite actions for envs {bad.tolist()}")
        applied = clip_action(actions, self.cfg.action_spec)
        delayed = applied if self._dyn is None else self._dyn.delay_actions(applied)
        # Target = apply_delta(measured pose, action): its error w.r.t. the measured pose is the action itself.
        self._apply_task_error(delayed[:, :6], delayed[:, 6])
        self.batch.step(nstep=self.substeps, stage=_STAGE_VEL)
        self.last_action[:] = applied
        return applied

    def step_to_pose(self, target_pos: np.ndarray, target_quat: np.ndarray, gripper: np.ndarray,
                     commanded: np.ndarray | None = None) -> np.ndarray:
        """One control step towards absolute TCP targets (N, 3), (N, 4) xyzw; returns the (N, 6) pose error used.

        The target quaternions are normalised here, and only here: the sim node (via FrankaTaskEnv.set_target_pose)
        and the trainer's backend pass the arbiter's / the action pipeline's target unchanged, so both run the
        same floating-point path. ``commanded`` (N, 7): the action the target was formed from, recorded as the
        step's action (the reward's action term); None records zeros.
        """
        err = self.command_pose(target_pos, target_quat, gripper)
        self.batch.step(nstep=self.substeps, stage=_STAGE_VEL)
        self.last_action[:] = 0.0 if commanded is None else np.asarray(commanded, dtype=np.float64)
        return err

    def command_pose(self, target_pos: np.ndarray, target_quat: np.ndarray, gripper: np.ndarray) -> np.ndarray:
        """The first half of :meth:`step_to_pose`: the IK step towards the targets and the servo ramps over one
        control step (``substeps`` physics steps), without stepping; returns the (N, 6) pose error. A real-time
        caller steps the physics itself (``batch.step``) and commands again after ``substeps`` steps or when a new
        target arrives (the ramps keep integrating while the physics runs)."""
        q = np.asarray(target_quat, dtype=np.float64).reshape(-1, 4)
        target_mat = Rotation.from_quat(q / np.linalg.norm(q, axis=-1, keepdims=True)).as_matrix()
        target_pos = np.asarray(target_pos, dtype=np.float64).reshape(-1, 3)
        gripper = np.broadcast_to(np.asarray(gripper, dtype=np.float64), (self.num_envs,))
        if self._dyn is not None:
            target_pos, target_mat, gripper = self._dyn.delay_targets(target_pos, target_mat, gripper)
        err = controller.pose_error(self.tcp_pos(), self.tcp_mat(), target_pos, target_mat)
        self._apply_task_error(err, gripper)
        return err

    # ---------------------------------------------------------------- state
    def tcp_pos(self) -> np.ndarray:
        return self.site_xpos[:, self._tcp_site].copy()

    def tcp_mat(self) -> np.ndarray:
        return self.site_xmat[:, self._tcp_site].reshape(self.num_envs, 3, 3).copy()

    def joint_positions(self) -> np.ndarray:
        return self.qpos[:, self._arm_qadr].copy()

    def joint_velocities(self) -> np.ndarray:
        return self.qvel[:, self._arm_dadr].copy()

    def finger_positions(self) -> np.ndarray:
        return self.qpos[:, self._finger_qadr].copy()

    def gripper_width(self) -> np.ndarray:
        return self.qpos[:, self._finger_qadr].sum(axis=-1)

    def object_pos_mat(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        pos = {n: self.site_xpos[:, s].copy() for n, s in self._obj_sites.items()}
        mat = {n: self.site_xmat[:, s].reshape(self.num_envs, 3, 3).copy() for n, s in self._obj_sites.items()}
        return pos, mat

    def task_state(self, with_action: bool = True) -> TaskState:
        obj_pos, obj_mat = self.object_pos_mat()
        return TaskState(
            tcp_pos=self.tcp_pos(),
            tcp_mat=self.tcp_mat(),
            gripper_width=self.gripper_width(),
            obj_pos=obj_pos,
            obj_mat=obj_mat,
            joints={n: self.qpos[:, a].copy() for n, a in self._task_qadr.items()},
            episode={k: v.copy() for k, v in self.episode.items()},
            action=self.last_action.copy() if with_action else None,
        )

    def get_data(self, sim: int, data: mujoco.MjData | None = None) -> mujoco.MjData:
        """Simulation ``sim`` as an MjData with kinematics computed (for rendering and inspection). Kinematics do not
        depend on the dynamics draws; forces computed from it need that simulation's model (``batch.get_model``)."""
        data = self.batch.get_data(sim, data)
        if not self.cfg.persistent:
            mujoco.mj_forward(self.model, data)
        return data


class _DynamicsFields:
    """The per-simulation model fields a :class:`DynamicsDraw` scales, and the command delay lines of the latency.

    Nominal values are read once from the compiled model; each reset writes nominal * scale for the simulations it
    resets only (``Batch.expand`` makes the fields per-simulation), then ``set_const`` recomputes the constants that
    depend on masses.
    """

    def __init__(self, sim: BatchSim) -> None:
        m, b = sim.model, sim.batch
        self.sim = sim
        bodies = {int(m.site_bodyid[m.site(n).id]) for n in sim.task.objects}
        self.bodies = np.array(sorted(i for i in bodies if m.body_mocapid[i] < 0), dtype=np.int64)
        self.mass0, self.inertia0 = m.body_mass[self.bodies].copy(), m.body_inertia[self.bodies].copy()
        self.friction0 = m.geom_friction[:, 0].copy()
        self.arm = sim.arm_actuators
        self.kp0 = m.actuator_gainprm[self.arm, 0].copy()
        self.bias0 = m.actuator_biasprm[self.arm, :3].copy()
        self.mass, self.inertia = b.expand("body_mass"), b.expand("body_inertia")
        self.friction = b.expand("geom_friction")
        self.gain, self.bias = b.expand("actuator_gainprm"), b.expand("actuator_biasprm")
        n, depth = sim.num_envs, sim.cfg.dynamics.max_latency + 1
        self.latency = np.zeros(n, dtype=np.int64)
        self.sent = np.zeros(n, dtype=np.int64)
        """Commands sent since each simulation's reset."""
        self.line_pos, self.line_mat = np.zeros((n, depth, 3)), np.tile(np.eye(3), (n, depth, 1, 1))
        self.line_grip, self.line_action = np.zeros((n, depth)), np.zeros((n, depth, 7))
        self.hold_pos, self.hold_mat = np.zeros((n, 3)), np.tile(np.eye(3), (n, 1, 1))

    def apply(self, ids: np.ndarray, draws: list[DynamicsDraw]) -> None:
        for i, d in zip(ids, draws, strict=True):
            self.mass[i, self.bodies] = self.mass0 * d.mass_scale
            self.inertia[i, self.bodies] = self.inertia0 * d.mass_scale
            self.friction[i, :, 0] = self.friction0 * d.friction_scale
            s = d.stiffness_scale
            self.gain[i, self.arm, 0] = self.kp0 * s
            self.bias[i, self.arm, 1] = self.bias0[:, 1] * s
            self.bias[i, self.arm, 2] = self.bias0[:, 2] * np.sqrt(s)
            self.latency[i] = d.latency_steps
        self.sim.batch.set_const()

    def reset_latency(self, ids: np.ndarray, tcp_pos: np.ndarray, tcp_mat: np.ndarray) -> None:
        """Until the first delayed command arrives the arm holds the pose it was reset to, gripper open."""
        self.sent[ids] = 0
        self.hold_pos[ids], self.hold_mat[ids] = tcp_pos, tcp_mat

    def _slots(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        depth = self.line_grip.shape[1]
        write = self.sent % depth
        due = self.sent - self.latency
        return write, due % depth, due >= 0

    def delay_targets(self, pos: np.ndarray, mat: np.ndarray, grip: np.ndarray):
        """Push this step's absolute targets, return the ones due now (the reset pose before the first)."""
        rows = np.arange(len(self.sent))
        write, read, ready = self._slots()
        self.line_pos[rows, write], self.line_mat[rows, write], self.line_grip[rows, write] = pos, mat, grip
        self.sent += 1
        out_pos = np.where(ready[:, None], self.line_pos[rows, read], self.hold_pos)
        out_mat = np.where(ready[:, None, None], self.line_mat[rows, read], self.hold_mat)
        return out_pos, out_mat, np.where(ready, self.line_grip[rows, read], 0.0)

    def delay_actions(self, actions: np.ndarray) -> np.ndarray:
        """Push this step's delta actions, return the ones due now (no motion, gripper open, before the first)."""
        rows = np.arange(len(self.sent))
        write, read, ready = self._slots()
        self.line_action[rows, write] = actions
        self.sent += 1
        return np.where(ready[:, None], self.line_action[rows, read], 0.0)
