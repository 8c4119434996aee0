"""Base policy backends: something that turns an observation into a chunk of actions in our convention.

Every backend implements :class:`BasePolicyBackend`: ``reset(instruction)`` at the start of an episode and
``infer(observation) -> (H, 7)`` chunk (docs/CONTRACTS.md: dx dy dz m, rotation vector rad, gripper 0 open
.. 1 closed), where ``observation`` is the dict built by :func:`vla_base_node.inputs.InputCache.snapshot`:

* ``instruction`` (str), ``step`` (int),
* ``state``: dict of numpy arrays: ``joint_pos`` (7,), ``joint_vel`` (7,), ``gripper_width`` (1,) m,
  ``tcp_pos`` (3,), ``tcp_quat`` (4,) x y z w, ``objects`` {name: (7,) pos + quat}, ``object_present``
  {name: bool}, all in the robot base frame,
* ``image``: (H, W, 3) uint8 RGB or None.

Implementations here: :class:`OpenPIBackend` (openpi policy server, msgpack over websocket),
:class:`OpenVLABackend` (OpenVLA's REST deploy server, ``POST /act``) and :class:`ReplayBackend` (replays a
recorded action sequence open-loop). Model-specific conventions (rotation as roll-pitch-yaw, gripper
1 = open, scaled actions) are undone by :class:`ActionAdapter`. New backends (the sim BC base policy) are
added to :data:`BACKEND_FACTORIES`.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from scipy.spatial.transform import Rotation

from vla_base_node import msgpack_wire

ACTION_DIM = 7
STATE_FIELDS = ("joint_pos", "joint_vel", "gripper_width", "tcp_pos", "tcp_quat", "tcp_rotvec", "tcp_rpy")


class BackendError(RuntimeError):
    """The policy server failed, timed out or answered something we cannot use."""


@runtime_checkable
class BasePolicyBackend(Protocol):
    """A base policy: observation dict in, action chunk (H, 7) in our action convention out."""

    name: str
    """Short name, written into EefAction.source."""

    def reset(self, instruction: str) -> None:
        """Start an episode conditioned on ``instruction``."""

    def infer(self, observation: dict) -> np.ndarray:
        """Return a chunk (H, 7): row i is the action for step ``observation["step"] + i``."""

    def close(self) -> None:
        """Release connections."""


# --- model action conventions -> ours ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ActionAdapter:
    """Converts a model's raw actions (H, D >= 7) to ours (H, 7): first 3 translation, next 3 rotation, then gripper."""

    rotation: str = "rotvec"
    """How columns 3-5 encode the rotation step: "rotvec" (axis * angle) or "rpy" (extrinsic x-y-z Euler, as the
    Bridge/OpenVLA datasets use); converted to a rotation vector with scipy."""
    translation_scale: float = 1.0
    """Multiplies columns 0-2 to get metres (models trained on normalised deltas need their scale here)."""
    rotation_scale: float = 1.0
    """Multiplies columns 3-5 (before the rpy/rotvec conversion) to get radians."""
    gripper_open: float = 0.0
    """The model's gripper value meaning "open" (ours: 0). Bridge/OpenVLA: 1.0; openpi LIBERO: -1.0."""
    gripper_closed: float = 1.0
    """The model's gripper value meaning "closed" (ours: 1). Bridge/OpenVLA: 0.0; openpi LIBERO: 1.0."""
    binarize_gripper: bool = False
    """Snap the converted gripper command to 0 or 1 (threshold 0.5)."""
    max_actions: int = 0
    """Keep at most this many actions of a chunk (0: all)."""

    def __post_init__(self) -> None:
        if self.rotation not in ("rotvec", "rpy"):
            raise ValueError(f"rotation must be 'rotvec' or 'rpy', got {self.rotation!r}")
        if self.gripper_open == self.gripper_closed:
            raise ValueError(f"gripper_open and gripper_closed must differ, both are {self.gripper_open}")
        for name in ("translation_scale", "rotation_scale"):
            if not np.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)}")
        if self.max_actions < 0:
            raise ValueError(f"max_actions must be >= 0, got {self.max_actions}")

    def __call__(self, raw: Any) -> np.ndarray:
        a = np.asarray(raw, dtype=np.float64)
        if a.ndim == 1:
            a = a[None, :]
        if a.ndim != 2 or a.shape[1] < ACTION_DIM or a.shape[0] == 0:
            raise BackendError(f"expected actions of shape (H, >=7) or (>=7,), got {np.shape(raw)}")
        if self.max_actions:
            a = a[: self.max_actions]
        out = np.empty((len(a), ACTION_DIM))
        out[:, 0:3] = a[:, 0:3] * self.translation_scale
        rot = a[:, 3:6] * self.rotation_scale
        if self.rotation == "rpy":
            finite = np.all(np.isfinite(rot), axis=1)
            out[:, 3:6] = np.nan
            if finite.any():
                out[finite, 3:6] = Rotation.from_euler("xyz", rot[finite]).as_rotvec()
        else:
            out[:, 3:6] = rot
        g = (a[:, 6] - self.gripper_open) / (self.gripper_closed - self.gripper_open)
        g = np.clip(g, 0.0, 1.0)
        out[:, 6] = (g > 0.5).astype(np.float64) if self.binarize_gripper else g
        out[~np.isfinite(a[:, 6]), 6] = np.nan  # clip() would have hidden a NaN gripper
        return out


