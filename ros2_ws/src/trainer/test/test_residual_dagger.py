"""residual-dagger: the expert's correction as a label, and a tiny run end to end on the real simulator."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from residual_core.checkpoint import read_manifest
from residual_core.observation import layout_for_task
from residual_core.residual_policy import ResidualPolicy
from trainer.residual_dagger import Args, expert_label

BIN = Path(sys.executable).parent


def test_the_label_is_the_clipped_correction_in_units_of_the_bound():
    scale = np.array([0.01, 0.01, 0.01, 0.05, 0.05, 0.05, 0.0])
    base = np.array([[0.02, 0.0, -0.005, 0.1, 0.0, 0.0, 1.0]])
    expert = np.array([[0.0, 0.004, -0.005, 0.125, -0.3, 0.0, -1.0]])
    u = expert_label(expert, base, scale)
    # x: -0.02 is twice the bound -> -1; y: 0.004 / 0.01; z: no correction; rx: 0.025 / 0.05; ry: clipped; the
    # gripper's bound is 0, so no correction there whatever the expert says
    np.testing.assert_allclose(u, [[-1.0, 0.4, 0.0, 0.5, -1.0, 0.0, 0.0]])
    # base + u * scale moves the command towards the expert's: exactly onto it where the bound allows
    composed = base + u * scale
    np.testing.assert_allclose(composed[0, 1:4], expert[0, 1:4])
    assert abs(composed[0, 0] - expert[0, 0]) < abs(base[0, 0] - expert[0, 0])


@pytest.mark.parametrize("bad", [{"beta": 1.5}, {"iterations": 0}, {"noise": -0.1}, {"perception_mix": 1.5},
                                 {"residual_scale": (0.5,) * 7}, {"expert": "reactive"}, {"eval_iid_fraction": 0.5},
                                 {"eval_iid_fraction": 1.5, "perception_model": Path("camera.json")},
                                 {"task": "stand_cup_up", "expert": "reactive", "expert_stall_steps": 3}])
def test_bad_options_are_refused_before_anything_runs(bad):
    with pytest.raises(ValueError):
        Args(**bad)


def test_a_tiny_run_writes_a_residual_that_imitates_the_expert(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [str(BIN / "residual-dagger"), "--task", "cube_lift", "--iterations", "2", "--episodes-per-iteration", "8",
           "--num-envs", "4", "--eval-episodes", "4", "--min-updates", "300", "--hidden", "64", "64",
           "--noise", "0.3", "--out-dir", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    rows = (out / "eval.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and summary["best_iteration"] in (0, 1)
    for name in ("best", "last"):
        policy = ResidualPolicy.from_checkpoint(out / name, expected_task="cube_lift",
                                                expected_layout=layout_for_task("cube_lift"))
        assert policy.manifest.training["algorithm"] == "dagger"
    man = read_manifest(out / "last")
    assert man.training["perception"]["kind"] == "pose_noise_dropout" and man.training["dynamics"]["kind"] == "nominal"
    assert man.steps == man.training["samples"] > 0
    # the bounded expert's first iteration succeeds (the data is worth imitating), and the fit learnt something:
    # its loss is below the loss of predicting no correction at all on the same data (what a zero actor scores)
    first = dict(zip(rows[0].split(","), rows[1].split(","), strict=True))
    assert float(first["rollout_success_rate"]) >= 0.75
    assert float(first["loss"]) < float(first["zero_loss"])


def test_a_reactive_expert_run_records_its_expert_and_mixed_validation(tmp_path):
    """stand_cup_up with its memory-free expert, the perception model and half the validation episodes through i.i.d.
    noise: the manifest names the expert and the validation protocol, and the validation counts both halves."""
    out = tmp_path / "run"
    repo = Path(__file__).resolve().parents[4]
    cmd = [str(BIN / "residual-dagger"), "--task", "stand_cup_up", "--expert", "reactive", "--iterations", "1",
           "--episodes-per-iteration", "4", "--num-envs", "4", "--eval-episodes", "4", "--min-updates", "50",
           "--hidden", "32", "32", "--perception-model", str(repo / "checkpoints/perception/camera.json"),
           "--eval-iid-fraction", "0.5", "--out-dir", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    man = read_manifest(out / "last")
    assert man.training["expert"]["kind"] == "reactive"
    assert man.training["expert"]["class"] == "StandCupUpReactive"
    evaluation = json.loads((out / "last.json").read_text())["evaluation"]
    assert evaluation["protocol"]["iid_fraction"] == 0.5 and evaluation["episodes"] == 4
    assert evaluation["iid_successes"] + evaluation["model_successes"] == evaluation["successes"]
    row = dict(zip(*[line.split(",") for line in (out / "eval.csv").read_text().strip().splitlines()], strict=True))
    assert int(row["episodes"]) == 4
