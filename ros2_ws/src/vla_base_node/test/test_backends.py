"""Backends against loopback servers speaking the openpi and OpenVLA protocols (127.0.0.1 only)."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from vla_base_node.backends import (
    ACTION_CONVENTIONS,
    OPENPI_PRESETS,
    ActionAdapter,
    BackendError,
    BasePolicyBackend,
    OpenPIBackend,
    OpenPIConfig,
    OpenVLABackend,
    OpenVLAConfig,
    ReplayBackend,
    ReplayConfig,
    json_numpy_encode,
    json_numpy_hook,
    make_backend,
    resize_with_pad,
)
from vla_base_node.inputs import InputCache
from vla_base_node.loopback_servers import OpenPILoopbackServer, OpenVLALoopbackServer, reach_policy


def observation(step: int = 3, image: bool = True) -> dict:
    cache = InputCache(instruction="pick up the red cube and lift it", object_names=("cube",))
    names = [*(f"fr3_joint{i}" for i in range(1, 8)), "fr3_finger_joint1", "fr3_finger_joint2"]
    cache.update_joint_state(names, [0.1 * i for i in range(7)] + [0.02, 0.02], [0.0] * 9)
    cache.update_tcp_pose([0.4, 0.1, 0.2], Rotation.from_euler("x", np.pi).as_quat(), 1.0)
    cache.update_objects([("cube", [0.5, 0.0, 0.02, 0, 0, 0, 1], 0.9)], 1.0)
    if image:
        img = np.zeros((120, 160, 3), dtype=np.uint8)
        img[:, :80] = 200  # left half bright
        cache.update_image(img, 1.0)
    obs = cache.snapshot(step, now_s=1.1)
    assert obs is not None
    return obs


# --- action conventions --------------------------------------------------------------------------------------------


def test_adapter_libero_gripper_and_rotvec():
    raw = np.array([[0.01, 0.0, -0.01, 0.1, 0.0, 0.0, -1.0], [0, 0, 0, 0, 0, 0, 1.0], [0, 0, 0, 0, 0, 0, 0.0]])
    out = ACTION_CONVENTIONS["openpi_libero"](raw)
    np.testing.assert_allclose(out[:, 6], [0.0, 1.0, 0.5])
    np.testing.assert_allclose(out[0, :6], raw[0, :6])


def test_adapter_bridge_rpy_and_inverted_gripper():
    rpy = np.array([0.1, -0.2, 0.3])
    out = ACTION_CONVENTIONS["bridge"]([0.01, 0.02, 0.03, *rpy, 1.0])  # 1 = open in Bridge
    assert out.shape == (1, 7) and out[0, 6] == 0.0
    np.testing.assert_allclose(Rotation.from_rotvec(out[0, 3:6]).as_euler("xyz"), rpy, atol=1e-12)


def test_adapter_scales_truncates_and_keeps_nan_visible():
    adapter = ActionAdapter(translation_scale=0.05, rotation_scale=0.5, max_actions=2)
    raw = np.ones((5, 8))  # extra column ignored
    raw[1, 6] = np.nan
    out = adapter(raw)
    assert out.shape == (2, 7)
    np.testing.assert_allclose(out[0], [0.05, 0.05, 0.05, 0.5, 0.5, 0.5, 1.0])
    assert np.isnan(out[1, 6])  # a NaN gripper is not clipped into a valid command
    with pytest.raises(BackendError, match="shape"):
        adapter(np.zeros((3, 6)))
    with pytest.raises(ValueError, match="gripper_open and gripper_closed must differ"):
        ActionAdapter(gripper_open=1.0, gripper_closed=1.0)


def test_resize_with_pad_keeps_aspect():
    img = np.full((100, 200, 3), 255, dtype=np.uint8)
    out = resize_with_pad(img, 224)
    assert out.shape == (224, 224, 3)
    assert out[0, 112].sum() == 0 and out[112, 112].min() == 255  # padded top, image in the middle


# --- openpi --------------------------------------------------------------------------------------------------------


LIBERO_INPUT_KEYS = ("observation/image", "observation/wrist_image", "observation/state", "prompt")
"""What openpi's LiberoInputs reads from every request (openpi 15a9616, src/openpi/policies/libero_policy.py)."""
DROID_INPUT_KEYS = ("observation/exterior_image_1_left", "observation/wrist_image_left", "observation/joint_position",
                    "observation/gripper_position", "prompt")