ACTION_CONVENTIONS: dict[str, ActionAdapter] = {
    "ours": ActionAdapter(),
    "openpi_libero": ActionAdapter(gripper_open=-1.0, gripper_closed=1.0),
    "bridge": ActionAdapter(rotation="rpy", gripper_open=1.0, gripper_closed=0.0, binarize_gripper=True),
}
"""Named model action conventions (``action_convention`` parameter; empty: the backend's default)."""


# --- observation helpers -----------------------------------------------------------------------------------------


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


def resize_with_pad(image: np.ndarray, size: int) -> np.ndarray:
    """Fit an (H, W, 3) uint8 image into size x size keeping its aspect ratio, padding with black."""
    import cv2

    h, w = image.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    out = np.zeros((size, size, image.shape[2]), dtype=image.dtype)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = resized
    return out


def _prepare_image(image: Any, size: int) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise BackendError(f"image must be (H, W, 3) uint8, got shape {img.shape} dtype {img.dtype}")
    return resize_with_pad(img, size) if size > 0 else img


# --- openpi (msgpack over websocket) -----------------------------------------------------------------------------


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
            img = _prepare_image(observation["image"], self.cfg.image_size)
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


# --- OpenVLA (REST) ---------------------------------------------------------------------------------------------


def json_numpy_encode(arr: np.ndarray) -> dict:
    """An array as the ``json_numpy`` package encodes it (what OpenVLA's deploy server decodes)."""
    arr = np.ascontiguousarray(arr)
    return {"__numpy__": base64.b64encode(arr.tobytes()).decode("ascii"),
            "dtype": np.lib.format.dtype_to_descr(arr.dtype), "shape": list(arr.shape)}


def json_numpy_hook(d: dict) -> Any:
    """``json.loads`` object hook turning ``json_numpy`` maps back into arrays."""
    if "__numpy__" in d:
        dtype = np.lib.format.descr_to_dtype(d["dtype"])
        if dtype.kind in ("O", "V"):
            raise BackendError(f"refusing numpy dtype {dtype}")
        arr = np.frombuffer(base64.b64decode(d["__numpy__"]), dtype=dtype)
        shape = d.get("shape")
        return arr.reshape(shape).copy() if shape else arr[0]
    return d


@dataclass
class OpenVLAConfig:
    """Client of OpenVLA's REST deploy server (``vla-scripts/deploy.py``): ``POST /act`` with JSON
    ``{"image": array, "instruction": str, "unnorm_key": str}``, arrays json_numpy-encoded; the reply is the
    action array (json_numpy), or a JSON string holding it when ``double_encode``."""

    url: str = "http://127.0.0.1:8000/act"
    """Full URL of the act endpoint."""
    unnorm_key: str = ""
    """Dataset statistics used to un-normalise the action (e.g. "bridge_orig"); empty: server default."""
    image_size: int = 224
    """Resize-with-pad the image to this square size (0: send as is)."""
    double_encode: bool = False
    """Send ``{"encoded": "<json string>"}`` (the server's fallback for clients without json_numpy)."""
    timeout_s: float = 5.0
    """HTTP timeout per request."""
    adapter: ActionAdapter = field(default_factory=lambda: ACTION_CONVENTIONS["bridge"])
    """Model actions -> ours (default: Bridge convention, Euler deltas, gripper 1 = open)."""


