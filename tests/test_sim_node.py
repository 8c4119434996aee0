"""franka-sim-node as a process: state before /sim/step, lockstep, reset service, episode end, pose barrier,
camera, /clock, real-time mode. The test plays the arbiter."""

from __future__ import annotations

import json

import numpy as np
import pytest
from geometry_msgs.msg import PoseStamped
from residual_interfaces.msg import ArbiterCommand, ObjectPoseArray
from residual_interfaces.srv import ResetEpisode
from rosgraph_msgs.msg import Clock
from rostest_utils import console_script
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import String, UInt64

pytestmark = pytest.mark.ros


def stamp_ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class Arbiter:
    """Collects the sim's topics; commands (ArbiterCommand) moving the TCP by ``delta``."""

    def __init__(self, probe):
        self.probe = probe
        self.order: list[tuple[str, int]] = []  # (topic, stamp or step) in arrival order
        self.tcp: list[PoseStamped] = []
        self.steps: list[int] = []
        self.status: list[dict] = []
        self.gt: list[ObjectPoseArray] = []
        self.joints: list[JointState] = []
        node = probe.node
        node.create_subscription(PoseStamped, "/tcp_pose", self._on_tcp, 50)
        node.create_subscription(JointState, "/joint_states", self.joints.append, 50)
        node.create_subscription(ObjectPoseArray, "/sim/object_poses_gt", self.gt.append, 50)
        # Subscriptions are created in the order the sim publishes (an executor serves ready ones in this order).
        node.create_subscription(String, "/sim/episode", lambda m: self.status.append(json.loads(m.data)), 50)
        node.create_subscription(UInt64, "/sim/step", self._on_step, 50)
        self.pub = node.create_publisher(ArbiterCommand, "/arbiter/command", 10)
        self.reset = node.create_client(ResetEpisode, "/sim/reset")

    def _on_tcp(self, msg):
        self.tcp.append(msg)

    def _on_step(self, msg):
        self.steps.append(int(msg.data))

    def incomplete_steps(self) -> list[int]:
        """The /sim/step values whose state (status of that step, and TCP pose, joint states and ground truth with
        the status's stamp) was not all published. (Checked afterwards: a subscriber cannot see the publication order
        across topics, its executor serves ready messages in its own order.)"""
        stamps = {kind: {stamp_ns(m.header.stamp) for m in msgs}
                  for kind, msgs in (("tcp", self.tcp), ("joints", self.joints), ("gt", self.gt))}
        out = []
        for t in self.steps:
            status = [s for s in self.status if s["step"] == t and not s["done"]]
            if not status or not all(status[-1]["stamp_ns"] in v for v in stamps.values()):
                out.append(t)
        return out

    def command(self, step: int, delta=(0.0, 0.0, 0.0), gripper: float = 0.0, tcp: PoseStamped | None = None,
                episode: int | None = None, valid: bool = True):
        """Command ``step`` of ``episode`` (default: the sim's current episode)."""
        tcp = tcp or self.tcp[-1]
        c = ArbiterCommand(step=step, episode=self.status[-1]["episode"] if episode is None else episode,
                           gripper=gripper, valid=valid)
        c.header.frame_id = "fr3_link0"
        c.target.position.x = tcp.pose.position.x + delta[0]
        c.target.position.y = tcp.pose.position.y + delta[1]
        c.target.position.z = tcp.pose.position.z + delta[2]
        c.target.orientation = tcp.pose.orientation
        self.pub.publish(c)

    def do_reset(self, seed: int, task: str = "") -> ResetEpisode.Response:
        return self.probe.call(self.reset, ResetEpisode.Request(task=task, seed=seed), timeout=20.0)

    def wait_step(self, step: int, count: int = 1) -> None:
        self.probe.spin_until(lambda: self.steps.count(step) >= count, 20.0, f"/sim/step {step}")


@pytest.fixture
def arbiter(ros_probe):
    return Arbiter(ros_probe)


def sim_args(*params: str) -> list[str]:
    return ["--ros-args", *(a for p in params for a in ("-p", p))]


