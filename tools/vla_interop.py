"""Interop check: our openpi/OpenVLA clients and loopback servers against the reference code users actually run.

    .venv/bin/python tools/vla_interop.py --openpi-git PATH/TO/openpi/.git --openvla-git PATH/TO/openvla/.git

(``--openpi-src DIR`` / ``--openvla-src DIR`` take checkouts instead of git directories.) Both directions:

* our clients (vla_base_node.backends, this .venv, numpy 2) against openpi's own ``WebsocketPolicyServer``
  (``src/openpi/serving/websocket_policy_server.py``) serving a dummy policy, and against OpenVLA's own
  ``OpenVLAServer.predict_action`` behind its FastAPI app (``vla-scripts/deploy.py``) with a dummy model;
* the reference clients (PyPI ``openpi-client`` 0.1.2; OpenVLA's documented requests + json_numpy client) against our
  loopback servers (vla_base_node.loopback_servers).

The reference side runs in its own virtual environment (``--venv``, default build/vla-interop-venv; created with pip
on first use): openpi-client pins numpy<2, which this project's .venv cannot hold. Their files are exported from the
given checkout into a temporary directory at run time, never into this repository. Prints one line per check and exits
non-zero when one fails. Results: docs/RESULTS.md, "VLA server interop".
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
REF_SCRIPT = Path(__file__).resolve().parent / "vla_interop_ref.py"
REF_REQUIREMENTS = ("openpi-client==0.1.2", "typing_extensions==4.16.0", "msgpack==1.2.4", "websockets==17.4",
                    "json-numpy==2.1.1", "fastapi==0.165.0", "uvicorn==0.55.0", "requests==2.34.2", "pillow==13.0.0")
"""The reference environment (openpi-client 0.1.2 imports typing_extensions without declaring it)."""
OPENPI_FILES = {"websocket_policy_server.py": "src/openpi/serving/websocket_policy_server.py"}
OPENVLA_FILES = {"deploy.py": "vla-scripts/deploy.py"}

RESULTS: list[tuple[str, bool, str]] = []


def report(check: str, ok: bool, detail: str = "") -> None:
    RESULTS.append((check, bool(ok), detail))
    print(f"{'PASS' if ok else 'FAIL'}  {check}" + (f"  [{detail}]" if detail else ""), flush=True)


def ref_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("vla_interop_ref", REF_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REF = ref_module()  # its numpy-only helpers (expected_actions, DummyVLA) are shared by both sides


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating the reference environment {venv} (pip) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *REF_REQUIREMENTS], check=True)
    return python


def export(files: dict[str, str], git_dir: str | None, src: str | None, dest: Path) -> str:
    """Copy the reference files into ``dest``; returns the commit (or the checkout's path)."""
    dest.mkdir(parents=True, exist_ok=True)
    if git_dir:
        commit = subprocess.run(["git", f"--git-dir={git_dir}", "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        for name, path in files.items():
            data = subprocess.run(["git", f"--git-dir={git_dir}", "show", f"HEAD:{path}"], capture_output=True,
                                  check=True).stdout
            (dest / name).write_bytes(data)
        return commit
    for name, path in files.items():
        shutil.copy(Path(src) / path, dest / name)
    return str(src)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def http_ok(url: str, timeout: float = 0.5) -> bool:
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=timeout) as resp:
            return resp.status == 200
    except Exception:  # noqa: BLE001
        return False


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def start(python: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([str(python), str(REF_SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def run_ref_client(python: Path, *args: str) -> None:
    out = subprocess.run([str(python), str(REF_SCRIPT), *args], capture_output=True, text=True, timeout=120)
    for line in out.stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            report(r["check"], r["ok"], r["detail"])
    if out.returncode != 0:
        report(f"reference client {args[0]} exited 0", False, out.stderr.strip()[-800:])


def observation(prompt: str, image_value: int = 51) -> dict:
    from scipy.spatial.transform import Rotation

    return {"instruction": prompt, "step": 0, "image": np.full((224, 224, 3), image_value, dtype=np.uint8),
            "state": {"joint_pos": np.linspace(0, 0.6, 7), "joint_vel": np.zeros(7), "gripper_width": np.array([0.04]),
                      "tcp_pos": np.array([0.4, 0.1, 0.2]), "tcp_quat": Rotation.from_euler("x", 3.0).as_quat(),
                      "objects": {}, "object_present": {}}}


# --- our clients against their servers -------------------------------------------------------------------------------


def our_openpi_client(port: int, timeout_s: float = 1.0) -> None:
    from vla_base_node import msgpack_wire
    from vla_base_node.backends import BackendError, OpenPIBackend, OpenPIConfig

    def backend(**kw) -> OpenPIBackend:
        return OpenPIBackend(OpenPIConfig(port=port, api_key="interop-key", **kw))

    b = backend()
    b.infer(observation("reach"))
    meta = b.server_metadata
    report("our client: metadata is a map, 0-d array intact", isinstance(meta, dict)
           and np.shape(meta.get("zero_d")) == () and meta["zero_d"] == np.float32(0.5), repr(meta))
    request = b.build_request(observation("reach"))
    seen = b.last_reply.get("seen", {})
    want = {k: [str(v.dtype), list(v.shape)] for k, v in request.items() if k != "prompt"}
    report("our client: LIBERO preset request has every key LiberoInputs reads, shapes and dtypes as sent",
           seen == want and set(REF.LIBERO_KEYS) <= set(request), json.dumps(seen))
    exact = np.array_equal(b.last_reply["actions"], REF.expected_actions(request["observation/state"]))
    report("our client: actions bit-exact", exact, f"{b.last_reply['actions'].shape} {b.last_reply['actions'].dtype}")
    report("our client: server_timing read", "infer_ms" in (b.last_server_timing or {}), repr(b.last_server_timing))

    try:
        b.infer(observation("raise"))
        report("our client: server error raises with its cause", False, "no error")
    except BackendError as exc:
        report("our client: server error raises with its cause", "RuntimeError: dummy policy raised" in str(exc),
               str(exc).splitlines()[0][:160])
    ok = b.infer(observation("reach")).shape == (10, 7)
    report("our client: the call after a server error succeeds on a new connection", ok and b.connections == 2,
           f"connections {b.connections}")

    wrong = backend(preset="droid")
    try:
        wrong.infer(observation("reach"))
        report("our client: wrong preset fails clearly at the first reply", False, "no error")
    except BackendError as exc:
        report("our client: wrong preset fails clearly at the first reply", "reads 'observation/image'" in str(exc),
               str(exc).splitlines()[0][:200])

    # A server that does not answer within the timeout (an inference longer than it, on the server's loop).
    slow = backend(infer_timeout_s=timeout_s)
    slow.infer(observation("reach"))
    t0 = time.monotonic()
    try:
        slow.infer(observation(f"sleep:{timeout_s + 2}"))
    except BackendError as exc:
        err = str(exc)
    elapsed = time.monotonic() - t0
    report(f"our client: no reply -> the call returns within infer_timeout_s + 0.5 s ({timeout_s} s)",
           elapsed < timeout_s + 0.5 and "sent no reply" in err, f"{elapsed:.2f} s")
    wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), timeout_s + 10, "the server to be free again")
    slow.cfg.infer_timeout_s = 5.0
    report("our client: the next call succeeds", slow.infer(observation("reach")).shape == (10, 7),
           f"connections {slow.connections}")

    # A server busy with another client's inference: a new connection cannot open, an open one gets no reply.
    other, connected = backend(infer_timeout_s=4 * timeout_s + 10), backend(infer_timeout_s=timeout_s)
    other.infer(observation("reach"))
    connected.infer(observation("reach"))
    busy_s = 2 * timeout_s + 3  # longer than both calls below
    worker = threading.Thread(target=other.infer, args=(observation(f"sleep:{busy_s}"),))
    worker.start()
    wait_until(lambda: not http_ok(f"http://127.0.0.1:{port}/healthz", timeout=0.2), 5, "the server to be busy")
    for name, client in (("new connection", backend(infer_timeout_s=timeout_s)), ("open connection", connected)):
        t0 = time.monotonic()
        try:
            client.infer(observation("reach"))
            err = "answered"
        except BackendError as exc:
            err = str(exc)
        elapsed = time.monotonic() - t0
        report(f"our client: busy server, {name} -> the call returns within infer_timeout_s + 0.5 s",
               elapsed < timeout_s + 0.5 and "busy" in err, f"{elapsed:.2f} s: {err[:110]}")
    worker.join(timeout=busy_s + 10)

    # 0-d arrays both ways, through their msgpack_numpy.
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None, proxy=None) as ws:
        ws.recv(timeout=10)
        ws.send(msgpack_wire.packb({"prompt": "echo", "x": np.array(2.5, dtype=np.float32), "n": np.int64(4)}))
        echo = msgpack_wire.unpackb(ws.recv(timeout=10))["echo"]
    x = echo["x"]
    report("our wire: 0-d array round trip through their server (shape (), dtype, value)",
           isinstance(x, np.ndarray) and x.shape == () and x.dtype == np.float32 and x == 2.5
           and isinstance(echo["n"], np.int64), f"{x!r} {echo['n']!r}")
    for c in (b, wrong, slow, other, connected):
        c.close()


def our_openvla_client(url: str) -> None:
    from vla_base_node.backends import BackendError, OpenVLABackend, OpenVLAConfig

    want = np.array([[0.2, 0.0, 0.0, 0.0, 0.0, 0.1, 0.0]])  # Bridge (yaw 0.1, gripper 1 = open) in ours
    for double in (False, True):
        chunk = OpenVLABackend(OpenVLAConfig(url=url, double_encode=double)).infer(observation("pick up the cube"))
        report(f"our client -> their deploy.py: action {'double-encoded' if double else 'json_numpy'}",
               chunk.shape == (1, 7) and np.allclose(chunk, want, atol=1e-12), repr(chunk.round(6).tolist()))
    try:
        OpenVLABackend(OpenVLAConfig(url=url, unnorm_key="missing")).infer(observation("x"))
        report("our client -> their deploy.py: a failing request raises clearly", False, "no error")
    except BackendError as exc:
        report("our client -> their deploy.py: a failing request raises clearly", "reported an error" in str(exc),
               str(exc)[:120])


# --- the same probe against their server and our loopback ------------------------------------------------------------


def probe(port: int, sleep_s: float = 3.0) -> dict[str, str]:
    """What a client sees of an openpi-protocol server: first message, error handling, behaviour during inference."""
    from vla_base_node import msgpack_wire
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    uri, seen = f"ws://127.0.0.1:{port}", {}
    libero = {"observation/image": np.zeros((224, 224, 3), np.uint8), "observation/wrist_image": np.zeros(
        (224, 224, 3), np.uint8), "observation/state": np.zeros(8, np.float32)}
    seen["GET /healthz"] = "200" if http_ok(f"http://127.0.0.1:{port}/healthz") else "no 200"
    with connect(uri, compression=None, max_size=None, proxy=None) as ws:
        first = ws.recv(timeout=10)
        seen["first message"] = f"{type(first).__name__} holding a {type(msgpack_wire.unpackb(first)).__name__}"
        ws.send(msgpack_wire.packb({**libero, "prompt": "raise"}))
        reply = ws.recv(timeout=10)
        seen["reply to a failing request"] = f"{type(reply).__name__}, a traceback: {'Traceback' in reply}"
        try:
            ws.recv(timeout=10)
            seen["then"] = "still open"
        except ConnectionClosed as exc:
            seen["then"] = f"closed by the server, code {exc.rcvd.code if exc.rcvd else None}"
    with connect(uri, compression=None, max_size=None, proxy=None) as busy:
        busy.recv(timeout=10)
        busy.send(msgpack_wire.packb({**libero, "prompt": f"sleep:{sleep_s}"}))
        time.sleep(0.2)  # the request reaches the server (no signal to wait for: the server is what is observed)
        try:
            with connect(uri, compression=None, proxy=None, open_timeout=1.0, close_timeout=0.1):
                seen["new connection during an inference"] = "opened"
        except TimeoutError:
            seen["new connection during an inference"] = "not opened within 1 s"
        seen["GET /healthz during an inference"] = ("200" if http_ok(f"http://127.0.0.1:{port}/healthz", 1.0)
                                                    else "no answer within 1 s")
        reply = busy.recv(timeout=30)
        seen["reply after the inference"] = f"{type(reply).__name__} with {sorted(msgpack_wire.unpackb(reply))}"
    return seen


def compare_probes(theirs: dict[str, str], ours: dict[str, str]) -> None:
    for key in theirs:
        report(f"same behaviour, {key}", theirs[key] == ours.get(key), f"openpi: {theirs[key]} | loopback: "
               f"{ours.get(key)}")


def idle_then_infer(port: int, idle_s: float) -> None:
    from vla_base_node.backends import OpenPIBackend, OpenPIConfig

    b = OpenPIBackend(OpenPIConfig(port=port))
    b.infer(observation("reach"))
    time.sleep(idle_s)  # the point of the check: an idle connection across the keepalive pings
    ok = b.infer(observation("reach")).shape == (10, 7)
    report(f"our client: a call after {idle_s:.0f} s idle succeeds on the same connection", ok and b.connections == 1,
           f"connections {b.connections}")
    b.close()


# --- their clients against our loopback servers ----------------------------------------------------------------------


def loopback_openpi_policy(obs: dict) -> dict:
    if obs.get("prompt") == "raise":
        raise RuntimeError("loopback policy raised on request")
    return {"actions": REF.expected_actions(obs["observation/state"]), "echo": obs}


def loopback_openvla_policy(payload: dict) -> np.ndarray:
    return REF.DummyVLA().predict_action(payload["image"], "", payload.get("unnorm_key"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--openpi-git", help="git directory of an openpi clone (HEAD is used)")
    parser.add_argument("--openpi-src", help="openpi checkout (instead of --openpi-git)")
    parser.add_argument("--openvla-git", help="git directory of an openvla clone (HEAD is used)")
    parser.add_argument("--openvla-src", help="openvla checkout (instead of --openvla-git)")
    parser.add_argument("--venv", default=str(REPO / "build" / "vla-interop-venv"),
                        help="reference environment (created with pip when missing)")
    parser.add_argument("--timeout", type=float, default=1.0, help="infer_timeout_s of the timeout checks")
    parser.add_argument("--idle", type=float, default=0.0, help="also check a call after this many idle seconds")
    args = parser.parse_args(argv)
    if not (args.openpi_git or args.openpi_src) or not (args.openvla_git or args.openvla_src):
        parser.error("give --openpi-git or --openpi-src, and --openvla-git or --openvla-src")
    python = ensure_venv(Path(args.venv))
    versions = subprocess.run([str(python), "-c", "import numpy, websockets, msgpack; from importlib.metadata import "
                               "version; print('reference env: numpy', numpy.__version__, 'websockets', "
                               "websockets.__version__, 'msgpack', version('msgpack'), 'openpi-client', "
                               "version('openpi-client'), 'json-numpy', version('json-numpy'), 'fastapi', "
                               "version('fastapi'))"], capture_output=True, text=True, check=True).stdout.strip()
    import websockets

    print(versions)
    print(f"our env: numpy {np.__version__} websockets {websockets.__version__} python {sys.version.split()[0]}")
    from vla_base_node.loopback_servers import OpenPILoopbackServer, OpenVLALoopbackServer

    with tempfile.TemporaryDirectory(prefix="vla-interop-") as tmp:
        openpi_src, openvla_src = Path(tmp) / "openpi", Path(tmp) / "openvla"
        print("openpi:", export(OPENPI_FILES, args.openpi_git, args.openpi_src, openpi_src),
              list(OPENPI_FILES.values()))
        print("openvla:", export(OPENVLA_FILES, args.openvla_git, args.openvla_src, openvla_src),
              list(OPENVLA_FILES.values()))

        print("\n# our openpi client -> openpi's WebsocketPolicyServer (dummy policy)")
        port = free_port()
        server = start(python, "openpi-server", str(openpi_src), str(port))
        try:
            wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 30, "openpi's server")
            our_openpi_client(port, args.timeout)
            if args.idle:
                idle_then_infer(port, args.idle)
            theirs = probe(port)
        finally:
            stop(server)

        print("\n# the same probe against openpi's server (above) and our OpenPILoopbackServer (same dummy policy)")
        with OpenPILoopbackServer(REF.DummyPolicy().infer, metadata=REF.DummyPolicy.metadata) as loopback:
            compare_probes(theirs, probe(loopback.port))

        print("\n# the PyPI openpi-client -> our OpenPILoopbackServer")
        with OpenPILoopbackServer(loopback_openpi_policy) as loopback:
            run_ref_client(python, "openpi-client", loopback.uri)

        print("\n# our OpenVLA client -> OpenVLA's deploy.py (FastAPI app, dummy model)")
        port = free_port()
        server = start(python, "openvla-server", str(openvla_src), str(port))
        try:
            wait_until(lambda: port_open(port), 30, "OpenVLA's server")
            our_openvla_client(f"http://127.0.0.1:{port}/act")
        finally:
            stop(server)

        print("\n# OpenVLA's client (requests + json_numpy) -> our OpenVLALoopbackServer")
        with OpenVLALoopbackServer(loopback_openvla_policy) as loopback:
            run_ref_client(python, "openvla-client", loopback.url)

    failed = [name for name, ok, _ in RESULTS if not ok]
    print(f"\n{len(RESULTS) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