class OpenVLABackend:
    """One HTTP POST per inference; OpenVLA returns a single action, i.e. a chunk of length 1 (OpenVLA-OFT
    style servers returning (H, 7) work too)."""

    def __init__(self, cfg: OpenVLAConfig, name: str = "openvla"):
        self.cfg, self.name = cfg, name
        self.instruction = ""
        # No proxies: the VLA server is on the robot's network, and an http_proxy from the environment would
        # silently route requests elsewhere.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def reset(self, instruction: str) -> None:
        self.instruction = instruction

    def build_request(self, observation: dict) -> dict:
        if observation.get("image") is None:
            raise BackendError("OpenVLA needs a camera image but none arrived")
        payload: dict[str, Any] = {
            "image": json_numpy_encode(_prepare_image(observation["image"], self.cfg.image_size)),
            "instruction": observation.get("instruction") or self.instruction,
        }
        if self.cfg.unnorm_key:
            payload["unnorm_key"] = self.cfg.unnorm_key
        return {"encoded": json.dumps(payload)} if self.cfg.double_encode else payload

    def infer(self, observation: dict) -> np.ndarray:
        body = json.dumps(self.build_request(observation)).encode("utf-8")
        req = urllib.request.Request(self.cfg.url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with self._opener.open(req, timeout=self.cfg.timeout_s) as resp:
                text = resp.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            raise BackendError(f"OpenVLA server {self.cfg.url} answered HTTP {exc.code}: "
                               f"{exc.read()[:500]!r}") from exc
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise BackendError(f"cannot reach OpenVLA server {self.cfg.url}: {exc}") from exc
        return self.cfg.adapter(self.parse_reply(text))

    @staticmethod
    def parse_reply(text: str) -> np.ndarray:
        """The action(s) from a reply: an array, a JSON string holding one (double-encoded), or {"action": ...}."""
        value = json.loads(text, object_hook=json_numpy_hook)
        if isinstance(value, str):
            if value.strip().lower() == "error":
                raise BackendError("OpenVLA server reported an error (see its log); check the request format")
            try:
                value = json.loads(value, object_hook=json_numpy_hook)
            except json.JSONDecodeError as exc:
                raise BackendError(f"OpenVLA reply is a string that is not JSON: {value[:200]!r}") from exc
        if isinstance(value, dict):
            for key in ("action", "actions"):
                if key in value:
                    value = value[key]
                    break
            else:
                raise BackendError(f"OpenVLA reply map has no 'action': keys {list(value)}")
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim not in (1, 2):
            raise BackendError(f"OpenVLA reply has shape {arr.shape}; expected (7,) or (H, 7)")
        return arr

    def close(self) -> None:
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --- replay (open loop) ----------------------------------------------------------------------------------------


@dataclass
class ReplayConfig:
    """Replays a recorded action sequence (T, 7) open-loop: for debugging the graph and the robot without a model."""

    path: str = ""
    """``.npy`` (T, 7) float array or ``.csv`` (T rows of 7 numbers, optional header row) in our convention."""
    horizon: int = 8
    """Actions returned per inference."""


class ReplayBackend:
    """``infer`` returns actions[step : step + horizon]; past the end, zero-delta actions with the final gripper."""

    def __init__(self, cfg: ReplayConfig, name: str = "replay"):
        self.cfg, self.name = cfg, name
        path = Path(cfg.path)
        if path.suffix == ".npy":
            actions = np.load(path, allow_pickle=False)
        elif path.suffix == ".csv":
            actions = np.loadtxt(path, delimiter=",", ndmin=2, skiprows=_header_rows(path))
        else:
            raise ValueError(f"replay file must be .npy or .csv, got {cfg.path!r}")
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim != 2 or actions.shape[1] != ACTION_DIM or len(actions) == 0:
            raise ValueError(f"replay file {cfg.path} must hold (T, 7) actions, got shape {actions.shape}")
        if not np.all(np.isfinite(actions)):
            raise ValueError(f"replay file {cfg.path} holds non-finite actions")
        if cfg.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {cfg.horizon}")
        self.actions = actions
        self.instruction = ""

    def reset(self, instruction: str) -> None:
        self.instruction = instruction

    def infer(self, observation: dict) -> np.ndarray:
        step = int(observation["step"])
        out = np.zeros((self.cfg.horizon, ACTION_DIM))
        out[:, 6] = self.actions[-1, 6]
        part = self.actions[step : step + self.cfg.horizon]
        out[: len(part)] = part
        return out

    def close(self) -> None:
        pass


def _header_rows(path: Path) -> int:
    with open(path) as f:
        first = f.readline()
    try:
        [float(v) for v in first.split(",")]
        return 0
    except ValueError:
        return 1


# --- registry -----------------------------------------------------------------------------------------------------

BackendFactory = Callable[[dict], BasePolicyBackend]


def _adapter_from(params: dict, default: ActionAdapter) -> ActionAdapter:
    name = params.get("action_convention") or ""
    if name and name not in ACTION_CONVENTIONS:
        raise ValueError(f"unknown action_convention {name!r}; known: {', '.join(ACTION_CONVENTIONS)}")
    base = ACTION_CONVENTIONS[name] if name else default
    return replace(
        base,
        translation_scale=float(params.get("action_translation_scale", base.translation_scale)),
        rotation_scale=float(params.get("action_rotation_scale", base.rotation_scale)),
        max_actions=int(params.get("action_max_actions", base.max_actions)),
    )


def _keys(entries) -> tuple[str, ...]:
    """String-array parameter without the placeholder "none" (ROS cannot declare an empty string array)."""
    return tuple(e for e in entries if e.strip().lower() != "none")


def make_openpi(params: dict) -> OpenPIBackend:
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
        adapter=_adapter_from(params, base.adapter),
    )
    return OpenPIBackend(cfg)


