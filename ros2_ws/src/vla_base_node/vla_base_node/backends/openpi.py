"""Client of an openpi policy server: msgpack-numpy over a websocket (``scripts/serve_policy.py``).

The request maps our observation onto the server's keys (a preset of :mod:`.presets`, or keys as configured): state
fields (:func:`state_field`, including derived TCP rotations and gripper forms) concatenated per key, the camera image
(or a black stand-in) per key, the instruction under ``prompt_key``; the reply's ``actions`` are checked against the
preset and go through the configured :class:`ActionAdapter`.

How the server behaves decides the client's shape (shared/notes/openpi-protocol.md): after an error it sends the
traceback as text and closes the connection (code 1011), so the connection is dropped and the next call opens a new
one; it runs inference on its event loop, so while it is busy it answers no handshake, opening or closing, and a
closing handshake is never waited for: a failed connection is aborted. One :meth:`OpenPIBackend.infer` call, the
(re)connection included, takes at most ``infer_timeout_s`` (plus the few milliseconds of the abort).
"""

from __future__ import annotations

import socket
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from vla_base_node import msgpack_wire
from vla_base_node.backends.adapters import ACTION_CONVENTIONS, ActionAdapter, BackendError, adapter_from_params
from vla_base_node.backends.images import prepare_image
from vla_base_node.backends.presets import ACTION_COLUMNS_OF, FRANKA_HAND_MAX_WIDTH, OPENPI_PRESETS, OpenPIPreset

STATE_FIELDS = ("joint_pos", "joint_vel", "gripper_width", "gripper_qpos", "gripper_closure", "tcp_pos", "tcp_quat",
                "tcp_rotvec", "tcp_rpy")
"""Named proprio fields a request can carry. Derived: ``tcp_rotvec`` / ``tcp_rpy`` (from tcp_quat), ``gripper_qpos``
(+w/2, -w/2: the two finger joints as robosuite's Panda gripper reports them, LIBERO's robot0_gripper_qpos) and
``gripper_closure`` (1 - w / 0.08 m in [0, 1]: DROID's gripper_position, 0 open .. 1 closed)."""


def state_field(state: dict, name: str) -> np.ndarray:
    """One named proprio field of ``observation["state"]`` as float32 (see :data:`STATE_FIELDS`)."""
    if name == "tcp_rotvec":
        return Rotation.from_quat(state["tcp_quat"]).as_rotvec().astype(np.float32)
    if name == "tcp_rpy":
        return Rotation.from_quat(state["tcp_quat"]).as_euler("xyz").astype(np.float32)
    if name == "gripper_qpos":
        half = float(np.asarray(state["gripper_width"]).reshape(-1)[0]) / 2
        return np.array([half, -half], dtype=np.float32)
    if name == "gripper_closure":
        width = float(np.asarray(state["gripper_width"]).reshape(-1)[0])
        return np.array([np.clip(1.0 - width / FRANKA_HAND_MAX_WIDTH, 0.0, 1.0)], dtype=np.float32)
    if name not in STATE_FIELDS:
        raise KeyError(f"unknown state field {name!r}; known: {', '.join(STATE_FIELDS)}")
    return np.asarray(state[name], dtype=np.float32).reshape(-1)


def parse_key_map(entries: list[str] | tuple[str, ...], what: str) -> dict[str, list[str]]:
    """Parse ``["key=a,b", ...]`` (ROS string-array parameters) into ``{"key": ["a", "b"]}``."""
    out: dict[str, list[str]] = {}
    for entry in entries:
        key, sep, values = entry.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise ValueError(f"{what} entry {entry!r} must look like 'key=value[,value...]'")
        out[key.strip()] = [v.strip() for v in values.split(",") if v.strip()]
    return out


