"""Episodes through the real-mode graph against the franka_ros2 twin, in real time: success per task and seed, base
alone and base + residual.

    .venv/bin/python tools/twin_episodes.py --tasks all --seeds 0-9 --law impedance --json-out docs/results_twin.json

Per task one graph (``residual-launch --mode real --robot twin``: twin, gripper bridge, pose estimator, sim base,
residual, arbiter) with the shipped checkpoints; the twin's camera sits at a fixed extrinsic 5-8 cm from the sim
camera's, which the graph learns only through ``--hand-eye``. Per seed the twin's ``~/reset`` starts the episode and
the arbiter's ``~/enable_residual`` chooses base alone or base + residual; the episode runs in real time until the
twin reports success or the task's horizon (steps of 50 ms of the twin's physics time, as in the sim's episodes).
Targets reach the twin on the controller topic (/target_pose) and the gripper through the franka_gripper actions;
the residual and the arbiter read the object poses the estimator derives from the camera through hand_eye; the base
(the sim BC policy, a VLA's stand-in) reads the twin's true poses, as it does in sim mode.

Prints one line per episode and a markdown table; ``--json-out`` writes every episode. Real time on a shared machine:
the twin reports how far its physics fell behind the wall clock (``rtf``, real-time factor), and the object pose rate
and largest gap are measured per episode.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TASKS = ("cube_lift", "pick_place", "stack_cube", "close_drawer", "stand_cup_up")
EXTRINSIC_SEED = 1
"""The fixed camera extrinsic of the table (``camera_extrinsic(EXTRINSIC_SEED)``)."""


def optical_pose(pos: np.ndarray, lookat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Optical frame (z forward, x right, y down) of a camera at ``pos`` aimed at ``lookat``, world z up."""
    from scipy.spatial.transform import Rotation

    z = np.asarray(lookat, dtype=np.float64) - pos
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])  # image right
    x /= np.linalg.norm(x)
    y = np.cross(z, x)  # image down
    return np.asarray(pos, dtype=np.float64), Rotation.from_matrix(np.stack([x, y, z], axis=1)).as_quat()


def camera_extrinsic(seed: int | None) -> list[float]:
    """x y z qx qy qz qw of a camera optical frame 5-8 cm from the sim camera's, aimed at a point moved up to 3 cm
    (``seed`` None: a random one)."""
    from residual_core.sim_camera import SIM_CAMERA_LOOKAT, SIM_CAMERA_POS

    rng = np.random.default_rng(seed)
    offset = rng.normal(size=3)
    pos = np.array(SIM_CAMERA_POS) + offset / np.linalg.norm(offset) * rng.uniform(0.05, 0.08)
    pos, quat = optical_pose(pos, np.array(SIM_CAMERA_LOOKAT) + rng.uniform(-0.03, 0.03, 3))
    return [*map(float, pos), *map(float, quat)]


def sim_camera_pose() -> list[float]:
    """The sim camera's own optical frame (what a graph that ignores hand_eye would assume)."""
    from residual_core.sim_camera import SIM_CAMERA_LOOKAT, SIM_CAMERA_POS

    pos, quat = optical_pose(np.array(SIM_CAMERA_POS), np.array(SIM_CAMERA_LOOKAT))
    return [*map(float, pos), *map(float, quat)]


def graph_command(task: str, law: str, extrinsic: list[float], base_checkpoint: str, checkpoint: str,
                  hand_eye: list[float] | None = None, residual: bool = True, extra: tuple[str, ...] = ()) -> list[str]:
    """``residual-launch --mode real --robot twin`` with the twin's camera at ``extrinsic`` and ``hand_eye`` (default:
    the same numbers) given to the graph; ``residual`` False leaves the residual node out."""
    exe = str(Path(sys.executable).parent / "residual-launch")
    nodes = ["franka_twin", "gripper_bridge", "pose_estimator", "base", "arbiter"] + (["residual"] if residual else [])
    cmd = [exe, "--mode", "real", "--robot", "twin", "--task", task,
           "--hand-eye", *map(str, hand_eye or extrinsic), "--allow-missing", "--base-backend", "sim_bc",
           "--base-checkpoint", str(base_checkpoint), "--checkpoint", str(checkpoint), "--only", *nodes,
           "--set", f"franka_twin.camera_extrinsic={list(extrinsic)}", "--set", f"franka_twin.law={law}",
           # real.yaml sets the openpi (LIBERO) action convention for the robot's VLA; the sim base speaks ours
           "--set", "base.action_convention=ours",
           # real.yaml starts the robot slowly (speed scale 0.25); the policies were trained at the sim's full steps
           "--set", "arbiter.lab.speed_scale=1.0"]
    for item in extra:
        cmd += ["--set", item]
    return cmd


