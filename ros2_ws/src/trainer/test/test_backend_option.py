"""`--backend` / `--device` on the commands that simulate (residual-train, residual-eval, pld-collect) reach the
franka_sim SimConfig; the default stays CPU MuJoCo. The Warp parts are skipped without it (`make setup-warp`)."""

import numpy as np
import pytest
import tyro
from franka_sim.sim import SIM_BACKENDS
from trainer import evaluate, pld_collect, residual_train_args
from trainer.collector import make_backend
from trainer.franka_backend import FrankaSimBackend

COMMANDS = {"residual-train": residual_train_args.Args, "residual-eval": evaluate.Args,
            "pld-collect": pld_collect.Args}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_simulating_command_takes_backend_and_device(command):
    args_type = COMMANDS[command]
    default = tyro.cli(args_type, args=[])
    assert (default.backend, default.device) == ("mujoco", "cpu")
    chosen = tyro.cli(args_type, args=["--backend", "warp", "--device", "cuda:1"])
    assert (chosen.backend, chosen.device) == ("warp", "cuda:1")
    for name in SIM_BACKENDS:
        assert tyro.cli(args_type, args=["--backend", name]).backend == name
    with pytest.raises(SystemExit):
        tyro.cli(args_type, args=["--backend", "physx"])


def test_default_backend_is_cpu_mujoco():
    import mujoco.batch

    backend = FrankaSimBackend("cube_lift", 1)
    assert isinstance(backend.env.sim.batch, mujoco.batch.Batch)
    backend.close()


def test_training_envs_run_on_the_chosen_backend():
    pytest.importorskip("mujoco_warp")
    from franka_sim.warp_batch import WarpBatch

    a = residual_train_args.Args(task="cube_lift", num_envs=2, total_steps=16, backend="warp", device="cpu")
    backend = make_backend(a, nthread=1)
    try:
        assert isinstance(backend.env.sim.batch, WarpBatch)
        backend.reset(seeds=[0, 1])
        step = backend.step(np.zeros((2, 7)))
        assert step.reward.shape == (2,) and np.all(np.isfinite(step.reward))
    finally:
        backend.close()


@pytest.mark.parametrize("command", ["residual-eval", "pld-collect"])
def test_a_backend_that_cannot_run_is_one_line_of_error_with_nothing_written(command, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RESIDUAL_ISAACLAB_PYTHON", str(tmp_path / "no-isaaclab-env" / "python"))
    main = {"residual-eval": evaluate.main, "pld-collect": pld_collect.main}[command]
    out = tmp_path / "out"
    extra = ["--out", str(out)] if command == "pld-collect" else ["--json-out", str(out)]
    assert main(["--backend", "isaaclab", *extra]) == 2
    assert "make isaac-env" in capsys.readouterr().err
    assert main(["--device", "cuda:0", *extra]) == 2
    assert "CPU only" in capsys.readouterr().err
    assert not out.exists()


def test_residual_train_refuses_a_backend_that_cannot_run(tmp_path, capsys, monkeypatch):
    from trainer import residual_train

    monkeypatch.setenv("RESIDUAL_ISAACLAB_PYTHON", str(tmp_path / "no-isaaclab-env" / "python"))
    with pytest.raises(SystemExit) as exc:
        residual_train.main(["--backend", "isaaclab", "--out-dir", str(tmp_path / "run")])
    assert exc.value.code == 2 and "make isaac-env" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
