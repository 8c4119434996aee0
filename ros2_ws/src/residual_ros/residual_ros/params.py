"""Typed node configuration <-> ROS parameters, from one dataclass (no rclpy import here).

A node declares every field of its config dataclass as a parameter in one call, with the field's docstring as
the parameter description, and reads them back into a validated instance::

    cfg = declare_config(node, ArbiterConfig)

Values are converted to the field's type (``-p gain:=1`` for a float field gives 1.0); tuples travel as
arrays. Fields must be flat (bool, int, float, str, tuple[str | float | int, ...]) with non-empty defaults (ROS
cannot infer the type of an empty array).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from functools import cache
from typing import Any, TypeVar

C = TypeVar("C")


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string literal under each field) of a dataclass, by field name."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, body[1:], strict=False):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def config_defaults(cls: type) -> dict[str, Any]:
    """Field name -> default value as a ROS parameter value (tuples become lists)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    out = {}
    for f in dataclasses.fields(cls):
        if not f.init or f.name.startswith("_"):
            continue
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            raise TypeError(f"{cls.__name__}.{f.name} needs a default to become a ROS parameter")
        if isinstance(value, tuple):
            if not value:
                raise TypeError(f"{cls.__name__}.{f.name}: empty tuple default has no ROS parameter type")
            value = list(value)
        out[f.name] = value
    return out


def coerce_value(cls: type, name: str, value: Any) -> Any:
    """Convert a parameter value to the type of field ``name`` of ``cls`` (error names the field and value)."""
    hint = typing.get_type_hints(cls)[name]
    origin = typing.get_origin(hint)
    try:
        if hint is bool:
            if not isinstance(value, bool):
                raise TypeError("expected true/false")
            return value
        if hint is float:
            return float(value)
        if hint is int:
            if isinstance(value, float) and not value.is_integer():
                raise TypeError("expected an integer")
            return int(value)
        if hint is str:
            return str(value)
        if origin is tuple:
            (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
            return tuple(item(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"parameter {name!r}: cannot use {value!r} as {hint}: {exc}") from None
    raise TypeError(f"{cls.__name__}.{name}: unsupported parameter type {hint}")


def config_from_values(cls: type[C], values: dict[str, Any]) -> C:
    """Build ``cls`` from parameter values (missing ones take the defaults); __post_init__ validates."""
    known = config_defaults(cls)
    unknown = set(values) - set(known)
    if unknown:
        raise ValueError(f"unknown parameter(s) for {cls.__name__}: {sorted(unknown)}")
    return cls(**{k: coerce_value(cls, k, v) for k, v in values.items()})


def declare_config(node: Any, cls: type[C]) -> C:
    """Declare every field of ``cls`` as a parameter of ``node`` (an rclpy Node) and return the typed config."""
    from rcl_interfaces.msg import ParameterDescriptor

    docs = field_docs(cls)
    names = []
    for name, default in config_defaults(cls).items():
        descriptor = ParameterDescriptor(description=docs.get(name, ""), dynamic_typing=True)
        node.declare_parameter(name, default, descriptor)
        names.append(name)
    return config_from_values(cls, {n: node.get_parameter(n).value for n in names})


def to_parameter_dict(cfg: Any) -> dict[str, Any]:
    """A config instance as a ``{name: value}`` dict of ROS parameter values (for params files and launch)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()
            if not k.startswith("_")}