@dataclass
class EpisodeResult:
    """One episode through the twin."""

    task: str
    seed: int
    residual: bool
    success: bool
    steps: int
    """Steps (50 ms of twin time) to the first success; the horizon when it failed."""
    horizon: int
    wall_s: float
    rtf: float
    """Twin physics time / wall time over the episode (1: real time)."""
    camera_hz: float
    """Images the twin published per wall second."""
    pose_hz: float
    """Object pose messages per wall second (/objects/poses, the estimator's)."""
    pose_max_gap_s: float
    seen: float
    """Fraction of the pose messages in which the first task object was detected (confidence > 0)."""
    pose_error_mm: float
    """Median distance of the objects' estimated positions the residual uses (confidence at or above its
    ``min_confidence``; below it the residual and the arbiter take the object as a dropout) to the twin's truth
    (nearest status in time); NaN when there were none. Before 2026-12-05 every detection counted (confidence > 0):
    an estimate of the drawer pull half hidden under the fingers (confidence 0.03-0.21, 11-35 mm off, measured)
    could then make an episode's median."""
    target_hz: float
    """Targets on the controller topic per wall second."""
    tcp_outside_s: float = 0.0
    """Seconds of the episode the measured TCP spent outside the arbiter's workspace box (+1 cm)."""
    tcp_outside_before_reset_s: float = 0.0
    """The same between the previous episode's end and this episode's reset (the graph keeps commanding)."""
    limit_reflexes: list = field(default_factory=list)
    """The twin's joint-limit reflexes in this episode (franka_msgs/Errors names each; the arm then holds in REFLEX
    for the rest of the episode, as the robot would until an error recovery)."""
    target_lead_mm_p95: float = float("nan")
    """95th percentile over the episode's targets of their distance from the measured TCP when they arrived: how far
    the commands lead the arm (what compose_from target's track_tolerance must allow)."""
    rearmed: str = ""
    """"" when the arbiter was still armed at the end of the previous episode, else what arming it then answered (the
    lab guard disarms when the robot state or TCP pose goes stale: a loaded machine; a disarmed arbiter sends no
    target). Every episode is run disarmed across the reset and armed after it."""


