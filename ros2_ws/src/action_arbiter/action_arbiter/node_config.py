"""The arbiter node's parameters (pure: no rclpy): :class:`ArbiterNodeConfig`, each field a ROS parameter of the same
name, and how they become the :class:`~action_arbiter.arbiter.ArbiterConfig` the node decides with. The node is
:mod:`action_arbiter.node`."""

from __future__ import annotations

from dataclasses import dataclass, field

from residual_core.action import ACTION_DIM, CONTROL_DT, ActionSpec
from residual_core.checkpoint import default_residual_checkpoint, read_manifest
from residual_core.observation import PoseFreshness
from residual_core.pipeline import TRACK_TOLERANCE, ActionPipeline, tighten_scale
from residual_core.safety import EnvelopeConfig

from action_arbiter.arbiter import ArbiterConfig
from action_arbiter.lab import LabConfig
from action_arbiter.tcp_gate import TcpLimits


@dataclass
class ArbiterNodeConfig:
    """Parameters of the arbiter node (each is a ROS parameter of the same name; those of the nested configs are
    dotted: ``envelope.max_translation_step``)."""

    lockstep: bool = False
    """Lockstep simulation: no wall-clock base watchdog (the simulator waits for every command)."""
    reliable_inputs: bool = False
    """Subscribe to the TCP and object poses reliably: only with reliable publishers (the sim's; the graph sets it in
    lockstep simulation, where a lost TCP pose is never replaced); else best effort (franka_ros2 publishes best
    effort)."""
    control_dt: float = CONTROL_DT
    """Control period (s)."""
    residual_enabled: bool = True
    """Apply the residual at startup (switch with ~/enable_residual)."""
    residual_deadline_s: float = 0.02
    """How long to wait for the residual of step t after the base action of t arrived (s), in real time; must be
    shorter than control_dt, so a missing residual gives the base action alone within one control period."""
    lockstep_residual_wait_s: float = 0.2
    """Lockstep: how long to wait for the residual (s; the simulator waits for each command, so this can be long)."""
    base_stale_periods: float = 1.5
    """Real time: hold the pose after this many control periods without a base action (the watchdog ticks every
    half period, so the hold follows within one period of the missing action's due time)."""
    base_max_age_s: float = 0.15
    """Real time: a base action stamped longer ago than this (s, on this node's clock) is stale and dropped."""
    max_step_gap: int = 20
    """A base action or residual more than this many steps ahead of the last decided step is implausible and dropped
    (unless a sequence of steps confirms it)."""
    tcp: TcpLimits = field(default_factory=TcpLimits)
    """When the measured TCP pose may be composed from (parameters tcp.max_age_s, tcp.max_speed, ...)."""
    pose_timeout: float = PoseFreshness().timeout_s
    """Object poses older than this are stale (s); the same parameter as the residual and base nodes'."""
    stale_pose_policy: str = "ignore"
    """With stale poses: ignore (the residual node masks the stale objects in its observation, as in training),
    mask (skip the residual this step) or disable (until re-enabled)."""
    compose_from: str = "auto"
    """Where each target is composed from: measured (the measured TCP pose), target (the previous target while the
    measured TCP is within track_tolerance of it, else the measured pose: for an arm that lags its targets, real time
    on a robot or the twin; residual_core.pipeline.composition_origin), or auto: what the residual checkpoint was
    trained with (its manifest's training.compose_from; measured for checkpoints made before that option)."""
    track_tolerance: tuple[float, ...] = TRACK_TOLERANCE
    """compose_from target: distance (m) and angle (rad) within which the arm counts as tracking its last target."""
    task: str = "cube_lift"
    """Task (residual_core.tasks): names the default residual checkpoint, as for the residual node."""
    checkpoint: str = ""
    """Residual checkpoint whose manifest gives the residual bound (its action_scale: the residual_scale it was
    trained with); the graph passes the residual node's. Empty: checkpoints/residual/<task>, as the residual node."""
    residual_scale_fraction: tuple[float, ...] = (1.0,) * ACTION_DIM
    """Fraction in [0, 1] of the checkpoint's residual bound allowed per component (m, rad, gripper):
    configuration may only tighten what the residual was trained with."""
    action: ActionSpec = field(default_factory=ActionSpec)
    """Bounds of the composed action (base + residual), before the envelope (parameters action.max_translation,
    action.max_rotation)."""
    envelope: EnvelopeConfig = field(default_factory=EnvelopeConfig)
    """Safety envelope on the target TCP pose and the per-step motion (parameters envelope.workspace_min,
    envelope.max_translation_step, ...)."""
    frame_id: str = "fr3_link0"
    """Robot base frame of targets and markers."""
    base_topic: str = "/base/action"
    """EefAction topic of the base node."""
    residual_topic: str = "/residual/action"
    """EefAction topic of the residual node (residual already scaled to action units)."""
    episode_topic: str = "none"
    """The simulator's (or twin's) episode status (std_msgs/String JSON, e.g. /sim/episode): actions of an episode it
    did not announce (nor the next one) are dropped and counted (StepMatcher.announce); none: every episode id is
    taken (the real robot: the base node counts the episodes)."""
    controller_pose_topic: str = "none"
    """Also publish the target pose here (real mode: the tracking controller's target topic,
    residual_ros.franka_interfaces.TRACKING_CONTROLLER); none: off."""
    lab: LabConfig = field(default_factory=LabConfig)
    """Arming, deadman, robot-state gating and speed scale (parameters lab.require_arming, lab.speed_scale, ...)."""
    marker_length_gain: float = 10.0
    """Arrow length per metre of action (10: a 1 cm step draws 10 cm)."""
    marker_lifetime_periods: float = 2.0
    """Arrow lifetime in control periods."""
    diagnostics_period_s: float = 1.0
    """Period of /diagnostics (s)."""

    def __post_init__(self) -> None:
        if not self.lockstep and not 0 < self.residual_deadline_s < self.control_dt:
            raise ValueError(f"residual_deadline_s must be in (0, control_dt = {self.control_dt}) in real time (a "
                             f"missing residual must give the base alone within one period), got "
                             f"{self.residual_deadline_s}")
        if not self.lockstep_residual_wait_s > 0 or not self.base_max_age_s > 0:
            raise ValueError("lockstep_residual_wait_s and base_max_age_s must be > 0")
        if self.lockstep and self.lab.require_arming:
            raise ValueError("lab.require_arming is for a real-time graph (a robot); lockstep simulation has no arming")

    def checkpoint_path(self) -> str:
        if self.checkpoint:
            return self.checkpoint
        return str(default_residual_checkpoint(self.task))

    def residual_manifest(self):
        """The residual checkpoint's manifest (ValueError for another kind of checkpoint)."""
        manifest = read_manifest(self.checkpoint_path())
        if manifest.kind != "residual":
            raise ValueError(f"{self.checkpoint_path()} is a {manifest.kind} checkpoint, not a residual")
        return manifest

    def trained_residual_scale(self) -> tuple[float, ...]:
        """The residual_scale the checkpoint was trained with (its manifest's action_scale)."""
        return tuple(float(v) for v in self.residual_manifest().action_scale)

    def to_arbiter_config(self, trained_scale: tuple[float, ...] | None = None) -> ArbiterConfig:
        """The arbiter's configuration; ``trained_scale`` default: :meth:`trained_residual_scale`; compose_from auto:
        the checkpoint's (its manifest's compose_from). The manifest is read once, and only if needed."""
        manifest = self.residual_manifest() if trained_scale is None or self.compose_from == "auto" else None
        trained = tuple(float(v) for v in manifest.action_scale) if trained_scale is None else trained_scale
        return ArbiterConfig(
            control_dt=self.control_dt, base_stale_periods=self.base_stale_periods,
            freshness=PoseFreshness(timeout_s=self.pose_timeout), stale_pose_policy=self.stale_pose_policy,
            compose_from=manifest.compose_from if self.compose_from == "auto" else self.compose_from,
            track_tolerance=tuple(float(v) for v in self.track_tolerance),
            pipeline=ActionPipeline(
                residual_scale=tuple(tighten_scale(trained, self.residual_scale_fraction)),
                spec=self.action, envelope=self.envelope),
        )
