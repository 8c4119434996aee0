"""``residual-launch``: start the graph as subprocesses where ``ros2 launch`` is not available: sim mode, and real mode
with the franka_ros2 twin (``--mode real --robot twin``); real mode on the FR3 needs ``ros2 launch`` (franka_bringup).

Reads the same :func:`residual_bringup.graph.describe_graph` as the launch file, writes one params file per
node (config/<mode>.yaml merged with the launch-argument values and ``--set`` overrides), starts every node
with ``--ros-args``, prefixes each output line with the node name, and stops them all by PID (SIGINT, then
SIGTERM, then SIGKILL) on Ctrl-C / SIGTERM or as soon as one of them dies. Exit status: 0 after a requested
shutdown; 2 for a configuration problem: a bad argument, a missing executable, or a node that exited with
status 2, which every node of the stack does on a configuration error (a bad parameter, a refused checkpoint;
residual_ros.node_main.run_node); 1 when a node died otherwise (crashed, killed, any other status).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TextIO

import tyro
import yaml
from residual_core.tasks import TASK_NAMES
from residual_ros.params import flatten_values

from residual_bringup.graph import POSE_SOURCES, ROBOTS, IncludeSpec, NodeSpec, describe_graph, node_specs

PREFIX = "[residual-launch]"
CONFIG_ERROR_STATUS = 2
"""Exit status of a configuration problem: residual-launch's own, and each node's (residual_ros.node_main.run_node)."""


# --- pure helpers ------------------------------------------------------------------------------------------------


def parse_set(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["base.server_port=8123", ...]`` -> ``{"base": {"server_port": 8123}}`` (values parsed as YAML). The first
    dot ends the node name: ``arbiter.envelope.max_translation_step=0.01`` sets the arbiter's (nested config)
    parameter ``envelope.max_translation_step``.

    The one reader of ``--set NODE.PARAM=VALUE`` (residual-launch and residual-demo); :func:`format_set` writes it."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        node, dot, param = key.partition(".")
        if not sep or not dot or not node or not param:
            raise ValueError(f"--set {item!r} must look like NODE.PARAM=VALUE (e.g. base.server_port=8123)")
        try:
            out.setdefault(node, {})[param] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError as exc:
            raise ValueError(f"--set {item!r}: VALUE is not valid YAML ({exc})") from None
    return out


def format_set(node: str, param: str, value: Any) -> str:
    """The ``--set`` item that :func:`parse_set` reads back as ``{node: {param: value}}`` (YAML, one line)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30).strip()
    if text.endswith("\n..."):  # a plain scalar's document end marker
        text = text[: -len("\n...")].rstrip()
    return f"{node}.{param}={text}"