@dataclass
class TwinWatch:
    """Subscriptions and clients on an rclpy node: the twin's status, the estimates, the controller targets."""

    node: object
    spin_until: Callable
    """spin_until(predicate, timeout_s, what) -> the predicate's truthy value (raises on timeout)."""
    statuses: list = field(default_factory=list)
    estimates: list = field(default_factory=list)
    targets: list = field(default_factory=list)
    target_leads: list = field(default_factory=list)
    """(receive time, distance in m of the target from the newest measured TCP sample)."""
    actions: dict = field(default_factory=dict)
    """Topic -> EefActions received (/base/action, /residual/action)."""
    _last_end: float | None = None
    tcp: list = field(default_factory=list)
    """(receive time, position) of the measured TCP (current_pose, 1 kHz), kept at most every 20 ms."""
    box: tuple = ((0.25, -0.40, 0.0), (0.8, 0.4, 0.6))
    """The arbiter's workspace box in real mode (config/real.yaml): targets never leave it; the arm should not."""

    def __post_init__(self) -> None:
        from geometry_msgs.msg import PoseStamped
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from residual_interfaces.msg import EefAction, ObjectPoseArray
        from residual_interfaces.srv import ResetEpisode
        from residual_ros import franka_interfaces as fi
        from std_msgs.msg import String
        from std_srvs.srv import SetBool

        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        n = self.node
        n.create_subscription(String, f"/{fi.TWIN.name}/episode",
                              lambda m: self.statuses.append((time.monotonic(), json.loads(m.data))), latched)
        n.create_subscription(ObjectPoseArray, "/objects/poses", lambda m: self.estimates.append((time.monotonic(), m)),
                              50)
        n.create_subscription(PoseStamped, fi.CURRENT_POSE.name, self._on_tcp, fi.CURRENT_POSE.qos.profile())
        n.create_subscription(PoseStamped, fi.TRACKING_CONTROLLER.target.name, self._on_target, 50)
        for topic in ("/base/action", "/residual/action"):
            self.actions[topic] = []
            n.create_subscription(EefAction, topic, lambda m, t=topic: self.actions[t].append(m), 50)
        self.reset_client = n.create_client(ResetEpisode, f"/{fi.TWIN.name}/reset")
        self.enable_client = n.create_client(SetBool, "/arbiter/enable_residual")
        self.arm_client = n.create_client(SetBool, "/arbiter/arm")

    def _on_tcp(self, msg) -> None:
        now = time.monotonic()
        if not self.tcp or now - self.tcp[-1][0] >= 0.02:
            p = msg.pose.position
            self.tcp.append((now, (p.x, p.y, p.z)))

    def _on_target(self, msg) -> None:
        now = time.monotonic()
        self.targets.append(now)
        if self.tcp:
            p = msg.pose.position
            self.target_leads.append((now, float(np.linalg.norm(np.subtract((p.x, p.y, p.z), self.tcp[-1][1])))))

    def outside_box_s(self, t0: float, t1: float) -> float:
        """Seconds in [t0, t1] the measured TCP was outside the workspace box (by the 20 ms samples)."""
        lo, hi = np.array(self.box[0]), np.array(self.box[1])
        out = [np.any(np.array(p) < lo - 0.01) or np.any(np.array(p) > hi + 0.01) for t, p in self.tcp
               if t0 <= t <= t1]
        return round(0.02 * sum(out), 2)

    def call(self, client, request, timeout: float = 30.0):
        assert client.wait_for_service(timeout_sec=timeout), f"service {client.srv_name} not available"
        future = client.call_async(request)
        return self.spin_until(lambda: future.result() if future.done() else None, timeout, client.srv_name)

    def wait_up(self, residual: bool, timeout: float = 180.0) -> None:
        """Until the twin reports, the estimator publishes and the base (and the residual) send actions; then arm the
        arbiter (real.yaml starts it disarmed; retried while the robot state and TCP pose are still on their way) and
        wait for its targets."""
        self.spin_until(lambda: self.statuses and self.estimates and self.actions["/base/action"]
                        and (self.actions["/residual/action"] or not residual), timeout,
                        "twin status, object estimates, base" + (" and residual" if residual else "") + " actions")
        assert self.enable_client.wait_for_service(timeout_sec=timeout), "arbiter ~/enable_residual"
        arm_arbiter(self.node, self.spin_until, timeout, client=self.arm_client)
        self.spin_until(lambda: self.targets, timeout, "controller targets after arming")

    def run_episode(self, task: str, seed: int, residual: bool, horizon_factor: float = 1.0,
                    timeout_factor: float = 3.0) -> EpisodeResult:
        """Reset the twin to (task, seed), switch the residual, run to success or ``horizon_factor`` x the task's
        horizon (1: the sim's episodes; success is then reported with the steps it took, ``horizon`` is the limit)."""
        from residual_core.observation import PoseFreshness
        from residual_interfaces.srv import ResetEpisode
        from std_srvs.srv import SetBool

        resp = self.call(self.enable_client, SetBool.Request(data=residual))
        assert resp.success, resp.message
        # Where the arm went since the last episode ended: outside the workspace box is a fault worth seeing (once
        # measured: the twin's arm swinging outside it after an episode, when the graph kept commanding across resets).
        before = self.outside_box_s(self._last_end, time.monotonic()) if self._last_end is not None else 0.0
        # Was the arbiter still armed at the end of the last episode (the lab guard disarms on a stale robot state or
        # TCP pose: a loaded machine)? Then disarmed across the reset, as on the robot (residual-lab home --arm): the
        # twin's reset moves the arm at once, and a target of the old episode arriving after it is a jump (with the
        # stiff law a joint-velocity reflex, measured).
        still = self.call(self.arm_client, SetBool.Request(data=True)).message
        assert self.call(self.arm_client, SetBool.Request(data=False)).success
        resp = self.call(self.reset_client, ResetEpisode.Request(task=task, seed=seed))
        assert resp.success, resp.message
        first = len(self.statuses)
        status = self.spin_until(lambda: next((s for _, s in self.statuses[first:] if s["seed"] == seed), None),
                                 20.0, f"the twin's status of seed {seed}")
        arm_arbiter(self.node, self.spin_until, 60.0, client=self.arm_client)
        rearmed = "" if still == "already armed" or self._last_end is None else f"was disarmed: {still}"
        episode, horizon = status["episode"], int(round(horizon_factor * int(status["horizon"])))
        t0, e0, g0 = time.monotonic(), len(self.estimates), len(self.targets)

        def finished():
            s = self.statuses[-1][1]
            return s["episode"] == episode and (s["success"] or s["step"] >= horizon)

        # the horizon in twin time; a twin that fell far behind the wall clock still ends (timeout_factor)
        self.spin_until(finished, timeout_factor * horizon * 0.05 + 30.0, f"episode {episode} to end")
        t1 = self._last_end = time.monotonic()
        mine = [(t, s) for t, s in self.statuses if s["episode"] == episode]
        won = next((s for _, s in mine if s["success"]), None)
        wall = mine[-1][0] - mine[0][0]
        rtf = (mine[-1][1]["time"] - mine[0][1]["time"]) / wall if wall > 0 else float("nan")
        ests = [(t, m) for t, m in self.estimates[e0:] if t <= t1]
        times = np.array([t for t, _ in ests])
        gaps = np.diff(np.concatenate([[t0], times, [t1]]))
        leads = [d for t, d in self.target_leads if t0 <= t <= t1]
        errors, seen = [], []
        used = PoseFreshness().min_confidence
        for t, m in ests:
            truth = min(mine, key=lambda x: abs(x[0] - t))[1]["objects"]
            if m.objects:
                seen.append(m.objects[0].confidence > 0)
            for o in m.objects:
                if o.confidence >= used and o.name in truth:
                    p = o.pose.position
                    errors.append(float(np.linalg.norm(np.array([p.x, p.y, p.z]) - truth[o.name][:3])))
        return EpisodeResult(
            task=task, seed=seed, residual=residual, success=won is not None,
            steps=int(won["step"]) if won is not None else horizon, horizon=horizon, wall_s=round(t1 - t0, 2),
            rtf=round(rtf, 3),
            camera_hz=round((mine[-1][1].get("camera_frames", 0) - mine[0][1].get("camera_frames", 0)) / wall, 2)
            if wall > 0 else float("nan"),
            pose_hz=round(len(ests) / max(t1 - t0, 1e-9), 2),
            pose_max_gap_s=round(float(gaps.max()), 3), seen=round(float(np.mean(seen)) if seen else 0.0, 3),
            pose_error_mm=round(1e3 * float(np.median(errors)), 2) if errors else float("nan"),
            target_hz=round((len([t for t in self.targets[g0:] if t <= t1])) / max(t1 - t0, 1e-9), 2),
            rearmed=rearmed, tcp_outside_s=self.outside_box_s(t0, t1), tcp_outside_before_reset_s=before,
            limit_reflexes=list(mine[-1][1].get("limit_reflexes", [])),
            target_lead_mm_p95=round(1e3 * float(np.quantile(leads, 0.95)), 1) if leads else float("nan"))


