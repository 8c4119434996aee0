"""SAC with n-step returns and a critic ensemble, for the same bounded residual actor as :mod:`trainer.td3`.

Written to compare with TD3 on equal terms (same critics, n-step buffer, offline data, residual penalty, warm-up):
the policy is a squashed Gaussian ``tanh(m(s) + sigma * eps)`` whose mean network ``m`` is ResidualActor's MLP
(so the deployed, deterministic residual ``tanh(m(s))`` is exactly a ResidualActor and checkpoints do not change)
and whose log-std is a learnt state-independent vector. Target: ret + discount * (min over a random pair of target
critics of Q'(s', a') - alpha * log pi(a'|s')), a' ~ pi(s'). Actor loss: (alpha * log pi - mean ensemble Q) / mean|Q|
+ the residual penalty on the mean action; alpha is tuned to a target entropy.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from residual_learning.networks import CriticEnsemble, ResidualActor

from trainer.td3 import BATCH_KEYS, ActorCriticAgent, ActorCriticConfig

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class SACConfig(ActorCriticConfig):
    init_alpha: float = 0.01
    """Initial entropy temperature."""
    alpha_lr: float = 3e-4
    target_entropy: float | None = None
    """Target entropy of the squashed policy (nats); None: -(action dims)."""
    init_std: float = 0.2
    """Initial policy std in pre-squash units (0.2: TD3's exploration noise)."""
    min_log_std: float = -5.0
    max_log_std: float = 0.0


@dataclass(frozen=True)
class SquashedExploration:
    """SAC's exploration: a sample of the squashed Gaussian policy of std ``std`` around the deterministic actions
    ``u`` = tanh(mean)."""

    std: np.ndarray

    def __call__(self, u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        pre = np.arctanh(np.clip(u, -0.999999, 0.999999)) + self.std * rng.standard_normal(u.shape)
        return np.tanh(pre).astype(np.float32)


class SAC(ActorCriticAgent):
    name = "SAC n-step ensemble"

    def __init__(self, obs_dim: int, act_dim: int, cfg: SACConfig, seed: int = 0):
        torch.manual_seed(seed)
        self.cfg = cfg
        self.act_dim = act_dim
        self.actor = ResidualActor(obs_dim, act_dim, hidden=cfg.hidden)
        self.log_std = torch.nn.Parameter(torch.full((act_dim,), math.log(cfg.init_std)))
        self.log_alpha = torch.nn.Parameter(torch.tensor(math.log(cfg.init_alpha)))
        self.critic = CriticEnsemble(obs_dim, act_dim, num_critics=cfg.num_critics, hidden=cfg.hidden,
                                     layer_norm=cfg.critic_layer_norm)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = torch.optim.Adam([*self.actor.parameters(), self.log_std], lr=cfg.actor_lr, foreach=True)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=cfg.critic_lr, foreach=True)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr)
        self.target_entropy = -float(act_dim) if cfg.target_entropy is None else cfg.target_entropy
        self.updates = 0
        self.gen = torch.Generator().manual_seed(seed)

    def _networks(self) -> list[torch.nn.Module]:
        return [self.actor, self.critic, self.critic_target]

    def _std(self) -> torch.Tensor:
        return self.log_std.clamp(self.cfg.min_log_std, self.cfg.max_log_std).exp()

    def _sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(action in [-1, 1], its log-probability, the deterministic action tanh(mean))."""
        mean = self.actor.mlp(self.actor.normalize(obs))
        std = self._std()
        eps = torch.randn(mean.shape, generator=self.gen)
        pre = mean + std * eps
        act = torch.tanh(pre)
        logp = (-0.5 * eps.pow(2) - torch.log(std) - 0.5 * _LOG_2PI).sum(-1)
        logp = logp - (2.0 * (math.log(2.0) - pre - F.softplus(-2.0 * pre))).sum(-1)  # log(1 - tanh(pre)^2)
        return act, logp, torch.tanh(mean)

    def exploration(self, noise: float) -> SquashedExploration:
        """The exploration of collection with the current std, as a picklable function (``noise`` is TD3's and not
        used: SAC explores with its own learnt std)."""
        with torch.no_grad():
            return SquashedExploration(self._std().numpy().copy())

    def explore(self, u: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
        """A sample of the policy around the deterministic actions ``u`` = tanh(mean) (``noise`` is TD3's and not
        used: SAC explores with its own learnt std)."""
        return self.exploration(noise)(u, rng)

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        cfg = self.cfg
        obs, act, ret, next_obs, discount = (torch.as_tensor(batch[k]) for k in BATCH_KEYS)
        alpha = self.log_alpha.exp().detach()

        with torch.no_grad():
            next_act, next_logp, _ = self._sample(next_obs)
            q_next = self.critic_target(next_obs, next_act)  # (E, B)
            pair = torch.randperm(cfg.num_critics, generator=self.gen)[:2]
            target = ret + discount * (q_next[pair].min(dim=0).values - alpha * next_logp)
        info = {**self._critic_step(obs, act, target), "alpha": alpha.item()}

        if self.updates > cfg.critic_warmup:
            pi, logp, mean_act = self._sample(obs)
            q_pi = self.critic(obs, pi).mean(dim=0)
            actor_loss = (alpha * logp - q_pi).mean() / q_pi.abs().mean().detach().clamp_min(1e-3) + \
                self._actor_penalty(obs, mean_act)
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_opt.step()
            alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
            self.alpha_opt.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_opt.step()
            info.update(actor_loss=actor_loss.item(), residual_abs=mean_act.abs().mean().item(),
                        entropy=-logp.mean().item(), policy_std=self._std().mean().item())
        with torch.no_grad():
            torch._foreach_lerp_(list(self.critic_target.parameters()), list(self.critic.parameters()), cfg.tau)
        return info

    def state_dict(self) -> dict[str, dict]:
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "critic_target": self.critic_target.state_dict(), "actor_opt": self.actor_opt.state_dict(),
                "critic_opt": self.critic_opt.state_dict(), "alpha_opt": self.alpha_opt.state_dict(),
                "scalars": {"log_std": self.log_std.detach().clone(), "log_alpha": self.log_alpha.detach().clone()}}

    def load_state_dict(self, sd: dict[str, dict]) -> None:
        scalars = sd.get("scalars")
        super().load_state_dict({k: v for k, v in sd.items() if k != "scalars"})
        if scalars is not None:
            with torch.no_grad():
                self.log_std.copy_(scalars["log_std"])
                self.log_alpha.copy_(scalars["log_alpha"])