def resolve_executable(spec: NodeSpec) -> str | None:
    """The executable's path: this interpreter's bin dir (console scripts), PATH, or <prefix>/lib/<package>/."""
    candidate = Path(sys.executable).parent / spec.executable
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(spec.executable)
    if found:
        return found
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        candidate = Path(prefix) / "lib" / spec.package / spec.executable
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def node_parameters(spec: NodeSpec, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Parameters of one node: its params files ("/**" then its own name, or ``/namespace/name`` for a node in a
    namespace), then the spec, then ``overrides``; nested configs' parameters by dotted name
    (``envelope.max_translation_step``), whether written nested or dotted."""
    merged: dict[str, Any] = {}
    own_keys = (spec.params_key,) if spec.namespace else (spec.name, "/" + spec.name)
    for path in spec.params_files:
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
        for key in ("/**", *own_keys):
            section = doc.get(key) or {}
            merged.update(flatten_values(section.get("ros__parameters") or {}))
    merged.update(flatten_values(dict(spec.parameters)))
    merged.update(flatten_values(overrides or {}))
    return merged


def write_params_file(spec: NodeSpec, params: dict[str, Any], directory: Path) -> Path:
    path = directory / f"{spec.name}.yaml"
    with open(path, "w") as f:
        yaml.safe_dump({spec.params_key: {"ros__parameters": params}}, f, sort_keys=True)
    return path


def build_command(spec: NodeSpec, executable: str, params_file: Path | None) -> list[str]:
    cmd = [executable, *spec.arguments]
    if not spec.ros_node:
        return cmd
    cmd += ["--ros-args", "-r", f"__node:={spec.name}"]
    if spec.namespace:
        cmd += ["-r", f"__ns:=/{spec.namespace}"]
    if params_file is not None:
        cmd += ["--params-file", str(params_file)]
    for src, dst in spec.remappings:
        cmd += ["-r", f"{src}:={dst}"]
    return cmd


def graph_exit_status(dead_node_status: int | None) -> int:
    """residual-launch's exit status from the status of the node whose death stopped the graph (None: a requested
    stop): 0 for a requested stop, CONFIG_ERROR_STATUS when the node reported a configuration error, else 1."""
    if dead_node_status is None:
        return 0
    return CONFIG_ERROR_STATUS if dead_node_status == CONFIG_ERROR_STATUS else 1


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the supervisor itself dies (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


# --- process supervision -----------------------------------------------------------------------------------------


@dataclass
class Child:
    spec: NodeSpec
    popen: subprocess.Popen
    tail: deque = field(default_factory=lambda: deque(maxlen=20))
    reader: threading.Thread | None = None


class Supervisor:
    """Starts NodeSpecs as processes, relays their output, stops them all by PID."""

    def __init__(self, out: TextIO = sys.stdout, stop_timeout: float = 10.0):
        self.out, self.stop_timeout = out, stop_timeout
        self.children: list[Child] = []
        self.stop_requested = threading.Event()
        self._lock = threading.Lock()

    def say(self, text: str) -> None:
        with self._lock:
            self.out.write(f"{PREFIX} {text}\n")
            self.out.flush()

    def _relay(self, child: Child) -> None:
        for raw in child.popen.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            child.tail.append(line)
            with self._lock:
                self.out.write(f"[{child.spec.name}] {line}\n")
                self.out.flush()

    def start(self, spec: NodeSpec, cmd: list[str], env: dict[str, str]) -> Child:
        popen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 env=env, start_new_session=True, preexec_fn=_die_with_parent)
        child = Child(spec, popen)
        child.reader = threading.Thread(target=self._relay, args=(child,), daemon=True)
        child.reader.start()
        self.children.append(child)
        self.say(f"started {spec.name} (pid {popen.pid}): {' '.join(cmd)}")
        return child

    def wait(self) -> Child | None:
        """Block until a stop is requested (returns None) or a child exits (returns it)."""
        while not self.stop_requested.wait(0.1):
            for child in self.children:
                if child.popen.poll() is not None:
                    return child
        return None

    def stop_all(self) -> dict[int, int]:
        """SIGINT every running child, then SIGTERM, then SIGKILL after timeouts; returns {pid: exit status}."""
        for sig, timeout in ((signal.SIGINT, self.stop_timeout), (signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            alive = [c for c in self.children if c.popen.poll() is None]
            if not alive:
                break
            if sig != signal.SIGINT:
                self.say(f"sending {sig.name} to {', '.join(f'{c.spec.name} ({c.popen.pid})' for c in alive)}")
            for c in reversed(alive):
                try:
                    os.kill(c.popen.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + timeout
            for c in alive:
                try:
                    c.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        codes = {}
        for c in self.children:
            codes[c.popen.pid] = c.popen.wait()
            if c.reader is not None:
                c.reader.join(timeout=2.0)
        return codes


def run_graph(specs: Sequence[NodeSpec], overrides: dict[str, dict[str, Any]], allow_missing: bool = False,
              out: TextIO = sys.stdout, stop_timeout: float = 10.0, install_signals: bool = True) -> int:
    """Start ``specs``, supervise until Ctrl-C/SIGTERM or a node dies; return the exit status (see module doc)."""
    sup = Supervisor(out, stop_timeout)
    unknown = set(overrides) - {s.name for s in specs}
    if unknown:
        sup.say(f"--set names node(s) not in the graph: {sorted(unknown)}; nodes: {[s.name for s in specs]}")
        return CONFIG_ERROR_STATUS
    resolved = {s.name: resolve_executable(s) for s in specs}
    missing = [s for s in specs if resolved[s.name] is None]
    if missing:
        listing = ", ".join(f"{s.executable} (package {s.package}, node {s.name})" for s in missing)
        if not allow_missing:
            sup.say(f"missing executable(s): {listing}. Install them, or start the rest with --allow-missing "
                    "or --only.")
            return CONFIG_ERROR_STATUS
        sup.say(f"skipping missing executable(s): {listing}")
    to_start = [s for s in specs if resolved[s.name] is not None]
    if not to_start:
        sup.say("nothing to start")
        return CONFIG_ERROR_STATUS

    if install_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, frame: sup.stop_requested.set())
    env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0")
    with tempfile.TemporaryDirectory(prefix="residual-launch-") as tmp:
        try:
            for spec in to_start:
                params = node_parameters(spec, overrides.get(spec.name))
                params_file = write_params_file(spec, params, Path(tmp)) if spec.ros_node else None
                sup.start(spec, build_command(spec, resolved[spec.name], params_file), env)
            dead = sup.wait()
        except Exception as exc:  # noqa: BLE001 (whatever failed, stop what was started)
            sup.say(f"error while starting: {exc}")
            sup.stop_all()
            return CONFIG_ERROR_STATUS
        if dead is not None:
            if dead.reader is not None:
                dead.reader.join(timeout=2.0)  # its last lines are printed before the summary
            why = " (a configuration error)" if dead.popen.returncode == CONFIG_ERROR_STATUS else ""
            sup.say(f"node {dead.spec.name} (pid {dead.popen.pid}) exited with status {dead.popen.returncode}{why}; "
                    "stopping the graph. Its last output:")
            for line in dead.tail:
                sup.say(f"  {dead.spec.name}: {line}")
        else:
            sup.say("stop requested: stopping all nodes")
        codes = sup.stop_all()
        sup.say("all nodes stopped: " + ", ".join(f"{c.spec.name}={codes[c.popen.pid]}" for c in sup.children))
    return graph_exit_status(None if dead is None else dead.popen.returncode)


# --- CLI -------------------------------------------------------------------------------------------------------------


Task = Literal[TASK_NAMES]  # type: ignore[valid-type]
PoseSource = Literal[POSE_SOURCES]  # type: ignore[valid-type]
Robot = Literal[ROBOTS]  # type: ignore[valid-type]


@dataclass(frozen=True)
class LaunchArgs:
    """Start the residual-VLA ROS graph as supervised subprocesses (sim mode, or real mode with the franka_ros2
    twin); the same graph as launch/residual_bringup.launch.py. Ctrl-C stops every node."""

    mode: Literal["sim", "real"] = "sim"
    """sim (MuJoCo) or real (the FR3 needs ros2 launch and franka_ros2: refused here except with --list; the twin
    runs here)."""
    robot: Robot = "franka"
    """Real mode: franka (the FR3 through franka_ros2 and a RealSense) or twin (the franka_ros2 twin in their
    place: same topics, actions and QoS)."""
    task: Task = "cube_lift"
    """Task to run."""
    checkpoint: str = ""
    """Residual checkpoint (.safetensors with its .json manifest)."""
    base_backend: str | None = None
    """vla_base_node backend (None: sim_bc in sim; others: openpi, openvla, replay, ...)."""
    base_checkpoint: str = ""
    """Checkpoint of the sim BC base policy."""
    use_sim_time: Annotated[bool | None, tyro.conf.DisallowNone] = None
    """Nodes follow /clock (None: on in sim)."""
    use_rviz: bool = False
    """Also start rviz2 with config/residual.rviz."""
    lockstep: bool = True
    """The sim advances only when the current step's command arrived."""
    pose_source: PoseSource = "estimator"
    """Object poses from the camera pose estimator or the simulator's ground truth."""
    config_dir: str | None = None
    """Directory with sim.yaml / residual.rviz (None: the package's config/)."""
    only: Annotated[tuple[str, ...] | None, tyro.conf.arg(metavar="NODE")] = None
    """Start only these nodes (by node name, e.g. base arbiter); None: all."""
    set_params: Annotated[tuple[str, ...], tyro.conf.arg(name="set", metavar="NODE.PARAM=VALUE"),
                          tyro.conf.UseAppendAction] = ()
    """Override a node parameter (VALUE parsed as YAML), e.g. base.server_port=8123."""
    allow_missing: bool = False
    """Start the nodes whose executables exist and skip the others (off: refuse to start)."""
    stop_timeout: float = 10.0
    """Seconds to wait after SIGINT before SIGTERM/SIGKILL."""
    robot_ip: str = ""
    """Real mode, robot franka (--list only): the FR3's address."""
    hand_eye: Annotated[tuple[float, float, float, float, float, float, float] | None,
                        tyro.conf.arg(metavar="X Y Z QX QY QZ QW")] = None
    """Real mode: calibrated pose of the camera's colour optical frame in fr3_link0."""
    list_graph: Annotated[bool, tyro.conf.arg(name="list")] = False
    """Print the graph (nodes, executables, status) and exit."""

    def __post_init__(self) -> None:
        if self.only is not None and not self.only:
            raise ValueError("--only needs at least one node name")
        if not self.stop_timeout >= 0:
            raise ValueError(f"--stop-timeout must be >= 0, got {self.stop_timeout}")
        parse_set(self.set_params)

    @property
    def overrides(self) -> dict[str, dict[str, Any]]:
        """The ``--set`` values by node (YAML-typed)."""
        return parse_set(self.set_params)