"""What openpi's DroidInputs reads (src/openpi/policies/droid_policy.py)."""


def served_by(input_keys, columns: int, horizon: int = 4):
    """A policy standing in for an openpi config: reads ``input_keys`` as its input transform does (a KeyError when one
    is missing), returns ``columns`` action columns as its output transform does."""

    def policy(obs):
        for key in input_keys:
            obs[key]
        return np.zeros((horizon, columns), dtype=np.float32)

    return policy


class Gate:
    """A policy that blocks the server (as a long inference blocks openpi's event loop) until released."""

    def __init__(self):
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self, obs):
        self.entered.set()
        self.release.wait(timeout=60)
        return np.zeros((2, 7))


def test_openpi_libero_preset_round_trip():
    with OpenPILoopbackServer(reach_policy(goal=(0.5, 0.0, 0.3), horizon=4), metadata={"model": "test"}) as server:
        backend = OpenPIBackend(OpenPIConfig(port=server.port, api_key="secret"))
        assert isinstance(backend, BasePolicyBackend) and backend.preset.name == "libero"
        backend.reset("unused: the observation carries the instruction")
        chunk = backend.infer(observation())
        backend.close()
    assert backend.server_metadata == {"model": "test"} and server.authorization == ["Api-Key secret"]
    req = server.requests[0]
    assert set(LIBERO_INPUT_KEYS) <= set(req), sorted(req)  # every key LiberoInputs reads
    assert set(OPENPI_PRESETS["libero"].request_keys) == set(req)
    assert req["prompt"] == "pick up the red cube and lift it"
    state = req["observation/state"]
    assert state.dtype == np.float32 and state.shape == (8,)  # as openpi's LIBERO example sends
    np.testing.assert_allclose(state[:3], [0.4, 0.1, 0.2], atol=1e-6)
    np.testing.assert_allclose(state[3:6], Rotation.from_euler("x", np.pi).as_rotvec(), atol=1e-6)
    np.testing.assert_allclose(state[6:], [0.02, -0.02], atol=1e-7)  # robosuite's finger joints: +w/2, -w/2
    img, wrist = req["observation/image"], req["observation/wrist_image"]
    assert img.shape == wrist.shape == (224, 224, 3) and img.dtype == wrist.dtype == np.uint8
    assert img.any() and not wrist.any()  # no wrist camera here: a black stand-in
    assert chunk.shape == (4, 7)
    np.testing.assert_allclose(chunk[0, :3], [0.01, -0.01, 0.01], atol=1e-6)  # towards the goal, clipped to 1 cm
    np.testing.assert_array_equal(chunk[:, 6], 0.0)  # LIBERO -1 = open -> ours 0


def test_openpi_droid_preset_request_and_refused_joint_velocities():
    with OpenPILoopbackServer(served_by(DROID_INPUT_KEYS, columns=8)) as server:
        backend = OpenPIBackend(OpenPIConfig(port=server.port, preset="droid"))
        with pytest.raises(BackendError, match="joint_velocity actions.*cannot drive"):
            backend.infer(observation())
        backend.close()
    req = server.requests[0]
    assert set(DROID_INPUT_KEYS) == set(req)
    np.testing.assert_allclose(req["observation/joint_position"], [0.1 * i for i in range(7)], atol=1e-6)
    np.testing.assert_allclose(req["observation/gripper_position"], [0.5], atol=1e-6)  # 4 cm of 8: half closed


