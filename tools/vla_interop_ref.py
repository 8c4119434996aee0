"""The reference side of tools/vla_interop.py: runs in its own environment (openpi-client pins numpy<2), never in .venv.

Commands (each prints one JSON line per check, or a "listening" line for the servers):

* ``openpi-server SRC PORT``: openpi's own ``WebsocketPolicyServer`` (``SRC/websocket_policy_server.py``, exported
  from an openpi checkout) serving :class:`DummyPolicy`.
* ``openvla-server SRC PORT``: OpenVLA's own ``OpenVLAServer.predict_action`` (``SRC/deploy.py``) behind its FastAPI
  app, with a dummy processor and model in place of the 7B VLA (torch, transformers and draccus are stand-in modules:
  deploy.py only names them outside the model calls).
* ``openpi-client URI``: the PyPI ``openpi-client`` against a server speaking openpi's protocol (our loopback).
* ``openvla-client URL``: OpenVLA's documented client (requests + json_numpy) against our loopback.

Our code only: nothing here is copied from openpi or OpenVLA; their modules are imported from the exported files.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import types

import numpy as np

LIBERO_KEYS = ("observation/image", "observation/wrist_image", "observation/state", "prompt")


def report(check: str, ok: bool, detail: str = "") -> None:
    print(json.dumps({"check": check, "ok": bool(ok), "detail": detail}), flush=True)


def load(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def expected_actions(state: np.ndarray, horizon: int = 10) -> np.ndarray:
    """The dummy policy's answer: a deterministic function of the state, so a client can check it bit for bit."""
    base = np.resize(np.asarray(state, dtype=np.float32), 7)
    return (base[None, :] * np.arange(1, horizon + 1, dtype=np.float32)[:, None] / 7.0).astype(np.float32)


class DummyPolicy:
    """Reads the keys openpi's LiberoInputs reads (KeyError when one is missing, as the real transform), answers
    :func:`expected_actions` plus what it saw; the prompt "raise" raises, "sleep:S" blocks S seconds (inference on
    the server's loop), "echo" returns the request as it arrived."""

    metadata = {"dummy": True, "zero_d": np.array(0.5, dtype=np.float32)}

    def infer(self, obs: dict) -> dict:
        prompt = obs.get("prompt", "")
        if prompt == "echo":
            return {"actions": np.zeros((1, 7), dtype=np.float32), "echo": obs}
        for key in LIBERO_KEYS:
            obs[key]
        if prompt == "raise":
            raise RuntimeError("dummy policy raised on request")
        if prompt.startswith("sleep:"):
            time.sleep(float(prompt.split(":")[1]))
        seen = {k: [str(np.asarray(v).dtype), list(np.shape(v))] for k, v in obs.items() if k != "prompt"}
        return {"actions": expected_actions(obs["observation/state"]), "seen": seen}

    def reset(self) -> None:
        pass


def openpi_server(src: str, port: int) -> None:
    server_module = load(f"{src}/websocket_policy_server.py", "openpi_websocket_policy_server")
    server = server_module.WebsocketPolicyServer(DummyPolicy(), host="127.0.0.1", port=port,
                                                  metadata=DummyPolicy.metadata)
    print(f"listening ws://127.0.0.1:{port}", flush=True)
    server.serve_forever()


def _stub_modules() -> None:
    """Stand-ins for the names deploy.py imports but only uses around the model (the model itself is replaced)."""
    torch = types.ModuleType("torch")
    torch.bfloat16 = "bfloat16"
    torch.device = lambda name: name
    torch.cuda = types.SimpleNamespace(is_available=lambda: False)
    transformers = types.ModuleType("transformers")
    transformers.AutoModelForVision2Seq = transformers.AutoProcessor = None
    draccus = types.ModuleType("draccus")
    draccus.wrap = lambda *a, **k: (lambda f: f)
    sys.modules.update({"torch": torch, "transformers": transformers, "draccus": draccus})


class _Inputs(dict):
    def to(self, device, dtype=None):
        return self