def parse_args(argv: Sequence[str] | None = None) -> LaunchArgs:
    """The command line as LaunchArgs; a bad option prints why and exits with status 2."""
    return tyro.cli(LaunchArgs, args=argv, prog="residual-launch", description=__doc__)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.mode == "real" and args.robot == "franka" and not args.list_graph:
        print(f"{PREFIX} real mode on the FR3 needs a full ROS 2 Jazzy install with franka_ros2: use "
              "`ros2 launch residual_bringup residual_bringup.launch.py mode:=real robot_ip:=... hand_eye:=...` "
              "(see docker/); `residual-launch --mode real --list ...` shows the graph; `--robot twin` runs the "
              "real-mode graph against the franka_ros2 twin", file=sys.stderr)
        return CONFIG_ERROR_STATUS
    try:
        graph = describe_graph(
            mode=args.mode, task=args.task, checkpoint=args.checkpoint, use_sim_time=args.use_sim_time,
            use_rviz=args.use_rviz, base_backend=args.base_backend, base_checkpoint=args.base_checkpoint,
            lockstep=args.lockstep, pose_source=args.pose_source, config_dir=args.config_dir,
            robot_ip=args.robot_ip, hand_eye=args.hand_eye, robot=args.robot,
        )
    except ValueError as exc:
        print(f"{PREFIX} {exc}", file=sys.stderr)
        return CONFIG_ERROR_STATUS
    includes = [e for e in graph if isinstance(e, IncludeSpec)]
    specs = node_specs(graph)
    if args.list_graph:
        for e in graph:
            if isinstance(e, NodeSpec):
                where = resolve_executable(e) or "MISSING"
                name = f"{e.namespace}/{e.name}" if e.namespace else e.name
                print(f"{name:16s} {e.package}/{e.executable:28s} {where}\n{'':17s}{e.description}")
            else:
                print(f"{'(include)':16s} {e.package}/{e.launch_file}\n{'':17s}{e.description}")
        return 0
    if includes:  # not reached in sim mode or with the twin; kept so an include is refused rather than dropped
        print(f"{PREFIX} the graph includes launch files ({[i.launch_file for i in includes]}): use ros2 launch",
              file=sys.stderr)
        return CONFIG_ERROR_STATUS
    if args.only:
        names = {s.name for s in specs}
        unknown = [n for n in args.only if n not in names]
        if unknown:
            print(f"{PREFIX} --only names unknown node(s) {unknown}; nodes: {sorted(names)}", file=sys.stderr)
            return CONFIG_ERROR_STATUS
        specs = [s for s in specs if s.name in args.only]
    return run_graph(specs, args.overrides, allow_missing=args.allow_missing, stop_timeout=args.stop_timeout)


if __name__ == "__main__":
    raise SystemExit(main())
