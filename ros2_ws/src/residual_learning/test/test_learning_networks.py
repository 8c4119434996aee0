import json

import numpy as np
import pytest
import torch
from residual_core.checkpoint import CheckpointCorruptError, KindMismatchError, Manifest, save_checkpoint
from residual_core.observation import layout_for_task
from residual_core.residual_policy import NumpyPolicy, ResidualPolicy
from residual_learning.networks import MLP, CriticEnsemble, ResidualActor, save_residual_checkpoint

LAYOUT = layout_for_task("stack_cube")
SCALE = [0.01, 0.01, 0.01, 0.05, 0.05, 0.05, 1.0]


def trained_like_actor(seed: int = 0, hidden=(32, 32)) -> ResidualActor:
    torch.manual_seed(seed)
    actor = ResidualActor(LAYOUT.size, hidden=hidden)
    with torch.no_grad():
        actor.mlp.linears[-1].weight.normal_(0, 0.3)
        actor.mlp.linears[-1].bias.normal_(0, 0.1)
    rng = np.random.default_rng(seed)
    actor.set_normalization(rng.normal(0, 0.2, LAYOUT.size), rng.uniform(0.05, 1.0, LAYOUT.size))
    return actor


def test_mlp_shapes_and_options():
    mlp = MLP(5, 3, hidden=(8, 4), activation="tanh", layer_norm=True)
    assert mlp(torch.zeros(10, 5)).shape == (10, 3)
    assert [lin.out_features for lin in mlp.linears] == [8, 4, 3]
    assert len(mlp.norms) == 2
    assert MLP(5, 3, hidden=()).linears[0].in_features == 5
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        MLP(5, 3, activation="swish")
    with pytest.raises(ValueError, match=r"hidden\[1\] must be a positive int, got 0"):
        MLP(5, 3, hidden=(4, 0))


def test_actor_starts_at_exactly_zero_and_has_gradients():
    actor = ResidualActor(LAYOUT.size)
    obs = torch.randn(64, LAYOUT.size) * 10
    out = actor(obs)
    assert out.shape == (64, 7) and torch.count_nonzero(out) == 0
    assert torch.count_nonzero(actor.mlp.linears[-1].weight) == 0
    assert torch.count_nonzero(actor.mlp.linears[-1].bias) == 0
    # The zero layer still receives gradient (its input is non-zero), so the actor can learn.
    out.sum().backward()
    assert actor.mlp.linears[-1].weight.grad.abs().sum() > 0


def test_actor_output_bounded_and_normalisation_buffers():
    actor = trained_like_actor()
    out = actor(torch.randn(256, LAYOUT.size) * 100)
    assert out.abs().max() <= 1.0
    names = dict(actor.named_buffers())
    assert set(names) == {"obs_mean", "obs_std"}
    mean, std = actor.set_normalization(np.zeros(LAYOUT.size), np.full(LAYOUT.size, 1e-9))
    assert torch.allclose(std, torch.full_like(std, 1e-3))  # floored
    with pytest.raises(ValueError, match=r"normalization mean must have shape \(57,\)"):
        actor.set_normalization(np.zeros(3), np.ones(LAYOUT.size))
    with pytest.raises(ValueError, match="normalization std must be finite"):
        actor.set_normalization(np.zeros(LAYOUT.size), np.full(LAYOUT.size, np.nan))


def test_actor_normalisation_clips_outliers():
    actor = trained_like_actor()
    x = torch.zeros(1, LAYOUT.size)
    x[0, 0] = 1e6
    assert actor.normalize(x).abs().max() <= actor.obs_clip


def test_numpy_policy_matches_torch():
    actor = trained_like_actor(hidden=(64, 48, 32))
    pol = NumpyPolicy.from_actor(actor)
    obs = np.random.default_rng(1).normal(0, 1, size=(100, LAYOUT.size)).astype(np.float32)
    with torch.no_grad():
        ref = actor(torch.from_numpy(obs)).numpy()
    out = pol(obs)
    assert out.dtype == np.float32 and out.shape == (100, 7)
    np.testing.assert_allclose(out, ref, atol=2e-6)
    np.testing.assert_allclose(pol(obs[3]), ref[3], atol=2e-6)
    with pytest.raises(ValueError, match=r"observation must be \(57,\) or \(N, 57\)"):
        pol(np.zeros(56))
    nan_obs = obs[0].copy()
    nan_obs[5] = np.nan
    assert np.all(np.isnan(pol(nan_obs)))  # NaN passes through to the safety envelope


def test_numpy_policy_rejects_foreign_state_dicts():
    with pytest.raises(ValueError, match="state dict has no 'obs_mean'"):
        NumpyPolicy({"w": np.zeros(1)})
    sd = trained_like_actor().state_dict()
    sd["mlp.linears.1.weight"] = torch.zeros(5, 5)
    with pytest.raises(ValueError, match="do not chain"):
        NumpyPolicy(sd)


