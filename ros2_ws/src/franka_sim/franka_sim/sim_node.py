"""ROS 2 node ``sim`` (``franka-sim-node``): a FrankaTaskEnv in lockstep with the arbiter, or in real time.

Topics, order of publication, /sim/episode JSON, which commands (``/arbiter/command``) are taken, lockstep and
episode ends: see :mod:`franka_sim.sim_bridge` (everything decided there; this file is glue). Service
``/sim/reset`` (residual_interfaces/ResetEpisode: task, seed) resets the env and the step counter, starts the next
episode id and publishes the first state.

Inputs are checked before use (:mod:`residual_ros.validate`): an ``/arbiter/command`` whose content is unusable (a
valid one: a target not in ``frame_id``, not finite, out of range or not a unit quaternion; a gripper outside [0, 1])
is dropped before its episode and step are judged (:meth:`~franka_sim.sim_bridge.EpisodeMachine.accept_command`); a
pose-barrier array in another frame or malformed releases nothing. Drops are counted, logged (throttled) and
reported on ``/diagnostics`` with the commands dropped by episode/step reason.
"""

from __future__ import annotations

import array
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from residual_core.tasks import check_task
from residual_interfaces.msg import ArbiterCommand, ObjectPose, ObjectPoseArray
from residual_interfaces.srv import ResetEpisode
from residual_ros import validate as v
from residual_ros.diagnostics import diagnostic_array, node_status
from residual_ros.node_main import run_node
from residual_ros.params import declare_config
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Header, String, UInt64

from franka_sim import sim_bridge as sb
from franka_sim.env import FrankaTaskEnv


def _pose(pos, quat) -> Pose:
    return Pose(position=Point(x=float(pos[0]), y=float(pos[1]), z=float(pos[2])),
                orientation=Quaternion(x=float(quat[0]), y=float(quat[1]), z=float(quat[2]), w=float(quat[3])))


