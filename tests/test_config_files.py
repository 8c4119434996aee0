"""The params files hold only deviations from the nodes' defaults: each parameter and its default is declared once, in
the node's config dataclass, so a default changed in code is the value the graph runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from action_arbiter.gripper_bridge import GripperBridgeConfig
from action_arbiter.node_config import ArbiterNodeConfig
from franka_sim.sim_bridge import SimNodeConfig
from pose_estimator_node.node import PoseEstimatorNodeConfig
from residual_policy_node.node import ResidualNodeConfig
from residual_ros.params import config_defaults, config_from_values, flatten_values
from vla_base_node.node import VlaBaseNodeConfig

CONFIG = Path(__file__).resolve().parents[1] / "config"
NODE_CONFIGS = {"sim": SimNodeConfig, "pose_estimator": PoseEstimatorNodeConfig, "base": VlaBaseNodeConfig,
                "residual": ResidualNodeConfig, "arbiter": ArbiterNodeConfig, "gripper_bridge": GripperBridgeConfig}
EXTERNAL = {"/camera/camera"}
"""Sections of nodes that are not ours (realsense2_camera, namespace and name "camera"): their defaults live in their
own package."""


def _same(value, default) -> bool:
    if isinstance(default, list) and isinstance(value, list):
        return len(value) == len(default) and all(_same(v, d) for v, d in zip(value, default, strict=True))
    if isinstance(default, (int, float)) and not isinstance(default, bool) and isinstance(value, (int, float)):
        return float(value) == float(default)
    return value == default


def redundant_and_unknown(params_file: Path) -> tuple[list[str], list[str]]:
    """(values equal to their default, parameters no node declares) in a params file."""
    redundant, unknown = [], []
    for node, section in yaml.safe_load(params_file.read_text()).items():
        if node in EXTERNAL:
            continue
        classes = list(NODE_CONFIGS.values()) if node == "/**" else [NODE_CONFIGS.get(node)]
        if None in classes:
            unknown.append(f"{node}: no such node")
            continue
        # nested configs' parameters (``envelope: {max_translation_step: ...}``) by dotted name, as ROS reads them
        for key, value in flatten_values(section["ros__parameters"]).items():
            declared = [config_defaults(c) for c in classes if key in config_defaults(c)]
            if not declared:
                unknown.append(f"{node}.{key}")
            elif any(_same(value, d[key]) for d in declared):
                redundant.append(f"{node}.{key} = {value!r}")
    return redundant, unknown


@pytest.mark.parametrize("name", ["sim.yaml", "real.yaml"])
def test_params_files_list_only_deviations_from_defaults(name):
    redundant, unknown = redundant_and_unknown(CONFIG / name)
    assert not unknown, f"{name}: parameters no node declares: {unknown}"
    assert not redundant, f"{name}: values equal to the node's default (delete them): {redundant}"
    # and every section still builds a valid config
    for node, section in yaml.safe_load((CONFIG / name).read_text()).items():
        if node in NODE_CONFIGS:
            values = {k: v for k, v in section["ros__parameters"].items() if k != "checkpoint"}
            config_from_values(NODE_CONFIGS[node], values)


def test_the_check_finds_a_default_and_an_unknown_key(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text("arbiter:\n  ros__parameters:\n    envelope:\n      max_translation_step: 0.05\n"
                 "      max_rotation_step: 0.1\n      no_such_param: 2\n    action.max_rotation: 0.25\n"
                 "    residual_deadline_s: 0.1\n    no_such_param: 1\n/**:\n  ros__parameters:\n    control_dt: 0.05\n")
    redundant, unknown = redundant_and_unknown(f)
    assert redundant == ["arbiter.envelope.max_translation_step = 0.05", "arbiter.action.max_rotation = 0.25",
                         "/**.control_dt = 0.05"]
    assert unknown == ["arbiter.envelope.no_such_param", "arbiter.no_such_param"]


def test_the_arbiter_composes_as_its_residual_was_trained_unless_told(tmp_path):
    """compose_from auto (the default): the residual checkpoint's training.compose_from; measured for one made
    before that option; an explicit value wins (config/real.yaml: target, for an arm that lags)."""
    import json

    from test_graph_support import make_residual_checkpoint

    old = make_residual_checkpoint(tmp_path / "old")
    new = make_residual_checkpoint(tmp_path / "new")
    manifest = json.loads(new.with_suffix(".json").read_text())
    manifest["training"]["compose_from"] = "target"
    new.with_suffix(".json").write_text(json.dumps(manifest))
    assert ArbiterNodeConfig().compose_from == "auto"
    assert ArbiterNodeConfig(checkpoint=str(old)).to_arbiter_config().compose_from == "measured"
    assert ArbiterNodeConfig(checkpoint=str(new)).to_arbiter_config().compose_from == "target"
    for path, told in ((new, "measured"), (old, "target")):
        assert ArbiterNodeConfig(checkpoint=str(path), compose_from=told).to_arbiter_config().compose_from == told
    with pytest.raises(ValueError, match="compose_from"):
        ArbiterNodeConfig(checkpoint=str(old), compose_from="tcp").to_arbiter_config()
