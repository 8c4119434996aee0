"""residual-sweep (skipped without Ray: `make setup-ray`): a 2 tasks x 2 seeds Tune grid of tiny residual-train runs
writes each trial where a plain run writes, with the plain run's best weights, plus one summary table and plot."""

import json

import pytest

ray = pytest.importorskip("ray")

from safetensors.numpy import load_file  # noqa: E402
from trainer import sweep  # noqa: E402
from trainer.residual_train import Trainer  # noqa: E402

TINY = ["--train.total-steps", "64", "--train.num-envs", "2", "--train.offline-episodes", "2",
        "--train.warmup-steps", "16", "--train.eval-every", "32", "--train.eval-episodes", "1",
        "--train.td3.batch-size", "32", "--train.td3.hidden", "32", "32"]
MANIFEST_RUN_DEPENDENT = {"created", "code_version", "weights_sha256"}
"""Manifest fields that differ between two runs with the same weights: when it was written, the code_version's
dirty-tree hash, and weights_sha256: the hash of the .safetensors file, whose header's ``__metadata__`` entries
safetensors writes in a per-process order (a Rust HashMap: ``{"format", "format_version"}`` either way round), so the
file bytes differ between processes while every tensor's bytes are equal (compared below)."""


def without_run_dependent(manifest: dict) -> dict:
    """A manifest minus what differs between a sweep trial and a plain run of the same options: the wall clock
    (training.wall_clock_s, evaluation.wall_clock_s), the creation time, and the trial's MuJoCo threads
    (args.physics_threads: the trial's CPUs, 0 = all CPUs in a plain run; results do not depend on it)."""
    m = {k: v for k, v in manifest.items() if k not in MANIFEST_RUN_DEPENDENT}
    m["training"] = {k: v for k, v in m["training"].items() if k != "wall_clock_s"}
    m["training"]["args"] = {k: v for k, v in m["training"]["args"].items() if k != "physics_threads"}
    m["evaluation"] = {k: v for k, v in m["evaluation"].items() if k != "wall_clock_s"}
    return m


def test_sweep_trials_write_the_plain_runs_best_checkpoints_and_one_summary(tmp_path):
    out_root, summary = tmp_path / "runs", tmp_path / "summary"
    rc = sweep.main(["--tasks", "cube_lift", "stack_cube", "--seeds", "0", "1", "--out-root", str(out_root),
                     "--storage-path", str(tmp_path / "tune"), "--summary-dir", str(summary), "--num-cpus", "2",
                     *TINY])
    assert rc == 0
    assert not ray.is_initialized()  # the sweep shut down the Ray it started
    a = sweep.SweepArgs(tasks=("cube_lift", "stack_cube"), seeds=(0, 1))
    base = sweep.tyro.cli(sweep.SweepArgs, args=TINY).train
    for spec in sweep.trial_specs(a):
        trial = out_root / spec["task"] / f"seed{spec['seed']}"  # where a plain run writes
        plain_args = sweep.trial_args(base, spec, tmp_path / "plain")
        Trainer(plain_args).train()
        plain = plain_args.out_dir
        got, want = load_file(trial / "best.safetensors"), load_file(plain / "best.safetensors")
        assert got.keys() == want.keys()
        for k in want:
            assert got[k].dtype == want[k].dtype and got[k].tobytes() == want[k].tobytes(), (spec, k)
        trial_man, plain_man = (json.loads((d / "best.json").read_text()) for d in (trial, plain))
        assert trial_man["training"]["args"]["physics_threads"] == 1  # the trial's one CPU
        trial_man["training"]["args"]["out_dir"] = str(plain)
        assert without_run_dependent(trial_man) == without_run_dependent(plain_man)
    rows = json.loads((summary / "summary.json").read_text())
    assert [r["run"] for r in rows] == ["cube_lift/seed0", "cube_lift/seed1", "stack_cube/seed0", "stack_cube/seed1"]
    assert "| cube_lift/seed0 |" in (summary / "summary.md").read_text()
    assert (summary / "summary.png").stat().st_size > 1000