class SimNode(Node):
    def __init__(self, **node_kwargs):
        super().__init__("sim", **node_kwargs)
        self.cfg = cfg = declare_config(self, sb.SimNodeConfig)
        self.env: FrankaTaskEnv | None = None
        self._make_env(cfg.task)
        self.machine = sb.EpisodeMachine(lockstep=cfg.lockstep, wait_for_poses=cfg.pose_topic is not None)
        self.clock = sb.SimClock(cfg.control_dt)
        self.camera_every = sb.camera_every(cfg.camera_rate_hz, cfg.control_dt)
        self.rng = np.random.default_rng()
        self.steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.last_gripper = 0.0
        self._latest: sb.TargetCommand | None = None  # real-time mode: newest valid command taken in the episode
        self._stamp = (0, 0)  # stamp of the state published last

        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.clock_pub = self.create_publisher(ClockMsg, "/clock", reliable) if cfg.publish_clock else None
        self.joint_pub = self.create_publisher(JointState, "/joint_states", reliable)
        self.tcp_pub = self.create_publisher(PoseStamped, "/tcp_pose", reliable)
        self.gt_pub = self.create_publisher(ObjectPoseArray, "/sim/object_poses_gt", reliable)
        self.objects_pub = (self.create_publisher(ObjectPoseArray, "/objects/poses", reliable)
                            if cfg.publish_object_poses else None)
        if cfg.render_camera:
            self.image_pub = self.create_publisher(Image, "/camera/image_raw", QoSProfile(depth=2))
            self.info_pub = self.create_publisher(CameraInfo, "/camera/camera_info", reliable)
            if cfg.front_camera:
                self.front_image_pub = self.create_publisher(Image, "/camera_front/image_raw", QoSProfile(depth=2))
                self.front_info_pub = self.create_publisher(CameraInfo, "/camera_front/camera_info", reliable)
        self.episode_pub = self.create_publisher(String, "~/episode", latched)
        self.step_pub = self.create_publisher(UInt64, "~/step", reliable)
        self.drops = v.DropCounter()
        self.pose_frames = v.same_frames(cfg.frame_id)  # what pose inputs may be in
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(cfg.diagnostics_period_s, self._publish_diagnostics, clock=self.steady)
        self.command_topic = self.create_subscription(ArbiterCommand, "/arbiter/command", self._on_command,
                                                      reliable).topic_name
        if cfg.lockstep:
            self.create_timer(0.05, self._lockstep_watch, clock=self.steady)
        else:
            self.create_timer(cfg.control_dt, self._realtime_tick, clock=self.steady)
        if cfg.pose_topic is not None:
            self.pose_topic = self.create_subscription(ObjectPoseArray, cfg.pose_topic, self._on_poses,
                                                       reliable).topic_name
        self.create_service(ResetEpisode, "~/reset", self._on_reset)
        camera = (f"{cfg.image_width}x{cfg.image_height}{' + front' if cfg.front_camera else ''}" if cfg.render_camera
                  else "off")
        self.get_logger().info(f"sim: task={cfg.task} {'lockstep' if cfg.lockstep else 'real-time'} "
                               f"camera={camera} pose barrier={cfg.pose_topic or 'off'}")
        if cfg.autostart:
            self.start_episode(cfg.task, sb.resolve_seed(cfg.seed, self.rng))

    # --- episodes ------------------------------------------------------------------------------------------------
    def _make_env(self, task: str) -> None:
        if self.env is not None:
            self.env.close()
        cfg = self.cfg
        self.env = FrankaTaskEnv(task, render_camera=False, image_size=(cfg.image_height, cfg.image_width))
        sb.check_control_dt(cfg.control_dt, self.env.sim.control_dt)
        m = self.env.model
        self._finger_dofs = [int(m.jnt_dofadr[m.joint(n).id]) for n in sb.FINGER_JOINTS]

    def start_episode(self, task: str, seed: int) -> sb.EpisodeStatus:
        if task != self.env.task:
            self._make_env(task)
        self.env.reset(seed=seed)
        self.clock.new_episode()
        self.machine.begin(task, seed, self.cfg.max_steps or self.env.horizon)
        self.last_gripper, self._latest = 0.0, None
        self.get_logger().info(f"episode {self.machine.episode}: task={task} seed={seed} "
                               f"horizon={self.machine.horizon}")
        return self._publish_state()

    def _on_reset(self, req: ResetEpisode.Request, resp: ResetEpisode.Response) -> ResetEpisode.Response:
        task = req.task or self.env.task
        try:
            self.start_episode(check_task(task), sb.resolve_seed(req.seed, self.rng))
        except ValueError as exc:
            resp.success, resp.message = False, str(exc)
            return resp
        resp.success, resp.instruction = True, self.env.instruction
        resp.message = f"episode {self.machine.episode}: task {task}, seed {self.machine.seed}"
        return resp

    # --- stepping ------------------------------------------------------------------------------------------------
    def _apply(self, command: sb.TargetCommand) -> None:
        sb.advance(self.env, command)
        self.last_gripper = command.gripper
        done = self.machine.advanced(self.env.is_success())
        status = self._publish_state()
        if done:
            self.get_logger().info(f"episode {status.episode} (seed {status.seed}) done: {status.reason} "
                                   f"after {status.step} steps")

    def _hold(self) -> sb.TargetCommand:
        return sb.hold_command(*self.env.tcp_pose(), self.last_gripper)

    def _on_command(self, msg: ArbiterCommand) -> None:
        if self.drops.refuse(self.command_topic, v.arbiter_command_reason(msg, self.pose_frames),
                             self.get_logger().warn):
            return
        check = self.machine.accept_command(int(msg.episode), int(msg.step))
        if not check.accepted:
            if check.reason != "not_waiting":
                self.get_logger().info(f"dropped the command of episode {msg.episode} step {msg.step} "
                                       f"({check.reason}; dropped so far: {self.machine.dropped})",
                                       throttle_duration_sec=2.0)
            return
        p, q = msg.target.position, msg.target.orientation
        command, why = sb.command_from_arbiter(msg.valid, (p.x, p.y, p.z), (q.x, q.y, q.z, q.w), msg.gripper)
        if command is None:
            self.get_logger().warn(f"step {msg.step}: no applicable target ({why}): holding the pose",
                                   throttle_duration_sec=2.0)
        if self.cfg.lockstep:
            self._apply(command or self._hold())
        else:
            self._latest = command

    def _on_poses(self, msg: ObjectPoseArray) -> None:
        if self.drops.refuse(self.pose_topic, v.object_pose_array_reason(msg, self.pose_frames),
                             self.get_logger().warn):
            return
        # Only the answer to the current state (same stamp) releases the step; a late answer to an older one not.
        if (msg.header.stamp.sec, msg.header.stamp.nanosec) == self._stamp and self.machine.poses_arrived():
            self._publish_step()

    def _lockstep_watch(self) -> None:
        now = time.monotonic()
        timeout = self.machine.pose_timeout(self.cfg.lockstep_pose_timeout_s, self.cfg.lockstep_pose_retry_s)
        if self.machine.pose_wait_expired(now, timeout):
            self.get_logger().warn(f"no poses on {self.cfg.pose_topic} within {timeout} s for step "
                                   f"{self.machine.step}: publishing /sim/step anyway (until poses come again, "
                                   f"waiting {self.cfg.lockstep_pose_retry_s} s per step)", throttle_duration_sec=5.0)
            self._publish_step()
        elif self.machine.resend_due(now, self.cfg.resend_period_s):
            self.get_logger().warn(f"no command for step {self.machine.step} after {self.cfg.resend_period_s} s: "
                                   f"re-publishing it (resend {self.machine.resends}); are base and arbiter up?",
                                   throttle_duration_sec=5.0)
            self._publish_state(resend=True)

    def _realtime_tick(self) -> None:
        if self.machine.running:
            self._apply(self._latest or self._hold())

    # --- publishing ----------------------------------------------------------------------------------------------
    def _publish_state(self, resend: bool = False) -> sb.EpisodeStatus:
        """Everything of the current state, /sim/episode, then (if due) /sim/step; returns the status."""
        env, cfg = self.env, self.cfg
        t = self.clock.now(env.sim_time)
        header = Header(frame_id=cfg.frame_id)
        if cfg.publish_clock:
            header.stamp.sec, header.stamp.nanosec = sb.stamp_parts(t)
        else:  # the graph runs on another clock: stamp with it
            header.stamp = self.get_clock().now().to_msg()
        self._stamp = (header.stamp.sec, header.stamp.nanosec)
        if self.clock_pub is not None:
            clock = ClockMsg()
            clock.clock = header.stamp
            self.clock_pub.publish(clock)
        names, pos, vel = sb.joint_state_fields(env.joint_positions(), env.joint_velocities(),
                                                env.finger_positions(), env.sim.qvel[0, self._finger_dofs])
        self.joint_pub.publish(JointState(header=Header(stamp=header.stamp), name=names, position=pos, velocity=vel))
        self.tcp_pub.publish(PoseStamped(header=header, pose=_pose(*env.tcp_pose())))
        objects = ObjectPoseArray(header=header, objects=[
            ObjectPose(name=name, pose=_pose(p, q), confidence=1.0, measured=header.stamp)
            for name, (p, q) in env.object_poses().items()])
        self.gt_pub.publish(objects)
        if self.objects_pub is not None:
            self.objects_pub.publish(objects)
        camera_due = cfg.render_camera and (resend or self.machine.step % self.camera_every == 0)
        if camera_due:
            self._publish_camera(header)
        status = self.machine.status(t, header.stamp.sec * 1_000_000_000 + header.stamp.nanosec)
        self.episode_pub.publish(String(data=status.to_json()))
        # With a camera the pose estimator answers images (not every step when the camera is slower); else the
        # ground truth, published every step.
        if self.machine.state_published(time.monotonic(), poses_expected=camera_due or not cfg.render_camera):
            self._publish_step()
        return status

    def _publish_camera(self, header: Header) -> None:
        """The scene camera, then the front camera (``front_camera``); per camera camera_info first, so a pose
        estimator has the intrinsics when the image of the same stamp arrives."""
        cameras = [(None, self.cfg.camera_frame_id, self.info_pub, self.image_pub)]
        if self.cfg.front_camera:
            cameras.append(("front", sb.FRONT_CAMERA_FRAME, self.front_info_pub, self.front_image_pub))
        for camera, frame_id, info_pub, image_pub in cameras:
            img = self.env.render(camera)
            cam_header = Header(stamp=header.stamp, frame_id=frame_id)
            intr = self.env.camera_intrinsics(camera)
            fields = sb.camera_info_fields(intr.fx, intr.fy, intr.cx, intr.cy)
            info_pub.publish(CameraInfo(header=cam_header, height=intr.height, width=intr.width, **fields))
            msg = Image(header=cam_header, height=img.shape[0], width=img.shape[1], encoding="rgb8", is_bigendian=0,
                        step=img.shape[1] * 3)
            msg.data = array.array("B", img.tobytes())
            image_pub.publish(msg)

    def _publish_diagnostics(self) -> None:
        m = self.machine
        values = {"episode": m.episode, "step": m.step, "phase": m.phase.value, "resends": m.resends,
                  **{f"commands dropped {reason}": n for reason, n in m.dropped.items()}}
        status = node_status("sim", "ok", values, self.drops)
        self.diag_pub.publish(diagnostic_array(status, self.get_clock().now().to_msg()))

    def _publish_step(self) -> None:
        self.step_pub.publish(UInt64(data=self.machine.step))

    def destroy_node(self) -> None:
        if self.env is not None:
            self.env.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    run_node("franka-sim-node", SimNode, args, config_errors=(ValueError,))


if __name__ == "__main__":
    main()
