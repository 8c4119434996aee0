import numpy as np
import pytest
from residual_core.observation import (
    ObservationLayout,
    Proprio,
    build_observation,
    build_observation_batch,
    layout_for_task,
    make_layout,
)
from residual_core.rotations import quat_to_rot6d
from scipy.spatial.transform import Rotation

NAMES = ("cube", "target")


def test_layout_matches_contract_order_and_sizes():
    layout = make_layout(NAMES)
    assert layout.names == (
        "obj/cube/pos",
        "obj/cube/rot6d",
        "obj/cube/pos_tcp",
        "obj/cube/present",
        "obj/target/pos",
        "obj/target/rot6d",
        "obj/target/pos_tcp",
        "obj/target/present",
        "proprio/joint_pos",
        "proprio/joint_vel",
        "proprio/gripper_width",
        "proprio/tcp_pos",
        "proprio/tcp_rot6d",
        "base_action",
    )
    assert layout.size == 2 * 13 + 7 + 7 + 1 + 3 + 6 + 7 == 57
    assert layout.slice("obj/target/pos") == slice(13, 16)
    assert layout.slice("base_action") == slice(50, 57)
    assert layout.object_names == NAMES
    assert layout_for_task("pick_place") == layout


def test_layout_json_round_trip_equality_and_hash():
    layout = make_layout(["cube"])
    assert ObservationLayout.from_json(layout.to_json()) == layout
    assert ObservationLayout.from_json(layout.to_list()) == layout
    assert hash(ObservationLayout.from_json(layout.to_json())) == hash(layout)
    assert layout != make_layout(["cup"])


def test_layout_validation():
    with pytest.raises(ValueError, match=r"duplicate layout field names: \['a'\]"):
        ObservationLayout((("a", 1), ("a", 2)))
    with pytest.raises(ValueError, match="positive int"):
        ObservationLayout((("a", 0),))
    with pytest.raises(ValueError, match="positive int"):
        ObservationLayout((("a", 1.5),))
    with pytest.raises(ValueError, match="list of \\[name, size\\] pairs"):
        ObservationLayout.from_json('{"a": 1}')
    with pytest.raises(ValueError, match="no field 'nope' in layout"):
        make_layout(["cube"]).slice("nope")
    with pytest.raises(ValueError, match="got the string 'cube'"):
        make_layout("cube")
    with pytest.raises(ValueError, match="unique"):
        make_layout(["cube", "cube"])
    with pytest.raises(ValueError, match="without '/'"):
        make_layout(["a/b"])


def test_describe_mismatch_names_first_difference():
    a = make_layout(["cube", "target"])
    assert a.describe_mismatch(a) == ""
    msg = a.describe_mismatch(make_layout(["cube", "base_cube"]))
    assert msg == "field #4 differs: expected 'obj/target/pos' (size 3), got 'obj/base_cube/pos' (size 3)"
    shorter = ObservationLayout(a.fields[:-1])
    assert "'base_action' (size 7) is missing" in a.describe_mismatch(shorter)
    assert "unexpected extra field #13 'base_action'" in shorter.describe_mismatch(a)
    resized = ObservationLayout(a.fields[:-1] + (("base_action", 6),))
    assert "expected 'base_action' (size 7), got 'base_action' (size 6)" in a.describe_mismatch(resized)


