"""TD3's update: the critics' targets follow the critics from the first update (the warm-up included), the actor and
its target stay put until the warm-up is over, every ``policy_delay`` updates."""

import numpy as np
import torch
from trainer.td3 import TD3, TD3Config


def _batch(rng: np.random.Generator, n: int = 32) -> dict[str, np.ndarray]:
    f32 = np.float32
    return {"obs": rng.normal(size=(n, 6)).astype(f32), "act": rng.uniform(-1, 1, (n, 3)).astype(f32),
            "ret": rng.normal(size=n).astype(f32), "next_obs": rng.normal(size=(n, 6)).astype(f32),
            "discount": np.full(n, 0.97, f32)}


def _flat(net: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def test_critic_targets_follow_during_the_warmup_and_the_actor_waits():
    agent = TD3(6, 3, TD3Config(hidden=(16, 16), batch_size=32, critic_warmup=10, policy_delay=2, tau=0.1), seed=0)
    torch.nn.init.normal_(agent.actor.mlp.linears[-1].weight, std=0.5)  # a trained actor's nonzero output
    agent.actor_target.load_state_dict(agent.actor.state_dict())
    rng = np.random.default_rng(0)
    actor0, critic_target0 = _flat(agent.actor), _flat(agent.critic_target)
    for _ in range(10):  # the warm-up: critic-only updates
        info = agent.update(_batch(rng))
        assert "actor_loss" not in info
    assert torch.equal(_flat(agent.actor), actor0) and torch.equal(_flat(agent.actor_target), actor0)
    moved = _flat(agent.critic_target) - critic_target0
    assert moved.abs().max() > 1e-4, "the critic targets stayed at their initialisation through the warm-up"
    # 5 Polyak steps (every policy_delay = 2 updates) towards the critics: the target is between start and critic
    left = (_flat(agent.critic) - _flat(agent.critic_target)).norm() / (_flat(agent.critic) - critic_target0).norm()
    assert 0.3 < left < 0.95, left
    infos = [agent.update(_batch(rng)) for _ in range(4)]
    assert [("actor_loss" in i) for i in infos] == [False, True, False, True]  # updates 11-14: delay 2
    assert not torch.equal(_flat(agent.actor), actor0) and not torch.equal(_flat(agent.actor_target), actor0)


def _drift(cls, cfg_cls, anchor_penalty: float) -> float:
    """Mean |actor - initial actor| on held-out observations after 300 updates from a nonzero (trained) actor."""
    cfg = cfg_cls(hidden=(16, 16), batch_size=32, critic_warmup=0, residual_penalty=0.0, anchor_penalty=anchor_penalty)
    agent = cls(6, 3, cfg, seed=0)
    torch.nn.init.normal_(agent.actor.mlp.linears[-1].weight, std=0.5)
    if hasattr(agent, "actor_target"):
        agent.actor_target.load_state_dict(agent.actor.state_dict())
    agent.set_anchor()
    agent.set_normalization(np.zeros(6), np.ones(6))
    probe = torch.as_tensor(np.random.default_rng(1).normal(size=(256, 6)).astype(np.float32))
    with torch.no_grad():
        start = agent.actor(probe).clone()
    rng = np.random.default_rng(0)
    for _ in range(300):
        agent.update(_batch(rng))
    with torch.no_grad():
        assert torch.equal(agent.anchor(probe), start), "the anchor moved"
        return (agent.actor(probe) - start).abs().mean().item()


def test_anchor_penalty_keeps_a_fine_tuned_actor_near_its_start():
    """anchor_penalty (fine-tuning): the actor loss pulls towards the initial actor's output, so fresh critics move
    it far less than without; the anchor itself stays frozen. For TD3 and SAC (its deterministic output)."""
    from trainer.sac import SAC, SACConfig

    for cls, cfg_cls in ((TD3, TD3Config), (SAC, SACConfig)):
        free, anchored = _drift(cls, cfg_cls, 0.0), _drift(cls, cfg_cls, 50.0)
        assert free > 0.02, (cls.name, free)
        assert anchored < 0.35 * free, (cls.name, free, anchored)


def test_anchor_penalty_needs_an_anchor_and_is_not_negative():
    import pytest

    with pytest.raises(ValueError, match="anchor_penalty"):
        TD3Config(anchor_penalty=-1.0)
    agent = TD3(6, 3, TD3Config(hidden=(16, 16), batch_size=32, critic_warmup=0, policy_delay=1, anchor_penalty=1.0))
    with pytest.raises(RuntimeError, match="set_anchor"):
        agent.update(_batch(np.random.default_rng(0)))
