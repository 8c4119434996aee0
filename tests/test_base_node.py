"""vla-base-node as a process, against a loopback openpi server: one action per step, async and lockstep."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fake_robot import FakeRobot
from residual_interfaces.msg import EefAction, EefActionChunk
from rostest_utils import console_script
from std_msgs.msg import String, UInt64
from std_srvs.srv import Trigger
from vla_base_node.loopback_servers import OpenPILoopbackServer, reach_policy

pytestmark = pytest.mark.ros

GOAL = (0.5, 0.0, 0.3)
TCP = (0.45, 0.0, 0.25)


def base_args(port: int, *extra: str) -> list[str]:
    return ["--ros-args", "-p", "backend:=openpi", "-p", f"server_port:={port}", "-p", "image_keys:=[none]",
            "-p", "horizon:=8", *(a for e in extra for a in ("-p", e))]


def test_real_time_ticks_continue_while_a_slow_backend_infers(launch_node, ros_probe):
    # 0.3 s per inference = 6 control periods: a blocking node would leave >= 0.3 s gaps between actions.
    with OpenPILoopbackServer(reach_policy(GOAL, horizon=8), delay_s=0.3) as server:
        FakeRobot(ros_probe, tcp_pos=TCP)
        actions = ros_probe.collect(EefAction, "/base/action")
        chunks = ros_probe.collect(EefActionChunk, "/base/chunk")
        arrivals = []
        ros_probe.node.create_subscription(EefAction, "/base/action",
                                           lambda m: arrivals.append(ros_probe.node.get_clock().now().nanoseconds), 10)
        proc = launch_node([console_script("vla-base-node")], base_args(server.port), name="base")
        ros_probe.spin_until(lambda: sum(a.source == "openpi" for a in actions) >= 30 and len(chunks) >= 3,
                             timeout=30.0, what="30 openpi actions and 3 chunks")
        first_episode = list(actions)
        # No simulator: the node counts episodes itself; ~/reset starts the next one at step 0.
        resp = ros_probe.call(ros_probe.node.create_client(Trigger, "/base/reset"), Trigger.Request(), timeout=10.0)
        assert resp.success and resp.message == "episode 2 starts at the next tick"
        ros_probe.spin_until(lambda: any(a.episode == 2 and a.step == 0 for a in actions), 10.0,
                             "step 0 of episode 2")
        assert proc.running(), proc.output()
        stopped = proc.stop()  # SIGINT while an inference may be in flight: a clean exit
        assert (stopped.returncode, stopped.signal_used) == (0, "SIGINT"), proc.output()
    assert {a.episode for a in first_episode} == {1}
    steps = [a.step for a in first_episode]
    assert steps == list(range(steps[0], steps[0] + len(steps))), "exactly one action per step, no gaps"
    assert all(a.episode == 2 for a in actions[actions.index(next(a for a in actions if a.episode == 2)):])
    gaps = np.diff(arrivals[len(arrivals) // 3:]) * 1e-9
    assert np.median(gaps) == pytest.approx(0.05, abs=0.01)
    assert gaps.max() < 0.2, f"a tick waited for inference: max gap {gaps.max():.3f} s"
    chunk = chunks[0]
    assert [a.step for a in chunk.actions] == list(range(chunk.start_step, chunk.start_step + 8))
    assert all(a.action[6] == 0.0 and a.action[0] > 0 and a.action[2] > 0 for a in chunk.actions)  # -1 -> open
    first = next(a for a in actions if a.source == "openpi")
    row = first.step - chunk.start_step
    assert row >= 4, "the chunk's head (computed ~0.3 s earlier) is in the past and never executed"
    np.testing.assert_array_equal(first.action, chunk.actions[row].action)
    assert first.header.frame_id == "fr3_link0"
    assert all(not np.any(a.action[:6]) for a in actions if a.source == "hold")


def test_lockstep_sync_inference_is_one_action_per_sim_step(launch_node, ros_probe):
    with OpenPILoopbackServer(reach_policy(GOAL, horizon=4)) as server:
        FakeRobot(ros_probe, tcp_pos=TCP)
        actions = ros_probe.collect(EefAction, "/base/action")
        step_pub = ros_probe.node.create_publisher(UInt64, "/sim/step", 10)
        status_pub = ros_probe.node.create_publisher(String, "/sim/episode", 10)
        proc = launch_node([console_script("vla-base-node")],
                           base_args(server.port, "lockstep:=true", "sync_inference:=true",
                                     "episode_topic:=/sim/episode"), name="base")
        ros_probe.wait_for_subscribers(step_pub, timeout=20.0)
        ros_probe.wait_for_subscribers(status_pub, timeout=20.0)

        def sim_step(episode: int, step: int, status_first: bool = True) -> None:
            """What the sim publishes for a state: its status, then /sim/step (here also the other way round)."""
            msgs = [(status_pub, String(data=json.dumps({"episode": episode, "step": step}))),
                    (step_pub, UInt64(data=step))]
            for pub, msg in msgs if status_first else msgs[::-1]:
                pub.publish(msg)

        def act(episode: int, step: int, **kw) -> None:
            sim_step(episode, step, **kw)
            ros_probe.spin_until(lambda: any((a.episode, a.step) == (episode, step) for a in actions), 10.0,
                                 f"action of episode {episode} step {step}")

        step = 0
        while not any(a.source == "openpi" for a in actions):  # until the node has received the fake inputs
            act(1, step)
            step += 1
        first_model_step = step - 1
        for _ in range(12):
            act(1, step, status_first=step % 2 == 0)  # either order: the tick waits for both
            step += 1
        requests = len(server.requests)
        sim_step(1, step - 1)  # re-published (the sim got no command for it): the same action again, no inference
        ros_probe.spin_until(lambda: len(actions) == step + 1, 10.0, "the re-sent action")
        sim_step(1, 0)  # a step going back is ignored: it is not a new episode
        ros_probe.spin_for(0.2)
        assert proc.running(), proc.output()
        assert [a.step for a in actions] == list(range(step)) + [step - 1] and {a.episode for a in actions} == {1}
        assert list(actions[-1].action) == list(actions[-2].action) and len(server.requests) == requests
        # A new episode (the sim's id): chunks and backend reset, so step 0 is planned afresh.
        act(2, 0)
        assert len(server.requests) == requests + 1, "the new episode re-planned at its step 0"
        assert actions[-1].source == "openpi" and "episode 2 starts at step 0" in proc.output()
    model = [a for a in actions if a.episode == 1 and a.step >= first_model_step]
    assert all(a.source == "openpi" for a in model), [a.source for a in model]  # sync: never ran dry
    # Synchronous inference re-plans only when the chunk is used up: horizon 4 -> one request every 4 steps.
    assert requests == -(-len(model) // 4)


def test_bad_backend_name_exits_with_a_clear_message(launch_node):
    proc = launch_node([console_script("vla-base-node")], ["--ros-args", "-p", "backend:=sim_bcc"], name="bad_base")
    assert proc.popen.wait(timeout=20) == 2
    assert "unknown backend 'sim_bcc'" in proc.output()
