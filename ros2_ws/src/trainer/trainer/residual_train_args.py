"""`residual-train`'s options (:class:`Args`: every one with its help text, checked before anything runs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from franka_sim.sim import SimBackendName
from residual_core.action import DEFAULT_RESIDUAL_SCALE, residual_bound_problems
from residual_core.tasks import check_task

from trainer.sac import SACConfig
from trainer.td3 import TD3Config


@dataclass
class Args:
    task: str = "cube_lift"
    """Task to train on: one of cube_lift, pick_place, stack_cube, close_drawer, stand_cup_up."""
    out_dir: Path | None = None
    """Output folder (default runs/residual/<task>/seed<seed>)."""
    base_checkpoint: Path | None = None
    """Frozen base policy checkpoint (default: the shipped checkpoints/base/base_policy)."""
    seed: int = 0
    """Seed of everything (envs, networks, noise); a run is deterministic for a seed on one machine."""
    total_steps: int = 60_000
    """Online environment steps (control steps summed over envs)."""
    num_envs: int = 16
    """Parallel simulated envs (physics on all cores)."""
    offline_episodes: int = 64
    """Base-only episodes collected into the offline buffer before training."""
    offline_ratio: float = 0.5
    """Fraction of each batch drawn from the offline base-rollout buffer."""
    warmup_steps: int = 2_000
    """Online env steps before the first update."""
    updates_per_step: float = 0.25
    """Gradient updates per online env step (update-to-data ratio)."""
    buffer_size: int = 500_000
    """Capacity of the online buffer (transitions)."""
    exploration_noise: float = 0.2
    """Std of the Gaussian exploration noise on the actor output (in [-1, 1] units)."""
    n_step: int = 3
    """n of the n-step returns."""
    terminate_on_success: bool = False
    """End training episodes at the first success (terminal, no bootstrap). Off by default: the dense reward
    is positive, so a terminal success would cut off a stream of reward and teach the agent to avoid
    succeeding; instead episodes run to the horizon and the task's success term pays while success holds."""
    success_reward: Literal["max", "task"] = "max"
    """Reward of a step in which the task succeeds: "max" gives the dense reward's upper bound (the success
    state is then never worth less than a shaped near-miss: in pick_place, holding the cube above the target
    earned more than placing and releasing it), "task" keeps the task's own dense reward."""
    reward_scale: float = 0.1
    """Multiplier on the task reward (keeps Q targets O(10-100))."""
    residual_scale: tuple[float, ...] = tuple(DEFAULT_RESIDUAL_SCALE.tolist())
    """Residual bound per action component: actor output in [-1, 1] times this (m, m, m, rad, rad, rad, 1); each
    in [0, the ActionSpec bound of its component] (the checkpoint loaders refuse a wider one)."""
    pose_noise: float = 0.005
    """Training pose noise: sigma ~ U(0, pose_noise) per episode (m)."""
    dropout: float = 0.1
    """Training whole-object pose dropout probability per step."""
    perception_model: Path | None = None
    """A perception model fitted to the camera estimator (``residual-perception fit``; e.g.
    checkpoints/perception/camera.json): the residual sees the object poses as the model says the camera estimator
    would (misses decided by hand occlusion per step, the estimator's measured errors), in training and in the
    validation evaluations, instead of --pose-noise / --dropout (and --eval-pose-noise / --eval-dropout)."""
    base_population: Path | None = None
    """Train against a population of bases instead of one (trainer.base_population: a JSON file of members, each a
    base checkpoint with action noise, bias, chunk length and delay; one member drawn per episode; e.g.
    checkpoints/bases/population.json). Validation plays the same population. Replaces --base-checkpoint."""
    dynamics: Literal["nominal", "train"] = "nominal"
    """Physics of the training episodes: nominal (the sim's model) or train (object mass, friction, arm servo
    stiffness and action latency drawn per episode from franka_sim.dynamics.TRAINING; the validation episodes draw
    from the same ranges). The held-out shifts of ``residual-eval --dynamics`` lie outside these ranges."""
    compose_from: Literal["measured", "target"] = "measured"
    """Where each command is composed from, in training and validation (trainer.closed_loop): measured (the TCP
    measured at the step) or target (the previous target while the arm tracks it within 0.15 m and 0.5 rad, else the
    measured TCP: what an arm that lags its commands needs, e.g. with the action latency of --dynamics train or on the
    real robot; deploy with the arbiter's compose_from: target). Recorded in the checkpoint's manifest."""
    init_actor: Path | None = None
    """Start the actor from this residual checkpoint (e.g. the shipped checkpoints/residual/<task>: a new recipe as a
    fine-tune of a trained residual) instead of zero: same task, layout, --residual-scale and --td3.hidden; its
    observation normalisation is kept. The critics start fresh (their --td3.critic-warmup updates come first); without
    --td3.anchor-penalty (e.g. 2) their errors pull the trained actor off its solution within ~10,000 steps."""
    probe_alpha: float = 0.0
    """Probing (the PLD recipe's specialist training): each training episode starts with the base alone for
    T ~ U[0, probe_alpha * horizon] steps, not stored, then the residual acts, so it learns to recover from states the
    base really reaches (what pld-collect's late takeovers need). 0: the residual acts from the first step."""
    eval_every: int = 10_000
    """Evaluate every this many online env steps (and at the end)."""
    eval_episodes: int = 20
    """Episodes per evaluation (seeded, same every time)."""
    eval_pose_noise: float = 0.005
    """Evaluation pose noise (fixed sigma, m)."""
    eval_dropout: float = 0.1
    """Evaluation pose dropout probability."""
    algo: Literal["td3", "sac"] = "td3"
    """Off-policy algorithm: td3 (the default) or sac (squashed-Gaussian policy with a learnt std and temperature);
    both with the same critics, n-step data and residual penalty, and the deployed residual is a ResidualActor
    either way (SAC's mean). The measured comparison is in docs/RESULTS.md."""
    td3: TD3Config = field(default_factory=TD3Config)
    """TD3 hyper-parameters (used with --algo td3)."""
    sac: SACConfig = field(default_factory=SACConfig)
    """SAC hyper-parameters (used with --algo sac)."""
    resume: bool = False
    """Continue from out_dir/state (networks, optimisers, buffers, counters); envs restart fresh episodes."""
    reset_best: bool = False
    """With --resume: forget the best evaluation so far, so best.* becomes the best of the continued run (needed
    when the evaluation protocol changes on resume, e.g. --eval-episodes: scores of different protocols do not
    compare)."""
    threads: int = 1
    """Torch intra-op threads. 1 is fastest here: the small networks gain nothing from a second thread, and
    with the physics threads busy two torch threads thrash (measured 6 ms vs 400+ ms per update)."""
    backend: SimBackendName = "mujoco"
    """Physics backend of the training and validation envs: mujoco (CPU MuJoCo, float64; the default), warp (MuJoCo
    Warp on --device, float32; `make setup-warp`; its per-step numbers differ from mujoco's in the last digits, so a
    run is reproducible per backend, not across them) or isaaclab (Isaac Lab 3's Newton physics in a worker in its
    own environment, float32; `make isaac-env`)."""
    device: str = "cpu"
    """Device of the warp backend: cpu or cuda:N (the mujoco backend runs on the CPU only)."""
    physics_threads: int = 0
    """MuJoCo threads of the training (and validation) envs; 0: every CPU of the machine. residual-sweep sets it to
    the CPUs Ray gave the trial (0 would use the whole node whatever Ray assigned). Results do not depend on it."""
    round_steps: int | None = None
    """Env steps collected between two rounds of updates (per collector with --collectors; a multiple of
    --num-envs). Default: num_envs * 8 in-process and with --sync (so --collectors 1 --sync reproduces the in-process
    run), else the smallest multiple of num_envs >= 1024 (a Ray call costs ~10 ms: each returns >= 1000
    transitions)."""
    collectors: int = 0
    """Collect in this many Ray actors (each --num-envs envs, the learner stays in this process; needs
    `make setup-ray`); 0: collect in this process, as without Ray."""
    sync: bool = False
    """With --collectors: collect and update in turns, as in-process (deterministic; with one collector the
    weights equal the in-process run's bit for bit); without it the learner updates while the collectors play the
    weights it pushed after its previous round (collection overlaps the updates; not reproducible)."""
    collector_cpus: int = 1
    """With --collectors: CPUs Ray reserves for each collector actor (its MuJoCo threads)."""
    ray_address: str | None = None
    """With --collectors: the Ray cluster to join (e.g. ray://head:10001 or auto); default: start Ray on this
    machine (and stop it at the end)."""

    def __post_init__(self):
        check_task(self.task)
        problems = residual_bound_problems(self.residual_scale)
        if problems:  # the checkpoint loaders would refuse this bound (its manifest action_scale): fail before training
            raise ValueError(f"residual_scale {list(self.residual_scale)} must lie within the action spec: "
                             f"{'; '.join(problems)}")
        if not 0.0 <= self.offline_ratio <= 1.0:
            raise ValueError(f"offline_ratio must be in [0, 1], got {self.offline_ratio}")
        if self.base_population is not None and self.base_checkpoint is not None:
            raise ValueError("--base-population replaces --base-checkpoint: give one of them")
        if self.reset_best and not self.resume:
            raise ValueError("--reset-best only applies with --resume")
        if not 0.0 <= self.probe_alpha <= 1.0:
            raise ValueError(f"probe_alpha must be in [0, 1], got {self.probe_alpha}")
        if self.total_steps < self.num_envs:
            raise ValueError(f"total_steps ({self.total_steps}) < num_envs ({self.num_envs})")
        if self.physics_threads < 0 or self.collectors < 0 or self.collector_cpus < 1:
            raise ValueError(f"need physics_threads >= 0, collectors >= 0, collector_cpus >= 1; got "
                             f"{self.physics_threads}, {self.collectors}, {self.collector_cpus}")
        if self.round_steps is not None and (self.round_steps <= 0 or self.round_steps % self.num_envs):
            raise ValueError(f"round_steps ({self.round_steps}) must be a positive multiple of num_envs "
                             f"({self.num_envs})")
        if (self.sync or self.ray_address is not None) and not self.collectors:
            raise ValueError("--sync and --ray-address apply only with --collectors K (K >= 1)")

    def steps_per_round(self) -> int:
        """Env steps per collection round (per collector): --round-steps, else its documented default."""
        if self.round_steps is not None:
            return self.round_steps
        if not self.collectors or self.sync:
            return self.num_envs * 8
        return -(-1024 // self.num_envs) * self.num_envs
