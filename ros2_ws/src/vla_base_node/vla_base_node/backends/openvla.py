"""Client of OpenVLA's REST deploy server (``POST /act``) and the json_numpy codec its payloads use."""

from __future__ import annotations

import base64
import http.client
import json
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vla_base_node.backends.adapters import ACTION_CONVENTIONS, ActionAdapter, BackendError, adapter_from_params
from vla_base_node.backends.images import prepare_image


def json_numpy_encode(arr: np.ndarray) -> dict:
    """An array as the ``json_numpy`` package encodes it (what OpenVLA's deploy server decodes)."""
    arr = np.asarray(arr)  # not np.ascontiguousarray: it turns a 0-d array into shape (1,); tobytes() is C order
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
    style servers returning (H, 7) work too). One call, connecting included, takes at most ``timeout_s``: each phase
    (connect, send, each read of the reply) gets the time left."""

    def __init__(self, cfg: OpenVLAConfig, name: str = "openvla"):
        self.cfg, self.name = cfg, name
        self.instruction = ""
        url = urllib.parse.urlsplit(cfg.url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"OpenVLA server_url must be http(s)://host[:port]/path, got {cfg.url!r}")
        self._url = url
        if not cfg.timeout_s > 0:
            raise ValueError(f"OpenVLA infer_timeout_s must be > 0, got {cfg.timeout_s}")

    def reset(self, instruction: str) -> None:
        self.instruction = instruction

    def build_request(self, observation: dict) -> dict:
        if observation.get("image") is None:
            raise BackendError("OpenVLA needs a camera image but none arrived")
        payload: dict[str, Any] = {
            "image": json_numpy_encode(prepare_image(observation["image"], self.cfg.image_size)),
            "instruction": observation.get("instruction") or self.instruction,
        }
        if self.cfg.unnorm_key:
            payload["unnorm_key"] = self.cfg.unnorm_key
        return {"encoded": json.dumps(payload)} if self.cfg.double_encode else payload

    def _post(self, body: bytes) -> tuple[int, bytes]:
        """POST ``body``; (status, reply body), every phase bounded by what is left of ``timeout_s``. No proxy: the
        VLA server is on the robot's network (an http_proxy from the environment would route requests elsewhere)."""
        deadline = time.monotonic() + self.cfg.timeout_s

        def left() -> float:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete reply within infer_timeout_s={self.cfg.timeout_s} s")
            return remaining

        u = self._url
        cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        conn = cls(u.hostname, u.port, timeout=left())
        try:
            conn.connect()
            sock = conn.sock  # kept: the response reads from it after getresponse() may have let go of it
            sock.settimeout(left())  # sendall: the timeout bounds the whole send
            path = (u.path or "/") + (f"?{u.query}" if u.query else "")
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            sock.settimeout(left())
            resp = conn.getresponse()
            chunks = []
            while True:
                sock.settimeout(left())
                chunk = resp.read1(65536)
                if not chunk:
                    return resp.status, b"".join(chunks)
                chunks.append(chunk)
        finally:
            conn.close()

    def infer(self, observation: dict) -> np.ndarray:
        body = json.dumps(self.build_request(observation)).encode("utf-8")
        where = f"OpenVLA server {self.cfg.url}"
        try:
            status, data = self._post(body)
        except TimeoutError as exc:
            raise BackendError(f"{where} sent no complete reply within infer_timeout_s={self.cfg.timeout_s} s (busy "
                               "or stuck)") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise BackendError(f"cannot reach {where}: {type(exc).__name__}: {exc}") from exc
        if status != 200:
            raise BackendError(f"{where} answered HTTP {status}: {data[:500]!r}"
                               + (" (the request body is not what /act takes)" if status == 422 else ""))
        try:
            return self.cfg.adapter(self.parse_reply(data.decode("utf-8")))
        except (ValueError, UnicodeDecodeError) as exc:
            raise BackendError(f"{where} sent a reply that is not JSON: {data[:200]!r}") from exc

    @staticmethod
    def parse_reply(text: str) -> np.ndarray:
        """The action(s) from a reply: an array, a JSON string holding one (double-encoded), or {"action": ...}."""
        value = json.loads(text, object_hook=json_numpy_hook)
        if isinstance(value, str):
            if value.strip().lower() == "error":
                raise BackendError("OpenVLA server reported an error (its log has the traceback): deploy.py "
                                   "answers 'error' for any failure, e.g. an image that is not (H, W, 3) uint8 or an "
                                   "unnorm_key the model has no statistics for")
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
        """Nothing to release: every call opens and closes its own connection."""


def make_openvla(params: dict) -> OpenVLABackend:
    """The OpenVLABackend configured by the node's parameters (a dict; absent keys: defaults)."""
    base = OpenVLAConfig()
    cfg = OpenVLAConfig(
        url=params.get("server_url", base.url), unnorm_key=params.get("unnorm_key", ""),
        image_size=int(params.get("image_size", base.image_size)),
        double_encode=bool(params.get("double_encode", False)),
        timeout_s=float(params.get("infer_timeout_s", base.timeout_s)),
        adapter=adapter_from_params(params, base.adapter),
    )
    return OpenVLABackend(cfg)