def test_lockstep_episode_reset_and_end(launch_node, ros_probe, arbiter):
    clocks = ros_probe.collect(Clock, "/clock", qos=50)
    proc = launch_node([console_script("franka-sim-node")],
                       sim_args("autostart:=false", "max_steps:=6", "resend_period_s:=30.0"), name="sim")
    ros_probe.wait_for_subscribers(arbiter.pub, timeout=20.0)
    resp = arbiter.do_reset(seed=4)
    assert resp.success and resp.instruction == "pick up the red cube and lift it", resp.message
    arbiter.wait_step(0)
    start_x = arbiter.tcp[-1].pose.position.x
    # Without a command for step 0 nothing moves; a command for another step, or of another episode, is dropped.
    arbiter.command(3, delta=(0.01, 0, 0))
    arbiter.command(0, delta=(0.01, 0, 0), episode=2)
    arbiter.command(0, delta=(0.01, 0, 0), episode=0)
    ros_probe.spin_until(lambda: "command of episode 1 step 3 (future_step" in proc.output(), 30.0,
                         "the sim saying it dropped the command for step 3")
    ros_probe.spin_for(0.3)
    assert arbiter.steps == [0] and len(arbiter.tcp) == 1
    arbiter.command(0, delta=(0.5, 0.0, 0.0), valid=False)  # no target: the sim holds, and steps
    arbiter.wait_step(1)
    held = arbiter.tcp[-1].pose.position.x - start_x
    assert abs(held) < 0.002, f"an invalid command held the TCP (moved {held:.4f} m)"
    for t in range(1, 6):
        arbiter.command(t, delta=(0.01, 0.0, 0.0))
        if t < 5:
            arbiter.wait_step(t + 1)
    ros_probe.spin_until(lambda: arbiter.status and arbiter.status[-1]["done"], 20.0, "episode done")
    ros_probe.spin_for(0.3)
    assert arbiter.steps == [0, 1, 2, 3, 4, 5], "no /sim/step once the episode is done"
    last = arbiter.status[-1]
    assert (last["step"], last["reason"], last["success"], last["seed"], last["episode"]) == (6, "horizon", False, 4, 1)
    assert arbiter.incomplete_steps() == [], "every /sim/step had its step's whole state published"
    moved = arbiter.tcp[-1].pose.position.x - start_x
    assert 0.035 < moved < 0.052, f"five 1 cm steps along x moved the TCP {moved:.4f} m"
    assert arbiter.tcp[-1].header.frame_id == "fr3_link0"
    js = arbiter.joints[-1]
    assert list(js.name) == [f"fr3_joint{i}" for i in range(1, 8)] + ["fr3_finger_joint1", "fr3_finger_joint2"]
    assert len(js.velocity) == 9 and all(np.isfinite(js.position))
    assert [o.name for o in arbiter.gt[-1].objects] == ["cube"] and arbiter.gt[-1].objects[0].confidence == 1.0

    # Reset: step counter back to 0, a new episode on another task, /clock keeps going forwards.
    end_clock = stamp_ns(clocks[-1].clock)
    resp = arbiter.do_reset(seed=1, task="pick_place")
    assert resp.success and "green target" in resp.instruction
    arbiter.wait_step(0, count=2)
    assert [o.name for o in arbiter.gt[-1].objects] == ["cube", "target"]
    assert arbiter.status[-1]["episode"] == 2 and arbiter.status[-1]["step"] == 0
    assert stamp_ns(clocks[-1].clock) > end_clock
    assert all(np.diff([stamp_ns(c.clock) for c in clocks]) >= 0), "/clock never goes backwards"
    bad = arbiter.do_reset(seed=0, task="juggle")
    assert not bad.success and "unknown task 'juggle'" in bad.message
    assert proc.running(), proc.output()


def test_resend_and_pose_barrier(launch_node, ros_probe, arbiter):
    pose_pub = ros_probe.node.create_publisher(ObjectPoseArray, "/objects/poses", 10)
    proc = launch_node([console_script("franka-sim-node")],
                       sim_args("autostart:=false", "lockstep_pose_topic:=/objects/poses", "resend_period_s:=0.5",
                                "lockstep_pose_timeout_s:=30.0"), name="sim")
    ros_probe.wait_for_subscribers(pose_pub, timeout=20.0)
    assert arbiter.do_reset(seed=2).success
    ros_probe.spin_until(lambda: arbiter.gt, 20.0, "ground-truth poses of step 0")
    ros_probe.spin_for(0.2)
    assert arbiter.steps == [], "/sim/step waits for the pose estimator's answer"
    stale = ObjectPoseArray()
    stale.header.stamp.sec = 999  # an answer to another state does not release the step
    pose_pub.publish(stale)
    ros_probe.spin_for(0.2)
    assert arbiter.steps == []
    answer = ObjectPoseArray(header=arbiter.gt[-1].header)
    pose_pub.publish(answer)
    arbiter.wait_step(0)
    # Nobody commands step 0: after resend_period_s the state and /sim/step are published again (late joiners).
    ros_probe.spin_until(lambda: len(arbiter.gt) >= 2, 5.0, "re-published state")
    pose_pub.publish(ObjectPoseArray(header=arbiter.gt[-1].header))
    arbiter.wait_step(0, count=2)
    assert "re-publishing it" in proc.output()
    arbiter.command(0, delta=(0, 0, 0.01))
    ros_probe.spin_until(lambda: arbiter.status and arbiter.status[-1]["step"] == 1, 10.0, "state of step 1")
    assert arbiter.steps.count(1) == 0
    pose_pub.publish(ObjectPoseArray(header=arbiter.gt[-1].header))
    arbiter.wait_step(1)


