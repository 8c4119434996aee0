"""Small servers speaking the openpi (msgpack over websocket) and OpenVLA (REST ``POST /act``) protocols.

They bind 127.0.0.1 only and answer with a policy function you pass in, so the clients and the whole base node can be
tested, and the ROS graph dry-run, without a GPU or a model. Each server records the requests it received (decoded)
so tests can check what arrived. They behave as the servers users run do in everything a client can see (facts read
from openpi's ``src/openpi/serving/websocket_policy_server.py`` at commit 15a9616 and OpenVLA's
``vla-scripts/deploy.py`` at c8f03f4; shared/notes/openpi-protocol.md; our own code):

* openpi: the first message on a connection is the metadata map; the policy runs *on the server's event loop*, so
  during an inference the server answers no ping, no close handshake and no new connection; a policy exception is
  sent as a text frame holding the traceback, then the connection is closed with code 1011; ``GET /healthz`` answers
  200.
* OpenVLA: FastAPI runs the synchronous ``/act`` endpoint in a thread pool (a slow request does not block others);
  the body must be a JSON object (else HTTP 422), arrays are json_numpy maps, a double-encoded request is
  ``{"encoded": "<json>"}`` with that single key; the reply is the json_numpy-encoded action (a JSON string holding
  it when the request was double-encoded), or the JSON string ``"error"`` with HTTP 200 on any failure.

Run one from a shell::

    python -m vla_base_node.loopback_servers --port 8000

serves :func:`reach_policy` (moves the TCP towards a fixed point), which reads ``observation/state`` with tcp_pos
first (the libero preset's layout).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import threading
import time
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from vla_base_node import msgpack_wire
from vla_base_node.backends.openvla import json_numpy_encode, json_numpy_hook

Policy = Callable[[dict], np.ndarray]
LOOPBACK = "127.0.0.1"
INTERNAL_ERROR = 1011
"""Websocket close code openpi's server closes with after sending a traceback (RFC 6455 "internal error")."""


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


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, port))
    sock.listen(16)
    return sock


class OpenPILoopbackServer:
    """openpi-style policy server (see the module docstring): metadata first, then ``{"actions": policy(obs),
    "server_timing": {...}}`` per request, the policy called on the event loop (``delay_s``: extra blocking seconds
    per inference), an exception answered with its traceback as text and close code 1011.

    ``policy`` may return an array (sent as ``actions``) or a map (sent as it is, as openpi sends the policy's output
    dict). Use as a context manager; the port is bound on construction."""

    def __init__(self, policy: Policy, metadata: Any = None, port: int = 0, delay_s: float = 0.0):
        self.policy, self.delay_s = policy, delay_s
        self.metadata = {"loopback": True} if metadata is None else metadata
        self.requests: list[dict] = []
        self.connections = 0
        """Websocket connections opened (handshake completed)."""
        self.errors = 0
        """Requests answered with a traceback and close 1011."""
        self.authorization: list[str | None] = []
        """The ``Authorization`` header of each opening handshake (openpi's server ignores it; recorded for tests)."""
        self._sock = _bind(port)
        self.port = self._sock.getsockname()[1]
        self.uri = f"ws://{LOOPBACK}:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._main(),), daemon=True,
                                        name=f"openpi-loopback-{self.port}")

    async def _main(self) -> None:
        from websockets.asyncio.server import serve

        self._stop = asyncio.Event()
        def process_request(connection, request):
            self.authorization.append(request.headers.get("Authorization"))
            return _health_check(connection, request)

        async with serve(self._handle, sock=self._sock, compression=None, max_size=None,
                         process_request=process_request):
            self._started.set()
            await self._stop.wait()

    async def _handle(self, conn) -> None:
        from websockets.exceptions import ConnectionClosed

        self.connections += 1
        await conn.send(msgpack_wire.packb(self.metadata))
        prev_total_s = None
        while True:
            try:
                message = await conn.recv()
                t0 = time.monotonic()
                obs = msgpack_wire.unpackb(message)
                self.requests.append(obs)
                if self.delay_s:
                    time.sleep(self.delay_s)  # blocks the loop, as openpi's inference does
                out = self.policy(obs)  # on the loop, as openpi calls policy.infer
                reply = dict(out) if isinstance(out, dict) else {"actions": np.asarray(out)}
                reply["server_timing"] = {"infer_ms": (time.monotonic() - t0) * 1000}
                if prev_total_s is not None:
                    reply["server_timing"]["prev_total_ms"] = prev_total_s * 1000
                await conn.send(msgpack_wire.packb(reply))
                prev_total_s = time.monotonic() - t0
            except ConnectionClosed:
                return
            except Exception:  # noqa: BLE001 (what openpi's server does with any error)
                self.errors += 1
                await conn.send(traceback.format_exc())
                await conn.close(code=INTERNAL_ERROR, reason="Internal server error. Traceback included in previous "
                                                             "frame.")
                return

    def __enter__(self) -> OpenPILoopbackServer:
        self._thread.start()
        if not self._started.wait(timeout=10):
            raise RuntimeError("openpi loopback server did not start within 10 s")
        return self

    def __exit__(self, *exc) -> None:
        """Stop serving; a policy still blocking the loop must return first (the thread is a daemon either way)."""
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=15)
        if not self._thread.is_alive():
            self._loop.close()


