"""Pipeline tests (not quality tests): tiny base-train, residual-train and residual-eval runs as subprocesses.

They check that the CLIs run end to end on the real simulator, write what they promise, resume, are
deterministic for a seed, and refuse bad checkpoints with clear errors.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from residual_core.checkpoint import load_checkpoint, read_manifest
from residual_core.observation import layout_for_task, make_layout
from residual_learning.base_policy import BasePolicy
from residual_learning.networks import ResidualActor, save_residual_checkpoint

BIN = Path(sys.executable).parent


def tiny(total_steps: int = 192) -> list[str]:
    return ["--total-steps", str(total_steps), "--num-envs", "4", "--offline-episodes", "4", "--warmup-steps", "64",
            "--eval-every", "96", "--eval-episodes", "2", "--td3.batch-size", "64", "--td3.hidden", "64", "64"]


def run(cmd, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([str(BIN / cmd[0]), *cmd[1:]], capture_output=True, text=True, env=env, timeout=600, **kw)


@pytest.fixture(scope="module")
def base_ckpt(tmp_path_factory) -> Path:
    """A tiny base policy trained by base-train (2 demos per task, 2 epochs)."""
    out = tmp_path_factory.mktemp("base") / "base"
    r = run(["base-train", "--out", str(out), "--demos-per-task", "2", "--epochs", "2", "--eval-episodes", "0",
             "--hidden", "64", "64", "--workers", "1"])
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory, base_ckpt) -> Path:
    out = tmp_path_factory.mktemp("residual") / "run"
    r = run(["residual-train", "--task", "cube_lift", "--base-checkpoint", str(base_ckpt), "--out-dir", str(out),
             *tiny()])
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_base_train_writes_a_loadable_chunking_policy(base_ckpt):
    policy = BasePolicy.from_checkpoint(base_ckpt)
    man = read_manifest(base_ckpt)
    assert man.kind == "base" and man.task == "all"
    assert policy.execute_steps == man.training["execute_steps"]
    assert set(man.training["demo_stats"]["per_task"]) == {"cube_lift", "pick_place", "stack_cube", "close_drawer",
                                                           "stand_cup_up"}
    chunk = policy.predict_chunk(np.zeros(policy.net.feature_dim, np.float32))
    assert chunk.shape == (policy.net.horizon, 7) and np.isfinite(chunk).all()
    assert set(np.unique(chunk[:, 6])) <= {0.0, 1.0}


def test_residual_train_writes_checkpoints_logs_and_curve(trained):
    for name in ("best.safetensors", "best.json", "last.safetensors", "metrics.csv", "eval.csv",
                 "learning_curve.png", "summary.json"):
        assert (trained / name).is_file(), name
    assert any((trained / "tb").iterdir())
    tensors, man = load_checkpoint(trained / "best", expected_kind="residual", expected_task="cube_lift",
                                   expected_layout=layout_for_task("cube_lift"))
    assert man.evaluation["episodes"] == 2 and 0 <= man.evaluation["successes"] <= 2
    assert man.training["env_steps"] >= 0
    # The manifest says what the residual was trained under: the action pipeline (its bound = action_scale, the
    # envelope) and the task's whole reward with the trainer's success reward and scale.
    assert man.training["pipeline"]["residual_scale"] == list(man.action_scale)
    assert man.training["pipeline"]["envelope"]["max_translation_step"] == 0.05
    reward = man.training["reward"]
    assert reward["task"] == "cube_lift" and reward["max_reward"] > 0 and reward["reward_scale"] == 0.1
    assert {t["name"] for t in reward["terms"]} and all(len(t["bounds"]) == 2 for t in reward["terms"])
    rows = (trained / "eval.csv").read_text().strip().splitlines()
    assert rows[0].startswith("env_steps,") and len(rows) == 1 + 3  # evaluations at 0, 96, 192 steps
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["env_steps"] == 192


def test_resume_continues_from_saved_state(trained, base_ckpt, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(trained, out)
    r = run(["residual-train", "--task", "cube_lift", "--base-checkpoint", str(base_ckpt), "--out-dir", str(out),
             *tiny(288), "--resume"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed at 192 env steps" in r.stdout
    assert json.loads((out / "summary.json").read_text())["env_steps"] == 288


def test_same_seed_same_weights(base_ckpt, tmp_path):
    outs = []
    for k in range(2):
        out = tmp_path / f"det{k}"
        r = run(["residual-train", "--task", "cube_lift", "--base-checkpoint", str(base_ckpt), "--out-dir", str(out),
                 "--total-steps", "128", "--num-envs", "4", "--offline-episodes", "4", "--warmup-steps", "32",
                 "--eval-every", "1000", "--eval-episodes", "1", "--td3.batch-size", "32", "--td3.hidden", "32", "32"])
        assert r.returncode == 0, r.stderr[-3000:]
        outs.append(load_checkpoint(out / "last")[0])
    assert outs[0].keys() == outs[1].keys()
    for k in outs[0]:
        assert np.array_equal(outs[0][k], outs[1][k]), k


def test_probing_prefixes_are_played_by_the_base_and_not_stored(base_ckpt, tmp_path):
    """--probe-alpha: each training episode starts with the base alone for a random prefix that is not stored, so the
    online buffer holds fewer transitions than the online steps played; the manifest records the option."""
    out = tmp_path / "probe"
    r = run(["residual-train", "--task", "cube_lift", "--base-checkpoint", str(base_ckpt), "--out-dir", str(out),
             "--probe-alpha", "0.2", *tiny(192)])
    assert r.returncode == 0, r.stderr[-3000:]
    with np.load(out / "state" / "online.npz") as z:
        stored = int(z["size"])
    assert 0 < stored < 192 - 3 * 4  # (n-step: at most 3 pending per env are not yet in the buffer)
    assert read_manifest(out / "last").training["args"]["probe_alpha"] == 0.2
    bad = run(["residual-train", "--task", "cube_lift", "--probe-alpha", "1.5"])
    assert bad.returncode == 2 and "probe_alpha" in bad.stderr


def test_init_actor_starts_from_a_trained_residual_and_refuses_another_bound(trained, base_ckpt, tmp_path):
    """--init-actor: the actor is the loaded residual, its normalisation included (with the critics still warming up
    the actor does not move, so the run's checkpoint equals it); the manifest names it; a checkpoint of another
    residual bound is refused before training, and so is an anchor penalty without an initial actor."""
    out = tmp_path / "init"
    r = run(["residual-train", "--task", "cube_lift", "--base-checkpoint", str(base_ckpt), "--out-dir", str(out),
             "--init-actor", str(trained / "last"), *tiny(96), "--td3.critic-warmup", "100000"])
    assert r.returncode == 0, r.stderr[-3000:]
    start, _ = load_checkpoint(out / "last", expected_kind="residual")
    loaded, loaded_man = load_checkpoint(trained / "last", expected_kind="residual")
    assert all(np.array_equal(start[k], loaded[k]) for k in loaded)
    assert read_manifest(out / "last").training["init_actor"]["weights_sha256"] == loaded_man.weights_sha256
    bad = run(["residual-train", "--task", "cube_lift", "--base-checkpoint", str(base_ckpt), "--out-dir",
               str(tmp_path / "bad"), "--init-actor", str(trained / "last"), "--residual-scale", *["0.02"] * 7,
               *tiny(96)])
    assert bad.returncode == 2 and "differs from --residual-scale" in bad.stderr
    unanchored = run(["residual-train", "--task", "cube_lift", "--base-checkpoint", str(base_ckpt), "--out-dir",
                      str(tmp_path / "unanchored"), "--td3.anchor-penalty", "1.0", *tiny(96)])
    assert unanchored.returncode == 2 and "pass --init-actor" in unanchored.stderr


def test_residual_eval_table_and_json(trained, base_ckpt, tmp_path):
    out = tmp_path / "eval.json"
    r = run(["residual-eval", "--task", "cube_lift", "--episodes", "2", "--num-envs", "2",
             "--base-checkpoint", str(base_ckpt), "--residual-checkpoint", str(trained / "best"),
             "--json-out", str(out), "--png-out", str(tmp_path / "eval.png")])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| cube_lift |" in r.stdout
    res = json.loads(out.read_text())["results"][0]
    assert res["base"]["episodes"] == 2 and res["residual"]["episodes"] == 2
    assert res["base"]["seeds"] == [0, 1]
    assert (tmp_path / "eval.png").stat().st_size > 1000


def test_residual_eval_under_a_dynamics_shift_and_training_with_randomised_dynamics(trained, base_ckpt, tmp_path):
    out = tmp_path / "eval.json"
    r = run(["residual-eval", "--task", "cube_lift", "--episodes", "2", "--num-envs", "2", "--dynamics", "mixed",
             "--base-checkpoint", str(base_ckpt), "--residual-checkpoint", str(trained / "best"),
             "--json-out", str(out)])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "dynamics mixed" in r.stdout and "| lost / gained |" in r.stdout
    row = json.loads(out.read_text())["results"][0]
    assert row["dynamics"]["name"] == "mixed" and row["dynamics"]["object_mass"] == [0.3, 3.0]
    bad = run(["residual-eval", "--task", "cube_lift", "--dynamics", "moon"])
    assert bad.returncode != 0 and "known: nominal" in bad.stderr
    run_dir = tmp_path / "dyn"
    r = run(["residual-train", "--task", "cube_lift", "--base-checkpoint", str(base_ckpt), "--out-dir", str(run_dir),
             "--dynamics", "train", "--compose-from", "target", *tiny()])
    assert r.returncode == 0, r.stderr[-3000:]
    _, man = load_checkpoint(run_dir / "last", expected_kind="residual")
    assert man.training["dynamics"]["kind"] == "per_episode_draws"
    assert man.training["dynamics"]["arm_stiffness"] == [0.6, 1.6]
    # trained composing from the tracked target: the manifest and the validation protocol say so, and residual-eval
    # evaluates it (base rows too) that way unless told otherwise
    assert man.training["compose_from"] == "target"
    assert read_manifest(run_dir / "best").evaluation["compose_from"] == "target"
    for flag, expected in (([], "target"), (["--compose-from", "measured"], "measured")):
        r = run(["residual-eval", "--task", "cube_lift", "--episodes", "1", "--num-envs", "1", "--base-checkpoint",
                 str(base_ckpt), "--residual-checkpoint", str(run_dir / "last"), "--json-out", str(out), *flag])
        assert r.returncode == 0, r.stderr[-3000:]
        assert json.loads(out.read_text())["results"][0]["compose_from"] == expected
    assert "composed from the tracked previous target" in _eval_with(run_dir / "last", base_ckpt).stdout


def test_training_and_evaluating_against_a_population_of_bases(trained, base_ckpt, tmp_path):
    pop = tmp_path / "pop.json"
    pop.write_text(json.dumps({"members": [{"checkpoint": str(base_ckpt)},
                                           {"checkpoint": str(base_ckpt), "action_noise": 0.1, "delay_steps": 1}]}))
    run_dir = tmp_path / "pop_run"
    r = run(["residual-train", "--task", "cube_lift", "--base-population", str(pop), "--out-dir", str(run_dir),
             *tiny()])
    assert r.returncode == 0, r.stderr[-3000:]
    _, man = load_checkpoint(run_dir / "last", expected_kind="residual")
    assert [m["delay_steps"] for m in man.training["base_population"]["members"]] == [0, 1]
    out = tmp_path / "eval.json"
    r = run(["residual-eval", "--task", "cube_lift", "--episodes", "2", "--num-envs", "2", "--base-population",
             str(pop), "--residual-checkpoint", str(trained / "best"), "--json-out", str(out)])
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(out.read_text())["args"]["base_population"] == str(pop)
    both = run(["residual-eval", "--task", "cube_lift", "--base-population", str(pop), "--base-checkpoint",
                str(base_ckpt)])
    assert both.returncode != 0 and "replaces --base-checkpoint" in both.stderr
    pop.write_text('{"members": [{"checkpoint": "x", "delay_steps": 99}]}')
    bad = run(["residual-eval", "--task", "cube_lift", "--base-population", str(pop)])
    assert bad.returncode == 2 and "delay_steps" in bad.stderr


def _eval_with(ckpt, base_ckpt, task="cube_lift"):
    return run(["residual-eval", "--task", task, "--episodes", "1", "--num-envs", "1", "--base-checkpoint",
                str(base_ckpt), "--residual-checkpoint", str(ckpt)])


def test_corrupt_checkpoint_is_refused(trained, base_ckpt, tmp_path):
    bad = tmp_path / "bad"
    shutil.copy(trained / "best.json", bad.with_suffix(".json"))
    data = (trained / "best.safetensors").read_bytes()
    bad.with_suffix(".safetensors").write_bytes(data[: len(data) // 2])
    r = _eval_with(bad, base_ckpt)
    assert r.returncode == 2
    assert "cannot load the residual checkpoint" in r.stderr and "corrupt" in r.stderr.lower()


def test_checkpoint_for_another_task_is_refused(trained, base_ckpt):
    r = _eval_with(trained / "best", base_ckpt, task="close_drawer")
    assert r.returncode == 2
    assert "cube_lift" in r.stderr and "close_drawer" in r.stderr


def test_layout_mismatch_is_refused(base_ckpt, tmp_path):
    wrong = make_layout(("cube", "target"))  # pick_place's objects, saved as a cube_lift residual
    path = save_residual_checkpoint(tmp_path / "wrong", ResidualActor(wrong.size, hidden=(8,)), wrong, "cube_lift",
                                    [0.01] * 3 + [0.05] * 3 + [1.0], {}, 0, {})
    r = _eval_with(path.with_suffix(""), base_ckpt)
    assert r.returncode == 2
    assert "layout" in r.stderr.lower()


def test_residual_scale_outside_the_action_spec_is_refused_before_training():
    from trainer.residual_train import Args

    with pytest.raises(ValueError, match=r"must lie within the action spec: dx 1e\+06 > 0\.05"):
        Args(task="cube_lift", residual_scale=(1e6,) * 7)
    with pytest.raises(ValueError, match=r"7 values are needed, got shape \(6,\)"):
        Args(task="cube_lift", residual_scale=(0.01,) * 6)
    assert Args(task="cube_lift", residual_scale=(0.05,) * 3 + (0.25,) * 3 + (1.0,)).residual_scale[6] == 1.0


def test_sac_trains_resumes_and_writes_the_same_checkpoint_format(base_ckpt, tmp_path):
    out = tmp_path / "sac"
    sac = ["--algo", "sac", "--sac.batch-size", "64", "--sac.hidden", "64", "64", "--sac.critic-warmup", "4"]
    r = run(["residual-train", "--task", "cube_lift", "--base-checkpoint", str(base_ckpt), "--out-dir", str(out),
             *tiny(), *sac])
    assert r.returncode == 0, r.stderr[-3000:]
    tensors, man = load_checkpoint(out / "best", expected_kind="residual", expected_task="cube_lift",
                                   expected_layout=layout_for_task("cube_lift"))
    assert man.training["algorithm"] == "SAC n-step ensemble"
    assert man.training["args"]["algo"] == "sac"
    r = run(["residual-train", "--task", "cube_lift", "--base-checkpoint", str(base_ckpt), "--out-dir", str(out),
             *tiny(288), *sac, "--resume"])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "resumed at 192 env steps" in r.stdout
    # The saved state is SAC's: resuming it as TD3 is refused with the reason.
    r = run(["residual-train", "--task", "cube_lift", "--base-checkpoint", str(base_ckpt), "--out-dir", str(out),
             *tiny(384), "--resume"])
    assert r.returncode == 2 and "--algo sac" in r.stderr, r.stderr[-2000:]
    r = _eval_with(out / "best", base_ckpt)
    assert r.returncode == 0, r.stderr[-3000:]


def test_resume_with_another_evaluation_protocol_needs_reset_best(trained, base_ckpt, tmp_path):
    out = tmp_path / "protocol"
    shutil.copytree(trained, out)
    cmd = ["residual-train", "--task", "cube_lift", "--base-checkpoint", str(base_ckpt), "--out-dir", str(out),
           *tiny(288), "--resume", "--eval-episodes", "3"]
    r = run(cmd)
    assert r.returncode == 2 and "--reset-best" in r.stderr, r.stderr[-2000:]
    before = (out / "best.json").read_text()
    r = run([*cmd, "--reset-best"])
    assert r.returncode == 0, r.stderr[-3000:]
    man = read_manifest(out / "best")
    assert man.evaluation["episodes"] == 3 and (out / "best.json").read_text() != before
    r = run(["residual-train", "--task", "cube_lift", "--out-dir", str(tmp_path / "x"), *tiny(), "--reset-best"])
    assert r.returncode == 2 and "--resume" in r.stderr


def test_residual_train_with_a_fitted_perception_model_records_it(base_ckpt, tmp_path):
    """--perception-model: training and validation see the poses through the fitted camera model; the manifest says
    so, and the evaluation protocol names it."""
    from trainer.perception_cli import sim_camera_positions
    from trainer.perception_model import fit

    sys.path.insert(0, str(Path(__file__).parent))
    from test_perception_model import synthetic_log

    model = tmp_path / "camera.json"
    fit(synthetic_log(episodes=6), sim_camera_positions(), fitted_from={"note": "synthetic"}).save(model)
    out = tmp_path / "run"
    r = run(["residual-train", "--task", "cube_lift", "--base-checkpoint", str(base_ckpt), "--out-dir", str(out),
             "--perception-model", str(model), *tiny(128)])
    assert r.returncode == 0, r.stderr[-3000:]
    manifest = read_manifest(out / "best")
    perception = manifest.training["perception"]
    assert perception["kind"] == "fitted_camera_model" and perception["fitted_from"] == {"note": "synthetic"}
    assert manifest.evaluation["perception_model"] == str(model)
    # a task whose objects the model was not fitted for is refused before training
    r = run(["residual-train", "--task", "pick_place", "--base-checkpoint", str(base_ckpt), "--out-dir",
             str(tmp_path / "pp"), "--perception-model", str(model), *tiny(128)])
    assert r.returncode == 2 and "no fit for ['target']" in r.stderr, r.stderr[-2000:]