def random_batch(n: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return dict(
        obj_pos=rng.uniform(-0.5, 0.5, size=(n, k, 3)),
        obj_quat=Rotation.random(n * k, rng=seed).as_quat().reshape(n, k, 4) if k else np.zeros((n, 0, 4)),
        present=rng.random((n, k)) > 0.3,
        joint_pos=rng.normal(size=(n, 7)),
        joint_vel=rng.normal(size=(n, 7)),
        gripper_width=rng.uniform(0, 0.08, size=n),
        tcp_pos=rng.uniform(-0.5, 0.5, size=(n, 3)),
        tcp_quat=Rotation.random(n, rng=seed + 1).as_quat(),
        base_action=rng.normal(size=(n, 7)),
    )


def test_batch_fields_hold_the_right_values():
    b = random_batch(16, 2)
    b["present"][0] = [True, False]
    obs = build_observation_batch(NAMES, **b)
    assert obs.shape == (16, 57) and obs.dtype == np.float32
    f = make_layout(NAMES).split(obs)
    np.testing.assert_allclose(f["proprio/joint_pos"], b["joint_pos"], rtol=1e-6)
    np.testing.assert_allclose(f["proprio/joint_vel"], b["joint_vel"], rtol=1e-6)
    np.testing.assert_allclose(f["proprio/gripper_width"][:, 0], b["gripper_width"], rtol=1e-6)
    np.testing.assert_allclose(f["proprio/tcp_pos"], b["tcp_pos"], rtol=1e-6)
    np.testing.assert_allclose(f["proprio/tcp_rot6d"], quat_to_rot6d(b["tcp_quat"]), atol=1e-6)
    np.testing.assert_allclose(f["base_action"], b["base_action"], rtol=1e-6)
    for i, name in enumerate(NAMES):
        p = b["present"][:, i]
        np.testing.assert_array_equal(f[f"obj/{name}/present"][:, 0], p.astype(np.float32))
        np.testing.assert_allclose(f[f"obj/{name}/pos"][p], b["obj_pos"][p, i], rtol=1e-6)
        np.testing.assert_allclose(f[f"obj/{name}/rot6d"][p], quat_to_rot6d(b["obj_quat"][p, i]), atol=1e-6)
        # Object in the TCP frame, via scipy: R_tcp^-1 (p_obj - p_tcp).
        rel = Rotation.from_quat(b["tcp_quat"][p]).inv().apply(b["obj_pos"][p, i] - b["tcp_pos"][p])
        np.testing.assert_allclose(f[f"obj/{name}/pos_tcp"][p], rel, atol=1e-6)
        for field in ("pos", "rot6d", "pos_tcp", "present"):
            assert np.all(f[f"obj/{name}/{field}"][~p] == 0.0)
    assert f["obj/target/present"][0, 0] == 0.0


def test_single_equals_batch_row():
    b = random_batch(5, 2, seed=3)
    b["present"][:] = [[True, True], [True, False], [False, True], [False, False], [True, True]]
    batch = build_observation_batch(make_layout(NAMES), **b)
    for i in range(5):
        poses = {
            name: (b["obj_pos"][i, k], b["obj_quat"][i, k]) if b["present"][i, k] else None
            for k, name in enumerate(NAMES)
        }
        if i == 3:
            poses = {}  # missing entirely == None
        proprio = Proprio(
            b["joint_pos"][i], b["joint_vel"][i], b["gripper_width"][i], b["tcp_pos"][i], b["tcp_quat"][i]
        )
        single = build_observation(NAMES, poses, proprio, b["base_action"][i])
        assert single.shape == (57,) and single.dtype == np.float32
        np.testing.assert_array_equal(single, batch[i])


def test_absent_object_with_garbage_quaternion_is_fine():
    b = random_batch(2, 1)
    b["present"][:] = [[False], [True]]
    b["obj_quat"][0, 0] = 0.0  # zero quaternion: would raise in scipy if not masked
    b["obj_pos"][0, 0] = np.nan
    obs = build_observation_batch(["cube"], **b)
    assert np.all(obs[0, :13] == 0.0) and np.all(np.isfinite(obs))


def test_nan_propagates_and_is_not_an_error():
    b = random_batch(3, 1)
    b["present"][:] = True
    b["obj_quat"][0, 0, 1] = np.nan
    b["tcp_pos"][1, 2] = np.nan
    obs = build_observation_batch(["cube"], **b)
    lay = make_layout(["cube"])
    assert np.all(np.isnan(obs[0, lay.slice("obj/cube/rot6d")]))
    assert np.all(np.isfinite(obs[0, lay.slice("obj/cube/pos_tcp")]))
    assert np.isnan(obs[1, lay.slice("obj/cube/pos_tcp")]).any()
    assert np.all(np.isfinite(obs[2]))


def test_present_may_be_0_1_numbers():
    b = random_batch(2, 1)
    b["present"] = np.array([[1], [0]])
    obs = build_observation_batch(["cube"], **b)
    assert obs[0, 12] == 1.0 and obs[1, 12] == 0.0
    b["present"] = np.array([[0.5], [0]])
    with pytest.raises(ValueError, match="present must be bool or 0/1"):
        build_observation_batch(["cube"], **b)


@pytest.mark.parametrize(
    "key, bad, match",
    [
        ("obj_pos", np.zeros((4, 1, 3)), r"obj_pos must have shape \(2, 1, 3\), got \(4, 1, 3\)"),
        ("obj_quat", np.zeros((2, 1, 3)), r"obj_quat must have shape \(2, 1, 4\)"),
        ("present", np.ones((2, 2), bool), r"present must have shape \(2, 1\)"),
        ("joint_pos", np.zeros((2, 6)), r"joint_pos must have shape \(2, 7\)"),
        ("joint_vel", np.zeros(7), r"joint_vel must have shape \(2, 7\)"),
        ("gripper_width", np.zeros((2, 2)), r"gripper_width must have shape \(2,\) or \(2, 1\)"),
        ("tcp_pos", np.zeros((2, 4)), r"tcp_pos must have shape \(2, 3\)"),
        ("tcp_quat", np.zeros((2, 3)), r"tcp_quat must have shape \(2, 4\)"),
        ("base_action", np.zeros(7), r"base_action must have shape \(N, 7\)"),
    ],
)
def test_batch_shape_errors_name_the_argument(key, bad, match):
    b = random_batch(2, 1)
    b[key] = bad
    with pytest.raises(ValueError, match=match):
        build_observation_batch(["cube"], **b)


def test_single_errors():
    proprio = Proprio(np.zeros(7), np.zeros(7), 0.04, np.zeros(3), np.array([0, 0, 0, 1.0]))
    pose = (np.zeros(3), np.array([0, 0, 0, 1.0]))
    with pytest.raises(ValueError, match=r"unknown object name\(s\) \['mug'\]; this layout's objects are \['cube'\]"):
        build_observation(["cube"], {"mug": pose}, proprio, np.zeros(7))
    with pytest.raises(ValueError, match="position of 'cube' must have shape"):
        build_observation(["cube"], {"cube": (np.zeros(2), pose[1])}, proprio, np.zeros(7))
    with pytest.raises(ValueError, match=r"base_action must have shape \(7,\)"):
        build_observation(["cube"], {"cube": pose}, proprio, np.zeros(6))
    with pytest.raises(ValueError, match=r"Proprio.joint_pos must have shape \(7,\), got \(6,\)"):
        Proprio(np.zeros(6), np.zeros(7), 0.04, np.zeros(3), np.array([0, 0, 0, 1.0]))
    nonstandard = ObservationLayout((("obj/cube/pos", 3), ("base_action", 7)))
    with pytest.raises(ValueError, match="can only build the standard residual layout"):
        build_observation(nonstandard, {"cube": pose}, proprio, np.zeros(7))


def test_batch_with_no_objects():
    b = random_batch(3, 0)
    obs = build_observation_batch([], **b)
    assert obs.shape == (3, 31)