@pytest.mark.parametrize(("preset", "served_keys", "missing"), [
    ("libero", DROID_INPUT_KEYS, "observation/exterior_image_1_left"),
    ("droid", LIBERO_INPUT_KEYS, "observation/image"),
])
def test_openpi_wrong_preset_fails_clearly_at_the_first_reply(preset, served_keys, missing):
    with OpenPILoopbackServer(served_by(served_keys, columns=7)) as server:
        backend = OpenPIBackend(OpenPIConfig(port=server.port, preset=preset))
        with pytest.raises(BackendError, match=f"reads '{missing}', which our request \\(preset '{preset}'\\) lacks"):
            backend.infer(observation())
        backend.close()


def test_openpi_reply_of_another_family_refused():
    with OpenPILoopbackServer(lambda obs: np.zeros((10, 8))) as server:  # a DROID-like reply to a LIBERO request
        backend = OpenPIBackend(OpenPIConfig(port=server.port))
        with pytest.raises(BackendError, match="replied 8 action columns, as DROID .* preset 'libero' expects 7"):
            backend.infer(observation())
        backend.close()
    with OpenPILoopbackServer(lambda obs: np.zeros((4, 7)), metadata={"reset_pose": [0.0] * 6}) as server:
        backend = OpenPIBackend(OpenPIConfig(port=server.port))
        with pytest.raises(BackendError, match="ALOHA config"):
            backend.infer(observation())


def test_openpi_custom_key_map_and_zero_images():
    cfg = OpenPIConfig(
        preset="custom",
        image_keys=("observation/exterior_image_1_left=camera", "observation/wrist_image_left=zeros"),
        state_keys=("observation/joint_position=joint_pos", "observation/gripper_position=gripper_width"),
        image_size=0,
    )
    with OpenPILoopbackServer(lambda obs: np.zeros((2, 8))) as server:
        cfg.port = server.port
        backend = OpenPIBackend(cfg)
        assert backend.infer(observation()).shape == (2, 7)  # custom: any width >= 7, the first 7 columns
        backend.close()
    req = server.requests[0]
    assert set(req) == {"prompt", "observation/exterior_image_1_left", "observation/wrist_image_left",
                        "observation/joint_position", "observation/gripper_position"}
    np.testing.assert_allclose(req["observation/joint_position"], [0.1 * i for i in range(7)], atol=1e-6)
    assert req["observation/exterior_image_1_left"].shape == (120, 160, 3)
    assert not req["observation/wrist_image_left"].any()