@dataclass
class OpenPIConfig:
    """Client of an openpi policy server (``scripts/serve_policy.py``): msgpack-numpy over a websocket."""

    host: str = "127.0.0.1"
    """Server host, or a full ``ws://host:port`` URI (then ``port`` is ignored)."""
    port: int = 8000
    """Server port."""
    api_key: str = ""
    """Sent as ``Authorization: Api-Key <key>`` when not empty."""
    preset: str = "libero"
    """Request layout and reply check of the served config family (:data:`OPENPI_PRESETS`: libero, droid), or
    "custom": ``image_keys`` and ``state_keys`` as given, any reply of at least 7 columns."""
    prompt_key: str = "prompt"
    """Observation key of the language instruction."""
    image_keys: tuple[str, ...] | None = None
    """``key=camera`` gets the camera image, ``key=zeros`` a black image of the same size (for models that expect a
    view we do not have). None: the preset's; empty: send no image."""
    state_keys: tuple[str, ...] | None = None
    """``key=field[,field...]``: concatenation of :data:`STATE_FIELDS` sent as float32 under that key. None: the
    preset's; empty: no state."""
    image_size: int = 224
    """Resize-with-pad images to this square size before sending (0: send as is)."""
    actions_key: str = "actions"
    """Response key holding the (H, D) action chunk."""
    connect_timeout_s: float = 10.0
    """At most this long to open a connection and receive the server metadata (and never past the call's
    ``infer_timeout_s``)."""
    infer_timeout_s: float = 5.0
    """At most this long for one call, opening a connection included; on timeout the connection is aborted and the
    next call opens a new one."""
    close_timeout_s: float = 0.5
    """Closing handshake allowed at :meth:`OpenPIBackend.close` (a failed connection is aborted without one)."""
    adapter: ActionAdapter = field(default_factory=lambda: ACTION_CONVENTIONS["openpi_libero"])
    """Model actions -> ours (default: openpi LIBERO style, gripper -1 open / +1 closed, rotation vector)."""

    def __post_init__(self) -> None:
        if self.preset != "custom" and self.preset not in OPENPI_PRESETS:
            raise ValueError(f"unknown openpi preset {self.preset!r}; known: {', '.join(OPENPI_PRESETS)}, custom")
        if self.preset == "custom" and (self.image_keys is None or self.state_keys is None):
            raise ValueError("openpi preset 'custom' needs image_keys and state_keys (['none'] for none)")
        for name in ("connect_timeout_s", "infer_timeout_s", "close_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

    @property
    def uri(self) -> str:
        return self.host if self.host.startswith(("ws://", "wss://")) else f"ws://{self.host}:{self.port}"


def _error_cause(traceback_text: str) -> str:
    """The last line of a Python traceback: the exception and its message."""
    lines = [ln.strip() for ln in traceback_text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "(empty error message)"


class OpenPIBackend:
    """Talks to an openpi policy server: on connect the server sends its metadata (a msgpack map); each request is a
    msgpack map of observation arrays, each reply a msgpack map with ``actions``, or a text frame with the server's
    traceback after which the server closes the connection."""

    def __init__(self, cfg: OpenPIConfig, name: str = "openpi"):
        self.cfg, self.name = cfg, name
        self.preset: OpenPIPreset | None = OPENPI_PRESETS.get(cfg.preset)
        image_keys = cfg.image_keys if cfg.image_keys is not None else self.preset.image_keys
        state_keys = cfg.state_keys if cfg.state_keys is not None else self.preset.state_keys
        self.image_map = parse_key_map(image_keys, "image_keys")
        self.state_map = parse_key_map(state_keys, "state_keys")
        for key, sources in self.image_map.items():
            if len(sources) != 1 or sources[0] not in ("camera", "zeros"):
                raise ValueError(f"image_keys[{key!r}] must be 'camera' or 'zeros', got {sources}")
        for key, fields in self.state_map.items():
            for f in fields:
                if f not in STATE_FIELDS:
                    raise ValueError(f"state_keys[{key!r}] names unknown field {f!r}; known: {STATE_FIELDS}")
        self.instruction = ""
        self.server_metadata: dict | None = None
        self.last_server_timing: dict | None = None
        self.last_reply: dict | None = None
        """The last reply as decoded (actions, server_timing and whatever else the policy returned)."""
        self.connections = 0
        """Connections opened so far (a reconnection counts)."""
        self._ws = None
        self._stack: ExitStack | None = None

    # --- connection ----------------------------------------------------------------------------------------------
    def _where(self) -> str:
        return f"openpi server {self.cfg.uri}"

    def _connect(self, deadline: float):
        from websockets.exceptions import InvalidHandshake, InvalidURI, WebSocketException
        from websockets.sync.client import connect

        budget = min(self.cfg.connect_timeout_s, deadline - time.monotonic())
        if budget <= 0:
            raise BackendError(f"{self._where()}: no time left to connect within infer_timeout_s="
                               f"{self.cfg.infer_timeout_s} s")
        headers = {"Authorization": f"Api-Key {self.cfg.api_key}"} if self.cfg.api_key else None
        stack = ExitStack()  # the connection as a context (websockets >= 17 deprecates bare connect())
        ws = None
        try:
            # proxy=None: the policy server is on the robot's network; a proxy from the environment would route the
            # connection elsewhere.
            ws = stack.enter_context(connect(self.cfg.uri, compression=None, max_size=None, proxy=None,
                                             additional_headers=headers, open_timeout=budget,
                                             close_timeout=self.cfg.close_timeout_s))
            first = ws.recv(timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError as exc:
            self._abort(ws, stack)
            raise BackendError(f"{self._where()} did not complete the websocket opening and its metadata within "
                               f"{budget:.2f} s (it runs inference on its event loop: busy with another client's "
                               f"request, or stuck)") from exc
        except InvalidURI as exc:
            self._abort(ws, stack)
            raise BackendError(f"{self._where()}: invalid server address: {exc}") from exc
        except InvalidHandshake as exc:
            self._abort(ws, stack)
            raise BackendError(f"{self._where()} refused the websocket opening: {exc}") from exc
        except (OSError, WebSocketException) as exc:
            self._abort(ws, stack)
            raise BackendError(f"cannot connect to {self._where()}: {type(exc).__name__}: {exc}") from exc
        self._ws, self._stack = ws, stack
        self.connections += 1
        if isinstance(first, str):
            self._drop()
            raise BackendError(f"{self._where()} sent text instead of its metadata: {first[:300]}")
        try:
            metadata = msgpack_wire.unpackb(first)
        except msgpack_wire.MsgpackError as exc:
            self._drop()
            raise BackendError(f"{self._where()} sent metadata that is not msgpack: {exc}") from exc
        if not isinstance(metadata, dict):
            self._drop()
            raise BackendError(f"{self._where()} sent metadata that is not a map ({type(metadata).__name__}): not an "
                               "openpi policy server?")
        if "reset_pose" in metadata and self.preset is not None:
            self._drop()
            raise BackendError(f"{self._where()} serves an ALOHA config (its metadata has reset_pose): bimanual "
                               f"joint actions, not for this arm; preset {self.preset.name!r} does not match it")
        self.server_metadata = metadata
        return ws

    @staticmethod
    def _abort(ws, stack: ExitStack | None) -> None:
        """Abort a connection at once: no closing handshake (a busy or failed server would not answer it)."""
        if ws is not None:
            try:
                ws.socket.shutdown(socket.SHUT_RDWR)  # the close frame then fails at once and the socket is closed
            except OSError:
                pass
        if stack is not None:
            stack.close()

    def _drop(self) -> None:
        """Abort the current connection (the next call opens a new one)."""
        ws, stack = self._ws, self._stack
        self._ws, self._stack = None, None
        self._abort(ws, stack)

    def close(self) -> None:
        """Close the connection (a closing handshake of at most ``close_timeout_s``)."""
        stack = self._stack
        self._ws, self._stack = None, None
        if stack is not None:
            stack.close()

    # --- requests ------------------------------------------------------------------------------------------------
    def reset(self, instruction: str) -> None:
        self.instruction = instruction

    def build_request(self, observation: dict) -> dict:
        """The observation in the server's keys (pure; exposed for tests and debugging)."""
        req: dict[str, Any] = {self.cfg.prompt_key: observation.get("instruction") or self.instruction}
        state = observation["state"]
        for key, fields in self.state_map.items():
            req[key] = np.concatenate([state_field(state, f) for f in fields]).astype(np.float32)
        if self.image_map:
            if observation.get("image") is None:
                raise BackendError(f"the openpi request needs an image for {list(self.image_map)} but none arrived")
            img = prepare_image(observation["image"], self.cfg.image_size)
            for key, (source,) in self.image_map.items():
                req[key] = img if source == "camera" else np.zeros_like(img)
        return req

    def _exchange(self, payload: bytes, deadline: float) -> bytes | str:
        """Send one request and return the server's answer, within ``deadline`` (time.monotonic())."""
        from websockets.exceptions import ConnectionClosed

        for attempt in (1, 2):
            fresh = self._ws is None
            ws = self._ws or self._connect(deadline)
            try:
                sent = self._send(ws, payload, deadline)
            except ConnectionClosed as exc:
                self._drop()
                raise BackendError(f"{self._where()}: sending the request failed within infer_timeout_s="
                                   f"{self.cfg.infer_timeout_s} s: {exc.__cause__!r}") from exc
            if not sent:
                self._drop()
                if fresh or attempt == 2:
                    raise BackendError(f"{self._where()} closed the connection before our request")
                continue  # closed while idle (a restart): the request was not sent; once more on a new connection
            try:
                return ws.recv(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError as exc:
                self._drop()
                raise BackendError(f"{self._where()} sent no reply within infer_timeout_s={self.cfg.infer_timeout_s}"
                                   " s (busy with another client's request, or stuck); connection aborted, the next "
                                   "call opens a new one") from exc
            except ConnectionClosed as exc:
                self._drop()
                raise BackendError(f"{self._where()} closed the connection during the request: {exc}") from exc
        raise AssertionError("unreachable")

    @staticmethod
    def _send(ws, payload: bytes, deadline: float) -> bool:
        """``ws.send`` bounded by ``deadline`` (a server that stops reading, its event loop blocked, cannot hold it);
        False when the connection turns out closed before anything was sent (the server closed it while we were idle);
        raises ConnectionClosed when the send failed (``__cause__``: the socket error)."""
        from websockets.exceptions import ConnectionClosed

        try:
            ws.socket.settimeout(max(1e-3, deadline - time.monotonic()))
        except OSError:  # the socket was closed when the connection closed
            return False
        try:
            ws.send(payload)
        except ConnectionClosed as exc:
            if isinstance(exc.__cause__, OSError):
                raise
            return False
        finally:
            try:
                ws.socket.settimeout(None)
            except OSError:
                pass
        return True

    def _server_error(self, text: str, sent_keys: list[str]) -> BackendError:
        cause = _error_cause(text)
        hint = ""
        if cause.startswith("KeyError:"):
            key = cause.partition(":")[2].strip().strip("'\"")
            if key not in sent_keys:
                preset = self.preset.name if self.preset else "custom"
                hint = (f"; the served config reads {key!r}, which our request (preset {preset!r}) lacks: choose the "
                        f"preset of the served config ({', '.join(OPENPI_PRESETS)}) or set image_keys/state_keys")
        return BackendError(f"{self._where()} failed on our request: {cause}{hint} (request keys: {sent_keys}; the "
                            f"server closed the connection, the next call opens a new one). Server traceback:\n"
                            f"{text[-2000:]}")

    def check_actions(self, actions: Any) -> np.ndarray:
        """The reply's actions as (H, D), refused with the reason when they do not match the preset."""
        a = np.asarray(actions)
        if a.ndim != 2 or a.shape[0] == 0 or a.dtype.kind not in "fiu":
            raise BackendError(f"{self._where()} replied actions of shape {a.shape} dtype {a.dtype}; expected a "
                               "numeric (H, D) chunk")
        columns = a.shape[1]
        family = ACTION_COLUMNS_OF.get(columns, "no known openpi config")
        if self.preset is not None and columns != self.preset.action_columns:
            raise BackendError(f"{self._where()} replied {columns} action columns, as {family} returns; preset "
                               f"{self.preset.name!r} expects {self.preset.action_columns}: the served config and "
                               "the preset do not match")
        if self.preset is not None and self.preset.action_space != "eef_delta":
            raise BackendError(f"{self._where()} serves {family}: {self.preset.action_space} actions, and this node "
                               "commands end-effector deltas: a DROID-trained model cannot drive it")
        if self.preset is None and columns == 14:
            raise BackendError(f"{self._where()} replied 14 action columns ({family}): not a single-arm model")
        return a

    def infer(self, observation: dict) -> np.ndarray:
        deadline = time.monotonic() + self.cfg.infer_timeout_s  # the whole call, building the request included
        request = self.build_request(observation)
        payload = msgpack_wire.packb(request)
        reply = self._exchange(payload, deadline)
        if isinstance(reply, str):  # the traceback; the server closes the connection after it
            self._drop()
            raise self._server_error(reply, list(request))
        try:
            result = msgpack_wire.unpackb(reply)
        except msgpack_wire.MsgpackError as exc:
            self._drop()
            raise BackendError(f"{self._where()} sent a reply that is not msgpack: {exc}") from exc
        if not isinstance(result, dict) or self.cfg.actions_key not in result:
            keys = list(result) if isinstance(result, dict) else type(result).__name__
            raise BackendError(f"{self._where()} reply has no {self.cfg.actions_key!r}: {keys}")
        self.last_reply, self.last_server_timing = result, result.get("server_timing")
        return self.cfg.adapter(self.check_actions(result[self.cfg.actions_key]))


def _keys(entries) -> tuple[str, ...] | None:
    """String-array parameter: ["preset"] -> None (the preset's), "none" entries dropped (ROS cannot declare an empty
    string array)."""
    entries = tuple(entries)
    if entries == ("preset",):
        return None
    return tuple(e for e in entries if e.strip().lower() != "none")


def make_openpi(params: dict) -> OpenPIBackend:
    """The OpenPIBackend configured by the node's parameters (a dict; absent keys: defaults)."""
    base = OpenPIConfig()
    cfg = OpenPIConfig(
        host=params.get("server_host", base.host), port=int(params.get("server_port", base.port)),
        api_key=params.get("api_key", ""), preset=params.get("openpi_preset", base.preset),
        prompt_key=params.get("prompt_key", base.prompt_key),
        image_keys=_keys(params.get("image_keys", ("preset",))),
        state_keys=_keys(params.get("state_keys", ("preset",))),
        image_size=int(params.get("image_size", base.image_size)),
        actions_key=params.get("actions_key", base.actions_key),
        connect_timeout_s=float(params.get("connect_timeout_s", base.connect_timeout_s)),
        infer_timeout_s=float(params.get("infer_timeout_s", base.infer_timeout_s)),
        adapter=adapter_from_params(params, base.adapter),
    )
    return OpenPIBackend(cfg)
