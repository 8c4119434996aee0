"""Backends against loopback servers speaking the openpi and OpenVLA protocols (127.0.0.1 only)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from vla_base_node.backends import (
    ACTION_CONVENTIONS,
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


def test_openpi_round_trip_with_default_keys():
    with OpenPILoopbackServer(reach_policy(goal=(0.5, 0.0, 0.3), horizon=4), metadata={"model": "test"}) as server:
        backend = OpenPIBackend(OpenPIConfig(port=server.port))
        assert isinstance(backend, BasePolicyBackend)
        backend.reset("unused: the observation carries the instruction")
        chunk = backend.infer(observation())
        backend.close()
    assert backend.server_metadata == {"model": "test"}
    req = server.requests[0]
    assert req["prompt"] == "pick up the red cube and lift it"
    state = req["observation/state"]
    assert state.dtype == np.float32 and state.shape == (7,)
    np.testing.assert_allclose(state[:3], [0.4, 0.1, 0.2], atol=1e-6)
    np.testing.assert_allclose(state[3:6], Rotation.from_euler("x", np.pi).as_rotvec(), atol=1e-6)
    assert state[6] == pytest.approx(0.04)
    img = req["observation/image"]
    assert img.shape == (224, 224, 3) and img.dtype == np.uint8
    assert chunk.shape == (4, 7)
    np.testing.assert_allclose(chunk[0, :3], [0.01, -0.01, 0.01], atol=1e-6)  # towards the goal, clipped to 1 cm
    np.testing.assert_array_equal(chunk[:, 6], 0.0)  # LIBERO -1 = open -> ours 0


def test_openpi_custom_key_map_and_zero_images():
    cfg = OpenPIConfig(
        image_keys=("observation/exterior_image_1_left=camera", "observation/wrist_image_left=zeros"),
        state_keys=("observation/joint_position=joint_pos", "observation/gripper_position=gripper_width"),
        image_size=0,
    )
    with OpenPILoopbackServer(lambda obs: np.zeros((2, 8))) as server:
        cfg.port = server.port
        backend = OpenPIBackend(cfg)
        backend.infer(observation())
        backend.close()
    req = server.requests[0]
    assert set(req) == {"prompt", "observation/exterior_image_1_left", "observation/wrist_image_left",
                        "observation/joint_position", "observation/gripper_position"}
    np.testing.assert_allclose(req["observation/joint_position"], [0.1 * i for i in range(7)], atol=1e-6)
    assert req["observation/exterior_image_1_left"].shape == (120, 160, 3)
    assert not req["observation/wrist_image_left"].any()


def test_openpi_server_error_text_frame_and_recovery():
    calls = {"n": 0}

    def flaky(obs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("model exploded")
        return np.zeros((3, 7))

    with OpenPILoopbackServer(flaky) as server:
        backend = OpenPIBackend(OpenPIConfig(port=server.port))
        with pytest.raises(BackendError, match="model exploded"):
            backend.infer(observation())
        assert backend.infer(observation()).shape == (3, 7)  # same connection keeps working
        backend.close()
    assert server.connections == 1


def test_openpi_timeout_drops_connection_and_reconnects():
    with OpenPILoopbackServer(lambda obs: np.zeros((2, 7)), delay_s=0.5) as server:
        backend = OpenPIBackend(OpenPIConfig(port=server.port, infer_timeout_s=0.1))
        t0 = time.monotonic()
        with pytest.raises(BackendError, match="TimeoutError"):
            backend.infer(observation())
        assert time.monotonic() - t0 < 0.45
        backend.cfg.infer_timeout_s = 5.0
        assert backend.infer(observation()).shape == (2, 7)
        backend.close()
    assert server.connections == 2  # the late reply of the first request never mixes into the second


def test_openpi_unreachable_server_and_missing_image():
    with OpenPILoopbackServer(lambda obs: np.zeros((1, 7))) as server:
        port = server.port
    backend = OpenPIBackend(OpenPIConfig(port=port, connect_timeout_s=1.0))
    with pytest.raises(BackendError, match="cannot connect|handshake"):
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
    with pytest.raises(BackendError, match="cannot reach"):
        OpenVLABackend(OpenVLAConfig(url=url, timeout_s=1.0)).infer(observation())
    with pytest.raises(BackendError, match="needs a camera image"):
        backend.infer(observation(image=False))


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
