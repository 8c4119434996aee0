"""SAC's squashed-Gaussian policy: its log-probability is the change-of-variables density, its deterministic action
is the ResidualActor's output, and updates move the networks."""

import numpy as np
import torch
from torch.distributions import Normal, TransformedDistribution
from torch.distributions.transforms import TanhTransform
from trainer.sac import SAC, SACConfig


def _agent(**kw) -> SAC:
    agent = SAC(6, 3, SACConfig(hidden=(16, 16), batch_size=8, critic_warmup=0, **kw), seed=0)
    torch.nn.init.normal_(agent.actor.mlp.linears[-1].weight, std=0.5)  # a nonzero mean
    return agent


def test_log_prob_matches_torch_tanh_normal():
    agent = _agent(init_std=0.3)
    obs = torch.randn(5, 6)
    act, logp, mean_act = agent._sample(obs)
    mean = agent.actor.mlp(agent.actor.normalize(obs))
    dist = TransformedDistribution(Normal(mean, torch.full_like(mean, 0.3)), [TanhTransform()])
    pre = torch.atanh(act.clamp(-1 + 1e-6, 1 - 1e-6))
    ref = (Normal(mean, 0.3).log_prob(pre) - TanhTransform().log_abs_det_jacobian(pre, act)).sum(-1)
    assert torch.allclose(logp, ref, atol=1e-4), (logp, ref)
    assert torch.allclose(logp, dist.log_prob(act).sum(-1), atol=1e-2)  # torch's inverse of tanh is less exact
    assert torch.allclose(mean_act, agent.actor(obs))


def test_explore_samples_around_the_deterministic_action_with_the_policy_std():
    agent = _agent(init_std=0.1)
    u = np.full((20000, 3), 0.2, np.float32)
    x = np.arctanh(agent.explore(u, np.random.default_rng(0), noise=0.0))
    assert abs(x.mean() - np.arctanh(0.2)) < 0.01 and abs(x.std() - 0.1) < 0.01


def test_update_trains_the_critic_actor_std_and_temperature():
    agent = _agent()
    rng = np.random.default_rng(0)
    f32 = np.float32
    batch = {"obs": rng.standard_normal((8, 6)).astype(f32), "act": rng.uniform(-1, 1, (8, 3)).astype(f32),
             "ret": rng.standard_normal(8).astype(f32), "next_obs": rng.standard_normal((8, 6)).astype(f32),
             "discount": np.full(8, 0.97, f32)}
    before = {k: v.detach().clone() for k, v in [("std", agent.log_std), ("alpha", agent.log_alpha),
                                                 ("actor", agent.actor.mlp.linears[0].weight),
                                                 ("critic", next(agent.critic.parameters()))]}
    info = agent.update(batch)
    assert {"critic_loss", "actor_loss", "alpha", "entropy", "policy_std"} <= info.keys()
    after = {"std": agent.log_std, "alpha": agent.log_alpha, "actor": agent.actor.mlp.linears[0].weight,
             "critic": next(agent.critic.parameters())}
    for k in before:
        assert not torch.equal(before[k], after[k].detach()), k
    clone = _agent()
    clone.load_state_dict(agent.state_dict())
    assert torch.equal(clone.log_std, agent.log_std) and torch.equal(clone.log_alpha, agent.log_alpha)