class DummyVLA:
    """predict_action(**inputs, unnorm_key, do_sample): a 7-d action from the image's mean; unnorm_key "missing"
    raises, as a model without those statistics does."""

    def predict_action(self, image, prompt, unnorm_key=None, do_sample=False):
        if unnorm_key == "missing":
            raise KeyError("missing")
        mean = float(np.asarray(image, dtype=np.float64).mean())
        return np.array([mean / 255.0, 0.0, 0.0, 0.0, 0.0, 0.1, 1.0])


def openvla_server(src: str, port: int) -> None:
    _stub_modules()
    deploy = load(f"{src}/deploy.py", "openvla_deploy")
    server = deploy.OpenVLAServer.__new__(deploy.OpenVLAServer)  # no model download: __init__ only loads the model
    server.openvla_path, server.device = "openvla/openvla-7b", "cpu"
    server.processor = lambda prompt, image: _Inputs(prompt=prompt, image=np.asarray(image))
    server.vla = DummyVLA()
    print(f"listening http://127.0.0.1:{port}/act", flush=True)
    server.run("127.0.0.1", port=port)


def openpi_client(uri: str) -> None:
    """The PyPI openpi-client against ``uri`` (our loopback, serving the echo/raise policy of tools/vla_interop.py)."""
    from openpi_client import msgpack_numpy
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    client = WebsocketClientPolicy(uri, api_key="interop-key")
    meta = client.get_server_metadata()
    report("their client: metadata is the first message, a map", isinstance(meta, dict) and meta.get("loopback"),
           repr(meta))
    state = np.array([0.4, 0.1, 0.2, 3.14, 0.0, 0.0, 0.02, -0.02])
    obs = {"observation/image": np.zeros((224, 224, 3), np.uint8), "observation/wrist_image": np.zeros((224, 224, 3),
           np.uint8), "observation/state": state, "prompt": "reach", "zero_d": np.array(2.5, dtype=np.float32)}
    out = client.infer(obs)
    exact = np.array_equal(out["actions"], expected_actions(state)) and out["actions"].dtype == np.float32
    report("their client: actions bit-exact", exact, f"shape {out['actions'].shape} dtype {out['actions'].dtype}")
    echo = out.get("echo", {})
    report("their client: 0-d array round trip (shape () kept, value exact)",
           np.shape(echo.get("zero_d")) == () and echo.get("zero_d") == np.float32(2.5), repr(echo.get("zero_d")))
    report("their client: server_timing present", "infer_ms" in out.get("server_timing", {}),
           repr(out.get("server_timing")))
    try:
        client.infer({**obs, "prompt": "raise"})
        report("their client: server error arrives as text", False, "no error")
    except RuntimeError as exc:
        report("their client: server error arrives as text", "Error in inference server" in str(exc)
               and "Traceback" in str(exc), str(exc).splitlines()[-1])
    ws = client._ws  # reading their client's connection to see how our server closed it
    try:
        ws.recv(timeout=5)
        closed = "still open"
    except Exception as exc:  # noqa: BLE001
        closed = f"{type(exc).__name__}: code {getattr(ws, 'close_code', None)}"
    report("their client: our server closed with 1011 after the error", ws.close_code == 1011, closed)
    packed = msgpack_numpy.packb({"a": np.array(1.0)})
    report("their packer: 0-d array shape on the wire", b"\x90" in packed, packed.hex())


def openvla_client(url: str) -> None:
    import json_numpy
    import requests

    json_numpy.patch()
    image = np.full((224, 224, 3), 51, dtype=np.uint8)
    action = requests.post(url, json={"image": image, "instruction": "pick up the cube"}, timeout=10).json()
    report("their client (requests + json_numpy): action decoded", isinstance(action, np.ndarray)
           and action.shape == (7,), repr(action))
    report("their client: action values exact", np.array_equal(action, [0.2, 0, 0, 0, 0, 0.1, 1.0]), repr(action))
    bad = requests.post(url, json={"instruction": "no image"}, timeout=10).json()
    report("their client: a failing request answers \"error\"", bad == "error", repr(bad))


def main(argv: list[str]) -> int:
    command, arg = argv[0], argv[1]
    if command == "openpi-server":
        openpi_server(arg, int(argv[2]))
    elif command == "openvla-server":
        openvla_server(arg, int(argv[2]))
    elif command == "openpi-client":
        openpi_client(arg)
    elif command == "openvla-client":
        openvla_client(arg)
    else:
        raise SystemExit(f"unknown command {command!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