def make_openvla(params: dict) -> OpenVLABackend:
    base = OpenVLAConfig()
    cfg = OpenVLAConfig(
        url=params.get("server_url", base.url), unnorm_key=params.get("unnorm_key", ""),
        image_size=int(params.get("image_size", base.image_size)),
        double_encode=bool(params.get("double_encode", False)),
        timeout_s=float(params.get("infer_timeout_s", base.timeout_s)),
        adapter=_adapter_from(params, base.adapter),
    )
    return OpenVLABackend(cfg)


def make_replay(params: dict) -> ReplayBackend:
    return ReplayBackend(ReplayConfig(path=params.get("replay_path", ""), horizon=int(params.get("horizon", 8))))


BACKEND_FACTORIES: dict[str, BackendFactory] = {
    "openpi": make_openpi,
    "openvla": make_openvla,
    "replay": make_replay,
}
"""Backend name -> factory taking the node's parameters as a dict. The sim BC base policy plugs in here."""


def _make_sim_bc(params: dict) -> BasePolicyBackend:
    from vla_base_node.sim_bc import make_sim_bc  # imports torch: only when this backend is chosen

    return make_sim_bc(params)


BACKEND_FACTORIES["sim_bc"] = _make_sim_bc


def make_backend(name: str, params: dict) -> BasePolicyBackend:
    """Build the backend ``name`` from ``params``; the error lists the known names."""
    if name not in BACKEND_FACTORIES:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(sorted(BACKEND_FACTORIES))}")
    return BACKEND_FACTORIES[name](params)


def timed_infer(backend: BasePolicyBackend, observation: dict) -> tuple[np.ndarray, float]:
    """``backend.infer`` plus its wall time in seconds."""
    t0 = time.perf_counter()
    chunk = backend.infer(observation)
    return chunk, time.perf_counter() - t0
