"""Small servers speaking the openpi (msgpack over websocket) and OpenVLA (REST ``POST /act``) protocols.

They bind 127.0.0.1 only and answer with a policy function you pass in, so the clients and the whole base
node can be tested, and the ROS graph dry-run, without a GPU or a model. Each server records the requests
it received (decoded) so tests can check what arrived. Run one from a shell::

    python -m vla_base_node.loopback_servers --port 8000

serves :func:`reach_policy` (moves the TCP towards a fixed point), which expects the default state key
layout ``observation/state = tcp_pos, tcp_rotvec, gripper_width``.
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from vla_base_node import msgpack_wire
from vla_base_node.backends.openvla import json_numpy_encode, json_numpy_hook

Policy = Callable[[dict], np.ndarray]
LOOPBACK = "127.0.0.1"


def reach_policy(goal=(0.5, 0.0, 0.3), horizon: int = 8, gain: float = 0.2, max_step: float = 0.01) -> Policy:
    """A policy reading ``observation/state`` (tcp_pos first) and stepping the TCP towards ``goal``.

    Returns (horizon, 7) in the openpi-LIBERO convention (gripper -1 open). Meant for dry runs and tests.
    """
    goal_arr = np.asarray(goal, dtype=np.float64)

    def policy(obs: dict) -> np.ndarray:
        pos = np.asarray(obs["observation/state"], dtype=np.float64)[:3]
        out = np.zeros((horizon, 7), dtype=np.float32)
        for i in range(horizon):
            step = np.clip(gain * (goal_arr - pos), -max_step, max_step)
            out[i, :3] = step
            pos = pos + step
        out[:, 6] = -1.0
        return out

    return policy


class OpenPILoopbackServer:
    """openpi-style policy server: sends metadata on connect, answers each msgpack request with
    ``{"actions": policy(obs), "server_timing": {...}}``; a policy exception is sent back as a text frame."""

    def __init__(self, policy: Policy, metadata: dict | None = None, port: int = 0, delay_s: float = 0.0):
        from websockets.sync.server import serve

        self.policy, self.metadata, self.delay_s = policy, metadata or {"loopback": True}, delay_s
        self.requests: list[dict] = []
        self.connections = 0
        self._server = serve(self._handle, LOOPBACK, port, compression=None, max_size=None)
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _handle(self, conn) -> None:
        from websockets.exceptions import ConnectionClosed

        self.connections += 1
        conn.send(msgpack_wire.packb(self.metadata))
        stop = threading.Event()
        try:
            while not stop.is_set():
                obs = msgpack_wire.unpackb(conn.recv())
                self.requests.append(obs)
                if self.delay_s:
                    stop.wait(self.delay_s)
                try:
                    actions = np.asarray(self.policy(obs))
                except Exception as exc:  # the real server reports errors as a text frame
                    conn.send(f"policy failed: {type(exc).__name__}: {exc}")
                    continue
                conn.send(msgpack_wire.packb({"actions": actions, "server_timing": {"infer_ms": 0.0}}))
        except ConnectionClosed:
            pass

    def __enter__(self) -> OpenPILoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)


class OpenVLALoopbackServer:
    """OpenVLA-style REST server: ``POST /act`` with json_numpy JSON; replies ``policy(payload)`` json_numpy-encoded
    (inside a JSON string when the request was double-encoded), or the JSON string "error" on failure."""

    def __init__(self, policy: Policy, port: int = 0):
        self.policy = policy
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server API)
                if self.path != "/act":
                    self.send_error(404, "only /act exists")
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    payload = json.loads(body, object_hook=json_numpy_hook)
                    double = "encoded" in payload
                    if double:
                        payload = json.loads(payload["encoded"], object_hook=json_numpy_hook)
                    outer.requests.append(payload)
                    action = json_numpy_encode(np.asarray(outer.policy(payload)))
                    reply = json.dumps(json.dumps(action) if double else action)
                except Exception:  # noqa: BLE001 (the real server answers "error" for any failure)
                    reply = json.dumps("error")
                data = reply.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer((LOOPBACK, port), Handler)
        self.port = self._httpd.server_address[1]
        self.url = f"http://{LOOPBACK}:{self.port}/act"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> OpenVLALoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve reach_policy over the openpi protocol on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8000, help="TCP port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--horizon", type=int, default=8, help="actions per chunk")
    parser.add_argument("--goal", type=float, nargs=3, default=(0.5, 0.0, 0.3), help="TCP goal x y z (m)")
    parser.add_argument("--delay", type=float, default=0.0, help="extra seconds per inference (latency)")
    args = parser.parse_args(argv)
    server = OpenPILoopbackServer(reach_policy(args.goal, args.horizon), port=args.port, delay_s=args.delay)
    print(f"openpi loopback server on ws://{LOOPBACK}:{server.port}", flush=True)
    with server:
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
