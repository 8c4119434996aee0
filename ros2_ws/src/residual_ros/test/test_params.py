"""Config dataclasses <-> ROS parameters: flat fields, nested configs as dotted parameters, params-file mappings,
errors that name the parameter; and declare_config on a real rclpy node (params file with nested and dotted keys)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from residual_ros.params import (
    coerce_value,
    config_defaults,
    config_from_values,
    declare_config,
    flatten_values,
    parameter_docs,
    to_parameter_dict,
)


@dataclass(frozen=True)
class Limits:
    """A nested config with its own validation."""

    low: tuple[float, float] = (0.0, 0.0)
    """Lower corner (m)."""
    step: float = 0.05
    """Largest step (m)."""

    def __post_init__(self) -> None:
        if not self.step > 0:
            raise ValueError(f"step must be > 0, got {self.step}")
        object.__setattr__(self, "low", tuple(float(v) for v in self.low))


@dataclass(frozen=True)
class Detector:
    """Two levels of nesting."""

    size_px: int = 6
    """Smallest marker (px)."""
    limits: Limits = field(default_factory=lambda: Limits(step=0.5))
    """A nested config whose default differs from its class's."""


@dataclass
class NodeConfig:
    """A node config: flat fields and nested configs."""

    rate: float = 20.0
    """Rate (Hz)."""
    name: str = "arm"
    """Name."""
    limits: Limits = field(default_factory=Limits)
    """The limits."""
    detector: Detector = field(default_factory=Detector)
    """The detector."""


DEFAULTS = {"rate": 20.0, "name": "arm", "limits.low": [0.0, 0.0], "limits.step": 0.05, "detector.size_px": 6,
            "detector.limits.low": [0.0, 0.0], "detector.limits.step": 0.5}


def test_defaults_and_docs_use_dotted_names():
    assert config_defaults(NodeConfig) == DEFAULTS
    assert parameter_docs(NodeConfig) == {"rate": "Rate (Hz).", "name": "Name.", "limits.low": "Lower corner (m).",
                                          "limits.step": "Largest step (m).",
                                          "detector.size_px": "Smallest marker (px).",
                                          "detector.limits.low": "Lower corner (m).",
                                          "detector.limits.step": "Largest step (m)."}
    assert to_parameter_dict(NodeConfig()) == DEFAULTS


def test_dotted_and_nested_values_rebuild_the_nested_configs():
    cfg = config_from_values(NodeConfig, {"rate": 10, "limits.step": 1, "detector.limits.low": [1, 2]})
    assert cfg == NodeConfig(rate=10.0, limits=Limits(step=1.0),
                             detector=Detector(limits=Limits(low=(1.0, 2.0), step=0.5)))
    assert isinstance(cfg.limits.step, float) and cfg.detector.limits.low == (1.0, 2.0)
    # a params file's nested mappings, as ROS reads them; unset nested fields keep the field's default instance
    nested = config_from_values(NodeConfig, {"detector": {"size_px": 8, "limits": {"low": [1, 2]}}})
    assert nested.detector == Detector(size_px=8, limits=Limits(low=(1.0, 2.0), step=0.5))
    assert nested.limits == Limits()
    assert config_from_values(NodeConfig, to_parameter_dict(cfg)) == cfg  # round trip
    assert config_from_values(NodeConfig, {}) == NodeConfig()


def test_errors_name_the_dotted_parameter():
    with pytest.raises(ValueError, match=r"parameter\(s\) limits.step: step must be > 0, got 0.0"):
        config_from_values(NodeConfig, {"limits.step": 0})
    with pytest.raises(ValueError, match=r"parameter\(s\) detector.limits.step: step must be > 0"):
        config_from_values(NodeConfig, {"detector": {"limits": {"step": -1.0}}})
    with pytest.raises(ValueError, match=r"parameter 'detector.size_px': cannot use 2.5"):
        config_from_values(NodeConfig, {"detector.size_px": 2.5})
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) for NodeConfig: \['limits.nope', 'rate.x'\]"):
        config_from_values(NodeConfig, {"limits.nope": 1, "rate.x": 2})
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) for NodeConfig: \['limits'\]"):
        config_from_values(NodeConfig, {"limits": Limits()})  # a nested config is set field by field
    with pytest.raises(ValueError, match="'limits.step' given twice"):
        config_from_values(NodeConfig, {"limits.step": 1.0, "limits": {"step": 2.0}})


def test_coerce_and_flatten():
    assert coerce_value(NodeConfig, "detector.limits.low", [1, 2]) == (1.0, 2.0)
    assert coerce_value(NodeConfig, "rate", 1) == 1.0
    with pytest.raises(ValueError, match="name is not a nested config"):
        coerce_value(NodeConfig, "name.x", 1)
    assert flatten_values({"a": {"b": {"c": 1}, "d": [1]}, "e.f": 2}) == {"a.b.c": 1, "a.d": [1], "e.f": 2}


@dataclass(frozen=True)
class NoDefault:
    x: float


@dataclass
class Outer:
    inner: NoDefault = field(default_factory=lambda: NoDefault(1.0))


@dataclass
class Missing:
    inner: NoDefault


def test_the_outer_default_gives_the_nested_values():
    assert config_defaults(Outer) == {"inner.x": 1.0}
    assert config_from_values(Outer, {"inner.x": 2}).inner == NoDefault(2.0)
    with pytest.raises(TypeError, match="Missing.inner needs a default to become the ROS parameter inner"):
        config_defaults(Missing)


def test_declare_config_on_a_node_reads_dotted_and_nested_params_file_keys(tmp_path):
    rclpy = pytest.importorskip("rclpy")
    from rclpy.node import Node

    params = tmp_path / "p.yaml"
    params.write_text("n:\n  ros__parameters:\n    rate: 5\n    limits:\n      step: 0.2\n"
                      "    detector.limits.low: [1.0, 2.0]\n")
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        node = Node("n", context=ctx, cli_args=["--ros-args", "--params-file", str(params)])
        try:
            cfg = declare_config(node, NodeConfig)
            assert cfg == NodeConfig(rate=5.0, limits=Limits(step=0.2),
                                     detector=Detector(limits=Limits(low=(1.0, 2.0), step=0.5)))
            assert set(config_defaults(NodeConfig)) <= set(node._parameters)
            (desc,) = node.describe_parameters(["detector.limits.step"])
            assert desc.description == "Largest step (m)."
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