def _health_check(connection, request):
    """``GET /healthz`` -> 200 OK, as openpi's server answers (other paths: the websocket handshake)."""
    import http

    if request.path == "/healthz":
        return connection.respond(http.HTTPStatus.OK, "OK\n")
    return None


class OpenVLALoopbackServer:
    """OpenVLA-style REST server (see the module docstring): ``POST /act`` with json_numpy JSON; replies
    ``policy(payload)`` json_numpy-encoded, or the JSON string "error" on failure. Every request runs on its own
    thread, as FastAPI runs a synchronous endpoint; ``delay_s`` adds seconds per request."""

    def __init__(self, policy: Policy, port: int = 0, delay_s: float = 0.0):
        self.policy, self.delay_s = policy, delay_s
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as uvicorn

            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body, separators=(",", ":")).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                try:
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
                    self.close_connection = True

            def do_GET(self):  # noqa: N802 (http.server API)
                if self.path == "/act":
                    self._reply(405, {"detail": "Method Not Allowed"})
                else:
                    self._reply(404, {"detail": "Not Found"})

            def do_POST(self):  # noqa: N802 (http.server API)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/act":
                    self._reply(404, {"detail": "Not Found"})
                    return
                try:
                    payload = json.loads(body, object_hook=json_numpy_hook)
                except ValueError:
                    payload = None
                if not isinstance(payload, dict):  # FastAPI's validation of a Dict[str, Any] body
                    self._reply(422, {"detail": [{"type": "dict_type", "loc": ["body"],
                                                  "msg": "Input should be a valid dictionary"}]})
                    return
                self._reply(200, outer._act(payload))

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer((LOOPBACK, port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://{LOOPBACK}:{self.port}/act"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def _act(self, payload: dict) -> Any:
        """What deploy.py's ``predict_action`` returns for ``payload``: the encoded action, or "error"."""
        try:
            double = "encoded" in payload
            if double:
                if len(payload) != 1:
                    raise ValueError("Only uses encoded payload!")
                payload = json.loads(payload["encoded"], object_hook=json_numpy_hook)
            self.requests.append(payload)
            if self.delay_s:
                time.sleep(self.delay_s)
            _ = payload["image"], payload["instruction"]
            action = json_numpy_encode(np.asarray(self.policy(payload)))
            return json.dumps(action) if double else action
        except Exception:  # noqa: BLE001 (the real server answers "error" for any failure)
            return "error"

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
    parser.add_argument("--delay", type=float, default=0.0, help="extra seconds per inference (blocks the server)")
    args = parser.parse_args(argv)
    server = OpenPILoopbackServer(reach_policy(args.goal, args.horizon), port=args.port, delay_s=args.delay)
    print(f"openpi loopback server on {server.uri}", flush=True)
    with server:
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
