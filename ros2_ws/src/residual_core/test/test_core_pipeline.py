"""The one action pipeline (compose with the trained bound -> action bounds -> envelope) and run-time presence."""

from __future__ import annotations

import numpy as np
import pytest
from residual_core.action import DEFAULT_RESIDUAL_SCALE, ActionSpec, compose_scaled_action
from residual_core.observation import PoseFreshness, absent_reasons, present_mask
from residual_core.pipeline import ActionPipeline, GripperMemory, tighten_scale
from residual_core.safety import EnvelopeConfig, apply_envelope, apply_envelope_batch
from scipy.spatial.transform import Rotation

DOWN = Rotation.from_euler("x", np.pi).as_quat()


def _random_rows(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    base = rng.normal(scale=[0.03] * 3 + [0.15] * 3 + [0.6], size=(n, 7))
    res = rng.normal(scale=[0.02] * 3 + [0.08] * 3 + [0.8], size=(n, 7))
    tcp = rng.uniform([0.2, -0.5, -0.02], [0.85, 0.5, 0.65], size=(n, 3))
    quat = Rotation.random(n, random_state=seed).as_quat()
    grip = rng.uniform(0, 1, size=n)
    base[::17, 2] = np.nan          # NaN base rows: rejected, held
    res[::13, 4] = np.inf           # non-finite residuals
    tcp[::29, 0] = np.nan           # invalid TCP: no target
    quat[::31] = 0.0                # zero quaternion: no target
    quat[::37] *= 1e200             # finite but huge: must not overflow
    return base, res, tcp, quat, grip


def test_batch_rows_equal_single_steps():
    pipe = ActionPipeline(residual_scale=(0.01, 0.01, 0.01, 0.05, 0.05, 0.05, 0.2))
    base, res, tcp, quat, grip = _random_rows(300)
    batch = pipe.step_batch(base, res, tcp, quat, grip)
    for i in range(len(base)):
        one = pipe.step(base[i], res[i], tcp[i], quat[i], grip[i])
        np.testing.assert_array_equal(batch.actions[i], one.action)
        assert batch.reasons[i] == one.reasons and bool(batch.rejected[i]) == one.rejected
        if one.target_pos is None:
            assert not batch.has_target[i] and np.all(np.isnan(batch.target_pos[i]))
        else:
            np.testing.assert_array_equal(batch.target_pos[i], one.target_pos)
    assert not batch.has_target[::29].any() and batch.rejected[::17].all()
    assert np.all(np.isfinite(batch.actions))  # NaN never leaves the pipeline


def test_pipeline_is_compose_then_envelope():
    """Exactly the composition of residual_core.action followed by residual_core.safety's envelope."""
    scale = np.array([0.01, 0.01, 0.01, 0.05, 0.05, 0.05, 0.2])
    pipe = ActionPipeline(residual_scale=tuple(scale))
    base, res, tcp, quat, grip = _random_rows(200, seed=3)
    for i in range(len(base)):
        if not (np.all(np.isfinite(base[i])) and np.all(np.isfinite(tcp[i]))) or np.linalg.norm(quat[i]) == 0:
            continue
        comp = compose_scaled_action(base[i], res[i], scale, ActionSpec())
        q = quat[i] / np.max(np.abs(quat[i]))  # the huge-but-finite rows, scaled as the pipeline does
        env = apply_envelope(comp.action, tcp[i], q / np.linalg.norm(q), grip[i], EnvelopeConfig())
        out = pipe.step(base[i], res[i], tcp[i], quat[i], grip[i])
        np.testing.assert_allclose(out.action, env.action, atol=1e-12)
        assert out.reasons == (("action_bounds",) if comp.clipped else ()) + env.reasons


def test_residual_bound_and_envelope_both_apply():
    pipe = ActionPipeline(residual_scale=(0.01,) * 3 + (0.05,) * 3 + (0.2,))
    base = np.array([0.05, 0.05, 0.0, 0.0, 0.0, 0.0, 0.5])     # per-axis within the spec, 7.1 cm in norm
    out = pipe.step(base, np.array([0.5, 0, 0, 0, 0, 0, 0.9]), np.array([0.5, 0.0, 0.3]), DOWN, 0.0)
    assert out.residual[0] == pytest.approx(0.01) and out.residual[6] == pytest.approx(0.2)
    assert "action_bounds" in out.reasons and "translation_step" in out.reasons
    assert np.linalg.norm(out.action[:3]) == pytest.approx(0.05) and out.gripper == pytest.approx(0.7)
    # the base alone goes through the same bounds and envelope
    alone = pipe.step(base, None, np.array([0.5, 0.0, 0.3]), DOWN, 0.0)
    assert np.linalg.norm(alone.action[:3]) == pytest.approx(0.05) and not alone.residual.any()


def test_tighten_scale_only_tightens():
    trained = (0.01, 0.01, 0.01, 0.05, 0.05, 0.05, 0.2)
    np.testing.assert_allclose(tighten_scale(trained), trained)
    np.testing.assert_allclose(tighten_scale(trained, (0.5,) * 6 + (0.0,)), [0.005] * 3 + [0.025] * 3 + [0.0])
    with pytest.raises(ValueError, match="gripper 1.5"):
        tighten_scale(trained, (1.0,) * 6 + (1.5,))
    with pytest.raises(ValueError, match="7 values"):
        tighten_scale(trained, (1.0,) * 6)
    with pytest.raises(ValueError, match="residual_scale"):
        tighten_scale((0.01,) * 6 + (np.nan,))
    with pytest.raises(ValueError, match="residual_scale"):
        ActionPipeline(residual_scale=tuple(-DEFAULT_RESIDUAL_SCALE))


def test_envelope_batch_rejects_bad_shapes_and_gripper():
    with pytest.raises(ValueError, match="need actions"):
        apply_envelope_batch(np.zeros((2, 7)), np.zeros((3, 3)), np.zeros((2, 4)), np.zeros(2))
    with pytest.raises(ValueError, match="last_gripper"):
        apply_envelope_batch(np.zeros((1, 7)), np.zeros((1, 3)), np.array([DOWN]), np.array([np.nan]))


def test_gripper_memory_holds_last_commanded():
    pipe = ActionPipeline()
    mem = GripperMemory(3)
    out = pipe.step_batch(np.array([[0, 0, 0, 0, 0, 0, 0.8]] * 3), None, np.tile([0.5, 0, 0.3], (3, 1)),
                          np.tile(DOWN, (3, 1)), mem.value)
    mem.update(out)
    np.testing.assert_allclose(mem.value, 0.8)
    nan_rows = pipe.step_batch(np.full((3, 7), np.nan), None, np.tile([0.5, 0, 0.3], (3, 1)), np.tile(DOWN, (3, 1)),
                               mem.value)
    np.testing.assert_allclose(nan_rows.actions[:, 6], 0.8)  # rejected: hold the last gripper
    mem.reset([1])
    np.testing.assert_allclose(mem.value, [0.8, 0.0, 0.8])


def test_absent_reasons_one_definition():
    f = PoseFreshness(timeout_s=0.25, min_confidence=0.5)
    pos = np.zeros((6, 3))
    quat = np.tile([0, 0, 0, 1.0], (6, 1))
    quat[1] = 0.0
    arrived = np.array([1, 1, 1, 1, 0, 1], bool)
    conf = np.array([1.0, 1.0, 0.49, 0.9, 1.0, 0.5])
    age = np.array([0.0, 0.0, 0.1, 0.3, 0.0, -0.01])
    assert absent_reasons(pos, quat, arrived, conf, age, f).tolist() == [
        "", "invalid", "low_confidence", "stale", "missing", "stale"]
    assert present_mask(pos, quat, arrived, conf, age, f).tolist() == [True, False, False, False, False, False]
    # training's perception model: a dropout is a pose that never arrived; everything else is present
    assert present_mask(pos[[0]], quat[[0]], [True]).tolist() == [True]
    with pytest.raises(ValueError, match="min_confidence"):
        PoseFreshness(min_confidence=1.5)