def test_openpi_server_error_closes_and_the_next_call_reconnects():
    calls = {"n": 0}

    def flaky(obs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("model exploded")
        return np.zeros((3, 7))

    with OpenPILoopbackServer(flaky) as server:
        backend = OpenPIBackend(OpenPIConfig(port=server.port))
        with pytest.raises(BackendError, match=r"failed on our request: RuntimeError: model exploded") as err:
            backend.infer(observation())
        assert "Traceback" in str(err.value) and "next call opens a new one" in str(err.value)
        assert backend.infer(observation()).shape == (3, 7)  # the very next call succeeds
        backend.close()
    assert server.errors == 1 and server.connections == 2 and backend.connections == 2


def test_openpi_server_restart_between_calls_is_survived_by_the_next_call():
    with OpenPILoopbackServer(lambda obs: np.zeros((2, 7))) as server:
        backend = OpenPIBackend(OpenPIConfig(port=server.port))
        assert backend.infer(observation()).shape == (2, 7)
    with OpenPILoopbackServer(lambda obs: np.ones((2, 7)), port=server.port) as restarted:  # closed our connection
        np.testing.assert_array_equal(backend.infer(observation())[:, 0], 1.0)
        backend.close()
    assert restarted.connections == 1 and backend.connections == 2


TIMEOUT_S = 1.0
BOUND_S = TIMEOUT_S + 0.5
"""A call must return within infer_timeout_s + 0.5 s (issue 17's bound, a correctness bound with margin for load)."""


def timed_failure(backend, match: str, obs: dict | None = None) -> float:
    obs = observation() if obs is None else obs
    t0 = time.monotonic()
    with pytest.raises(BackendError, match=match):
        backend.infer(obs)
    return time.monotonic() - t0


def test_openpi_server_that_never_answers_is_bounded_by_infer_timeout():
    gate = Gate()
    with OpenPILoopbackServer(gate) as server:
        backend = OpenPIBackend(OpenPIConfig(port=server.port, infer_timeout_s=TIMEOUT_S))
        try:
            elapsed = timed_failure(backend, f"sent no reply within infer_timeout_s={TIMEOUT_S}")
        finally:
            gate.release.set()
        assert elapsed < BOUND_S, elapsed
        assert backend.infer(observation()).shape == (2, 7)  # the late reply never mixes into this one
        backend.close()
    assert server.connections == 2


def test_openpi_busy_server_is_bounded_by_infer_timeout():
    """Another client's inference blocks the server's loop: a new connection is not even opened, an open one gets
    no reply; both calls end within the bound, and the next call after the inference succeeds."""
    gate = Gate()
    with OpenPILoopbackServer(gate) as server:
        connected = OpenPIBackend(OpenPIConfig(port=server.port, infer_timeout_s=TIMEOUT_S))
        gate.release.set()
        connected.infer(observation())  # connected before the server turns busy
        gate.release.clear()
        gate.entered.clear()
        other = OpenPIBackend(OpenPIConfig(port=server.port, infer_timeout_s=30.0))
        worker = threading.Thread(target=other.infer, args=(observation(),))
        worker.start()
        try:
            assert gate.entered.wait(timeout=10)
            fresh = OpenPIBackend(OpenPIConfig(port=server.port, infer_timeout_s=TIMEOUT_S))
            assert timed_failure(fresh, "did not complete the websocket opening.*busy") < BOUND_S
            assert timed_failure(connected, "sent no reply within") < BOUND_S
        finally:
            gate.release.set()
            worker.join(timeout=30)
        assert connected.infer(observation()).shape == (2, 7)
        assert fresh.infer(observation()).shape == (2, 7)
        for b in (connected, other, fresh):
            b.close()


def test_openpi_send_to_a_server_that_stops_reading_is_bounded_by_infer_timeout():
    """A request far larger than the socket buffers, to a server whose loop is blocked: the send itself is bounded."""
    gate = Gate()
    with OpenPILoopbackServer(gate) as server:
        cfg = OpenPIConfig(port=server.port, preset="custom", image_keys=("a=camera", "b=camera"),
                           state_keys=(), image_size=0, infer_timeout_s=TIMEOUT_S)
        huge = observation()
        huge["image"] = np.zeros((2000, 2000, 3), dtype=np.uint8)  # 2 x 12 MB: more than the socket buffers take
        backend, other = OpenPIBackend(cfg), OpenPIBackend(OpenPIConfig(port=server.port, infer_timeout_s=30.0))
        gate.release.set()
        backend.infer(observation())  # connected while the server is free
        gate.release.clear()
        gate.entered.clear()
        worker = threading.Thread(target=other.infer, args=(observation(),))
        worker.start()
        try:
            assert gate.entered.wait(timeout=10)
            elapsed = timed_failure(backend, "sending the request failed within infer_timeout_s", huge)
        finally:
            gate.release.set()
            worker.join(timeout=30)
        assert elapsed < BOUND_S, elapsed
        other.close()


def test_openpi_metadata_must_be_a_map_and_zero_d_arrays_arrive_intact():
    with OpenPILoopbackServer(lambda obs: np.zeros((1, 7)), metadata=[1, 2]) as server:
        with pytest.raises(BackendError, match=r"metadata that is not a map \(list\)"):
            OpenPIBackend(OpenPIConfig(port=server.port)).infer(observation())
    meta = {"scale": np.array(0.25, dtype=np.float32), "n": np.int64(3)}
    with OpenPILoopbackServer(lambda obs: np.zeros((1, 7)), metadata=meta) as server:
        backend = OpenPIBackend(OpenPIConfig(port=server.port))
        backend.infer(observation())
        backend.close()
    scale = backend.server_metadata["scale"]
    assert isinstance(scale, np.ndarray) and scale.shape == () and scale.dtype == np.float32 and scale == 0.25
    assert backend.server_metadata["n"] == 3 and isinstance(backend.server_metadata["n"], np.int64)


def test_openpi_unreachable_server_and_missing_image():
    with OpenPILoopbackServer(lambda obs: np.zeros((1, 7))) as server:
        port = server.port
    backend = OpenPIBackend(OpenPIConfig(port=port, connect_timeout_s=1.0))
    with pytest.raises(BackendError, match=f"cannot connect to openpi server ws://127.0.0.1:{port}"):
        backend.infer(observation())
    with pytest.raises(BackendError, match="needs an image"):
        backend.infer(observation(image=False))


def test_openpi_config_errors():
    with pytest.raises(ValueError, match="unknown field 'tcp_euler'"):
        OpenPIBackend(OpenPIConfig(state_keys=("observation/state=tcp_euler",)))
    with pytest.raises(ValueError, match="'camera' or 'zeros'"):
        OpenPIBackend(OpenPIConfig(image_keys=("observation/image=depth",)))
    with pytest.raises(ValueError, match="key=value"):
        OpenPIBackend(OpenPIConfig(state_keys=("observation/state",)))
    with pytest.raises(ValueError, match="unknown openpi preset 'aloha'"):
        OpenPIConfig(preset="aloha")
    with pytest.raises(ValueError, match="'custom' needs image_keys and state_keys"):
        OpenPIConfig(preset="custom", image_keys=("observation/image=camera",))


# --- OpenVLA -------------------------------------------------------------------------------------------------------


def test_json_numpy_encoding_matches_the_package_layout():
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    enc = json_numpy_encode(arr)
    assert set(enc) == {"__numpy__", "dtype", "shape"} and enc["dtype"] == "|u1" and enc["shape"] == [2, 3]
    back = json.loads(json.dumps(enc), object_hook=json_numpy_hook)
    np.testing.assert_array_equal(back, arr)


@pytest.mark.parametrize("double_encode", [False, True])
def test_openvla_round_trip(double_encode):
    bridge_action = np.array([0.01, -0.02, 0.005, 0.0, 0.0, 0.1, 0.0])  # gripper 0 = closed in Bridge
    with OpenVLALoopbackServer(lambda payload: bridge_action) as server:
        backend = OpenVLABackend(OpenVLAConfig(url=server.url, unnorm_key="bridge_orig", double_encode=double_encode))
        chunk = backend.infer(observation())
    req = server.requests[0]
    assert req["instruction"] == "pick up the red cube and lift it" and req["unnorm_key"] == "bridge_orig"
    assert req["image"].shape == (224, 224, 3) and req["image"].dtype == np.uint8
    assert chunk.shape == (1, 7)
    np.testing.assert_allclose(chunk[0, :3], bridge_action[:3])
    np.testing.assert_allclose(chunk[0, 3:6], [0, 0, 0.1], atol=1e-12)  # yaw-only rpy == rotvec about z
    assert chunk[0, 6] == 1.0


def test_openvla_error_reply_and_unreachable():
    with OpenVLALoopbackServer(lambda payload: 1 / 0) as server:
        backend = OpenVLABackend(OpenVLAConfig(url=server.url))
        with pytest.raises(BackendError, match="reported an error"):
            backend.infer(observation())
        url = server.url
    with pytest.raises(BackendError, match=f"cannot reach OpenVLA server {url}: ConnectionRefusedError"):
        OpenVLABackend(OpenVLAConfig(url=url, timeout_s=1.0)).infer(observation())
    with pytest.raises(BackendError, match="needs a camera image"):
        backend.infer(observation(image=False))


def test_openvla_server_that_never_answers_is_bounded_by_infer_timeout():
    gate = Gate()
    with OpenVLALoopbackServer(gate) as server:
        backend = OpenVLABackend(OpenVLAConfig(url=server.url, timeout_s=TIMEOUT_S))
        try:
            elapsed = timed_failure(backend, f"sent no complete reply within infer_timeout_s={TIMEOUT_S}")
        finally:
            gate.release.set()
        assert elapsed < BOUND_S, elapsed
        assert backend.infer(observation()).shape == (2, 7)


def test_openvla_loopback_answers_like_fastapi():
    """A body that is not a JSON object: HTTP 422 (FastAPI's validation); a double-encoded request with another key:
    the "error" string; a 0-d array comes back as json_numpy decodes it (a scalar)."""
    import urllib.request

    with OpenVLALoopbackServer(lambda payload: np.zeros(7)) as server:
        def post(body: bytes) -> tuple[int, str]:
            req = urllib.request.Request(server.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            try:
                with opener.open(req, timeout=10) as resp:
                    return resp.status, resp.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read().decode()

        assert post(b"[1, 2]")[0] == 422
        assert post(json.dumps({"encoded": "{}", "image": 1}).encode()) == (200, '"error"')
    scalar = json.loads(json.dumps(json_numpy_encode(np.array(1.5, dtype=np.float32))), object_hook=json_numpy_hook)
    assert scalar == np.float32(1.5) and scalar.dtype == np.float32


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('{"action": [1, 2, 3, 4, 5, 6, 7]}', [1, 2, 3, 4, 5, 6, 7]),
        ("[[0, 0, 0, 0, 0, 0, 1], [1, 1, 1, 1, 1, 1, 0]]", [[0, 0, 0, 0, 0, 0, 1], [1, 1, 1, 1, 1, 1, 0]]),
    ],
)
def test_openvla_reply_variants(reply, expected):
    np.testing.assert_array_equal(OpenVLABackend.parse_reply(reply), expected)


