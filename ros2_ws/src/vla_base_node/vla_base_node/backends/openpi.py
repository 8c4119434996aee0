"""Client of an openpi policy server: msgpack-numpy over a websocket (``scripts/serve_policy.py``).

The request maps our observation onto the server's keys: state fields (:func:`state_field`, including derived TCP
rotations) concatenated per key, the camera image (or a black stand-in) per key, the instruction under
``prompt_key``; the reply's ``actions`` go through the configured :class:`ActionAdapter`.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from vla_base_node import msgpack_wire
from vla_base_node.backends.adapters import ACTION_CONVENTIONS, ActionAdapter, BackendError, adapter_from_params
from vla_base_node.backends.images import prepare_image

STATE_FIELDS = ("joint_pos", "joint_vel", "gripper_width", "tcp_pos", "tcp_quat", "tcp_rotvec", "tcp_rpy")


def state_field(state: dict, name: str) -> np.ndarray:
    """One named proprio field of ``observation["state"]`` as float32, including the derived TCP rotations."""
    if name == "tcp_rotvec":
        return Rotation.from_quat(state["tcp_quat"]).as_rotvec().astype(np.float32)
    if name == "tcp_rpy":
        return Rotation.from_quat(state["tcp_quat"]).as_euler("xyz").astype(np.float32)
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
    prompt_key: str = "prompt"
    """Observation key of the language instruction."""
    image_keys: tuple[str, ...] = ("observation/image=camera",)
    """``key=camera`` gets the camera image, ``key=zeros`` a black image of the same size (for models that
    expect a second view we do not have). Empty: send no image."""
    state_keys: tuple[str, ...] = ("observation/state=tcp_pos,tcp_rotvec,gripper_width",)
    """``key=field[,field...]``: concatenation of state fields (joint_pos, joint_vel, gripper_width, tcp_pos,
    tcp_quat, tcp_rotvec, tcp_rpy) sent as float32 under that key."""
    image_size: int = 224
    """Resize-with-pad images to this square size before sending (0: send as is)."""
    actions_key: str = "actions"
    """Response key holding the (H, D) action chunk."""
    connect_timeout_s: float = 10.0
    """Time allowed to open the connection and receive the server metadata."""
    infer_timeout_s: float = 5.0
    """Time allowed for one inference round trip; on timeout the connection is dropped and reopened."""
    adapter: ActionAdapter = field(default_factory=lambda: ACTION_CONVENTIONS["openpi_libero"])
    """Model actions -> ours (default: openpi LIBERO style, gripper -1 open / +1 closed, rotation vector)."""

    @property
    def uri(self) -> str:
        return self.host if self.host.startswith(("ws://", "wss://")) else f"ws://{self.host}:{self.port}"


class OpenPIBackend:
    """Talks to an openpi policy server: on connect the server sends its metadata (msgpack map); each request
    is a msgpack map of observation arrays, each reply a msgpack map with ``actions`` (or a text frame with the
    server's error)."""

    def __init__(self, cfg: OpenPIConfig, name: str = "openpi"):
        self.cfg, self.name = cfg, name
        self.image_map = parse_key_map(cfg.image_keys, "image_keys")
        self.state_map = parse_key_map(cfg.state_keys, "state_keys")
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
        self._ws = None
        self._stack: ExitStack | None = None

    def _connect(self):
        from websockets.sync.client import connect

        headers = {"Authorization": f"Api-Key {self.cfg.api_key}"} if self.cfg.api_key else None
        stack = ExitStack()  # the connection as a context (websockets >= 17 deprecates bare connect())
        try:
            ws = stack.enter_context(connect(self.cfg.uri, compression=None, max_size=None,
                                             additional_headers=headers, open_timeout=self.cfg.connect_timeout_s))
            first = ws.recv(timeout=self.cfg.connect_timeout_s)
        except (OSError, TimeoutError) as exc:
            stack.close()
            raise BackendError(f"cannot connect to openpi server at {self.cfg.uri}: {exc}") from exc
        except Exception as exc:  # websockets' handshake errors
            stack.close()
            raise BackendError(f"openpi handshake with {self.cfg.uri} failed: {exc}") from exc
        if isinstance(first, str):
            stack.close()
            raise BackendError(f"openpi server at {self.cfg.uri} sent text instead of metadata: {first[:200]}")
        self.server_metadata = msgpack_wire.unpackb(first)
        self._ws, self._stack = ws, stack
        return ws

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

    def infer(self, observation: dict) -> np.ndarray:
        payload = msgpack_wire.packb(self.build_request(observation))
        ws = self._ws or self._connect()
        try:
            ws.send(payload)
            reply = ws.recv(timeout=self.cfg.infer_timeout_s)
        except Exception as exc:  # timeout or closed connection: the stream is out of step, start afresh
            self.close()
            raise BackendError(f"openpi inference at {self.cfg.uri} failed: {type(exc).__name__}: {exc}") from exc
        if isinstance(reply, str):
            raise BackendError(f"openpi server error: {reply[:2000]}")
        result = msgpack_wire.unpackb(reply)
        if not isinstance(result, dict) or self.cfg.actions_key not in result:
            keys = list(result) if isinstance(result, dict) else type(result).__name__
            raise BackendError(f"openpi reply has no {self.cfg.actions_key!r}: {keys}")
        self.last_server_timing = result.get("server_timing")
        return self.cfg.adapter(result[self.cfg.actions_key])

    def close(self) -> None:
        if self._stack is not None:
            try:
                self._stack.close()
            finally:
                self._ws, self._stack = None, None


def _keys(entries) -> tuple[str, ...]:
    """String-array parameter without the placeholder "none" (ROS cannot declare an empty string array)."""
    return tuple(e for e in entries if e.strip().lower() != "none")


def make_openpi(params: dict) -> OpenPIBackend:
    """The OpenPIBackend configured by the node's parameters (a dict; absent keys: defaults)."""
    base = OpenPIConfig()
    cfg = OpenPIConfig(
        host=params.get("server_host", base.host), port=int(params.get("server_port", base.port)),
        api_key=params.get("api_key", ""), prompt_key=params.get("prompt_key", base.prompt_key),
        image_keys=_keys(params.get("image_keys", base.image_keys)),
        state_keys=_keys(params.get("state_keys", base.state_keys)),
        image_size=int(params.get("image_size", base.image_size)),
        actions_key=params.get("actions_key", base.actions_key),
        connect_timeout_s=float(params.get("connect_timeout_s", base.connect_timeout_s)),
        infer_timeout_s=float(params.get("infer_timeout_s", base.infer_timeout_s)),
        adapter=adapter_from_params(params, base.adapter),
    )
    return OpenPIBackend(cfg)
