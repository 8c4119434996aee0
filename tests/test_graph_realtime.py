"""The sim graph in REAL TIME (lockstep off) through the command path, as separate processes: the sim (20 Hz
wall-clock timer, ground-truth poses), the base (own timer, asynchronous inference, episode ids from /sim/episode),
the residual and the arbiter. Nothing waits for anybody: the sim executes the newest /arbiter/command of its
current episode. The robot's outputs of the arbiter are exercised too: its target on a controller topic
(``controller_pose_topic``) and ``/arbiter/gripper`` into the gripper bridge node, which runs in this process with a
recording sender instead of franka_gripper's actions.

Seeded episodes run to success; each episode's commands carry the sim's episode id, restart at step 0, are
valid and reach the controller topic; the gripper bridge asked for a grasp.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from action_arbiter.gripper_bridge import GripperBridgeNode, GripperRequest
from geometry_msgs.msg import PoseStamped
from residual_interfaces.msg import ArbiterCommand, EefAction
from residual_interfaces.srv import ResetEpisode
from std_msgs.msg import String
from test_graph_support import graph_commands, shipped_checkpoints

pytestmark = pytest.mark.ros

TASK = "cube_lift"
SEEDS = (0, 1)
MAX_STEPS = 300
"""Episode limit (15 s of wall clock): a loaded machine may make the base hold now and then; success ends it."""
CONTROLLER_TOPIC = "/test_controller/equilibrium_pose"


class RecordingSender:
    """Stands in for franka_gripper's Grasp/Move action clients."""

    def __init__(self, node, cfg):
        self.sent: list[GripperRequest] = []

    def send(self, request: GripperRequest) -> bool:
        self.sent.append(request)
        return True


def _pos(pose) -> tuple[float, float, float]:
    return pose.position.x, pose.position.y, pose.position.z


@pytest.fixture(scope="module")
def checkpoints():
    found = shipped_checkpoints(TASK)
    if isinstance(found, str):
        pytest.skip(found)
    return found


def test_real_time_episodes_run_to_success_through_the_command_path(launch_node, ros_probe, tmp_path, checkpoints):
    residual, base = checkpoints
    overrides = {"sim": {"autostart": True, "seed": 100, "max_steps": MAX_STEPS},
                 # Real time: a residual later than this is "late" and the base action goes alone (lockstep's 0.5 s
                 # deadline would stall every step).
                 "arbiter": {"residual_deadline_s": 0.02, "controller_pose_topic": CONTROLLER_TOPIC}}
    cmds = graph_commands(tmp_path, TASK, str(residual), str(base), overrides, pose_source="ground_truth",
                          lockstep=False)
    assert list(cmds) == ["sim", "base", "residual", "arbiter"]
    node = ros_probe.node
    statuses: list[dict] = []
    node.create_subscription(String, "/sim/episode", lambda m: statuses.append(json.loads(m.data)), 100)
    commands = ros_probe.collect(ArbiterCommand, "/arbiter/command", qos=200)
    controller = ros_probe.collect(PoseStamped, CONTROLLER_TOPIC, qos=200)
    base_actions = ros_probe.collect(EefAction, "/base/action", qos=200)
    residuals = ros_probe.collect(EefAction, "/residual/action", qos=200)
    bridge = GripperBridgeNode(make_sender=RecordingSender, context=ros_probe.context)
    ros_probe.executor.add_node(bridge)
    procs = {name: launch_node(cmd, name=name) for name, cmd in cmds.items()}
    alive = lambda: all(p.running() for p in procs.values())  # noqa: E731

    def until(predicate, timeout, what):
        def check():
            assert alive(), "a node died: " + "; ".join(f"{n}: {p.output()[-1500:]}" for n, p in procs.items()
                                                        if not p.running())
            return predicate()
        return ros_probe.spin_until(check, timeout, what)

    try:
        # Start-up episode (autostart): not measured, only until every data path works (DDS discovery takes its
        # time on a loaded machine): the base acts on its inputs, the residual answers, and the arbiter commands
        # base actions of the sim's episode (before it has any it holds with episode 0, which the sim drops).
        until(lambda: any(a.source != "hold" for a in base_actions) and residuals and statuses and
              any(c.episode == statuses[-1]["episode"] for c in commands), 120.0,
              "model base actions, residuals and commands of the sim's episode")
        reset = node.create_client(ResetEpisode, "/sim/reset")
        results = []
        for seed in SEEDS:
            before = max((s["episode"] for s in statuses), default=0)
            resp = ros_probe.call(reset, ResetEpisode.Request(task=TASK, seed=seed), timeout=30.0)
            assert resp.success, resp.message
            final = until(lambda b=before: next((s for s in statuses if s["episode"] > b and s["done"]), None),
                          MAX_STEPS * 0.05 * 4 + 30.0, f"the end of the episode with seed {seed}")
            results.append((seed, final))
        bridge_requests = list(bridge.sender.sent)
        # Every command of the measured episodes reached the controller topic too (published in the same step, may
        # arrive a little later).
        measured = {final["episode"] for _, final in results}
        wanted = {_pos(c.target) for c in commands if c.valid and c.episode in measured}
        until(lambda: wanted <= {_pos(p.pose) for p in controller}, 10.0, "the targets on the controller topic")
    finally:
        ros_probe.executor.remove_node(bridge)
        bridge.destroy_node()
    assert alive()

    for seed, final in results:
        what = f"seed {seed} (episode {final['episode']})"
        assert final["success"] and final["reason"] == "success", f"{what}: {final}"
        mine = [c for c in commands if c.episode == final["episode"]]
        assert len(mine) >= final["step"] * 0.5, f"{what}: {len(mine)} commands for {final['step']} sim steps"
        steps = [c.step for c in mine]
        assert steps[0] == 0 and steps == sorted(steps), f"{what}: command steps {steps[:10]} ..."
        assert all(c.header.frame_id == "fr3_link0" for c in mine), what
        # No target (valid false) only across a reset: while the newest TCP pose is the simulator's reset pose that
        # nothing confirmed yet, the arbiter composes from neither pose (actions of the ending episode still
        # arriving, or a new episode's first step decided before the reset pose came).
        invalid = [c.step for c in mine if not c.valid]
        assert len(invalid) <= 4 and all(s < 3 or s >= final["step"] - 1 for s in invalid), f"{what}: {invalid}"
        mine = [c for c in mine if c.valid]
        targets = np.array([_pos(c.target) for c in mine])
        assert np.all(np.isfinite(targets)) and np.ptp(targets[:, 2]) > 0.02, f"{what}: the TCP was moved"
        assert max(c.gripper for c in mine) > 0.6, f"{what}: the gripper was closed"
    # Commands of a finished episode may still come after a reset; each episode's ids are its own.
    episodes = [final["episode"] for _, final in results]
    assert len(set(episodes)) == len(episodes) and all(c.episode in {0, *range(1, max(episodes) + 1)}
                                                        for c in commands)
    kinds = [r.kind for r in bridge_requests]
    assert "grasp" in kinds and "move" in kinds[kinds.index("grasp"):], f"gripper bridge requests: {kinds}"
