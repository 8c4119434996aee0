"""Typed node configuration <-> ROS parameters, from one dataclass (no rclpy import here).

A node declares every field of its config dataclass as a parameter in one call, with the field's docstring as
the parameter description, and reads them back into a validated instance::

    cfg = declare_config(node, ArbiterNodeConfig)

Values are converted to the field's type (``-p gain:=1`` for a float field gives 1.0); tuples travel as
arrays. Fields are flat (bool, int, float, str, tuple[str | float | int, ...]) with non-empty defaults (ROS
cannot infer the type of an empty array), or nested config dataclasses whose fields follow the same rules: a
field ``envelope: EnvelopeConfig = field(default_factory=EnvelopeConfig)`` becomes the parameters
``envelope.workspace_min``, ``envelope.max_translation_step``, ... (described by ``EnvelopeConfig``'s field
docstrings; ROS params files may write them as a nested ``envelope:`` mapping, which ROS flattens to the same
dotted names). The nested instance is rebuilt from its default with the given values, so its ``__post_init__``
validates them.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from collections.abc import Iterator, Mapping
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


def _is_config(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _fields(cls: type) -> Iterator[tuple[dataclasses.Field, Any]]:
    """(field, type hint) of every parameter field of ``cls`` (init fields not starting with "_")."""
    if not _is_config(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.init and not f.name.startswith("_"):
            yield f, hints[f.name]


def _field_default(cls: type, f: dataclasses.Field, prefix: str) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"{cls.__name__}.{f.name} needs a default to become the ROS parameter {prefix}{f.name}")


def _parameter_values(cls: type, instance: Any, prefix: str) -> dict[str, Any]:
    """Dotted name -> ROS value of ``instance``'s fields (the field defaults where ``instance`` is None)."""
    out: dict[str, Any] = {}
    for f, hint in _fields(cls):
        value = _field_default(cls, f, prefix) if instance is None else getattr(instance, f.name)
        if _is_config(hint):
            if not isinstance(value, hint):
                raise TypeError(f"{cls.__name__}.{f.name} is {value!r}, not a {hint.__name__}")
            out.update(_parameter_values(hint, value, f"{prefix}{f.name}."))
            continue
        if isinstance(value, tuple):
            if not value and instance is None:
                raise TypeError(f"{cls.__name__}.{f.name}: empty tuple default has no ROS parameter type")
            value = list(value)
        out[prefix + f.name] = value
    return out


def config_defaults(cls: type) -> dict[str, Any]:
    """Parameter name (dotted for nested configs) -> default value as a ROS parameter value (tuples become lists)."""
    return _parameter_values(cls, None, "")


def parameter_docs(cls: type) -> dict[str, str]:
    """Parameter name (dotted for nested configs) -> description: the field's docstring ("" when it has none)."""
    out: dict[str, str] = {}
    docs = field_docs(cls)
    for f, hint in _fields(cls):
        if _is_config(hint):
            out.update({f"{f.name}.{k}": v for k, v in parameter_docs(hint).items()})
        else:
            out[f.name] = docs.get(f.name, "")
    return out


def _owner(cls: type, name: str) -> tuple[type, str]:
    """The (nested) config class that holds the dotted parameter ``name``, and the field name in it."""
    *path, leaf = name.split(".")
    for i, part in enumerate(path):
        hint = dict((f.name, h) for f, h in _fields(cls)).get(part)
        if not _is_config(hint):
            raise ValueError(f"unknown parameter {name!r}: {'.'.join(path[:i + 1])} is not a nested config of "
                             f"{cls.__name__}")
        cls = hint
    return cls, leaf


def coerce_value(cls: type, name: str, value: Any) -> Any:
    """Convert a parameter value to the type of field ``name`` (dotted: of a nested config) of ``cls`` (the error
    names the parameter and the value)."""
    owner, leaf = _owner(cls, name)
    hint = typing.get_type_hints(owner)[leaf]
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
    raise TypeError(f"{owner.__name__}.{leaf}: unsupported parameter type {hint}")


def flatten_values(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"envelope": {"max_translation_step": 0.01}}`` -> ``{"envelope.max_translation_step": 0.01}``, as ROS
    reads nested params-file mappings (dotted keys stay as they are; a name given twice is refused)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        items = flatten_values(value, f"{prefix}{key}.") if isinstance(value, Mapping) else {prefix + key: value}
        for name, v in items.items():
            if name in out:
                raise ValueError(f"parameter {name!r} given twice")
            out[name] = v
    return out


def _build(cls: type, values: dict[str, Any], prefix: str, base: Any) -> Any:
    """``cls`` from its own (undotted) and its nested configs' (dotted) coerced values, on top of ``base`` (None:
    the constructor's defaults)."""
    kwargs = {}
    for f, hint in _fields(cls):
        if _is_config(hint):
            sub = {k[len(f.name) + 1:]: v for k, v in values.items() if k.startswith(f.name + ".")}
            if sub:
                inner = _field_default(cls, f, prefix) if base is None else getattr(base, f.name)
                kwargs[f.name] = _build(hint, sub, f"{prefix}{f.name}.", inner)
        elif f.name in values:
            kwargs[f.name] = values[f.name]
    if base is None:
        return cls(**kwargs)
    try:
        return dataclasses.replace(base, **kwargs)
    except (TypeError, ValueError) as exc:
        names = ", ".join(sorted(prefix + k for k in values))
        raise ValueError(f"parameter(s) {names}: {exc}") from None


def config_from_values(cls: type[C], values: Mapping[str, Any]) -> C:
    """Build ``cls`` from parameter values (missing ones take the defaults); __post_init__ validates, that of each
    nested config too. Nested configs' values are given by dotted name (``envelope.max_translation_step``) or as
    nested mappings (``{"envelope": {"max_translation_step": ...}}``, as in a params file)."""
    flat = flatten_values(values)
    unknown = set(flat) - set(config_defaults(cls))
    if unknown:
        raise ValueError(f"unknown parameter(s) for {cls.__name__}: {sorted(unknown)}")
    return _build(cls, {k: coerce_value(cls, k, v) for k, v in flat.items()}, "", None)


def declare_config(node: Any, cls: type[C]) -> C:
    """Declare every field of ``cls`` (dotted: of its nested configs) as a parameter of ``node`` (an rclpy Node)
    and return the typed config."""
    from rcl_interfaces.msg import ParameterDescriptor

    docs = parameter_docs(cls)
    names = []
    for name, default in config_defaults(cls).items():
        descriptor = ParameterDescriptor(description=docs.get(name, ""), dynamic_typing=True)
        node.declare_parameter(name, default, descriptor)
        names.append(name)
    return config_from_values(cls, {n: node.get_parameter(n).value for n in names})


def to_parameter_dict(cfg: Any) -> dict[str, Any]:
    """A config instance as a ``{name: value}`` dict of ROS parameter values, nested configs flattened to dotted
    names (for params files and launch)."""
    return _parameter_values(type(cfg), cfg, "")
