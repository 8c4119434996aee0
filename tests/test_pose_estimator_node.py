"""pose-estimator-node as a process: ground-truth pass-through (exact, and with noise + dropout), and ArUco poses from a
rendered franka_sim image published as sensor_msgs/Image + CameraInfo."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseArray
from residual_interfaces.msg import ObjectPose, ObjectPoseArray
from rostest_utils import console_script
from scipy.spatial.transform import Rotation
from sensor_msgs.msg import CameraInfo, Image

pytestmark = pytest.mark.ros

GT = {"cube": ((0.5, 0.05, 0.02), tuple(Rotation.from_euler("z", 0.3).as_quat())),
      "target": ((0.55, -0.1, 0.0), (0.0, 0.0, 0.0, 1.0)),
      "mug": ((0.4, 0.2, 0.05), (0.0, 0.0, 0.0, 1.0))}


def gt_message(stamp: Time) -> ObjectPoseArray:
    msg = ObjectPoseArray()
    msg.header.stamp, msg.header.frame_id = stamp, "fr3_link0"
    for name, (p, q) in GT.items():
        o = ObjectPose(name=name, confidence=1.0, measured=stamp)
        o.pose.position.x, o.pose.position.y, o.pose.position.z = p
        o.pose.orientation.x, o.pose.orientation.y, o.pose.orientation.z, o.pose.orientation.w = q
        msg.objects.append(o)
    return msg


def start(launch_node, *params: str):
    args = ["--ros-args", *(a for p in params for a in ("-p", p))]
    return launch_node([console_script("pose-estimator-node")], args, name="pose_estimator")


def exchange(probe, pub, outputs, make_msg, proc, timeout=20.0):
    """Publish ``make_msg(i)`` (i = 0, 1, ...) until the node answers; return the answer (it needs discovery first)."""
    deadline = time.monotonic() + timeout
    i = 0
    while time.monotonic() < deadline:
        sent = make_msg(i)
        pub.publish(sent)
        try:
            return probe.spin_until(lambda s=sent: next((m for m in outputs if m.header.stamp == s.header.stamp),
                                                        None), 0.3, "an answer")
        except TimeoutError:
            assert proc.running(), proc.output()
            i += 1
    raise TimeoutError(f"no answer in {timeout} s; node output:\n{proc.output()}")


def stamp_of(i: int) -> Time:
    return Time(sec=100 + i, nanosec=5000)


def test_gt_pass_through_republishes_the_task_objects(launch_node, ros_probe):
    proc = start(launch_node, "task:=pick_place", "source:=gt")
    outputs = ros_probe.collect(ObjectPoseArray, "/objects/poses")
    arrays = ros_probe.collect(PoseArray, "/objects/pose_array")
    pub = ros_probe.node.create_publisher(ObjectPoseArray, "/sim/object_poses_gt", 10)
    ros_probe.wait_for_subscribers(pub, timeout=20.0)
    out = exchange(ros_probe, pub, outputs, lambda i: gt_message(stamp_of(i)), proc)
    assert out.header.frame_id == "fr3_link0"
    assert [o.name for o in out.objects] == ["cube", "target"]  # the task's objects, in order; "mug" dropped
    for o in out.objects:
        p, q = GT[o.name]
        assert o.confidence == 1.0 and o.measured == out.header.stamp
        np.testing.assert_allclose([o.pose.position.x, o.pose.position.y, o.pose.position.z], p, atol=1e-12)
        got = [o.pose.orientation.x, o.pose.orientation.y, o.pose.orientation.z, o.pose.orientation.w]
        assert abs(abs(np.dot(got, q)) - 1.0) < 1e-12
    array = ros_probe.spin_until(lambda: next((a for a in arrays if a.header.stamp == out.header.stamp), None),
                                 5.0, "the PoseArray")
    assert array.header.frame_id == "fr3_link0" and len(array.poses) == 2
    stopped = proc.stop()
    assert (stopped.returncode, stopped.signal_used) == (0, "SIGINT"), proc.output()


def test_gt_pass_through_adds_noise_and_dropout(launch_node, ros_probe):
    proc = start(launch_node, "task:=pick_place", "source:=gt", "gt.noise_pos_m:=0.005",
                 "gt.noise_rot_rad:=0.05", "gt.dropout_p:=0.3", "gt.seed:=7")
    outputs = ros_probe.collect(ObjectPoseArray, "/objects/poses")
    pub = ros_probe.node.create_publisher(ObjectPoseArray, "/sim/object_poses_gt", 10)
    ros_probe.wait_for_subscribers(pub, timeout=20.0)
    answers = [exchange(ros_probe, pub, outputs, lambda i, k=k: gt_message(stamp_of(1000 * k + i)), proc)
               for k in range(60)]
    entries = [o for a in answers for o in a.objects]
    dropped = [o for o in entries if o.confidence == 0.0]
    assert 15 <= len(dropped) <= 60, f"{len(dropped)} of {len(entries)} dropped with p = 0.3"
    errors = np.array([np.subtract([o.pose.position.x, o.pose.position.y, o.pose.position.z], GT[o.name][0])
                       for o in entries])
    assert 0.0035 < errors.std() < 0.0065, f"position noise std {errors.std():.4f} m, configured 0.005"
    assert proc.running(), proc.output()


def test_aruco_mode_estimates_poses_from_a_rendered_image(launch_node, ros_probe):
    from franka_sim.env import FrankaTaskEnv

    env = FrankaTaskEnv("pick_place", image_size=(480, 640))
    env.reset(seed=2)
    rgb, truth, intr = env.render(), env.object_poses(), env.camera_intrinsics()
    env.close()
    proc = start(launch_node, "task:=pick_place", "source:=aruco")
    outputs = ros_probe.collect(ObjectPoseArray, "/objects/poses")
    info_pub = ros_probe.node.create_publisher(CameraInfo, "/camera/camera_info", 10)
    image_pub = ros_probe.node.create_publisher(Image, "/camera/image_raw", 10)
    ros_probe.wait_for_subscribers(image_pub, timeout=20.0)
    info = CameraInfo(width=640, height=480, distortion_model="plumb_bob", d=[0.0] * 5,
                      k=intr.matrix().ravel().tolist())

    def image(i: int) -> Image:
        info.header.stamp = stamp_of(i)
        info_pub.publish(info)
        msg = Image(height=480, width=640, encoding="rgb8", step=640 * 3, data=rgb.tobytes())
        msg.header.stamp, msg.header.frame_id = stamp_of(i), "camera_optical_frame"
        return msg

    out = exchange(ros_probe, image_pub, outputs, image, proc)
    assert [o.name for o in out.objects] == ["cube", "target"] and out.header.frame_id == "fr3_link0"
    for o in out.objects:
        assert o.confidence >= 0.5 and o.measured == out.header.stamp
        err = np.linalg.norm(np.subtract([o.pose.position.x, o.pose.position.y, o.pose.position.z], truth[o.name][0]))
        assert err < 0.015, f"{o.name}: {err * 1e3:.1f} mm"
    assert proc.running(), proc.output()


def test_aruco_images_wait_for_their_episode_and_a_re_published_image_gets_the_same_answer(launch_node, ros_probe):
    """With episode_topic (the sim's /sim/episode): an image is estimated once the status of its stamp is in; the same
    image again (the sim re-published the state) is answered with the poses published for it, not estimated again."""
    from franka_sim.env import FrankaTaskEnv
    from std_msgs.msg import String

    env = FrankaTaskEnv("cube_lift", image_size=(480, 640))
    env.reset(seed=3)
    rgb, intr = env.render(), env.camera_intrinsics()
    env.close()
    proc = start(launch_node, "task:=cube_lift", "source:=aruco", "episode_topic:=/sim/episode",
                 "episode_wait_s:=30.0", "image_reliable:=true")  # as in the sim graph (a lost 0.9 MB image is re-sent)
    outputs = ros_probe.collect(ObjectPoseArray, "/objects/poses")
    info_pub = ros_probe.node.create_publisher(CameraInfo, "/camera/camera_info", 10)
    image_pub = ros_probe.node.create_publisher(Image, "/camera/image_raw", 10)
    status_pub = ros_probe.node.create_publisher(String, "/sim/episode", 10)
    ros_probe.wait_for_subscribers(image_pub, timeout=20.0)
    ros_probe.wait_for_subscribers(status_pub, timeout=20.0)
    info = CameraInfo(width=640, height=480, distortion_model="plumb_bob", d=[0.0] * 5,
                      k=intr.matrix().ravel().tolist())

    def image(i: int) -> Image:
        info.header.stamp = stamp_of(i)
        info_pub.publish(info)
        stamp = stamp_of(i)
        status = {"episode": 1, "step": i, "stamp_ns": stamp.sec * 10**9 + stamp.nanosec}
        status_pub.publish(String(data=json.dumps(status)))
        msg = Image(height=480, width=640, encoding="rgb8", step=640 * 3, data=rgb.tobytes())
        msg.header.stamp, msg.header.frame_id = stamp, "camera_optical_frame"
        return msg

    first = exchange(ros_probe, image_pub, outputs, image, proc)
    (cube,) = first.objects
    assert cube.confidence > 0.5
    again = Image(height=480, width=640, encoding="rgb8", step=640 * 3, data=rgb.tobytes())
    again.header.stamp, again.header.frame_id = first.header.stamp, "camera_optical_frame"
    image_pub.publish(again)
    answers = ros_probe.spin_until(lambda: [m for m in outputs if m.header.stamp == first.header.stamp][1:], 10.0,
                                   "the answer to the re-published image")
    assert answers[0].objects == first.objects
    assert proc.running(), proc.output()


def test_with_the_front_camera_a_stamp_is_answered_once_both_images_are_in(launch_node, ros_probe):
    """front_camera (as in the sim graph): the scene camera's and the front camera's images of one stamp are joined and
    estimated together; one image alone is not answered. The state: pick_place's cube carried by the scripted expert,
    hidden from the scene camera by the hand, seen by the front camera."""
    from franka_sim.env import FrankaTaskEnv
    from franka_sim.experts import ScriptedExpert

    env = FrankaTaskEnv("pick_place", image_size=(480, 640))
    env.reset(seed=0)
    expert = ScriptedExpert("pick_place", rng=np.random.default_rng(0))
    while env.object_poses()["cube"][0][2] < 0.06:
        env.step(expert.act(env.task_state()))
    scene_rgb, front_rgb, truth, intr = env.render(), env.render("front"), env.object_poses(), env.camera_intrinsics()
    env.close()
    proc = start(launch_node, "task:=pick_place", "source:=aruco", "front_camera:=true",
                 "image_reliable:=true")  # as in the sim graph (a best-effort 0.9 MB image may be lost)
    outputs = ros_probe.collect(ObjectPoseArray, "/objects/poses")
    pubs = {name: (ros_probe.node.create_publisher(CameraInfo, f"/{name}/camera_info", 10),
                   ros_probe.node.create_publisher(Image, f"/{name}/image_raw", 10))
            for name in ("camera", "camera_front")}
    for _, image_pub in pubs.values():
        ros_probe.wait_for_subscribers(image_pub, timeout=20.0)
    info = CameraInfo(width=640, height=480, distortion_model="plumb_bob", d=[0.0] * 5,
                      k=intr.matrix().ravel().tolist())

    def publish(name: str, rgb: np.ndarray, stamp: Time) -> Image:
        info.header.stamp = stamp
        pubs[name][0].publish(info)
        msg = Image(height=480, width=640, encoding="rgb8", step=640 * 3, data=rgb.tobytes())
        msg.header.stamp, msg.header.frame_id = stamp, "camera_optical_frame"
        return msg

    def both(i: int) -> Image:
        pubs["camera_front"][1].publish(publish("camera_front", front_rgb, stamp_of(i)))
        return publish("camera", scene_rgb, stamp_of(i))

    out = exchange(ros_probe, pubs["camera"][1], outputs, both, proc)
    cube = next(o for o in out.objects if o.name == "cube")
    err = np.linalg.norm(np.subtract([cube.pose.position.x, cube.pose.position.y, cube.pose.position.z],
                                     truth["cube"][0]))
    assert cube.confidence >= 0.5 and err < 0.01, f"cube: confidence {cube.confidence:.2f}, {err * 1e3:.1f} mm"
    alone = stamp_of(1000)
    pubs["camera"][1].publish(publish("camera", scene_rgb, alone))
    with pytest.raises(TimeoutError):  # the scene camera's image alone is held for the front camera's
        ros_probe.spin_until(lambda: next((m for m in outputs if m.header.stamp == alone), None), 1.5, "no answer")
    pubs["camera_front"][1].publish(publish("camera_front", front_rgb, alone))
    ros_probe.spin_until(lambda: next((m for m in outputs if m.header.stamp == alone), None), 10.0, "the answer")
    assert proc.running(), proc.output()