def test_critic_ensemble_matches_per_member_loop():
    torch.manual_seed(0)
    critic = CriticEnsemble(LAYOUT.size, 7, num_critics=3, hidden=(32, 16))
    rng = np.random.default_rng(5)
    mean, std = rng.normal(0, 1, LAYOUT.size), rng.uniform(0.1, 2.0, LAYOUT.size)
    critic.set_normalization(mean, std)
    obs, act = torch.randn(20, LAYOUT.size), torch.randn(20, 7)
    q = critic(obs, act)
    assert q.shape == (3, 20)
    # The observation is normalised (and clipped) like the actor's, the action is not.
    norm_obs = ((obs - torch.tensor(mean, dtype=torch.float32)) / torch.tensor(std, dtype=torch.float32)).clamp(-10, 10)
    x = torch.cat([norm_obs, act], -1)
    for c in range(3):
        h = x
        for i, (w, b) in enumerate(zip(critic.weights, critic.biases, strict=True)):
            h = h @ w[c] + b[c, 0]
            if i < len(critic.weights) - 1:
                h = torch.relu(h)
        torch.testing.assert_close(q[c], h[:, 0], rtol=1e-5, atol=1e-5)
    # Members are initialised independently and all receive gradients.
    assert not torch.allclose(q[0], q[1])
    q.sum().backward()
    assert all(w.grad is not None and w.grad[c].abs().sum() > 0 for w in critic.weights for c in range(3))


def test_critic_layer_norm_and_errors():
    critic = CriticEnsemble(10, 7, num_critics=2, hidden=(16,), layer_norm=True)
    assert critic(torch.randn(4, 10), torch.randn(4, 7)).shape == (2, 4)
    assert critic.init_kwargs["layer_norm"] is True
    assert set(dict(critic.named_buffers())) == {"obs_mean", "obs_std"}
    rebuilt = CriticEnsemble(**critic.init_kwargs)
    rebuilt.load_state_dict(critic.state_dict())
    obs, act = torch.randn(4, 10), torch.randn(4, 7)
    torch.testing.assert_close(rebuilt(obs, act), critic(obs, act))
    with pytest.raises(ValueError, match="equal B"):
        critic(torch.randn(4, 10), torch.randn(3, 7))


def test_residual_checkpoint_round_trip(tmp_path):
    actor = trained_like_actor()
    path = save_residual_checkpoint(
        tmp_path / "res", actor, LAYOUT, "stack_cube", SCALE, {"algo": "td3"}, 50_000, {"success_rate": 0.8}
    )
    policy = ResidualPolicy.from_checkpoint(path, expected_task="stack_cube", expected_layout=LAYOUT)
    assert policy.task == "stack_cube" and policy.layout == LAYOUT and policy.obs_dim == LAYOUT.size
    assert policy.manifest.network == {"class": "ResidualActor", "kwargs": actor.init_kwargs}
    obs = np.random.default_rng(2).normal(size=(8, LAYOUT.size)).astype(np.float32)
    with torch.no_grad():
        ref = actor(torch.from_numpy(obs)).numpy() * np.array(SCALE)
    np.testing.assert_allclose(policy(obs), ref, atol=1e-6)
    single = policy(obs[0])
    assert single.shape == (7,)
    assert np.all(np.abs(single) <= np.array(SCALE))
    # A fresh (zero-initialised) actor saved and loaded gives exactly zero residual.
    save_residual_checkpoint(tmp_path / "zero", ResidualActor(LAYOUT.size), LAYOUT, "stack_cube", SCALE, {}, 0, {})
    assert np.all(ResidualPolicy.from_checkpoint(tmp_path / "zero")(obs) == 0.0)


def test_residual_checkpoint_writer_validates(tmp_path):
    actor = trained_like_actor()
    with pytest.raises(ValueError, match="layout has 44 values but the actor takes obs_dim=57"):
        save_residual_checkpoint(tmp_path / "r", actor, layout_for_task("cube_lift"), "cube_lift", SCALE, {}, 0, {})
    with pytest.raises(ValueError, match="action_scale has 6 values"):
        save_residual_checkpoint(tmp_path / "r", actor, LAYOUT, "stack_cube", SCALE[:6], {}, 0, {})
    with pytest.raises(ValueError, match="unknown task"):
        save_residual_checkpoint(tmp_path / "r", actor, LAYOUT, "stack", SCALE, {}, 0, {})


def test_residual_policy_refuses_base_and_inconsistent_checkpoints(tmp_path):
    base = save_checkpoint(tmp_path / "base", {"w": torch.zeros(1)}, Manifest(kind="base", task="all"))
    with pytest.raises(KindMismatchError):
        ResidualPolicy.from_checkpoint(base)
    path = save_residual_checkpoint(tmp_path / "r", trained_like_actor(), LAYOUT, "stack_cube", SCALE, {}, 0, {})
    manifest_path = path.with_suffix(".json")
    data = json.loads(manifest_path.read_text())
    data["normalization"]["obs_std"][0] += 1.0
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(CheckpointCorruptError, match=r"normalization\['obs_std'\] != weights' obs_std"):
        ResidualPolicy.from_checkpoint(path)
    data["network"]["class"] = "MLP"
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(CheckpointCorruptError, match="network must be a ResidualActor"):
        ResidualPolicy.from_checkpoint(path)
