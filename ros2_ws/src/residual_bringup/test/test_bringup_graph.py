"""Graph description, parameter helpers, config files, supervisor helpers and the launch file (with a fake launch)."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import types
from pathlib import Path

import pytest
import yaml
from action_arbiter.node import ArbiterNodeConfig
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
from residual_core.safety import EnvelopeConfig
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
    assert includes[0].arguments["robot_ip"] == "172.16.0.2"
    nodes = by_name(graph)
    assert "sim" not in nodes and {"camera", "hand_eye_tf", "gripper_bridge", "pose_estimator"} <= set(nodes)
    assert nodes["spawner_cartesian_impedance_controller"].arguments == ("cartesian_impedance_controller",)
    assert nodes["hand_eye_tf"].arguments[:2] == ("--x", "0.1")
    for name in ("base", "residual", "arbiter"):
        assert ("/tcp_pose", "/franka_robot_state_broadcaster/current_pose") in nodes[name].remappings
        assert nodes[name].parameters["use_sim_time"] is False
    assert nodes["arbiter"].parameters["controller_pose_topic"] == "/cartesian_impedance_controller/equilibrium_pose"
    assert nodes["base"].parameters["backend"] == "openpi" and not nodes["base"].parameters["lockstep"]
    assert nodes["base"].parameters["episode_topic"] == "none"  # on the robot the base node counts episodes
    assert len(node_specs(graph)) == len(graph) - 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"mode": "gazebo"}, "mode"), ({"task": "juggle"}, "unknown task"), ({"pose_source": "aruco"}, "pose_source"),
     ({"mode": "real", "hand_eye": HAND_EYE}, "robot_ip"), ({"mode": "real", "robot_ip": "1.2.3.4"}, "hand_eye")],
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
    with pytest.raises(ValueError, match="'base_stale_periods'"):
        coerce_value(ArbiterNodeConfig, "base_stale_periods", 2.5)
    with pytest.raises(ValueError, match="'lockstep'"):
        coerce_value(ArbiterNodeConfig, "lockstep", "yes")
    with pytest.raises(ValueError, match="unknown parameter"):
        config_from_values(ArbiterNodeConfig, {"residual_deadline": 0.1})
    cfg = config_from_values(VlaBaseNodeConfig, {"task": "close_drawer", "horizon": 4})
    assert cfg.resolved_instruction == "close the drawer" and to_parameter_dict(cfg)["horizon"] == 4


@pytest.mark.parametrize("mode", ["sim", "real"])
def test_config_files_keep_table_level_grasps_reachable(mode):
    """(Unknown keys and values equal to defaults are refused by tests/test_config_files.py.)"""
    doc = yaml.safe_load((CONFIG / f"{mode}.yaml").read_text())
    values = doc.get("arbiter", {}).get("ros__parameters", {})
    arb = config_from_values(ArbiterNodeConfig, values).to_arbiter_config(trained_scale=(0.01,) * 7)
    assert arb.pipeline.envelope.workspace_min[2] <= 0.0  # table-level grasps stay reachable
    if mode == "real":  # the nested envelope: keys reach the envelope
        env = arb.pipeline.envelope
        assert (env.max_translation_step, env.max_rotation_step, env.workspace_min) == (0.01, 0.1, (0.25, -0.4, 0.0))
    assert dataclasses.is_dataclass(arb)


def test_rviz_config_shows_what_the_arbiter_publishes():
    rviz = yaml.safe_load((CONFIG / "residual.rviz").read_text())
    manager = rviz["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "fr3_link0"
    topics = {d["Topic"]["Value"] for d in manager["Displays"] if "Topic" in d}
    assert {"/arbiter/markers", "/arbiter/target_pose", "/arbiter/object_markers", "/tcp_pose"} <= topics


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
    for name in ("mode", "task", "checkpoint", "use_rviz", "use_sim_time", "robot_ip"):
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


def test_launch_file_builds_the_real_graph(monkeypatch, tmp_path):
    actions = _run_launch(monkeypatch, tmp_path, {"mode": "real", "robot_ip": "172.16.0.2",
                                                  "hand_eye": "0.1 0.2 0.3 0 0 0 1", "use_sim_time": "auto"})
    include = actions[0]
    assert include.args[0].args[0] == str(tmp_path / "franka_bringup" / "launch/franka.launch.py")
    assert ("robot_ip", "172.16.0.2") in include.kwargs["launch_arguments"]
    names = [a.kwargs["name"] for a in actions[1:]]
    assert "gripper_bridge" in names and "hand_eye_tf" in names
    with pytest.raises(ValueError, match="hand_eye"):
        _run_launch(monkeypatch, tmp_path, {"mode": "real", "robot_ip": "172.16.0.2"})
