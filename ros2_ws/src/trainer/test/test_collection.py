"""The collector half of residual-train without Ray: episode seeds per collector, the --collectors / --sync options,
and the message when Ray is needed but not installed (Ray itself is optional: `make setup-ray`)."""

import subprocess
import sys

import pytest
from trainer import residual_train, sweep
from trainer.collector import TRAIN_SEED_OFFSET, VALIDATION_SEED_OFFSET, Collector, first_train_seed
from trainer.residual_train_args import Args


def test_collector_seeds_are_disjoint_and_never_validation_or_test_seeds():
    """Collector i of K takes every K-th training seed from i; one collector of one takes them all, as in-process;
    a resumed collector starts after the run's last used seed."""
    a = Args(task="cube_lift", seed=3, num_envs=2, total_steps=2)
    k = 3
    collectors = [Collector(a, index=i, stride=k) for i in range(k)]
    drawn = [c.seeds(5) + c.seeds(2) for c in collectors]
    flat = [s for d in drawn for s in d]
    assert len(set(flat)) == len(flat) == 3 * 7
    assert sorted(flat) == list(range(first_train_seed(3), first_train_seed(3) + 21))
    assert all(s >= TRAIN_SEED_OFFSET for s in flat)  # validation: 900_000 + i, residual-eval's test seeds: 0, 1, ...
    assert not set(flat) & (set(range(VALIDATION_SEED_OFFSET, VALIDATION_SEED_OFFSET + 10_000)) | set(range(100)))
    single = Collector(a, index=0, stride=1, backend=collectors[0].backend, base=collectors[0].base)
    assert single.seeds(4) == list(range(first_train_seed(3), first_train_seed(3) + 4))
    collectors[2].start_after(first_train_seed(3) + 21)
    assert collectors[2].seeds(2) == [first_train_seed(3) + 23, first_train_seed(3) + 26]
    with pytest.raises(ValueError, match="collector index 3"):
        Collector(a, index=3, stride=3)


def test_collector_options_are_checked_and_rounds_default_to_the_in_process_chunk():
    assert Args(num_envs=16).steps_per_round() == 128
    assert Args(num_envs=16, collectors=1, sync=True).steps_per_round() == 128
    assert Args(num_envs=16, collectors=2).steps_per_round() == 1024  # >= 1,000 transitions per Ray call
    assert Args(num_envs=12, collectors=2).steps_per_round() == 1032
    assert Args(num_envs=4, round_steps=8, collectors=2).steps_per_round() == 8
    with pytest.raises(ValueError, match="only with --collectors"):
        Args(sync=True)
    with pytest.raises(ValueError, match=r"round_steps \(6\) must be a positive multiple of num_envs \(4\)"):
        Args(num_envs=4, round_steps=6)
    with pytest.raises(ValueError, match="collectors >= 0"):
        Args(collectors=-1)


def test_the_trainer_modules_do_not_import_ray():
    code = ("import sys, trainer.residual_train, trainer.sweep, trainer.ray_collect, trainer.collector; "
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_without_ray_the_ray_options_say_how_to_install_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(SystemExit) as exc:
        residual_train.main(["--task", "cube_lift", "--out-dir", str(tmp_path / "r"), "--total-steps", "8",
                             "--num-envs", "2", "--offline-episodes", "1", "--collectors", "1"])
    assert exc.value.code == 2
    assert "make setup-ray" in capsys.readouterr().err
    assert sweep.main(["--tasks", "cube_lift", "--out-root", str(tmp_path / "s"), "--train.num-envs", "2"]) == 2
    assert "make setup-ray" in capsys.readouterr().err


def test_sweep_grid_and_trial_options_parse_as_residual_train_does(tmp_path):
    a = sweep.SweepArgs(tasks=("cube_lift", "stack_cube"), seeds=(0, 1),
                        grid=("exploration-noise=0.1,0.3", "td3.hidden=32 32", "terminate_on_success=true,false"))
    specs = sweep.trial_specs(a)
    assert len(specs) == 2 * 2 * 2 * 1 * 2
    s = specs[1]
    assert (s["task"], s["seed"]) == ("cube_lift", 0)
    assert s["suffix"] == "-exploration-noise=0.1-td3.hidden=32_32-terminate-on-success=false"
    args = sweep.trial_args(a.train, s, tmp_path)
    assert args.out_dir == tmp_path / "cube_lift" / f"seed0{s['suffix']}"
    assert (args.exploration_noise, args.td3.hidden, args.terminate_on_success) == (0.1, (32, 32), False)
    assert sweep.trial_args(a.train, specs[0], tmp_path).terminate_on_success is True
    plain = sweep.trial_specs(sweep.SweepArgs(tasks=("pick_place",), seeds=(2,)))
    assert sweep.trial_out_dir(tmp_path, plain[0]) == tmp_path / "pick_place" / "seed2"  # a plain run's folder
    for bad in ("exploration-noise", "=0.1", "exploration-noise="):
        with pytest.raises(ValueError, match="OPTION=V1,V2"):
            sweep.SweepArgs(grid=(bad,))
    with pytest.raises(ValueError, match="trials collect in their own process"):
        sweep.SweepArgs(train=Args(collectors=1))
