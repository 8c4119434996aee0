"""ROS 2 message definitions as MCAP schemas, in the form rosbag2 writes them (no rclpy).

A schema (encoding ``ros2msg``) is the message's own ``.msg`` text followed by every message type it uses,
each after a line of 80 ``=`` and a ``MSG: <package>/<Name>`` line: the dependency names carry no ``/msg/``
(``MSG: std_msgs/Header``, not ``MSG: std_msgs/msg/Header``), or Foxglove's parser fails. The ``.msg`` files are
read from the share directories of the installed message packages (``<prefix>/share/<package>/msg``).
"""

from __future__ import annotations

import os
import re
import sys
from functools import cache
from pathlib import Path

SEPARATOR = "=" * 80
PRIMITIVES = frozenset({"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
                        "uint32", "int64", "uint64", "string", "wstring"})
_FIELD = re.compile(r"^\s*([A-Za-z][\w/]*)(?:<=\d+)?(?:\[[^\]]*\])?\s+([A-Za-z]\w*)(\s*=.*|\s+.*)?$")


def split_type(type_name: str) -> tuple[str, str]:
    """``"pkg/msg/Name"`` or ``"pkg/Name"`` -> ``("pkg", "Name")`` (ValueError for anything else)."""
    parts = type_name.split("/")
    if len(parts) == 3 and parts[1] == "msg":
        return parts[0], parts[2]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise ValueError(f"message type must look like pkg/msg/Name or pkg/Name, got {type_name!r}")


def share_prefixes() -> list[Path]:
    """Where installed packages' share/ folders are: $AMENT_PREFIX_PATH entries, then this interpreter's prefix."""
    out = [Path(p) for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    out += [Path(sys.prefix)]
    return out


@cache
def msg_text(package: str, name: str) -> str:
    """The ``.msg`` file of ``package/Name`` (first found under :func:`share_prefixes`)."""
    tried = []
    for prefix in share_prefixes():
        path = prefix / "share" / package / "msg" / f"{name}.msg"
        if path.is_file():
            return path.read_text()
        tried.append(str(path))
    raise FileNotFoundError(f"no definition of {package}/{name}: tried {tried}")


def field_types(text: str, package: str) -> list[tuple[str, str]]:
    """Non-primitive field types of a ``.msg`` text, as (package, Name) in order of appearance (constants and
    comments skipped; a type without a package is the containing package's)."""
    out = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = _FIELD.match(line)
        if m is None:
            raise ValueError(f"cannot parse message field line {raw!r} of package {package}")
        base = m.group(1)
        if base in PRIMITIVES:
            continue
        out.append(split_type(base) if "/" in base else (package, base))
    return out


def message_definition(type_name: str) -> str:
    """The rosbag2-style schema text of ``type_name`` (``pkg/msg/Name``) with all its dependencies."""
    package, name = split_type(type_name)
    root = msg_text(package, name)
    deps: list[tuple[str, str]] = []
    stack = [(package, name)]
    seen = {(package, name)}
    while stack:  # depth first, each dependency once, in order of first use
        pkg, nm = stack.pop(0)
        children = []
        for child in field_types(msg_text(pkg, nm), pkg):
            if child not in seen:  # a type used by two fields of one message is listed once too
                seen.add(child)
                children.append(child)
        deps.extend(children)
        stack[0:0] = children
    parts = [root.rstrip("\n")]
    for pkg, nm in deps:
        parts.append(f"{SEPARATOR}\nMSG: {pkg}/{nm}\n{msg_text(pkg, nm).rstrip(chr(10))}")
    return "\n".join(parts) + "\n"
