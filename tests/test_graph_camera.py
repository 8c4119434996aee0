"""The camera path through the whole ROS graph (``residual-demo --pose-source camera``: the sim renders its camera every
step, the pose estimator finds the ArUco markers, the residual sees what it found, tracked through misses as
config/sim.yaml sets it), with the shipped checkpoints: two runs of the same seeds are the same step for step (the
poses the estimator published, the residuals, the outcomes), and ``residual-eval --pose-source camera`` gives the same
per-step estimates and outcomes on every seed.

Slow (about 2 minutes): ``pytest -m slow tests/test_graph_camera.py``.
"""

from __future__ import annotations

import json
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest
from residual_bringup.demo.results import read_corrections_csv
from residual_core.observation import PoseFreshness
from rostest_utils import console_script
from test_graph_support import graph_arbiter_config, shipped_checkpoints

pytestmark = [pytest.mark.ros, pytest.mark.slow]

TASK = "cube_lift"
SEED_OFFSET, EPISODES = 4, 2
"""Seeds 4 and 5: with the shipped checkpoints both succeed (55 and 49 steps; without occlusion tracking 56 and 49); in
seed 4 the cube's marker is lost while grasped (seen in 75 % of the steps without tracking) and the residual sees it
tracked."""


def run_camera_demo(out: Path, residual: Path, base: Path, env: dict) -> dict:
    """One residual-demo run (residual phase only); per seed: outcome, per-step present masks (from the recorded
    /objects/poses, by the residual node's confidence threshold) and per-step residuals (corrections.csv)."""
    proc = subprocess.run([console_script("residual-demo"), "--task", TASK, "--episodes", str(EPISODES),
                           "--seed-offset", str(SEED_OFFSET), "--phases", "residual", "--pose-source", "camera",
                           "--checkpoint", str(residual), "--base-checkpoint", str(base), "--out-dir", str(out),
                           "--record-topics", "/objects/poses", "/sim/episode"],
                          capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run_dir,) = out.iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    assert results["pose_source"] == "camera" and "error" not in results, results.get("error")
    from rosbags.highlevel import AnyReader

    stamps, poses = {}, {}
    with AnyReader([run_dir / "recording.mcap"]) as reader:
        for con, _, raw in reader.messages():
            msg = reader.deserialize(raw, con.msgtype)
            if con.topic == "/sim/episode":
                status = json.loads(msg.data)
                stamps[(status["episode"], status["step"])] = status["stamp_ns"]
            else:  # /objects/poses: every answer to a (re-)published image of that stamp must be the same
                key = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                entry = [(o.name, o.pose.position.x, o.pose.position.y, o.pose.position.z, o.confidence)
                         for o in msg.objects]
                assert poses.setdefault(key, entry) == entry, f"two different answers to the image of stamp {key}"
    threshold = PoseFreshness().min_confidence
    residuals = defaultdict(list)
    for row in read_corrections_csv(run_dir / "corrections.csv"):
        residuals[int(row["seed"])].append(tuple(row[f"residual_{i}"] for i in range(7)))
    out_eps = {}
    for ep in results["episodes"]:
        present = [[int(e[4] >= threshold) for e in poses[stamps[(ep["episode"], t)]]] for t in range(ep["steps"])]
        out_eps[ep["seed"]] = {"success": ep["success"], "steps": ep["steps"], "present": present,
                               "residuals": residuals[ep["seed"]]}
    return out_eps


def test_graph_camera_path_is_reproducible_and_agrees_with_residual_eval(tmp_path, ros_env):
    found = shipped_checkpoints(TASK)
    if isinstance(found, str):
        pytest.skip(found)
    residual_path, base_path = found
    runs = [run_camera_demo(tmp_path / name, residual_path, base_path, ros_env) for name in ("first", "second")]
    seeds = list(range(SEED_OFFSET, SEED_OFFSET + EPISODES))
    for seed in seeds:
        a, b = runs[0][seed], runs[1][seed]
        assert (a["success"], a["steps"]) == (b["success"], b["steps"]), f"seed {seed}: the two graph runs differ"
        assert a["present"] == b["present"], f"seed {seed}: the estimator's poses differ between the graph runs"
        first = next((t for t, (x, y) in enumerate(zip(a["residuals"], b["residuals"], strict=True)) if x != y), None)
        assert first is None, f"seed {seed}: the residuals of the two graph runs differ first at step {first}"

    from residual_core.residual_policy import ResidualPolicy
    from residual_learning.base_policy import BasePolicy
    from trainer.camera_path import CameraPerception
    from trainer.franka_backend import FrankaSimBackend
    from trainer.rollout import evaluate_episodes

    backend = FrankaSimBackend(TASK, 1, seed=0)
    arbiter_cfg = graph_arbiter_config(residual_path)
    perception = CameraPerception(backend)  # the graph's configuration: occlusion tracking on, as config/sim.yaml
    assert perception.config.tracking is not None
    threshold = PoseFreshness().min_confidence
    estimated: list[list[list[int]]] = []  # per episode, per step: what the estimator published, by confidence

    def on_image(env: int, step: int, entries) -> None:
        if step == 0:
            estimated.append([])
        estimated[-1].append([int(e.confidence >= threshold) for e in entries])

    perception.on_image = on_image
    ev = evaluate_episodes(backend, BasePolicy.from_checkpoint(base_path), seeds,
                           residual_fn=ResidualPolicy.from_checkpoint(residual_path),
                           augmenter=perception, pipeline=arbiter_cfg.pipeline,
                           compose_from=arbiter_cfg.compose_from, record_present=True)
    backend.close()
    assert len(estimated) == len(seeds)
    for i, seed in enumerate(seeds):
        graph = runs[0][seed]
        offline = (bool(ev.success[i]), int(ev.steps_to_success[i]) if ev.success[i] else backend.horizon)
        assert (graph["success"], graph["steps"]) == offline, f"seed {seed}: graph {graph['success']} in " \
                                                              f"{graph['steps']} steps, residual-eval {offline}"
        assert graph["present"] == estimated[i][:graph["steps"]], f"seed {seed}: the estimator's masks differ"
    # The test's point on this seed: the residual saw the cube through steps in which the estimator missed it.
    tracked = sum(int(not e[0] and r[0]) for e, r in zip(estimated[0], ev.extra["present"][0], strict=False))
    assert tracked > 0, f"no step of seed {seeds[0]} was tracked through a miss"
    print(f"camera path, {TASK} seeds {seeds}: graph (twice) and residual-eval agree: "
          f"{[(runs[0][s]['success'], runs[0][s]['steps']) for s in seeds]}")
