"""The package graph is a DAG that reads bottom-up, is declared in package.xml, and keeps the robot-side nodes free
of torch, MuJoCo and the trainer (DESIGN.md "Package graph").

The checker scans every import of ``ros2_ws/src/<pkg>/<pkg>/**/*.py`` with ``ast`` (imports inside functions
included) and compares the edges between our packages with ``ALLOWED`` (the intended layers) and with each
package.xml (what colcon and rosdep follow). ``test_checker_reports_an_injected_back_edge`` shows that it fails.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "ros2_ws" / "src"

# Bottom-up. Each package may import (its Python modules may depend on) only the packages listed here.
ALLOWED: dict[str, frozenset[str]] = {
    # the bottom: messages, and the pure contracts (numpy/scipy/safetensors.numpy; no rclpy, torch, MuJoCo, cv2)
    "residual_interfaces": frozenset(),
    "residual_core": frozenset(),
    # rclpy helpers (node runner, typed-config parameters)
    "residual_ros": frozenset({"residual_core"}),
    # torch: residual actor/critic networks, the sim BC base policy (the VLA stand-in)
    "residual_learning": frozenset({"residual_core"}),
    # the nodes; the residual node and the arbiter run without torch or MuJoCo
    "residual_policy_node": frozenset({"residual_core", "residual_ros", "residual_interfaces"}),
    "action_arbiter": frozenset({"residual_core", "residual_ros", "residual_interfaces"}),
    "pose_estimator_node": frozenset({"residual_core", "residual_ros", "residual_interfaces"}),
    "vla_base_node": frozenset({"residual_core", "residual_ros", "residual_interfaces", "residual_learning"}),
    # the simulator (MuJoCo, gym) beside the nodes; it still ships the sim ROS node (sim_node.py)
    "franka_sim": frozenset({"residual_core", "residual_ros", "residual_interfaces"}),
    # the franka_ros2 twin (robot:=twin): the sim's model, physics and camera behind franka_ros2's interfaces
    "franka_twin": frozenset({"residual_core", "residual_ros", "residual_interfaces", "franka_sim"}),
    # offline training and evaluation; the camera path (residual-eval --pose-source camera) runs the pose estimator's
    # and the residual node's pure parts, the code the nodes run
    "trainer": frozenset({"residual_core", "residual_learning", "franka_sim", "pose_estimator_node",
                          "residual_policy_node"}),
    # the top: graph description, supervisor, launch, demo; nothing imports it
    "residual_bringup": frozenset({"residual_core", "residual_ros", "residual_interfaces", "residual_learning"}),
}
RUNTIME_DEPEND_TAGS = ("depend", "exec_depend", "build_export_depend")


def our_packages(src: Path = SRC) -> list[str]:
    return sorted(p.parent.name for p in src.glob("*/package.xml"))


def scan_imports(src: Path = SRC) -> dict[str, dict[str, list[str]]]:
    """{package: {imported package of ours: ["path:line", ...]}} over ``<pkg>/<pkg>/**/*.py`` (tests excluded)."""
    ours = set(our_packages(src))
    edges: dict[str, dict[str, list[str]]] = {pkg: {} for pkg in ours}
    for pkg in sorted(ours):
        for path in sorted((src / pkg / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):  # every import, module level or inside functions
                if isinstance(node, ast.Import):
                    mods = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    mods = [node.module]
                else:
                    continue
                for mod in mods:
                    top = mod.split(".")[0]
                    if top in ours and top != pkg:
                        edges[pkg].setdefault(top, []).append(f"{path.relative_to(src)}:{node.lineno}")
    return edges


def declared_dependencies(src: Path = SRC) -> dict[str, set[str]]:
    """{package: run-time dependencies named in its package.xml}."""
    out = {}
    for xml in sorted(src.glob("*/package.xml")):
        root = ET.parse(xml).getroot()
        out[root.findtext("name")] = {e.text.strip() for tag in RUNTIME_DEPEND_TAGS for e in root.iter(tag)}
    return out


def find_cycle(graph: Mapping[str, set[str] | frozenset[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the DFS stack, 2: done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (cycle := visit(m)):
                return cycle
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (cycle := visit(n)):
            return cycle
    return None


def check_graph(edges: Mapping[str, Mapping[str, list[str]]], declared: Mapping[str, set[str]],
                allowed: Mapping[str, frozenset[str]] = ALLOWED) -> list[str]:
    """Every problem with the import graph, as readable lines (empty: all good)."""
    problems = []
    ours = set(edges) | set(declared)
    for pkg in sorted(ours - set(allowed)):
        problems.append(f"{pkg}: not in the ALLOWED table (add its layer)")
    for pkg in sorted(edges):
        for dep, where in sorted(edges[pkg].items()):
            if dep not in allowed.get(pkg, frozenset()):
                problems.append(f"{pkg} -> {dep}: import edge not allowed ({', '.join(where[:3])})")
            if dep not in declared.get(pkg, set()):
                problems.append(f"{pkg} -> {dep}: imported but not declared in {pkg}/package.xml ({where[0]})")
    graph = {pkg: set(edges.get(pkg, {})) | (declared.get(pkg, set()) & ours) for pkg in ours}
    cycle = find_cycle(graph)
    if cycle:
        problems.append("cycle: " + " -> ".join(cycle))
    return problems


def test_allowed_table_is_itself_acyclic_and_covers_every_package():
    assert set(ALLOWED) == set(our_packages())
    assert find_cycle(ALLOWED) is None
    assert not any("residual_bringup" in deps for deps in ALLOWED.values()), "nothing may import bringup"


def test_import_graph_is_allowed_declared_and_acyclic():
    edges = scan_imports()
    assert sum(len(v) for v in edges.values()) >= 15, edges  # the scan sees the real graph
    assert check_graph(edges, declared_dependencies()) == []


def test_checker_reports_an_injected_back_edge(capsys):
    edges = scan_imports()
    edges["residual_core"]["residual_ros"] = ["residual_core/residual_core/injected.py:1"]
    problems = check_graph(edges, declared_dependencies())
    with capsys.disabled():
        print("\n[injected residual_core -> residual_ros] checker says:\n  " + "\n  ".join(problems))
    assert any(p.startswith("residual_core -> residual_ros: import edge not allowed") for p in problems)
    assert any(p.startswith("residual_core -> residual_ros: imported but not declared") for p in problems)
    assert "cycle: residual_core -> residual_ros -> residual_core" in problems


def test_checker_sees_lazy_imports_and_reports_undeclared_edges(tmp_path):
    for pkg, body in (("low", "X = 1\n"), ("high", "def f():\n    from low import X\n    return X\n")):
        (tmp_path / pkg / pkg).mkdir(parents=True)
        (tmp_path / pkg / pkg / "mod.py").write_text(body)
        (tmp_path / pkg / "package.xml").write_text(f"<package format='3'><name>{pkg}</name></package>")
    edges = scan_imports(tmp_path)
    assert edges == {"high": {"low": ["high/high/mod.py:2"]}, "low": {}}
    problems = check_graph(edges, declared_dependencies(tmp_path), {"low": frozenset(), "high": frozenset({"low"})})
    assert problems == ["high -> low: imported but not declared in high/package.xml (high/high/mod.py:2)"]


def test_residual_node_and_arbiter_import_no_torch_mujoco_or_trainer():
    """In a fresh interpreter: the robot-side residual node and arbiter pull in none of the training stack."""
    code = (
        "import sys\n"
        "import residual_policy_node.node, residual_policy_node.core, action_arbiter.node, action_arbiter.arbiter\n"
        "import pose_estimator_node.node\n"
        "print(sorted(m for m in ('torch', 'mujoco', 'trainer', 'residual_learning', 'franka_sim', 'safetensors.torch')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[]"


def test_colcon_topological_order_follows_the_import_graph():
    colcon = shutil.which("colcon", path=str(Path(sys.executable).parent)) or shutil.which("colcon")
    if colcon is None:
        pytest.skip("colcon is not installed")
    env = dict(os.environ, COLCON_LOG_PATH=os.devnull)
    out = subprocess.run([colcon, "list", "--topological-order", "--names-only", "--base-paths", str(SRC)],
                         capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    order = out.stdout.split()
    assert sorted(order) == our_packages()
    position = {pkg: i for i, pkg in enumerate(order)}
    for pkg, deps in scan_imports().items():
        for dep in deps:
            assert position[dep] < position[pkg], f"colcon orders {pkg} before {dep}, which it imports: {order}"


def test_torch_is_pinned_wherever_a_package_names_it():
    """torch==2.13.0 (CPU) is the only torch the project may pull (any other pin brings GBs of CUDA): every package.xml
    that depends on python3-torch pins that version, the one setup/requirements.txt installs."""
    pins = [line.split("==", 1)[1].strip() for line in (REPO / "setup" / "requirements.txt").read_text().splitlines()
            if line.strip().startswith("torch==")]
    assert pins == ["2.13.0"], pins
    named = []
    for xml in sorted(SRC.glob("*/package.xml")):
        for el in ET.parse(xml).getroot():
            if (el.text or "").strip() == "python3-torch":
                named.append(xml.parent.name)
                assert el.get("version_eq") == pins[0], f"{xml}: <{el.tag}>python3-torch without version_eq={pins[0]}"
    assert named, "no package names torch"