def arm_arbiter(node, spin_until, timeout: float = 60.0, period_s: float = 0.5, client=None) -> str:
    """Call /arbiter/arm until it succeeds (``spin_until(predicate, timeout, what)`` spins ``node``; ``client``: a
    SetBool client of /arbiter/arm, default a new one); its message ("already armed" when it was). AssertionError
    with the last refusal on timeout."""
    from std_srvs.srv import SetBool

    client = client or node.create_client(SetBool, "/arbiter/arm")
    assert client.wait_for_service(timeout_sec=timeout), "arbiter ~/arm"
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        future = client.call_async(SetBool.Request(data=True))
        resp = spin_until(lambda f=future: f.result() if f.done() else None, timeout, "/arbiter/arm")
        if resp.success:
            return resp.message
        last, t = resp.message, time.monotonic() + period_s
        spin_until(lambda t=t: time.monotonic() > t, period_s + 5.0, "the next arming try")
    raise AssertionError(f"the arbiter could not be armed within {timeout:.0f} s: {last}")


def parse_seeds(text: str) -> list[int]:
    """``0-9`` or ``1,5,7``."""
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def table(results: list[EpisodeResult]) -> str:
    lines = ["| task | base | base + residual | mean steps to success (base / + residual) | joint-limit reflexes "
             "(episodes, base / + residual) | target lead p95 (mm, median) | twin real-time factor (min) | images "
             "(Hz, median) | object poses (Hz, median) | largest pose gap (s) | pose error (mm, median) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for task in dict.fromkeys(r.task for r in results):
        rows = [r for r in results if r.task == task]
        parts = []
        for residual in (False, True):
            rs = [r for r in rows if r.residual == residual]
            parts.append((sum(r.success for r in rs), len(rs),
                          np.mean([r.steps for r in rs if r.success]) if any(r.success for r in rs) else float("nan"),
                          sum(bool(r.limit_reflexes) for r in rs)))
        (bs, bn, bsteps, bref), (rs_, rn, rsteps, rref) = parts
        med = {k: np.nanmedian([getattr(r, k) for r in rows])
               for k in ("camera_hz", "pose_hz", "pose_error_mm", "target_lead_mm_p95")}
        lines.append(f"| {task} | {bs}/{bn} | {rs_}/{rn} | {bsteps:.1f} / {rsteps:.1f} | {bref} / {rref} | "
                     f"{med['target_lead_mm_p95']:.0f} | {min(r.rtf for r in rows):.2f} | {med['camera_hz']:.1f} | "
                     f"{med['pose_hz']:.1f} | {max(r.pose_max_gap_s for r in rows):.2f} | "
                     f"{med['pose_error_mm']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", nargs="+", default=["all"], help="task names or all")
    ap.add_argument("--seeds", default="0-9", help="0-9 or 1,5,7")
    ap.add_argument("--law", default="impedance", choices=("impedance", "stiff", "stock_example"))
    ap.add_argument("--modes", nargs="+", default=["base", "residual"], choices=("base", "residual"))
    ap.add_argument("--horizon-factor", type=float, default=1.0,
                    help="run each episode up to this many times the task's horizon (1: as the sim's episodes)")
    ap.add_argument("--json-out", default="", help="write every episode here (JSON)")
    ap.add_argument("--set", action="append", default=[], help="extra residual-launch --set NODE.PARAM=VALUE")
    args = ap.parse_args()
    tasks = TASKS if args.tasks == ["all"] else tuple(args.tasks)
    seeds = parse_seeds(args.seeds)

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from residual_bringup.demo.graph_process import isolated_ros_env, reserve_domain_id, stop_process

    log_dir = Path(tempfile.mkdtemp(prefix="twin_episodes_"))
    ros = isolated_ros_env(reserve_domain_id(), log_dir)
    os.environ.pop("ROS_LOCALHOST_ONLY", None)
    os.environ.update(ros)  # this process's node joins the same domain
    env = dict(os.environ)
    extrinsic = camera_extrinsic(EXTRINSIC_SEED)
    results: list[EpisodeResult] = []
    print(f"domain {env['ROS_DOMAIN_ID']}, logs {log_dir}, law {args.law}, camera {extrinsic}", flush=True)
    for task in tasks:
        ckpt, base = REPO / "checkpoints" / "residual" / task, REPO / "checkpoints" / "base" / "base_policy"
        cmd = graph_command(task, args.law, extrinsic, str(base), str(ckpt), extra=tuple(args.set))
        with open(log_dir / f"graph_{task}.log", "wb") as log:
            graph = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        context = rclpy.Context()
        rclpy.init(context=context)
        node = rclpy.create_node("twin_episodes", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)

        def spin_until(predicate, timeout, what, _executor=executor, _graph=graph, _task=task):
            deadline = time.monotonic() + timeout
            while True:
                if _graph.poll() is not None:
                    raise RuntimeError(f"the graph of {_task} exited ({_graph.returncode}): {log_dir}")
                value = predicate()
                if value:
                    return value
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{what}: not within {timeout:.0f} s")
                _executor.spin_once(timeout_sec=0.02)

        try:
            watch = TwinWatch(node, spin_until)
            watch.wait_up(residual=True)
            for mode in args.modes:
                for seed in seeds:
                    r = watch.run_episode(task, seed, residual=mode == "residual", horizon_factor=args.horizon_factor)
                    results.append(r)
                    print(json.dumps(asdict(r)), flush=True)
        finally:
            executor.shutdown()
            node.destroy_node()
            rclpy.shutdown(context=context)
            stop_process(graph, 20.0, 5.0)
            graph.wait()
        if args.json_out:
            record = {"law": args.law, "seeds": seeds, "horizon_factor": args.horizon_factor,
                      "camera_extrinsic": extrinsic, "episodes": [asdict(r) for r in results]}
            Path(args.json_out).write_text(json.dumps(record, indent=1) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
