"""``residual-lab``: the lab engineer's commands for a running real-mode graph (the robot or its twin).

    residual-lab status              the arbiter's armed state, why not, speed scale; the robot mode (diagnostics)
    residual-lab arm                 arm (refused, with every reason, unless the robot is ready)
    residual-lab disarm              disarm and hold
    residual-lab stop                software stop: disarm, hold, stop the gripper
    residual-lab speed 0.5           set the speed scale (0, 1] on the per-step limits, live
    residual-lab recover [--arm]     franka's error recovery in order (error_recovery action, hardware component
                                     active, tracking controller active), re-sync the arbiter to the measured TCP,
                                     then wait for a fresh pose in MOVE; --arm arms at the end
    residual-lab home [--arm]        before an episode: the tracking controller off, franka's PTP motion to the start
                                     configuration, the controller on again, re-sync; --arm arms at the end

Each step prints what it did; a failed step stops the sequence with exit status 1 and says which step and why.
Names (services, actions, the controller) come from residual_ros.franka_interfaces.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from residual_ros import franka_interfaces as fi


class LabCommandError(RuntimeError):
    """A step of a lab command failed (the message says which and why)."""


@dataclass
class Step:
    name: str
    ok: bool
    message: str


def _step_recorder(sequence: str, steps: list[Step], log: Callable[[str], None]) -> Callable[[Step], None]:
    """``done(step)``: record and log a step of ``sequence``; a failed one ends it (LabCommandError naming it)."""
    def done(step: Step) -> None:
        steps.append(step)
        log(f"[{'ok' if step.ok else 'FAILED'}] {step.name}: {step.message}")
        if not step.ok:
            raise LabCommandError(f"{sequence} stopped at '{step.name}': {step.message}")
    return done


class LabClient:
    """A node of its own that calls the arbiter's and franka's services (spins only while it waits)."""

    def __init__(self, arbiter: str = "/arbiter", node_name: str = "residual_lab", context=None):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self._rclpy = rclpy
        self._own_context = context is None
        if self._own_context:
            context = rclpy.Context()
            rclpy.init(context=context)
        self.context = context
        self.node = rclpy.create_node(node_name, context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.arbiter = arbiter.rstrip("/")

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        if self._own_context and self.context.ok():
            self._rclpy.shutdown(context=self.context)

    # --- waiting --------------------------------------------------------------------------------------------------
    def spin_until(self, predicate: Callable[[], object], timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise LabCommandError(f"timed out after {timeout:.0f} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.05)

    def call(self, srv_type, name: str, request, timeout: float = 10.0):
        client = self.node.create_client(srv_type, name)
        try:
            self.spin_until(client.service_is_ready, timeout, f"service {name}")
            future = client.call_async(request)
            return self.spin_until(lambda: future.result() if future.done() else None, timeout, f"reply of {name}")
        finally:
            self.node.destroy_client(client)

    def action(self, action_type, name: str, goal, timeout: float = 30.0):
        """Send ``goal``; (status, result) once it ends."""
        from rclpy.action import ActionClient

        client = ActionClient(self.node, action_type, name)
        try:
            self.spin_until(client.server_is_ready, timeout, f"action server {name}")
            send = client.send_goal_async(goal)
            handle = self.spin_until(lambda: send.result() if send.done() else None, timeout, f"{name} goal accepted")
            if not handle.accepted:
                raise LabCommandError(f"{name}: goal rejected")
            result = handle.get_result_async()
            response = self.spin_until(lambda: result.result() if result.done() else None, timeout, f"{name} result")
            return response.status, response.result
        finally:
            client.destroy()

    # --- the arbiter ----------------------------------------------------------------------------------------------
    def arm(self, on: bool = True, timeout: float = 10.0) -> Step:
        from std_srvs.srv import SetBool

        resp = self.call(SetBool, f"{self.arbiter}/arm", SetBool.Request(data=on), timeout)
        return Step("arm" if on else "disarm", bool(resp.success), resp.message)

    def arm_when_ready(self, timeout: float = 30.0, period: float = 0.5) -> Step:
        """Call ~/arm until it succeeds (the robot state and TCP pose may still be on their way); the last refusal
        on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            step = self.arm(True, timeout=max(1.0, deadline - time.monotonic()))
            if step.ok or time.monotonic() > deadline:
                return step
            t = time.monotonic() + period
            self.spin_until(lambda t=t: time.monotonic() > t, period + 1.0, "the next arming try")

    def trigger(self, name: str, timeout: float = 10.0) -> Step:
        from std_srvs.srv import Trigger

        resp = self.call(Trigger, name, Trigger.Request(), timeout)
        return Step(name, bool(resp.success), resp.message)

    def set_speed_scale(self, scale: float, timeout: float = 10.0) -> Step:
        from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
        from rcl_interfaces.srv import SetParameters

        value = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=float(scale))
        req = SetParameters.Request(parameters=[Parameter(name="lab.speed_scale", value=value)])
        resp = self.call(SetParameters, f"{self.arbiter}/set_parameters", req, timeout)
        r = resp.results[0]
        return Step("speed", bool(r.successful), r.reason or f"speed scale {scale:g}")

    def status(self, timeout: float = 5.0) -> dict[str, str]:
        """The arbiter's latest diagnostics values (armed, disarm_reason, speed_scale, ...)."""
        from diagnostic_msgs.msg import DiagnosticArray

        got: dict[str, str] = {}

        def on(msg):
            for st in msg.status:
                if st.name == "action_arbiter":
                    got.clear()
                    got.update({kv.key: kv.value for kv in st.values}, _message=st.message)
        sub = self.node.create_subscription(DiagnosticArray, "/diagnostics", on, 10)
        try:
            self.spin_until(lambda: got, timeout, "the arbiter's diagnostics")
        finally:
            self.node.destroy_subscription(sub)
        return dict(got)

    # --- franka's recovery ----------------------------------------------------------------------------------------
    def recover(self, arm: bool = False, timeout: float = 30.0, log: Callable[[str], None] = print) -> list[Step]:
        """Disarm, then franka's sequence in order, re-sync, wait for MOVE and a fresh TCP pose; optionally arm.
        LabCommandError names the step that failed."""
        from controller_manager_msgs.srv import SetHardwareComponentState, SwitchController
        from franka_msgs.action import ErrorRecovery
        from lifecycle_msgs.msg import State

        steps: list[Step] = []
        done = _step_recorder("recovery", steps, log)
        done(self.arm(False, timeout))
        from action_msgs.msg import GoalStatus

        status, _ = self.action(ErrorRecovery, fi.ERROR_RECOVERY.name, ErrorRecovery.Goal(), timeout)
        done(Step("error recovery", status == GoalStatus.STATUS_SUCCEEDED,
                  "errors cleared" if status == GoalStatus.STATUS_SUCCEEDED else f"goal status {status}"))
        resp = self.call(SetHardwareComponentState, fi.SET_HARDWARE_COMPONENT_STATE.name,
                         SetHardwareComponentState.Request(
                             name=fi.HARDWARE_COMPONENT,
                             target_state=State(id=State.PRIMARY_STATE_ACTIVE, label="active")), timeout)
        done(Step(f"hardware component {fi.HARDWARE_COMPONENT} active", bool(resp.ok), f"state {resp.state.label}"))
        resp = self.call(SwitchController, fi.SWITCH_CONTROLLER.name, SwitchController.Request(
            activate_controllers=[fi.TRACKING_CONTROLLER.name], strictness=SwitchController.Request.STRICT), timeout)
        # (recent ros2_control adds a message to the reply; older releases have only ok)
        done(Step(f"controller {fi.TRACKING_CONTROLLER.name} active", bool(resp.ok),
                  getattr(resp, "message", "") or ("switched" if resp.ok else "switch refused")))
        done(self.trigger(f"{self.arbiter}/resync", timeout))
        done(self.wait_ready(timeout))
        if arm:
            done(self.arm_when_ready(timeout))
        return steps

    def home(self, joints=fi.START_JOINTS, velocity: float = 0.3, tolerance: float = 0.005, arm: bool = False,
             timeout: float = 60.0, log: Callable[[str], None] = print) -> list[Step]:
        """Move to a start configuration before an episode: disarm, deactivate the tracking controller, franka's PTP
        motion to ``joints`` (every joint at most ``velocity`` rad/s), activate the controller again (it starts at the
        measured pose), re-sync the arbiter, wait until ready; optionally arm. LabCommandError names the failed step."""
        from action_msgs.msg import GoalStatus
        from controller_manager_msgs.srv import SwitchController
        from franka_msgs.action import PTPMotion

        steps: list[Step] = []
        done = _step_recorder("homing", steps, log)
        controller = fi.TRACKING_CONTROLLER.name
        done(self.arm(False, timeout))
        resp = self.call(SwitchController, fi.SWITCH_CONTROLLER.name, SwitchController.Request(
            deactivate_controllers=[controller], strictness=SwitchController.Request.STRICT), timeout)
        done(Step(f"controller {controller} inactive", bool(resp.ok), "switched" if resp.ok else "switch refused"))
        goal = PTPMotion.Goal(goal_joint_configuration=[float(q) for q in joints],
                              maximum_joint_velocities=[float(velocity)] * 7, goal_tolerance=float(tolerance))
        status, result = self.action(PTPMotion, fi.PTP_MOTION.name, goal, timeout)
        ok = status == GoalStatus.STATUS_SUCCEEDED
        done(Step("PTP motion to the start configuration", ok,
                  "reached" if ok else (result.error_message or f"goal status {status}")))
        resp = self.call(SwitchController, fi.SWITCH_CONTROLLER.name, SwitchController.Request(
            activate_controllers=[controller], strictness=SwitchController.Request.STRICT), timeout)
        done(Step(f"controller {controller} active", bool(resp.ok), "switched" if resp.ok else "switch refused"))
        done(self.trigger(f"{self.arbiter}/resync", timeout))
        done(self.wait_ready(timeout))
        if arm:
            done(self.arm_when_ready(timeout))
        return steps

    def wait_ready(self, timeout: float = 30.0) -> Step:
        """Until franka reports MOVE with no current error and current_pose flows again."""
        from franka_msgs.msg import FrankaRobotState
        from geometry_msgs.msg import PoseStamped

        states, poses = [], []
        subs = [self.node.create_subscription(FrankaRobotState, fi.ROBOT_STATE.name, states.append,
                                              fi.ROBOT_STATE.qos.profile()),
                self.node.create_subscription(PoseStamped, fi.CURRENT_POSE.name, poses.append,
                                              fi.CURRENT_POSE.qos.profile())]
        try:
            self.spin_until(lambda: states and states[-1].robot_mode == fi.ROBOT_MODES["MOVE"] and len(poses) >= 3,
                            timeout, "robot_mode MOVE and current_pose")
        finally:
            for s in subs:
                self.node.destroy_subscription(s)
        return Step("robot ready", True, f"robot_mode MOVE, current_pose flowing ({len(poses)} poses)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="residual-lab", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Arm, disarm, stop, set the speed scale of, or recover a running real-mode graph (the robot or "
                    "the franka twin). docs/REAL_ROBOT.md walks through a first armed run.")
    p.add_argument("--arbiter", default="/arbiter", help="the arbiter node's name (default /arbiter)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each service / step (30)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("status", help="armed or not (and why), speed scale, counts, from the arbiter's diagnostics")
    a = sub.add_parser("arm", help="arm: refused, with every reason, unless the robot is ready")
    a.add_argument("--wait", action="store_true", help="retry until armed or --timeout (the inputs may be starting)")
    sub.add_parser("disarm", help="disarm: one hold target at the measured pose, then none")
    sub.add_parser("stop", help="software stop: disarm, hold and stop the gripper (aborts its running goal)")
    s = sub.add_parser("speed", help="set the speed scale on the per-step translation and rotation limits, live")
    s.add_argument("scale", type=float, help="in (0, 1]; first runs: 0.25")
    r = sub.add_parser("recover", help="franka's error recovery in order, re-sync, wait until ready")
    r.add_argument("--arm", action="store_true", help="arm at the end (refused if the robot is not ready)")
    h = sub.add_parser("home", help="move to the start configuration (franka's PTP motion, controller off meanwhile)")
    h.add_argument("--joints", type=float, nargs=7, default=list(fi.START_JOINTS), metavar="Q",
                   help=f"the 7 joint positions (rad); default the sim episodes' start {list(fi.START_JOINTS)}")
    h.add_argument("--velocity", type=float, default=0.3, help="largest joint velocity (rad/s) of the motion (0.3)")
    h.add_argument("--arm", action="store_true", help="arm at the end (refused if the robot is not ready)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    client = LabClient(args.arbiter)
    try:
        if args.command == "status":
            for k, v in sorted(client.status(args.timeout).items()):
                if k in ("_message", "armed", "disarm_reason", "speed_scale", "arms_total", "disarms_total",
                         "arm_refusals_total", "late_ticks_total", "holds_total"):
                    print(f"{k.lstrip('_')}: {v}")
            return 0
        if args.command == "home":
            client.home(args.joints, args.velocity, arm=args.arm, timeout=args.timeout)
            print("at the start configuration" + ("" if args.arm else ": arm with `residual-lab arm`"))
            return 0
        if args.command == "recover":
            client.recover(arm=args.arm, timeout=args.timeout)
            print("recovered" + ("" if args.arm else f": arm with `residual-lab arm` (or {args.arbiter}/arm)"))
            return 0
        if args.command == "arm":
            step = client.arm_when_ready(args.timeout) if args.wait else client.arm(True, args.timeout)
        elif args.command == "disarm":
            step = client.arm(False, args.timeout)
        elif args.command == "stop":
            step = client.trigger(f"{args.arbiter}/stop", args.timeout)
        else:
            step = client.set_speed_scale(args.scale, args.timeout)
        print(step.message)
        return 0 if step.ok else 1
    except LabCommandError as exc:
        print(f"residual-lab: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
