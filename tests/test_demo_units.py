"""residual-demo's pure parts (no ROS processes): schemas, MCAP writing, results, table, CSV, plots, CLI, checkpoint
messages."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import struct
import textwrap
from pathlib import Path

import numpy as np
import pytest
from residual_bringup.demo import cli, msgdefs
from residual_bringup.demo.graph_process import launch_command
from residual_bringup.demo.plots import plot_residual_magnitude, plot_trajectory
from residual_bringup.demo.recording import DEFAULT_TOPICS, McapRecorder, message_class, topic_types
from residual_bringup.demo.results import (
    CSV_FIELDS,
    EpisodeRecord,
    StepRecord,
    format_table,
    jsonable,
    read_corrections_csv,
    summarize,
    write_corrections_csv,
)
from residual_bringup.supervisor import parse_set


def test_schema_text_is_rosbag2_style():
    text = msgdefs.message_definition("residual_interfaces/msg/Correction")
    blocks = text.split(msgdefs.SEPARATOR + "\n")
    assert blocks[0].startswith("# What the arbiter did at one control step")
    headers = [b.splitlines()[0] for b in blocks[1:]]
    assert sorted(headers) == ["MSG: builtin_interfaces/Time", "MSG: geometry_msgs/Point", "MSG: geometry_msgs/Pose",
                               "MSG: geometry_msgs/Quaternion", "MSG: std_msgs/Header"]
    assert "/msg/" not in "".join(headers)
    # Package-relative field types (Pose inside geometry_msgs) resolve to their package.
    assert msgdefs.field_types("Header header\nPose pose\nfloat64[7] x\nstring<=8 s\nint32 C=3  # c\n",
                               "geometry_msgs") == [("geometry_msgs", "Header"), ("geometry_msgs", "Pose")]
    assert msgdefs.field_types("std_msgs/Header header\nuint8[] data", "sensor_msgs") == [("std_msgs", "Header")]
    with pytest.raises(ValueError, match="pkg/msg/Name"):
        msgdefs.split_type("Header")
    with pytest.raises(FileNotFoundError, match="no definition of std_msgs/Nope"):
        msgdefs.message_definition("std_msgs/msg/Nope")


def test_every_default_topic_has_a_schema_and_a_class():
    for topic, type_name in DEFAULT_TOPICS.items():
        assert msgdefs.message_definition(type_name).strip(), topic
        assert message_class(type_name).__name__ == type_name.rsplit("/", 1)[1]
    assert topic_types(["/clock"]) == {"/clock": "rosgraph_msgs/msg/Clock"}
    with pytest.raises(ValueError, match=r"cannot record \['/nope'\]"):
        topic_types(["/nope"])


def test_mcap_round_trip_with_both_readers(tmp_path):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    from rclpy.serialization import serialize_message
    from residual_interfaces.msg import Correction
    from rosbags.highlevel import AnyReader
    from std_msgs.msg import UInt64

    rec = McapRecorder(tmp_path / "r.mcap", {"/arbiter/correction": DEFAULT_TOPICS["/arbiter/correction"],
                                              "/sim/step": DEFAULT_TOPICS["/sim/step"]})
    c = Correction(step=7, residual_status="late", clip_reasons=["translation_step"])
    c.final[2] = -0.01
    c.header.frame_id = "fr3_link0"
    assert rec.write("/arbiter/correction", serialize_message(c), 1_000)
    assert rec.write("/sim/step", serialize_message(UInt64(data=7)), 2_000)
    assert not rec.write("/not/recorded", b"", 3_000)
    assert rec.close() == {"/arbiter/correction": 1, "/sim/step": 1}
    assert not rec.write("/sim/step", serialize_message(UInt64(data=8)), 4_000)  # closed
    with open(tmp_path / "r.mcap", "rb") as f:
        got = [(ch.topic, m) for _, ch, _, m in make_reader(f, decoder_factories=[DecoderFactory()])
               .iter_decoded_messages()]
    assert got[0][0] == "/arbiter/correction" and got[0][1].step == 7 and list(got[0][1].clip_reasons) == [
        "translation_step"] and got[0][1].final[2] == -0.01 and got[0][1].header.frame_id == "fr3_link0"
    assert got[1][1].data == 7
    with AnyReader([tmp_path / "r.mcap"]) as reader:
        msgs = [(con.topic, t, reader.deserialize(raw, con.msgtype)) for con, t, raw in reader.messages()]
    assert [(t, ts) for t, ts, _ in msgs] == [("/arbiter/correction", 1_000), ("/sim/step", 2_000)]
    assert msgs[0][2].residual_status == "late" and msgs[1][2].data == 7


def _episode(phase, seed, success, steps, residual_mm=0.0) -> EpisodeRecord:
    recs = []
    for t in range(steps):
        r = np.zeros(7)
        r[0] = residual_mm / 1000
        recs.append(StepRecord(step=t, base=np.full(7, 0.01), residual=r, final=np.full(7, 0.01) + r,
                               status="ok" if residual_mm else "disabled", clipped=t == 0,
                               clip_reasons=("translation_step", "workspace_z_max") if t == 0 else (),
                               target_pos=np.array([0.4, 0.0, 0.3 - 0.01 * t]), target_quat=np.array([1.0, 0, 0, 0]),
                               tcp_pos=None if t == 1 else np.array([0.4, 0.0, 0.31 - 0.01 * t])))
    return EpisodeRecord(phase, seed, seed + 1, success, steps, "success" if success else "horizon", 1.0, recs)


def test_summary_table_and_csv(tmp_path):
    base = [_episode("base", 0, True, 40), _episode("base", 1, False, 100)]
    res = [_episode("residual", 0, True, 30, residual_mm=3.0), _episode("residual", 1, True, 50, residual_mm=3.0)]
    s_base, s_res = summarize(base), summarize(res)
    assert (s_base["successes"], s_base["mean_steps_to_success"], s_base["success"]) == (1, 40.0, [True, False])
    assert s_res["successes"] == 2 and s_res["mean_steps_to_success"] == 40.0
    assert s_res["residual_translation_mm_mean"] == pytest.approx(3.0) and s_base["residual_translation_mm_mean"] == 0
    assert s_res["clip_reasons"] == {"translation_step": 2, "workspace_z_max": 2}
    assert math.isnan(summarize([_episode("base", 0, False, 5)])["mean_steps_to_success"])
    table = format_table("cube_lift", {"base": s_base, "residual": s_res})
    assert table.splitlines()[2] == "| cube_lift | 1/2 | 2/2 | 40.0 | 40.0 |"
    assert format_table("cube_lift", {"base": summarize([_episode("base", 0, False, 5)])}).splitlines()[2] == \
        "| cube_lift | 0/1 | - | - | - |"
    rows = write_corrections_csv(tmp_path / "c.csv", base + res)
    assert rows == 220
    back = read_corrections_csv(tmp_path / "c.csv")
    assert list(back[0]) == CSV_FIELDS and len(back) == 220
    assert back[0]["clip_reasons"] == "translation_step;workspace_z_max" and back[1]["tcp_x"] == ""
    assert float(back[140]["residual_0"]) == 0.003 and back[140]["phase"] == "residual"
    assert jsonable({"a": math.nan, "b": np.float32(1.5), "c": [np.inf, Path("/x")]}) == {"a": None, "b": 1.5,
                                                                                          "c": [None, "/x"]}


def test_plots_are_pngs(tmp_path):
    res = [_episode("residual", 0, True, 30, residual_mm=3.0), _episode("residual", 1, False, 60, residual_mm=1.0)]
    for path in (plot_trajectory(res[0], tmp_path / "t.png"), plot_residual_magnitude(res, tmp_path / "m.png")):
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])
        assert width > 600 and height > 400
    with pytest.raises(ValueError, match="no steps with a TCP position"):
        plot_trajectory(EpisodeRecord("base", 3, 1, False, 0, "horizon", 0.0), tmp_path / "x.png")


DEMO_OPTIONS = ("--task", "--episodes", "--seed-offset", "--checkpoint", "--base-checkpoint", "--phases",
                "--pose-source", "--pose-noise", "--rot-noise", "--dropout", "--noise-seed", "--out-dir", "--no-record",
                "--record-topics", "--startup-timeout", "--episode-timeout", "--set")
"""Every option the argparse parser had (before tyro), with its spelling, and those added since."""


def field_docstrings(cls) -> dict[str, str]:
    """Field name -> the docstring written under it in the class body."""
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    return {a.target.id: b.value.value for a, b in zip(body, body[1:], strict=False)
            if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant)}


def test_cli_help_documents_every_option_once(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exit_:
        cli.parse_args(["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    docs = field_docstrings(cli.DemoConfig)
    assert set(docs) == {f.name for f in dataclasses.fields(cli.DemoConfig)}, "a field has no docstring"
    for name, doc in docs.items():
        assert " ".join(doc.split()) in text, f"--help lacks the docstring of {name}"
    for option in DEMO_OPTIONS:
        assert f"{option} " in text or f"{option}," in text, f"--help lacks {option}"


@pytest.mark.parametrize(("argv", "expected"), [
    ([], {}),
    (["--task", "cube_lift", "--episodes", "10", "--pose-source", "gt"], {}),  # setup/demo.sh (make demo)
    (["--task", "pick_place", "--episodes", "10", "--pose-source", "camera"],  # make demo POSES=camera
     {"task": "pick_place", "pose_source": "camera"}),
    (["--episodes", "2", "--seed-offset", "3", "--checkpoint", "R", "--base-checkpoint", "B", "--out-dir", "O",
      "--set", "sim.max_steps=30"],  # tests/test_demo.py
     {"episodes": 2, "seed_offset": 3, "checkpoint": "R", "base_checkpoint": "B", "out_dir": "O",
      "set_params": ("sim.max_steps=30",)}),
    (["--task", "stack_cube", "--episodes", "10", "--checkpoint", "R", "--base-checkpoint", "B", "--out-dir", "O",
      "--no-record", "--pose-noise", "0", "--rot-noise", "0", "--dropout", "0"],  # tests/test_graph_shipped.py
     {"task": "stack_cube", "checkpoint": "R", "base_checkpoint": "B", "out_dir": "O", "record": False,
      "pose_noise": 0.0, "rot_noise": 0.0, "dropout": 0.0}),
    (["--phases", "residual", "base", "--record-topics", "/clock", "/tcp_pose", "--startup-timeout", "5",
      "--episode-timeout", "7", "--noise-seed", "4", "--set", "a.b=1", "--set", "c.d=x"],
     {"phases": ("residual", "base"), "record_topics": ("/clock", "/tcp_pose"), "startup_timeout_s": 5.0,
      "episode_timeout_s": 7.0, "noise_seed": 4, "set_params": ("a.b=1", "c.d=x")}),
])
def test_cli_parses_as_the_former_parser(argv, expected):
    """The values the argparse parser produced for these command lines (recorded before the switch to tyro; plus
    --pose-source, added since)."""
    former_defaults = {"task": "cube_lift", "episodes": 10, "seed_offset": 0, "checkpoint": "", "base_checkpoint": "",
                       "phases": ("base", "residual"), "pose_source": "gt", "pose_noise": 0.005, "rot_noise": 0.05,
                       "dropout": 0.1,
                       "noise_seed": 0, "out_dir": "runs", "record": True, "record_topics": None,
                       "startup_timeout_s": 180.0, "episode_timeout_s": 120.0, "set_params": ()}
    assert dataclasses.asdict(cli.parse_args(argv)) == {**former_defaults, **expected}


@pytest.mark.parametrize(("argv", "option"), [
    (["--task", "juggle"], "--task"), (["--episodes", "many"], "--episodes"), (["--episodes", "0"], "--episodes"),
    (["--phases", "both"], "--phases"), (["--pose-source", "aruco"], "--pose-source"),
    (["--dropout", "1.5"], "--dropout"), (["--pose-noise", "-1"], "--pose-noise"),
    (["--startup-timeout", "-1"], "--startup-timeout"), (["--set", "oops"], "--set"),
    (["--record-topics", "/nope"], "/nope"), (["--record-topics"], "--record-topics"),
])
def test_cli_bad_values_exit_2_naming_the_option(argv, option, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert option in err and "Traceback" not in err


def test_config_checks_and_overrides():
    cfg = cli.DemoConfig(episodes=3, seed_offset=5)
    assert cfg.seeds == [5, 6, 7]
    for kwargs, match in (({"episodes": 0}, "--episodes"), ({"phases": ("both",)}, "--phases"),
                          ({"dropout": 1.5}, "--dropout"), ({"pose_noise": 0.0}, "--rot-noise > 0 needs"),
                          ({"record_topics": ("/nope",)}, "cannot record"), ({"task": "juggle"}, "unknown task")):
        with pytest.raises(ValueError, match=match):
            cli.DemoConfig(**kwargs)
    over = cli.graph_overrides(cli.DemoConfig(set_params=("arbiter.residual_deadline_s=1.0",)), with_estimator=True)
    assert over["sim"] == {"autostart": False, "render_camera": False}
    assert over["pose_estimator"] == {"source": "gt", "gt.noise_pos_m": 0.005, "gt.noise_rot_rad": 0.05,
                                      "gt.dropout_p": 0.1, "gt.seed": 0}
    assert over["arbiter"] == {"residual_deadline_s": 1.0}  # YAML-typed, as residual-launch reads --set
    assert over["residual"] == {"occlusion_tracking": False}, "gt: the nominal protocol, nothing tracked"
    assert "pose_estimator" not in cli.graph_overrides(cli.DemoConfig(), with_estimator=False)
    assert cli.graph_overrides(cli.DemoConfig(set_params=("sim.autostart=true", "base.image_keys=[none]")), False)[
        "sim"] == {"autostart": True, "render_camera": False}
    camera = cli.graph_overrides(cli.DemoConfig(pose_source="camera"), with_estimator=True)
    assert camera == {"sim": {"autostart": False, "render_camera": True}, "pose_estimator": {"source": "aruco"}}
    with pytest.raises(cli.ConfigProblem, match="needs pose-estimator-node"):
        cli.graph_overrides(cli.DemoConfig(pose_source="camera"), with_estimator=False)
    assert cli.pose_source_text(cli.DemoConfig(pose_source="camera"), True).startswith("camera: ")
    assert cli.pose_source_text(cli.DemoConfig(pose_source="camera"), True).endswith("occlusion tracking on")
    assert cli.pose_source_text(cli.DemoConfig(pose_source="camera", set_params=(
        "residual.occlusion_tracking=false",)), True).endswith("occlusion tracking off")
    assert cli.pose_source_text(cli.DemoConfig(), True).startswith("gt: the sim's ground truth with 5 mm")
    with pytest.raises(ValueError, match="NODE.PARAM=VALUE"):
        cli.DemoConfig(set_params=("oops",))
    cmd = launch_command("cube_lift", "/c/res", "/c/base", "estimator", over)
    assert cmd[1:10] == ["--mode", "sim", "--task", "cube_lift", "--lockstep", "--use-sim-time", "--pose-source",
                            "estimator", "--checkpoint"]
    assert "sim.autostart=false" in cmd and "pose_estimator.gt.noise_pos_m=0.005" in cmd
    assert "arbiter.residual_deadline_s=1.0" in cmd
    assert parse_set([cmd[i + 1] for i, a in enumerate(cmd) if a == "--set"]) == over, "residual-launch reads it back"


def test_missing_checkpoints_are_explained(tmp_path, monkeypatch, capsys):
    (tmp_path / "base").mkdir()
    monkeypatch.setenv("RESIDUAL_VLA_CHECKPOINTS", str(tmp_path))
    with pytest.raises(cli.ConfigProblem) as err:
        cli.resolve_checkpoints("stack_cube", "", "")
    text = str(err.value)
    assert "no trained residual checkpoint for task 'stack_cube' yet" in text
    assert str(tmp_path / "residual" / "stack_cube.safetensors") in text and "--checkpoint PATH" in text
    with pytest.raises(cli.ConfigProblem, match="--checkpoint /no/such: no such residual checkpoint"):
        cli.resolve_checkpoints("stack_cube", "/no/such", "")
    assert cli.main(["--task", "stack_cube", "--out-dir", str(tmp_path / "runs")]) == 2
    assert "residual-train --task stack_cube" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists(), "nothing is started or written for a configuration problem"


def test_mismatched_checkpoint_is_refused(tmp_path):
    from test_graph_support import make_residual_checkpoint

    res = make_residual_checkpoint(tmp_path / "res", task="cube_lift")
    (tmp_path / "base").mkdir()
    with pytest.raises(cli.ConfigProblem, match="cannot be used for pick_place"):
        cli.resolve_checkpoints("pick_place", str(res), str(res))


def test_session_status_parser_skips_garbage():
    """A garbage /sim/episode (the graph fuzz test sends some) stopped the demo session's executor thread."""
    import json

    from residual_bringup.demo.session import parse_status

    good = {"episode": 2, "step": 5, "stamp_ns": 10, "done": False, "success": False, "reason": "", "task": "x"}
    assert parse_status(json.dumps(good)) == good
    for text in ("not json", "[1]", "[" * 100_000, json.dumps({**good, "episode": "2"}),
                 json.dumps({**good, "done": 1}), json.dumps({k: v for k, v in good.items() if k != "step"})):
        assert parse_status(text) is None, text[:40]
