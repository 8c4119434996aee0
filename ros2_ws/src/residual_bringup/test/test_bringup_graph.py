"""Graph description, parameter helpers, config files, supervisor helpers and the launch file (with a fake launch)."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import yaml
from action_arbiter.node_config import ArbiterNodeConfig
from pose_estimator_node.node import PoseEstimatorNodeConfig
from residual_bringup.graph import IncludeSpec, NodeSpec, describe_graph, node_specs
from residual_bringup.supervisor import (
    build_command,
    node_parameters,
    parse_set,
    resolve_executable,
    write_params_file,
)
from residual_core.action import ActionSpec
from residual_core.checkpoint import ActionScaleError, Manifest, save_checkpoint
from residual_core.observation import layout_for_task
from residual_core.safety import EnvelopeConfig
from residual_ros import franka_interfaces as fi
from residual_ros.params import coerce_value, config_defaults, config_from_values, parameter_docs, to_parameter_dict
from vla_base_node.node import VlaBaseNodeConfig

REPO = Path(__file__).resolve().parents[4]
CONFIG = REPO / "config"
LAUNCH = REPO / "launch" / "residual_bringup.launch.py"
HAND_EYE = (0.1, 0.2, 0.3, 0.0, 0.0, 0.0, 1.0)


def by_name(graph):
    return {e.name: e for e in graph if isinstance(e, NodeSpec)}


# --- describe_graph ---------------------------------------------------------------------------------------------------


def test_sim_graph_nodes_and_parameters():
    graph = describe_graph("sim", "stack_cube", checkpoint="/ckpt/res.safetensors", config_dir=CONFIG)
    nodes = by_name(graph)
    assert list(nodes) == ["sim", "pose_estimator", "base", "residual", "arbiter"]
    assert all(isinstance(e, NodeSpec) for e in graph)
    assert nodes["sim"].executable == "franka-sim-node" and nodes["residual"].executable == "residual-policy-node"
    assert nodes["pose_estimator"].executable == "pose-estimator-node"
    assert nodes["residual"].parameters["checkpoint"] == "/ckpt/res.safetensors"
    for n in nodes.values():
        assert n.parameters["use_sim_time"] is True and n.params_files == (str(CONFIG / "sim.yaml"),)
        assert n.parameters.get("task", "stack_cube") == "stack_cube"
    base = nodes["base"].parameters
    assert base["backend"] == "sim_bc" and base["lockstep"] and base["sync_inference"] and not base["use_image"]
    assert base["episode_topic"] == "/sim/episode"  # episode ids are the sim's
    assert nodes["arbiter"].parameters["controller_pose_topic"] == "none"
    # lockstep reproducible: reliable state inputs, each step computed on its own state and poses, estimator episodes
    for name in ("base", "residual", "arbiter"):
        assert nodes[name].parameters["reliable_inputs"] is True, name
    assert base["lockstep_pose_wait"] and nodes["residual"].parameters["lockstep_pose_wait"]
    assert nodes["pose_estimator"].parameters["episode_topic"] == "/sim/episode"


def test_real_time_and_real_graphs_keep_best_effort_inputs():
    for graph in (describe_graph("sim", lockstep=False, config_dir=CONFIG),
                  describe_graph("real", robot_ip="1.2.3.4", hand_eye=HAND_EYE, config_dir=CONFIG)):
        nodes = by_name(graph)
        for name in ("base", "residual", "arbiter"):
            assert nodes[name].parameters["reliable_inputs"] is False, name  # franka_ros2 publishes best effort
        assert not nodes["residual"].parameters["lockstep_pose_wait"]


def test_sim_graph_options():
    nodes = by_name(describe_graph("sim", "cube_lift", use_rviz=True, pose_source="ground_truth", lockstep=False,
                                   use_sim_time=False, base_backend="openpi", config_dir=CONFIG))
    assert "pose_estimator" not in nodes and nodes["sim"].parameters["publish_object_poses"]
    assert nodes["rviz2"].arguments == ("-d", str(CONFIG / "residual.rviz"))
    assert not nodes["base"].parameters["lockstep"] and nodes["base"].parameters["use_image"]
    assert nodes["base"].parameters["episode_topic"] == "/sim/episode"  # real time in sim: still the sim's ids
    assert not nodes["arbiter"].parameters["use_sim_time"]


def test_real_graph():
    graph = describe_graph("real", "pick_place", robot_ip="172.16.0.2", hand_eye=HAND_EYE, config_dir=CONFIG)
    includes = [e for e in graph if isinstance(e, IncludeSpec)]
    assert [(i.package, i.launch_file) for i in includes] == [("franka_bringup", "launch/franka.launch.py")]
    assert includes[0].arguments == {"robot_type": "fr3", "load_gripper": "true", "use_fake_hardware": "false",
                                     "robot_ip": "172.16.0.2",
                                     "controllers_yaml": str(CONFIG / "franka_controllers.yaml")}
    nodes = by_name(graph)
    assert "sim" not in nodes and {"camera", "hand_eye_tf", "gripper_bridge", "pose_estimator"} <= set(nodes)
    assert nodes["spawner_crisp_cartesian_controller"].arguments == (
        "crisp_cartesian_controller", "--controller-manager-timeout", "30")
    camera = nodes["camera"]
    assert (camera.namespace, camera.params_key, camera.parameters["publish_tf"]) == ("camera", "/camera/camera", False)
    assert nodes["hand_eye_tf"].arguments[:2] == ("--x", "0.1")
    assert nodes["hand_eye_tf"].arguments[-4:] == ("--frame-id", "fr3_link0", "--child-frame-id",
                                                   "camera_color_optical_frame")
    for name in ("base", "residual", "arbiter"):
        assert ("/tcp_pose", "/franka_robot_state_broadcaster/current_pose") in nodes[name].remappings
        assert nodes[name].parameters["use_sim_time"] is False
    for name in ("base", "pose_estimator"):
        assert {("/camera/image_raw", "/camera/camera/color/image_raw"),
                ("/camera/camera_info", "/camera/camera/color/camera_info")} <= set(nodes[name].remappings)
    estimator = nodes["pose_estimator"].parameters
    assert (estimator["camera_pos"], estimator["camera_quat_xyzw"]) == ([0.1, 0.2, 0.3], [0.0, 0.0, 0.0, 1.0])
    assert nodes["arbiter"].parameters["controller_pose_topic"] == "/target_pose"
    assert nodes["base"].parameters["backend"] == "openpi" and not nodes["base"].parameters["lockstep"]
    assert nodes["base"].parameters["episode_topic"] == "none"  # on the robot the base node counts episodes
    assert len(node_specs(graph)) == len(graph) - 1


def test_real_graph_with_the_twin_swaps_only_robot_controller_and_camera():
    franka = by_name(describe_graph("real", "stack_cube", robot_ip="172.16.0.2", hand_eye=HAND_EYE, use_rviz=True,
                                    config_dir=CONFIG))
    graph = describe_graph("real", "stack_cube", robot="twin", hand_eye=HAND_EYE, use_rviz=True, config_dir=CONFIG)
    assert all(isinstance(e, NodeSpec) for e in graph)  # no franka_bringup include: residual-launch can start it
    twin = by_name(graph)
    assert set(franka) - set(twin) == {"spawner_crisp_cartesian_controller", "camera"}
    assert set(twin) - set(franka) == {"franka_twin"}
    assert (twin["franka_twin"].package, twin["franka_twin"].executable) == ("franka_twin", "franka-twin-node")
    assert twin["franka_twin"].parameters == {"use_sim_time": False, "task": "stack_cube"}
    for name in set(twin) & set(franka):  # everything else is the real-mode graph, unchanged
        assert twin[name] == franka[name], name
    assert twin["rviz2"].remappings == (("/tcp_pose", "/franka_robot_state_broadcaster/current_pose"),)


def test_twin_with_the_sim_base_reads_the_twins_truth_and_episodes_as_in_sim():
    twin = by_name(describe_graph("real", "cube_lift", robot="twin", hand_eye=HAND_EYE, base_backend="sim_bc",
                                  config_dir=CONFIG))
    base = twin["base"]
    remaps = dict(base.remappings)
    assert remaps["/objects/poses"] == "/franka_twin/object_poses_gt"  # the VLA stand-in sees the scene, as in sim
    assert remaps["/tcp_pose"] == "/franka_robot_state_broadcaster/current_pose"
    assert base.parameters["episode_topic"] == "/franka_twin/episode" and base.parameters["use_image"] is False
    # the residual and the arbiter keep the estimator's poses (through hand_eye)
    for name in ("residual", "arbiter"):
        assert "/objects/poses" not in dict(twin[name].remappings)
    # a VLA backend on the twin reads the camera like on the robot, and counts its own episodes
    vla = by_name(describe_graph("real", "cube_lift", robot="twin", hand_eye=HAND_EYE, config_dir=CONFIG))["base"]
    assert "/objects/poses" not in dict(vla.remappings) and vla.parameters["episode_topic"] == "none"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"mode": "gazebo"}, "mode"), ({"task": "juggle"}, "unknown task"), ({"pose_source": "aruco"}, "pose_source"),
     ({"mode": "real", "hand_eye": HAND_EYE}, "robot_ip"), ({"mode": "real", "robot_ip": "1.2.3.4"}, "hand_eye"),
     ({"mode": "real", "robot": "twin"}, "hand_eye"), ({"mode": "real", "robot": "ur5", "hand_eye": HAND_EYE}, "robot"),
     ({"mode": "sim", "robot": "twin"}, "real-mode choice")],
)
def test_graph_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        describe_graph(**kwargs)


# --- parameters and config files --------------------------------------------------------------------------------------


def test_field_docs_and_coercion():
    docs = parameter_docs(ArbiterNodeConfig)
    assert docs["residual_deadline_s"].startswith("How long to wait for the residual")
    assert docs["envelope.max_translation_step"].startswith("Largest TCP translation per control step")
    for cls in (ArbiterNodeConfig, VlaBaseNodeConfig, PoseEstimatorNodeConfig):  # every parameter is documented
        undocumented = [name for name, doc in parameter_docs(cls).items() if not doc]
        assert not undocumented and set(parameter_docs(cls)) == set(config_defaults(cls)), (cls, undocumented)
    assert coerce_value(ArbiterNodeConfig, "pose_timeout", 1) == 1.0
    assert coerce_value(ArbiterNodeConfig, "envelope.workspace_min", [0, -1, 0]) == (0.0, -1.0, 0.0)
    # the envelope and action bounds are declared once, in EnvelopeConfig and ActionSpec
    defaults = config_defaults(ArbiterNodeConfig)
    for prefix, nested in (("envelope.", EnvelopeConfig()), ("action.", ActionSpec())):
        assert {k: v for k, v in defaults.items() if k.startswith(prefix)} == {
            prefix + k: v for k, v in to_parameter_dict(nested).items()}
    arb = config_from_values(ArbiterNodeConfig, {}).to_arbiter_config(trained_scale=(0.01,) * 7)
    assert (arb.pipeline.envelope, arb.pipeline.spec) == (EnvelopeConfig(), ActionSpec())
    with pytest.raises(ValueError, match="'max_step_gap'"):
        coerce_value(ArbiterNodeConfig, "max_step_gap", 2.5)
    with pytest.raises(ValueError, match="'lockstep'"):
        coerce_value(ArbiterNodeConfig, "lockstep", "yes")
    with pytest.raises(ValueError, match="unknown parameter"):
        config_from_values(ArbiterNodeConfig, {"residual_deadline": 0.1})
    cfg = config_from_values(VlaBaseNodeConfig, {"task": "close_drawer", "horizon": 4})
    assert cfg.resolved_instruction == "close the drawer" and to_parameter_dict(cfg)["horizon"] == 4


def test_arbiter_refuses_a_residual_bound_outside_the_action_spec(tmp_path):
    """The arbiter reads only the manifest (its action_scale is the bound the residual is clamped to): a bound of
    1e6 would let any residual through, so reading it is refused like loading it."""
    layout = layout_for_task("cube_lift")
    manifest = Manifest(kind="residual", task="cube_lift", observation_layout=layout, action_scale=[1e6] * 7)
    path = save_checkpoint(tmp_path / "wide", {"w": np.zeros(1, dtype=np.float32)}, manifest)
    cfg = config_from_values(ArbiterNodeConfig, {"checkpoint": str(path)})
    with pytest.raises(ActionScaleError, match=r"wide\.json: the residual bound action_scale .* dx 1e\+06 > 0\.05"):
        cfg.to_arbiter_config()
    ok = save_checkpoint(tmp_path / "ok", {"w": np.zeros(1, dtype=np.float32)},
                         dataclasses.replace(manifest, action_scale=[0.01] * 7))
    assert config_from_values(ArbiterNodeConfig, {"checkpoint": str(ok)}).trained_residual_scale() == (0.01,) * 7


@pytest.mark.parametrize("mode", ["sim", "real"])
def test_config_files_keep_table_level_grasps_reachable(mode):
    """(Unknown keys and values equal to defaults are refused by tests/test_config_files.py.)"""
    doc = yaml.safe_load((CONFIG / f"{mode}.yaml").read_text())
    values = doc.get("arbiter", {}).get("ros__parameters", {})
    arb = config_from_values(ArbiterNodeConfig, values).to_arbiter_config(trained_scale=(0.01,) * 7)
    assert arb.pipeline.envelope.workspace_min[2] <= 0.0  # table-level grasps stay reachable
    if mode == "real":  # the nested envelope: keys reach the envelope
        env = arb.pipeline.envelope
        assert env.workspace_min == (0.25, -0.4, 0.0)
        cfg = config_from_values(ArbiterNodeConfig, values)  # the lab: keys reach the nested config
        assert cfg.lab.require_arming and cfg.lab.speed_scale == 0.25
    assert dataclasses.is_dataclass(arb)


@pytest.mark.parametrize("mode", ["sim", "real"])
def test_rviz_config_shows_topics_that_exist_in_each_mode(mode):
    """Every display's topic, after rviz2's remappings in the graph, is one the graph or the robot side publishes,
    with a QoS that receives from it (real mode: current_pose is best effort)."""
    rviz = yaml.safe_load((CONFIG / "residual.rviz").read_text())
    manager = rviz["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "fr3_link0"
    displays = {d["Topic"]["Value"]: d["Topic"] for d in manager["Displays"] if "Topic" in d}
    assert {"/arbiter/markers", "/arbiter/target_pose", "/arbiter/object_markers", "/tcp_pose"} <= set(displays)
    kwargs = {"robot_ip": "172.16.0.2", "hand_eye": HAND_EYE} if mode == "real" else {}
    rviz_node = by_name(describe_graph(mode, use_rviz=True, config_dir=CONFIG, **kwargs))["rviz2"]
    remap = dict(rviz_node.remappings)
    resolved = {remap.get(t, t): qos for t, qos in displays.items()}
    arbiter_topics = {"/arbiter/markers", "/arbiter/target_pose", "/arbiter/object_markers"}
    if mode == "sim":  # franka_sim publishes the measured TCP pose as /tcp_pose
        assert set(resolved) == arbiter_topics | {"/tcp_pose"}
    else:
        assert set(resolved) == arbiter_topics | {fi.CURRENT_POSE.name}
        qos = resolved[fi.CURRENT_POSE.name]
        assert fi.reader_incompatibility(fi.CURRENT_POSE.qos, qos["Reliability Policy"].lower().replace(" ", "_"),
                                         qos["Durability Policy"].lower().replace(" ", "_")) == ""


# --- supervisor helpers ---------------------------------------------------------------------------------------------


def test_parse_set():
    assert parse_set(["base.server_port=8123", "base.image_keys=[none]", "arbiter.frame_id=world"]) == {
        "base": {"server_port": 8123, "image_keys": ["none"]}, "arbiter": {"frame_id": "world"}}
    with pytest.raises(ValueError, match="NODE.PARAM=VALUE"):
        parse_set(["server_port=1"])


def test_node_parameters_merge_order(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"control_dt": 0.1, "a": 1}},
                                 "arbiter": {"ros__parameters": {"a": 2, "b": 3}},
                                 "base": {"ros__parameters": {"b": 99}}}))
    spec = NodeSpec("action_arbiter", "action-arbiter", "arbiter", parameters={"b": 4}, params_files=(str(f),))
    assert node_parameters(spec, {"c": 5}) == {"control_dt": 0.1, "a": 2, "b": 4, "c": 5}


def test_node_parameters_of_nested_configs_merge_by_dotted_name(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("arbiter:\n  ros__parameters:\n    envelope:\n      max_translation_step: 0.01\n"
                 "      max_rotation_step: 0.1\n    envelope.workspace_min: [0.25, -0.4, 0.0]\n")
    spec = NodeSpec("action_arbiter", "action-arbiter", "arbiter", params_files=(str(f),))
    overrides = parse_set(["arbiter.envelope.max_rotation_step=0.2"])["arbiter"]
    params = node_parameters(spec, overrides)
    assert params == {"envelope.max_translation_step": 0.01, "envelope.max_rotation_step": 0.2,
                      "envelope.workspace_min": [0.25, -0.4, 0.0]}
    env = config_from_values(ArbiterNodeConfig, params).envelope
    assert (env.max_translation_step, env.max_rotation_step, env.workspace_min) == (0.01, 0.2, (0.25, -0.4, 0.0))
    written = yaml.safe_load(write_params_file(spec, params, tmp_path).read_text())
    assert written == {"arbiter": {"ros__parameters": params}}  # dotted names: ROS reads them as written


def test_build_command_and_resolution(tmp_path):
    spec = NodeSpec("action_arbiter", "action-arbiter", "arbiter", remappings=(("/tcp_pose", "/x"),),
                    arguments=("-d", "f"))
    cmd = build_command(spec, "/bin/exe", tmp_path / "arbiter.yaml")
    assert cmd == ["/bin/exe", "-d", "f", "--ros-args", "-r", "__node:=arbiter", "--params-file",
                   str(tmp_path / "arbiter.yaml"), "-r", "/tcp_pose:=/x"]
    assert resolve_executable(spec) == str(Path(sys.executable).parent / "action-arbiter")
    assert resolve_executable(NodeSpec("nope", "no-such-executable-xyz", "n")) is None


# --- launch file -----------------------------------------------------------------------------------------------------


def test_launch_file_compiles_and_uses_the_graph_description():
    source = LAUNCH.read_text()
    compile(source, str(LAUNCH), "exec")
    assert "describe_graph(" in source and "OpaqueFunction(" in source
    for name in ("mode", "task", "checkpoint", "use_rviz", "use_sim_time", "robot", "robot_ip", "hand_eye"):
        assert f'("{name}",' in source, f"launch argument {name} is not declared"


class _Recorder:
    """Stands in for a launch / launch_ros class: records its constructor arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _fake_launch_modules(monkeypatch, share: Path):
    class LaunchConfiguration:
        def __init__(self, name):
            self.name = name

        def perform(self, context):
            return context.launch_configurations[self.name]

    mods = {
        "launch": {"LaunchDescription": type("LaunchDescription", (_Recorder,), {})},
        "launch.actions": {n: type(n, (_Recorder,), {}) for n in
                           ("DeclareLaunchArgument", "IncludeLaunchDescription", "OpaqueFunction")},
        "launch.launch_description_sources": {"PythonLaunchDescriptionSource": type("Src", (_Recorder,), {})},
        "launch.substitutions": {"LaunchConfiguration": LaunchConfiguration},
        "launch_ros": {},
        "launch_ros.actions": {"Node": type("Node", (_Recorder,), {})},
        "ament_index_python.packages": {"get_package_share_directory": lambda pkg: str(share / pkg)},
    }
    for name, attrs in mods.items():
        module = types.ModuleType(name)
        for key, value in attrs.items():
            setattr(module, key, value)
        monkeypatch.setitem(sys.modules, name, module)


