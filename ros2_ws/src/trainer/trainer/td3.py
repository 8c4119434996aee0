"""TD3 with n-step returns and a critic ensemble, for a bounded residual actor (tanh output in [-1, 1]).

The actor is residual_core's ResidualActor (last layer zero-initialised: training starts from the base's
own behaviour). Target: ret + discount * min over a random pair of target critics of
Q'(s', clip(pi'(s') + clipped noise)). Actor loss: -mean ensemble Q(s, pi(s)) / mean|Q| + an L2 penalty on
the residual (TD3+BC's form with "no correction" as the behaviour action), which keeps the residual small
where the base is already right.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from residual_learning.networks import CriticEnsemble, ResidualActor


@dataclass
class ActorCriticConfig:
    """What TD3 and SAC (:mod:`trainer.sac`) share."""

    gamma: float = 0.99
    """Discount per control step."""
    tau: float = 0.005
    """Polyak factor of the target networks."""
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    batch_size: int = 256
    num_critics: int = 2
    """Critic ensemble size; targets use the min of a random pair."""
    hidden: tuple[int, ...] = (256, 256)
    critic_layer_norm: bool = True
    """LayerNorm in the critics' hidden layers (keeps Q estimates from diverging on offline + online data)."""
    residual_penalty: float = 0.2
    """Weight of the mean squared actor output in the actor loss, against a Q term normalised by its mean
    magnitude (as TD3+BC does, with the behaviour action being 'no correction'): the residual stays small
    unless the critic clearly prefers a correction."""
    critic_warmup: int = 1000
    """Critic-only updates before the actor starts learning (the zero-initialised actor keeps reproducing
    the base until the critic has learnt something)."""
    anchor_penalty: float = 0.0
    """Fine-tuning (``--init-actor``): weight of the mean squared distance between the actor's output and the
    initial actor's output on the same observations, in the actor loss (a trust region around the trained
    residual: a fresh critic's errors cannot pull it far). 0 turns it off; needs an initial actor."""

    def __post_init__(self):
        if self.num_critics < 2:
            raise ValueError(f"num_critics must be >= 2 for the clipped double-Q target, got {self.num_critics}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if self.anchor_penalty < 0.0:
            raise ValueError(f"anchor_penalty must be >= 0, got {self.anchor_penalty}")


@dataclass
class TD3Config(ActorCriticConfig):
    policy_delay: int = 2
    """Actor and target updates once every this many critic updates."""
    target_noise: float = 0.2
    """Std of the target-policy smoothing noise (in the actor's [-1, 1] units)."""
    target_noise_clip: float = 0.5


BATCH_KEYS = ("obs", "act", "ret", "next_obs", "discount")
"""A replay batch's arrays, in the order the agents' updates unpack them."""


@dataclass(frozen=True)
class GaussianExploration:
    """TD3's exploration: Gaussian noise of std ``noise`` on the actor output, clipped to [-1, 1]."""

    noise: float

    def __call__(self, u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.noise <= 0:
            return u
        return np.clip(u + rng.normal(0.0, self.noise, u.shape), -1.0, 1.0).astype(np.float32)


class ActorCriticAgent:
    """What TD3 and SAC share: a ResidualActor ``actor``, a CriticEnsemble ``critic`` and its optimiser."""

    cfg: ActorCriticConfig
    actor: ResidualActor
    critic: CriticEnsemble
    critic_opt: torch.optim.Optimizer
    updates: int
    anchor: ResidualActor | None = None
    """A frozen copy of the initial actor (:meth:`set_anchor`), which ``anchor_penalty`` keeps the actor near."""

    def set_anchor(self) -> None:
        """Freeze a copy of the current actor as the anchor of ``anchor_penalty`` (call after loading it)."""
        self.anchor = copy.deepcopy(self.actor).requires_grad_(False)

    def _networks(self) -> list[torch.nn.Module]:
        """Every network that reads observations (their normalisation is shared)."""
        raise NotImplementedError

    def set_normalization(self, mean: np.ndarray, std: np.ndarray) -> None:
        for net in self._networks() + ([] if self.anchor is None else [self.anchor]):
            net.set_normalization(mean, std)

    def _actor_penalty(self, obs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """The actor loss's regularisers of the deterministic output ``u``: towards no correction
        (``residual_penalty``) and towards the anchor's output (``anchor_penalty``)."""
        cfg = self.cfg
        pen = cfg.residual_penalty * u.pow(2).mean()
        if cfg.anchor_penalty > 0.0:
            if self.anchor is None:
                raise RuntimeError("anchor_penalty > 0 needs an anchor: set_anchor() after loading the initial actor")
            with torch.no_grad():
                u0 = self.anchor(obs)
            pen = pen + cfg.anchor_penalty * (u - u0).pow(2).mean()
        return pen

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """The deterministic residual (what a checkpoint deploys)."""
        return self.actor(torch.as_tensor(obs, dtype=torch.float32)).numpy()

    def _critic_step(self, obs: torch.Tensor, act: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """One regression step of every critic onto ``target``; counts the update."""
        q = self.critic(obs, act)
        critic_loss = F.mse_loss(q, target.expand_as(q))
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        self.updates += 1
        return {"critic_loss": critic_loss.item(), "q_mean": q.mean().item()}

    def load_state_dict(self, sd: dict[str, dict]) -> None:
        for key, value in sd.items():
            getattr(self, key).load_state_dict(value)

    def config_dict(self) -> dict:
        d = asdict(self.cfg)
        d["hidden"] = list(self.cfg.hidden)
        return d


class TD3(ActorCriticAgent):
    name = "TD3 n-step ensemble"

    def __init__(self, obs_dim: int, act_dim: int, cfg: TD3Config, seed: int = 0):
        torch.manual_seed(seed)
        self.cfg = cfg
        self.actor = ResidualActor(obs_dim, act_dim, hidden=cfg.hidden)
        self.critic = CriticEnsemble(obs_dim, act_dim, num_critics=cfg.num_critics, hidden=cfg.hidden,
                                     layer_norm=cfg.critic_layer_norm)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.actor_lr, foreach=True)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr, foreach=True)
        self.updates = 0
        self.gen = torch.Generator().manual_seed(seed)

    def _networks(self) -> list[torch.nn.Module]:
        return [self.actor, self.actor_target, self.critic, self.critic_target]

    def exploration(self, noise: float) -> GaussianExploration:
        """The exploration of collection with the current networks, as a picklable function (for trainer.collector)."""
        return GaussianExploration(noise)

    def explore(self, u: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
        """Exploration during collection: Gaussian noise of std ``noise`` on the actor output, clipped to [-1, 1]."""
        return self.exploration(noise)(u, rng)

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        cfg = self.cfg
        obs, act, ret, next_obs, discount = (torch.as_tensor(batch[k]) for k in BATCH_KEYS)

        with torch.no_grad():
            noise = (torch.randn(act.shape, generator=self.gen) * cfg.target_noise).clamp(
                -cfg.target_noise_clip, cfg.target_noise_clip)
            next_act = (self.actor_target(next_obs) + noise).clamp(-1.0, 1.0)
            q_next = self.critic_target(next_obs, next_act)  # (E, B)
            pair = torch.randperm(cfg.num_critics, generator=self.gen)[:2]
            target = ret + discount * q_next[pair].min(dim=0).values
        info = self._critic_step(obs, act, target)

        if self.updates % cfg.policy_delay:
            return info
        if self.updates > cfg.critic_warmup:
            pi = self.actor(obs)
            q_pi = self.critic(obs, pi).mean(dim=0)
            actor_loss = -q_pi.mean() / q_pi.abs().mean().detach().clamp_min(1e-3) + self._actor_penalty(obs, pi)
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_opt.step()
            with torch.no_grad():
                torch._foreach_lerp_(list(self.actor_target.parameters()), list(self.actor.parameters()), cfg.tau)
            info.update(actor_loss=actor_loss.item(), residual_abs=pi.abs().mean().item())
        # The critics' targets follow them during the warm-up too (until 2026-12-04 they moved only with the actor,
        # so the warm-up's critics bootstrapped from their random initialisation: a fine-tune's trained actor then
        # met critics fitted to noise; see docs/RESULTS.md, the flywheel's second round).
        with torch.no_grad():
            torch._foreach_lerp_(list(self.critic_target.parameters()), list(self.critic.parameters()), cfg.tau)
        return info

    def state_dict(self) -> dict[str, dict]:
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "actor_target": self.actor_target.state_dict(), "critic_target": self.critic_target.state_dict(),
                "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict()}
