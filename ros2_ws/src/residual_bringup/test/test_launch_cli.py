"""residual-launch's command line (tyro over LaunchArgs): every option documented once, the option names and
parsed values of the former argparse parser, configuration errors exit 2, and one ``--set`` syntax."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap

import pytest
from residual_bringup.supervisor import LaunchArgs, format_set, main, parse_args, parse_set

OPTIONS = ("--mode", "--task", "--checkpoint", "--base-backend", "--base-checkpoint", "--use-sim-time",
           "--no-use-sim-time", "--use-rviz", "--lockstep", "--no-lockstep", "--pose-source", "--config-dir", "--only",
           "--set", "--allow-missing", "--stop-timeout", "--robot-ip", "--hand-eye", "--list", "--robot")
"""Every option the argparse parser had (before tyro), with its spelling, and those added since (--robot)."""


def field_docstrings(cls) -> dict[str, str]:
    """Field name -> the docstring written under it in the class body."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    return {a.target.id: b.value.value for a, b in zip(body, body[1:], strict=False)
            if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant)}


def test_help_lists_every_option_with_its_docstring(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    docs = field_docstrings(LaunchArgs)
    assert set(docs) == {f.name for f in dataclasses.fields(LaunchArgs)}, "a field has no docstring"
    for name, doc in docs.items():
        assert " ".join(doc.split()) in text, f"--help lacks the docstring of {name}"
    for option in OPTIONS:
        assert f"{option} " in text or f"{option}," in text, f"--help lacks {option}"


@pytest.mark.parametrize(("argv", "expected"), [
    ([], {}),
    # demo/graph_process.launch_command's form and tests/test_graph_lockstep.py's
    (["--mode", "sim", "--task", "cube_lift", "--lockstep", "--use-sim-time", "--pose-source", "estimator",
      "--checkpoint", "R", "--base-checkpoint", "B", "--set", "sim.autostart=false", "--set", "sim.max_steps=30"],
     {"checkpoint": "R", "base_checkpoint": "B", "use_sim_time": True,
      "set_params": ("sim.autostart=false", "sim.max_steps=30")}),
    (["--only", "base", "arbiter", "--set", "base.backend=no_such_backend"],  # tests/test_supervisor.py
     {"only": ("base", "arbiter"), "set_params": ("base.backend=no_such_backend",)}),
    (["--mode", "real"], {"mode": "real"}),
    (["--no-lockstep", "--no-use-sim-time", "--use-rviz", "--allow-missing", "--list", "--hand-eye", "1", "2", "3",
      "0", "0", "0", "1", "--robot-ip", "1.2.3.4", "--config-dir", "C", "--stop-timeout", "3", "--base-backend",
      "openpi", "--task", "stack_cube", "--pose-source", "ground_truth"],
     {"lockstep": False, "use_sim_time": False, "use_rviz": True, "allow_missing": True, "list_graph": True,
      "hand_eye": (1.0, 2.0, 3.0, 0.0, 0.0, 0.0, 1.0), "robot_ip": "1.2.3.4", "config_dir": "C", "stop_timeout": 3.0,
      "base_backend": "openpi", "task": "stack_cube", "pose_source": "ground_truth"}),
])
def test_parsed_values_match_the_former_parser(argv, expected):
    """The values the argparse parser produced for these command lines (recorded before the switch to tyro)."""
    former_defaults = {"mode": "sim", "task": "cube_lift", "checkpoint": "", "base_backend": None,
                       "base_checkpoint": "", "use_sim_time": None, "use_rviz": False, "lockstep": True,
                       "pose_source": "estimator", "config_dir": None, "only": None, "set_params": (),
                       "allow_missing": False, "stop_timeout": 10.0, "robot_ip": "", "hand_eye": None,
                       "list_graph": False}
    added_since = {"robot": "franka"}
    assert dataclasses.asdict(parse_args(argv)) == {**former_defaults, **added_since, **expected}


@pytest.mark.parametrize(("argv", "option"), [
    (["--task", "juggle"], "--task"), (["--mode", "fake"], "--mode"), (["--stop-timeout", "soon"], "--stop-timeout"),
    (["--hand-eye", "1", "2"], "--hand-eye"), (["--set", "oops"], "--set"), (["--only"], "--only"),
    (["--pose-source", "gps"], "--pose-source"), (["--mode", "real", "--robot", "ur5"], "--robot"),
])
def test_bad_values_exit_2_naming_the_option(argv, option, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert option in err and "Traceback" not in err


def test_real_mode_is_refused_with_status_2(capsys):
    assert main(["--mode", "real"]) == 2
    assert "ros2 launch residual_bringup" in capsys.readouterr().err
    assert main(["--mode", "real", "--robot", "franka", "--hand-eye", "0", "0", "0", "0", "0", "0", "1"]) == 2


HAND_EYE_ARGS = ["--hand-eye", "0.5", "0", "0.6", "0", "0", "0", "1"]


def test_real_mode_with_the_twin_needs_no_ros2_launch(capsys):
    """--robot twin is supervised like sim mode (no include to refuse): it needs hand_eye, not robot_ip. (Listing works
    whether or not the twin's package, franka_twin, is installed.)"""
    assert main(["--mode", "real", "--robot", "twin"]) == 2
    assert "needs hand_eye" in capsys.readouterr().err
    assert main(["--mode", "real", "--robot", "twin", *HAND_EYE_ARGS, "--list"]) == 0
    listed = capsys.readouterr().out
    assert "franka_twin" in listed and "franka-twin-node" in listed and "(include)" not in listed
    assert not any(line.startswith(("camera", "spawner")) for line in listed.splitlines())


def test_a_twin_choice_in_sim_mode_is_a_configuration_error(capsys):
    assert main(["--robot", "twin"]) == 2
    assert "real-mode choice" in capsys.readouterr().err


def test_set_values_are_yaml_and_format_set_round_trips():
    assert parse_args(["--set", "base.server_port=8123", "--set", "base.image_keys=[none]"]).overrides == {
        "base": {"server_port": 8123, "image_keys": ["none"]}}
    values = [True, False, 0.005, 1e-7, 0.0, 3, "world", "123", "true", "", "a: b", ["none"], [1.0, 2.5], None]
    for value in values:
        item = format_set("node", "p", value)
        assert parse_set([item]) == {"node": {"p": value}}, item
    assert format_set("sim", "autostart", False) == "sim.autostart=false"
    assert format_set("pose_estimator", "gt.noise_pos_m", 0.005) == "pose_estimator.gt.noise_pos_m=0.005"
    # a nested config's dotted parameter: the first dot separates the node
    assert parse_set(["arbiter.envelope.max_translation_step=0.01"]) == {
        "arbiter": {"envelope.max_translation_step": 0.01}}
    with pytest.raises(ValueError, match="not valid YAML"):
        parse_set(["base.x=[1"])
