"""residual-demo end to end (small checkpoints made here, short episodes): the graph comes up in its own ROS domain,
both phases run, and the run folder holds a table, CSV, plots, results JSON and an MCAP recording that rosbags and
mcap_ros2 both read back."""

from __future__ import annotations

import json
import subprocess
from collections import Counter

import numpy as np
import pytest
from residual_bringup.demo.results import StepRecord, read_corrections_csv
from rostest_utils import console_script
from test_graph_support import envelope_violations, graph_envelope, make_base_checkpoint, make_residual_checkpoint

pytestmark = pytest.mark.ros

STEPS = 30


def _records(rows) -> list[StepRecord]:
    def vec(row, prefix, n):
        return np.array([float(row[f"{prefix}_{i}"]) for i in range(n)])

    def xyz(row, keys):
        return None if row[keys[0]] == "" else np.array([float(row[k]) for k in keys])

    return [StepRecord(step=int(r["step"]), base=vec(r, "base", 7), residual=vec(r, "residual", 7),
                       final=vec(r, "final", 7), status=r["residual_status"], clipped=r["clipped"] == "1",
                       clip_reasons=tuple(x for x in r["clip_reasons"].split(";") if x),
                       target_pos=xyz(r, ("target_x", "target_y", "target_z")),
                       target_quat=xyz(r, ("target_qx", "target_qy", "target_qz", "target_qw")),
                       tcp_pos=xyz(r, ("tcp_x", "tcp_y", "tcp_z"))) for r in rows]


def test_demo_runs_both_phases_and_writes_a_readable_run(tmp_path, ros_env, ros_domain_id):
    base = make_base_checkpoint(tmp_path / "base")
    residual = make_residual_checkpoint(tmp_path / "residual", out_std=0.1)
    proc = subprocess.run([console_script("residual-demo"), "--episodes", "2", "--seed-offset", "3",
                           "--checkpoint", str(residual), "--base-checkpoint", str(base), "--out-dir",
                           str(tmp_path / "runs"), "--set", f"sim.max_steps={STEPS}"],
                          capture_output=True, text=True, timeout=300, env=ros_env)
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-2000:]
    assert "| task | base | base + residual | mean steps (base) | mean steps (base + residual) |" in out
    assert "| cube_lift | 0/2 | 0/2 | - | - |" in out  # 30 steps are too few to lift the cube
    (run,) = (tmp_path / "runs").iterdir()
    results = json.loads((run / "results.json").read_text())
    assert results["graph_exit_status"] == 0 and "error" not in results
    assert results["ros_domain_id"] != ros_domain_id, "the demo runs in a ROS domain of its own"
    assert (run / "ros_log").is_dir() and any((run / "ros_log").iterdir()), "ROS_LOG_DIR is in the run folder"
    eps = results["episodes"]
    assert [(e["phase"], e["seed"], e["steps"]) for e in eps] == [("base", 3, STEPS), ("base", 4, STEPS),
                                                                 ("residual", 3, STEPS), ("residual", 4, STEPS)]
    assert results["summary"]["base"]["residual_status"] == {"disabled": 2 * STEPS}
    assert results["summary"]["residual"]["residual_status"] == {"ok": 2 * STEPS}
    assert results["summary"]["residual"]["residual_translation_mm_mean"] > 0.5

    rows = read_corrections_csv(run / "corrections.csv")
    assert len(rows) == 4 * STEPS == results["corrections_rows"]
    assert Counter(r["phase"] for r in rows) == {"base": 2 * STEPS, "residual": 2 * STEPS}
    assert envelope_violations(_records(rows), graph_envelope()) == []
    for name in ("trajectory.png", "residual_magnitude.png"):
        assert (run / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    counts = results["recorded_messages"]
    warm = sum(w["steps"] for w in results["warm_up"])
    assert counts["/arbiter/correction"] == 4 * STEPS + warm
    # (the sim re-publishes /sim/step when no command came within its resend period: on a loaded machine a few)
    assert counts["/sim/step"] >= counts["/arbiter/correction"]
    # One command (what the sim executes) per decision; on a loaded machine the arbiter re-sends the command of a
    # step whose /sim/step the sim re-published (never a different one: one correction per step, checked above).
    resends = counts["/sim/step"] - counts["/arbiter/correction"]
    assert counts["/arbiter/correction"] <= counts["/arbiter/command"] <= counts["/arbiter/correction"] + resends, \
        "one command (what the sim executes) per step, plus re-sends"
    assert counts["/tcp_pose"] >= 4 * STEPS and counts["/objects/poses"] >= 4 * STEPS

    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory
    from rosbags.highlevel import AnyReader

    with AnyReader([run / "recording.mcap"]) as reader:
        by_topic = Counter(con.topic for con, _, _ in reader.messages())
        corrections = [reader.deserialize(raw, con.msgtype) for con, _, raw in reader.messages()
                       if con.topic == "/arbiter/correction"]
    assert dict(by_topic) == counts
    assert {c.residual_status for c in corrections[-2 * STEPS:]} == {"ok"}
    decoded = Counter()
    with open(run / "recording.mcap", "rb") as f:
        mcap = make_reader(f, decoder_factories=[DecoderFactory()])
        schemas = {s.name: s.data.decode() for s in mcap.get_summary().schemas.values()}
        for _, channel, _, msg in mcap.iter_decoded_messages():
            decoded[channel.topic] += 1
            if channel.topic == "/joint_states":
                assert len(msg.position) == 9
    assert dict(decoded) == counts
    assert "MSG: std_msgs/Header" in schemas["residual_interfaces/msg/Correction"]
    assert "MSG: geometry_msgs/Pose" in schemas["residual_interfaces/msg/ArbiterCommand"]
    assert "MSG: std_msgs/msg/" not in "".join(schemas.values())