def test_camera_and_real_time_mode(launch_node, ros_probe, arbiter):
    images = ros_probe.collect(Image, "/camera/image_raw", qos=10)
    infos = ros_probe.collect(CameraInfo, "/camera/camera_info", qos=10)
    proc = launch_node([console_script("franka-sim-node")],
                       sim_args("lockstep:=false", "render_camera:=true", "camera_rate_hz:=10.0", "max_steps:=400"),
                       name="sim")
    ros_probe.spin_until(lambda: len(arbiter.steps) >= 10 and images and infos, 20.0, "10 real-time steps")
    img, info = images[-1], infos[-1]
    assert (img.width, img.height, img.encoding, img.step) == (640, 480, "rgb8", 640 * 3)
    assert len(img.data) == 640 * 480 * 3 and img.header.frame_id == "camera_color_optical_frame"
    k = np.array(info.k).reshape(3, 3)
    assert k[0, 2] == 319.5 and k[1, 2] == 239.5 and k[0, 0] == pytest.approx(0.5 * 480 / np.tan(np.radians(22.5)))
    pixels = np.frombuffer(bytes(img.data), np.uint8).reshape(480, 640, 3)
    assert pixels.std() > 10, "a rendered scene, not a blank image"
    # Camera at 10 Hz with 20 Hz control: images on every second step's stamp only.
    assert all(stamp_ns(i.header.stamp) % 100_000_000 == 0 for i in images), "images at even steps only"
    last = stamp_ns(images[-1].header.stamp)
    ros_probe.spin_until(lambda: any(stamp_ns(c.header.stamp) == last for c in infos), 5.0,
                         "the camera_info with the image's stamp")

    # Real time: the newest command of the episode is tracked at 20 Hz, no per-step command needed; a command of
    # another episode is dropped. (Steps below max_steps 400: one beyond the episode would be dropped as well.)
    ros_probe.wait_for_subscribers(arbiter.pub, timeout=30.0)
    n0, t0 = len(arbiter.steps), ros_probe.node.get_clock().now().nanoseconds
    goal = arbiter.tcp[-1]
    start_z = goal.pose.position.z
    arbiter.command(300, delta=(0.0, 0.0, 0.05), tcp=goal, episode=7)
    ros_probe.spin_until(lambda: "command of episode 7 step 300 (other_episode" in proc.output(), 30.0,
                         "the sim dropping episode 7's command")
    ros_probe.spin_until(lambda: len(arbiter.steps) >= n0 + 5, 30.0, "5 more steps")
    assert abs(arbiter.tcp[-1].pose.position.z - start_z) < 0.003, "a command of another episode moved the TCP"
    arbiter.command(300, delta=(0.0, 0.0, -0.05), gripper=1.0, tcp=goal)
    goal_z = start_z - 0.05
    ros_probe.spin_until(lambda: abs(arbiter.tcp[-1].pose.position.z - goal_z) < 0.003, 10.0, "TCP at the target")
    ros_probe.spin_until(lambda: len(arbiter.steps) >= n0 + 20, 10.0, "20 more steps")
    rate = (len(arbiter.steps) - n0) / ((ros_probe.node.get_clock().now().nanoseconds - t0) * 1e-9)
    assert 12.0 < rate < 24.0, f"real-time rate {rate:.1f} Hz"
    ros_probe.spin_until(lambda: arbiter.joints[-1].position[7] < 0.03, 10.0, "fingers closing")
    assert proc.running(), proc.output()
