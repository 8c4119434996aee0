"""Episodes to success through ``residual-launch --mode real --robot twin``, in real time, and faults on the twin.

The graph is the real-mode graph (twin, gripper bridge, pose estimator, sim base, residual, arbiter) started as
tools/twin_episodes.py starts it: the twin's camera sits at a fixed extrinsic 5-8 cm from the sim camera's, which the
graph learns only through ``--hand-eye``; targets reach the twin on the controller topic (/target_pose), the gripper
through the franka_gripper actions (the gripper bridge's goals). The residual and the arbiter read the estimator's
object poses; the base (the sim BC policy standing in for a VLA) reads the twin's true poses, as in sim mode.

* a base-only and a base + residual episode succeed in real time with the robot's impedance law, within the task's
  horizon (100 steps of 50 ms of twin time), with the estimates through hand_eye within a few mm of the truth (a
  graph that ignored hand_eye would be > 12 mm off: test_twin_graph.py measures that case);
* faults: a reflex mid-episode (current_pose stops): the arbiter disarms within one control period, no target is
  composed from a TCP pose older than its ``tcp.max_age_s``; after ``residual-lab recover --arm`` (franka's three
  recovery steps, re-sync, re-arm) the first target is within one step of the measured TCP; a camera dropout:
  the residual keeps being applied, the objects tracked for ``tracking_max_age`` and then masked as dropouts, as in
  training.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from action_arbiter.lab_cli import LabClient
from action_arbiter.tcp_gate import TcpLimits
from franka_msgs.msg import FrankaRobotState
from geometry_msgs.msg import PoseStamped
from residual_core.action import CONTROL_DT
from residual_interfaces.msg import Correction
from residual_ros import franka_interfaces as fi
from std_srvs.srv import SetBool, Trigger
from test_graph_support import shipped_checkpoints

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import twin_episodes as te  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

TASK = "cube_lift"
POSE_TOL_M = 0.006
"""Median estimated vs true object position over an episode (marker detection at 640x480), of the estimates the
residual uses (EpisodeResult.pose_error_mm)."""
MAX_STEP_M = 0.05
"""The arbiter's max_translation_step in these graphs (the sim's, as the policies were trained)."""


def _stamp_s(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


@pytest.fixture
def twin_graph(launch_node, ros_probe):
    """Start the graph (``law``) and return a :class:`twin_episodes.TwinWatch` on the probe node once it is up."""

    def start(law: str, task: str = TASK) -> te.TwinWatch:
        found = shipped_checkpoints(task)
        if isinstance(found, str):
            pytest.skip(found)
        residual, base = found
        graph = launch_node(te.graph_command(task, law, te.camera_extrinsic(te.EXTRINSIC_SEED), str(base),
                                             str(residual)), name="graph")

        def spin_until(predicate, timeout, what):
            def check():
                assert graph.running(), graph.output()[-3000:]
                return predicate()
            return ros_probe.spin_until(check, timeout, what)

        watch = te.TwinWatch(ros_probe.node, spin_until)
        watch.graph = graph  # (a test may stop it and start another)
        watch.wait_up(residual=True)
        return watch

    return start


def _until_success(watch: te.TwinWatch, task: str, seeds: list[int], residual: bool) -> list[te.EpisodeResult]:
    """Episodes of ``seeds`` in turn until one succeeds (each to success or its horizon)."""
    out = []
    for seed in seeds:
        out.append(watch.run_episode(task, seed, residual))
        if out[-1].success:
            break
    return out


BASE_SEEDS = [0, 4, 5, 1, 7, 6, 8, 9]


def test_base_only_and_base_plus_residual_episodes_succeed_through_the_twin(twin_graph):
    """close_drawer with the robot's impedance law, composed from the tracked target as config/real.yaml sets it
    (docs/RESULTS.md, "The gripper bridge follows fingers it did not move": base alone 10/10 and base + residual 10/10
    of seeds 0-9, the base alone 39/40 over five rounds of its seeds below on one graph); seeds are tried in turn until
    one succeeds. Base + residual first, then the base alone on the same graph: an episode must not inherit the
    previous one's gripper state (the bridge stuck "closed" after a close on nothing sent no later episode's grasp,
    and the base alone then succeeded in a graph's first episode only: 2 of 62)."""
    watch = twin_graph("impedance", "close_drawer")
    with_residual = _until_success(watch, "close_drawer", [0, 8, 9, 6, 3], residual=True)
    base = _until_success(watch, "close_drawer", BASE_SEEDS, residual=False)
    runs = [*base, *with_residual]
    assert base[-1].success, f"no base-only episode succeeded: {base}"
    assert with_residual[-1].success, f"no base + residual episode succeeded: {runs}"
    assert with_residual[-1].steps <= with_residual[-1].horizon and base[-1].steps <= base[-1].horizon
    # (an episode whose objects were never seen with the confidence the residual needs has no pose error)
    assert any(np.isfinite(r.pose_error_mm) for r in runs), runs
    for r in runs:
        assert not r.pose_error_mm >= 1e3 * POSE_TOL_M, f"estimates through hand_eye off: {r}"
        assert r.target_hz > 10.0, f"the arbiter did not drive the controller topic: {r}"
        assert r.rtf > 0.5, f"the twin fell far behind the wall clock: {r}"


