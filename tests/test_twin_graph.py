"""`residual-launch --mode real --robot twin`: the real-mode graph against the franka_ros2 twin, in real time.

The twin's camera sits at a random extrinsic that the graph learns only through ``--hand-eye`` (the twin gets the
same numbers as its own parameter). A base-only graph (the residual node left out with ``--only``: the arbiter then
commands the base action alone) comes up against the twin; the object poses the estimator derives from the camera
through hand_eye are within a few mm of the twin's truth (the camera is 5-8 cm from the sim camera's pose, which the
estimator would use without hand_eye), and the arbiter's targets on the controller topic (/target_pose) move the
twin's TCP down to the table. Episodes to success, base + residual and faults: test_twin_episodes.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped
from residual_interfaces.msg import ObjectPoseArray
from residual_interfaces.srv import ResetEpisode
from residual_ros import franka_interfaces as fi
from rostest_utils import console_script
from std_msgs.msg import String
from test_graph_support import shipped_checkpoints

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import twin_episodes as te  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

TASK = "cube_lift"
SEED = 5
"""The episode whose first estimates are checked (the arm is then driven down to the table)."""
POSE_TOL_M = 0.006
"""Estimated vs true object position (a few mm: marker detection at 640x480)."""
EXTRINSIC_SEED = 0
"""The twin camera's pose (tools/twin_episodes.camera_extrinsic): a fixed one, so that the check is the same in every
run (over random extrinsics the median error ranged 0.3-3.3 mm in 8 runs; one first estimate was 6.2 mm off in CI)."""
FIRST_ESTIMATES = 5
"""The estimates after the reset whose median error is checked (the cube rests while they are taken)."""


@pytest.mark.parametrize("law,hand_eye_given", [("stiff", True), ("impedance", True), ("impedance", False)])
def test_base_only_graph_through_the_twin_with_hand_eye(launch_node, ros_probe, tmp_path, law, hand_eye_given):
    """hand_eye_given False: the graph gets the sim camera's pose as hand_eye (what ignoring hand_eye amounts to):
    the estimates must then be off, so the check below would catch a graph that ignores hand_eye."""
    found = shipped_checkpoints(TASK)
    if isinstance(found, str):
        pytest.skip(found)
    _residual, base = found
    extrinsic = te.camera_extrinsic(EXTRINSIC_SEED)
    hand_eye = extrinsic if hand_eye_given else te.sim_camera_pose()
    node = ros_probe.node
    statuses: list[dict] = []
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(String, "/franka_twin/episode", lambda m: statuses.append(json.loads(m.data)), latched)
    estimates = ros_probe.collect(ObjectPoseArray, "/objects/poses", qos=50)
    targets = ros_probe.collect(PoseStamped, fi.TRACKING_CONTROLLER.target.name, qos=50)
    cmd = [console_script("residual-launch"), "--mode", "real", "--robot", "twin", "--task", TASK,
           "--hand-eye", *map(str, hand_eye), "--allow-missing", "--base-backend", "sim_bc",
           "--base-checkpoint", str(base), "--only", "franka_twin", "gripper_bridge", "pose_estimator", "base",
           "arbiter",
           "--set", f"franka_twin.camera_extrinsic={extrinsic}", "--set", f"franka_twin.law={law}",
           "--set", "franka_twin.camera_rate_hz=15.0",
           "--set", "base.episode_topic=/franka_twin/episode", "--set", "base.pose_timeout=0.6",
           # real.yaml sets the openpi (LIBERO) action convention for the robot's VLA; the sim base speaks ours
           "--set", "base.action_convention=ours",
           # real.yaml starts the robot slowly (speed scale 0.25); the sim base was trained at the sim's full steps
           "--set", "arbiter.lab.speed_scale=1.0"]
    graph = launch_node(cmd, name="graph")

    def until(predicate, timeout, what):
        def check():
            assert graph.running(), graph.output()[-3000:]
            return predicate()
        return ros_probe.spin_until(check, timeout, what)

    until(lambda: statuses and estimates, 120.0, "twin status and object estimates")
    te.arm_arbiter(node, until, 60.0)  # real.yaml starts the arbiter disarmed
    until(lambda: targets, 60.0, "controller targets after arming")
    reset = node.create_client(ResetEpisode, "/franka_twin/reset")
    resp = ros_probe.call(reset, ResetEpisode.Request(task=TASK, seed=SEED), timeout=30.0)
    assert resp.success, resp.message
    episode = until(lambda: statuses[-1]["seed"] == SEED and statuses[-1]["episode"], 20.0, "the seeded episode")

    # object poses through hand_eye vs the twin's truth (the truth at the estimate's time: the object rests at first),
    # from images taken after the reset (the startup episode's cube was elsewhere): per object the median error of the
    # first FIRST_ESTIMATES estimates
    after_ns = node.get_clock().now().nanoseconds

    def fresh():
        return [e for e in list(estimates) if e.objects and
                e.header.stamp.sec * 1_000_000_000 + e.header.stamp.nanosec > after_ns][:FIRST_ESTIMATES]

    first = until(lambda: len(got := fresh()) == FIRST_ESTIMATES and got, 30.0, "estimates in the new episode")
    truth = statuses[-1]["objects"]
    per_object: dict[str, list[float]] = {}
    for e in first:
        for o in e.objects:
            per_object.setdefault(o.name, []).append(float(np.linalg.norm(
                np.array([o.pose.position.x, o.pose.position.y, o.pose.position.z]) - np.array(truth[o.name][:3]))))
    errors = {name: float(np.median(v)) for name, v in per_object.items()}
    print(f"estimate errors (m, median of {len(first)}): {per_object}")
    if not hand_eye_given:
        assert errors and min(errors.values()) > 2 * POSE_TOL_M, f"estimates without hand_eye: {errors}"
        return
    assert errors and max(errors.values()) < POSE_TOL_M, f"estimate errors (m) {errors} (hand_eye {extrinsic})"

    # the arbiter drives the twin through the controller topic: the TCP goes down to the table (the episode's
    # success is not asserted: measured, the base-only episode does not succeed here yet; see franka_twin/README.md)
    z0 = next(s for s in statuses if s["episode"] == episode)["tcp"][2]  # at the reset
    until(lambda: statuses[-1]["episode"] == episode and statuses[-1]["tcp"][2] < z0 - 0.2, 60.0,
          "the TCP moved 20 cm down by the arbiter's targets")
    assert statuses[-1]["law"] == law