# --- replay and registry ---------------------------------------------------------------------------------------------


def test_replay_backend(tmp_path):
    actions = np.zeros((5, 7))
    actions[:, 0] = np.arange(5)
    actions[-1, 6] = 1.0
    np.save(tmp_path / "a.npy", actions)
    np.savetxt(tmp_path / "a.csv", actions, delimiter=",", header="dx,dy,dz,drx,dry,drz,g", comments="")
    for name in ("a.npy", "a.csv"):
        backend = ReplayBackend(ReplayConfig(path=str(tmp_path / name), horizon=3))
        np.testing.assert_array_equal(backend.infer({"step": 1})[:, 0], [1, 2, 3])
        tail = backend.infer({"step": 4})
        np.testing.assert_array_equal(tail[:, 0], [4, 0, 0])
        np.testing.assert_array_equal(tail[:, 6], [1, 1, 1])  # past the end: hold with the final gripper
    np.save(tmp_path / "bad.npy", np.zeros((3, 6)))
    with pytest.raises(ValueError, match=r"\(T, 7\)"):
        ReplayBackend(ReplayConfig(path=str(tmp_path / "bad.npy")))


def test_registry():
    backend = make_backend("openpi", {"server_port": 1234, "action_convention": "bridge", "image_keys": ["none"]})
    assert backend.cfg.port == 1234 and backend.cfg.adapter.rotation == "rpy" and backend.image_map == {}
    assert backend.state_map == {"observation/state": ["tcp_pos", "tcp_rotvec", "gripper_qpos"]}  # libero's
    droid = make_backend("openpi", {"openpi_preset": "droid", "image_keys": ["preset"], "state_keys": ["preset"]})
    assert set(droid.image_map) | set(droid.state_map) | {"prompt"} == set(OPENPI_PRESETS["droid"].request_keys)
    with pytest.raises(ValueError, match="'custom' needs image_keys"):
        make_backend("openpi", {"openpi_preset": "custom"})
    with pytest.raises(ValueError, match="known: openpi, openvla, replay"):
        make_backend("sim_bcc", {})
    with pytest.raises(ValueError, match="unknown action_convention"):
        make_backend("openvla", {"action_convention": "droid"})


def test_registry_is_one_plain_dict_and_importing_it_pulls_in_no_model_stack():
    """Every backend is in BACKEND_FACTORIES from its definition; torch (sim_bc), cv2 and websockets load lazily."""
    import subprocess
    import sys

    code = ("import sys, vla_base_node.backends as b; "
            "print(sorted(b.BACKEND_FACTORIES), [m for m in ('torch', 'cv2', 'websockets') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "['openpi', 'openvla', 'replay', 'sim_bc'] []"