def test_reflex_recovery_and_camera_dropout_on_the_twin(twin_graph, ros_probe):
    watch = twin_graph("impedance")
    node = ros_probe.node
    poses = ros_probe.collect(PoseStamped, fi.CURRENT_POSE.name, qos=fi.CURRENT_POSE.qos.profile())
    states = ros_probe.collect(FrankaRobotState, fi.ROBOT_STATE.name, qos=fi.ROBOT_STATE.qos.profile())
    targets = ros_probe.collect(PoseStamped, fi.TRACKING_CONTROLLER.target.name, qos=200)
    corrections = ros_probe.collect(Correction, "/arbiter/correction", qos=200)
    diagnostics = []
    from diagnostic_msgs.msg import DiagnosticArray

    node.create_subscription(DiagnosticArray, "/diagnostics",
                             lambda m: diagnostics.extend(s for s in m.status if s.name == "residual_policy"), 50)
    from residual_interfaces.srv import ResetEpisode

    assert watch.call(watch.enable_client, SetBool.Request(data=True)).success
    assert watch.call(watch.reset_client, ResetEpisode.Request(task=TASK, seed=0)).success
    episode = watch.spin_until(lambda: watch.statuses[-1][1]["seed"] == 0 and watch.statuses[-1][1]["episode"], 20.0,
                               "the episode")
    watch.spin_until(lambda: watch.statuses[-1][1]["step"] >= 20, 30.0, "step 20 (the arm moving)")

    # --- reflex: current_pose stops; disarmed within one control period of franka's REFLEX state; no target may be
    # composed from a TCP pose older than tcp.max_age_s
    max_age = TcpLimits().max_age_s
    assert watch.call(node.create_client(Trigger, "/franka_twin/fault/reflex"), Trigger.Request()).success
    watch.spin_until(lambda: states and states[-1].robot_mode == fi.ROBOT_MODES["REFLEX"], 10.0, "robot_mode REFLEX")
    reflex_s = min(_stamp_s(st.header.stamp) for st in states if st.robot_mode == fi.ROBOT_MODES["REFLEX"])
    first_disarmed = watch.spin_until(lambda: next((c for c in corrections if "disarmed" in c.clip_reasons
                                                    and _stamp_s(c.header.stamp) > reflex_s), None), 10.0,
                                      "a decision recorded disarmed")
    print(f"reflex: first decision recorded disarmed {1e3 * (_stamp_s(first_disarmed.header.stamp) - reflex_s):.0f} "
          "ms after the first REFLEX robot state")
    assert _stamp_s(first_disarmed.header.stamp) - reflex_s <= CONTROL_DT + 0.03
    reflex_time = watch.statuses[-1][1]["time"]
    watch.spin_until(lambda: watch.statuses[-1][1]["time"] > reflex_time + 1.5, 30.0, "1.5 s of twin time in REFLEX")
    last_pose = max(_stamp_s(p.header.stamp) for p in poses)
    in_reflex_end = _stamp_s(states[-1].header.stamp)
    late = [round(_stamp_s(t.header.stamp) - last_pose, 3) for t in targets
            if last_pose + max_age + 0.02 < _stamp_s(t.header.stamp) <= in_reflex_end]
    assert not late, f"targets composed after the last TCP pose went stale (s after it): {late}"
    stale_holds = [c for c in corrections if _stamp_s(c.header.stamp) > last_pose + max_age + 0.02
                   and _stamp_s(c.header.stamp) <= in_reflex_end]
    assert stale_holds and all("tcp_stale" in c.clip_reasons for c in stale_holds), \
        [list(c.clip_reasons) for c in stale_holds[:5]]

    # --- residual-lab recover --arm: franka's three steps, re-sync, re-armed; the controller starts at the measured
    # pose; the first target after re-arming is within one step of it
    n_targets = len(targets)
    done: list = []

    def recover():
        client = LabClient(node_name="twin_recover")
        try:
            done.append(client.recover(arm=True, timeout=30.0))
        except Exception as exc:  # noqa: BLE001 (reported below)
            done.append(exc)
        finally:
            client.close()
    thread = threading.Thread(target=recover, daemon=True)
    thread.start()
    watch.spin_until(lambda: not thread.is_alive(), 90.0, "residual-lab recover --arm")
    assert isinstance(done[0], list) and done[0][-1].ok, done
    first = watch.spin_until(lambda: next((t for t in targets[n_targets:] if _stamp_s(t.header.stamp) > in_reflex_end),
                                          None), 20.0, "a target after recovery")
    measured = min((p for p in poses if _stamp_s(p.header.stamp) <= _stamp_s(first.header.stamp)),
                   key=lambda p: _stamp_s(first.header.stamp) - _stamp_s(p.header.stamp))
    gap = np.linalg.norm(np.subtract(*[(m.pose.position.x, m.pose.position.y, m.pose.position.z)
                                       for m in (first, measured)]))
    assert gap <= MAX_STEP_M + 1e-3, f"first target after recovery {gap:.4f} m from the measured TCP"
    assert states[-1].robot_mode == fi.ROBOT_MODES["MOVE"]

    # --- camera dropout: no images, so no estimates; the residual is still applied, its objects masked (absent) once
    # the occlusion tracking of config/real.yaml lets them go (tracking_max_age, 2 s)
    assert watch.call(node.create_client(SetBool, "/franka_twin/fault/camera_dropout"),
                      SetBool.Request(data=True)).success
    n_diag = len(diagnostics)

    def masked_window():
        for d in diagnostics[n_diag + 1:]:  # the first report may straddle the dropout
            kv = {k.key: k.value for k in d.values}
            calls = int(kv.get("recent_calls", 0))
            if calls and int(kv.get("recent_absent_cube", 0)) == calls == int(kv.get("recent_status_ok", 0)):
                return d
        return None

    watch.spin_until(masked_window, 20.0, "a residual diagnostics window with the cube masked at every step")
    n_corr = len(corrections)
    watch.spin_until(lambda: len(corrections) > n_corr + 10, 10.0, "corrections during the dropout")
    during = [c for c in corrections[n_corr:] if c.episode == episode]
    # the arbiter does not skip the residual for the stale poses (stale_pose_policy ignore: the residual node masks
    # them, as in training); a residual past the arbiter's 20 ms deadline on this loaded machine is "late"
    statuses = [c.residual_status for c in during]
    assert during and set(statuses) <= {"ok", "late"}, statuses
    assert sum(c.residual_applied for c in during) >= len(during) / 2, statuses
    assert watch.call(node.create_client(SetBool, "/franka_twin/fault/camera_dropout"),
                      SetBool.Request(data=False)).success