def _run_launch(monkeypatch, tmp_path, overrides):
    _fake_launch_modules(monkeypatch, tmp_path)
    spec = importlib.util.spec_from_file_location("residual_bringup_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ld = module.generate_launch_description()
    *declared, opaque = ld.args[0]
    defaults = {d.args[0]: d.kwargs["default_value"] for d in declared}
    assert all(d.kwargs["description"] for d in declared)
    context = types.SimpleNamespace(launch_configurations={**defaults, **overrides})
    return opaque.kwargs["function"](context)


def test_launch_file_builds_the_sim_graph(monkeypatch, tmp_path):
    actions = _run_launch(monkeypatch, tmp_path, {"task": "close_drawer", "checkpoint": "/c.safetensors",
                                                  "use_rviz": "true"})
    nodes = {a.kwargs["name"]: a.kwargs for a in actions}
    expected = by_name(describe_graph("sim", "close_drawer", checkpoint="/c.safetensors", use_rviz=True,
                                      config_dir=tmp_path / "residual_bringup" / "config"))
    assert list(nodes) == list(expected)
    for name, spec in expected.items():
        assert nodes[name]["executable"] == spec.executable and nodes[name]["package"] == spec.package
        assert nodes[name]["parameters"] == [*spec.params_files, spec.parameters]
        assert nodes[name]["remappings"] == list(spec.remappings)


def _check_nodes(actions, graph):
    """The launch file's Node actions are the graph description's NodeSpecs, field for field."""
    nodes = {a.kwargs["name"]: a.kwargs for a in actions if type(a).__name__ == "Node"}
    expected = by_name(graph)
    assert list(nodes) == list(expected)
    for name, spec in expected.items():
        node = nodes[name]
        assert (node["package"], node["executable"]) == (spec.package, spec.executable)
        assert node["namespace"] == (spec.namespace or None)
        assert node["parameters"] == [*spec.params_files, spec.parameters]
        assert node["remappings"] == list(spec.remappings) and node["arguments"] == list(spec.arguments)


def test_launch_file_builds_the_real_graph(monkeypatch, tmp_path):
    """mode:=real robot:=franka: franka_bringup's franka.launch.py with robot_type fr3 and only arguments it declares,
    then the real-mode nodes."""
    actions = _run_launch(monkeypatch, tmp_path, {"mode": "real", "robot": "franka", "robot_ip": "172.16.0.2",
                                                  "hand_eye": "0.1 0.2 0.3 0 0 0 1", "use_sim_time": "auto"})
    include = actions[0]
    assert type(include).__name__ == "IncludeLaunchDescription"
    assert include.args[0].args[0] == str(tmp_path / "franka_bringup" / "launch/franka.launch.py")
    launch_args = dict(include.kwargs["launch_arguments"])
    share = tmp_path / "residual_bringup" / "config"
    assert launch_args == {"robot_type": "fr3", "robot_ip": "172.16.0.2", "load_gripper": "true",
                           "use_fake_hardware": "false", "controllers_yaml": str(share / "franka_controllers.yaml")}
    assert set(launch_args) <= set(fi.FRANKA_BRINGUP.declared) and "use_rviz" not in launch_args
    assert [type(a).__name__ for a in actions[1:]] == ["Node"] * (len(actions) - 1)
    _check_nodes(actions, describe_graph("real", robot_ip="172.16.0.2", hand_eye=HAND_EYE, config_dir=share))
    names = [a.kwargs["name"] for a in actions[1:]]
    assert {"spawner_crisp_cartesian_controller", "camera", "gripper_bridge", "hand_eye_tf"} <= set(names)
    with pytest.raises(ValueError, match="hand_eye"):
        _run_launch(monkeypatch, tmp_path, {"mode": "real", "robot_ip": "172.16.0.2"})


def test_launch_file_builds_the_real_graph_with_the_twin(monkeypatch, tmp_path):
    """mode:=real robot:=twin: no include, the twin node (franka_twin need not exist to parse), the rest unchanged; no
    robot_ip needed."""
    actions = _run_launch(monkeypatch, tmp_path, {"mode": "real", "robot": "twin", "task": "close_drawer",
                                                  "hand_eye": "0.1 0.2 0.3 0 0 0 1", "use_rviz": "true"})
    assert [type(a).__name__ for a in actions] == ["Node"] * len(actions)
    share = tmp_path / "residual_bringup" / "config"
    _check_nodes(actions, describe_graph("real", "close_drawer", robot="twin", hand_eye=HAND_EYE, use_rviz=True,
                                         config_dir=share))
    names = [a.kwargs["name"] for a in actions]
    assert names[0] == "franka_twin" and "camera" not in names and "spawner_crisp_cartesian_controller" not in names
    with pytest.raises(ValueError, match="robot must be one of"):
        _run_launch(monkeypatch, tmp_path, {"mode": "real", "robot": "panda", "hand_eye": "0 0 0 0 0 0 1"})
