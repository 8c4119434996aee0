"""Support for the graph tests, and its own checks: small checkpoints (a behaviour-cloned base, a residual with a
non-zero output) made with the trainer's and residual_core's functions, the graph's node commands as the
supervisor builds them, and the safety-envelope check applied to every command the graph tests see.

Other graph test modules import from here (tests/ is on sys.path via conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from action_arbiter.arbiter import ArbiterConfig
from action_arbiter.node_config import ArbiterNodeConfig
from residual_bringup.demo.results import StepRecord
from residual_bringup.graph import describe_graph, node_specs
from residual_bringup.supervisor import build_command, node_parameters, resolve_executable, write_params_file
from residual_core.action import DEFAULT_RESIDUAL_SCALE, apply_delta
from residual_core.checkpoint import Manifest, checkpoint_paths, save_checkpoint
from residual_core.observation import layout_for_task
from residual_core.residual_policy import ResidualPolicy
from residual_core.safety import EnvelopeConfig
from residual_core.tasks import TASK_INSTRUCTIONS
from residual_learning.base_policy import BasePolicy, base_features_batch, embed_instruction
from residual_learning.networks import ResidualActor, save_residual_checkpoint
from residual_ros.params import config_defaults, config_from_values
from scipy.spatial.transform import Rotation

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "checkpoints"
CONFIG = REPO / "config"


def make_base_checkpoint(path: Path, task: str = "cube_lift", demos: int = 3, epochs: int = 40, seed: int = 0,
                         hidden: tuple[int, ...] = (64, 64)) -> Path:
    """Behaviour-clone a small base policy (chunks of 8, all executed) on a few teleop-like demos of ``task``."""
    from franka_sim.env import FrankaTaskEnv
    from franka_sim.experts import teleop_demo
    from trainer.base_train import DEMO_SEED_OFFSET, Args, chunk_targets, train_bc

    env = FrankaTaskEnv(task)
    emb = embed_instruction(TASK_INSTRUCTIONS[task])
    rng = np.random.default_rng(seed)
    feats, chunks, k = [], [], 0
    while len(feats) < demos:
        ep = teleop_demo(env, DEMO_SEED_OFFSET + k, rng=rng)
        k += 1
        if ep is None or not ep.success:
            continue
        obs = ep.observations[:-1]
        st = {key: np.stack([o[key] for o in obs]) for key in ("object_pos", "object_quat", "joint_pos",
                                                                "gripper_width", "tcp_pos", "tcp_quat")}
        feats.append(base_features_batch(st["object_pos"], st["object_quat"], np.ones(st["object_pos"].shape[:2]),
                                         st["joint_pos"], st["gripper_width"].reshape(-1), st["tcp_pos"],
                                         st["tcp_quat"], emb))
        chunks.append(chunk_targets(np.stack(ep.actions), 8))
    env.close()
    args = Args(out=path, tasks=(task,), demos_per_task=demos, horizon=8, execute_steps=8, hidden=hidden,
                epochs=epochs, batch_size=64, eval_episodes=0, workers=1, seed=seed)
    torch.set_num_threads(1)
    net, losses = train_bc(np.concatenate(feats), np.concatenate(chunks), args)
    manifest = Manifest(kind="base", task="all", observation_layout=None,
                        normalization={k: getattr(net, k).tolist() for k in ("feat_mean", "feat_std", "act_mean",
                                                                                 "act_std")},
                        action_scale=[], network=net.config(),
                        training={"execute_steps": 8, "purpose": "graph tests", "demos": demos, "final_l1": losses[-1]},
                        steps=len(losses), evaluation={})
    return save_checkpoint(path, dict(net.state_dict()), manifest).with_suffix("")


def make_residual_checkpoint(path: Path, task: str = "cube_lift", seed: int = 0, out_std: float = 0.3) -> Path:
    """A residual whose last layer is random (not the zero init), so its output is non-zero and checkable."""
    torch.manual_seed(seed)
    layout = layout_for_task(task)
    actor = ResidualActor(layout.size, hidden=(32, 32))
    with torch.no_grad():
        torch.nn.init.normal_(actor.mlp.linears[-1].weight, std=out_std)
        torch.nn.init.normal_(actor.mlp.linears[-1].bias, std=out_std)
    return save_residual_checkpoint(path, actor, layout, task, DEFAULT_RESIDUAL_SCALE, {"purpose": "graph tests"},
                                    0, {}).with_suffix("")


def shipped_checkpoints(task: str, kind: str = "residual") -> tuple[Path, Path] | str:
    """(residual, base) stems of the shipped checkpoints (``kind``: the folder of residuals, residual or
    residual_robust), or the reason they cannot be used (for pytest.skip)."""
    residual, base = SHIPPED / kind / task, SHIPPED / "base" / "base_policy"
    missing = [str(p) for stem in (residual, base) for p in checkpoint_paths(stem) if not p.is_file()]
    return f"shipped checkpoint files missing: {missing}" if missing else (residual, base)


def graph_commands(directory: Path, task: str, checkpoint: str, base_checkpoint: str,
                   overrides: dict[str, dict], pose_source: str = "estimator",
                   lockstep: bool = True) -> dict[str, list[str]]:
    """Node name -> command line of the sim graph (lockstep unless told otherwise), built as residual-launch
    builds it."""
    specs = node_specs(describe_graph("sim", task, checkpoint=checkpoint, base_checkpoint=base_checkpoint,
                                      lockstep=lockstep, pose_source=pose_source, config_dir=CONFIG))
    out = {}
    for spec in specs:
        params_file = write_params_file(spec, node_parameters(spec, overrides.get(spec.name)), directory)
        exe = resolve_executable(spec)
        assert exe is not None, f"{spec.executable} is not installed"
        out[spec.name] = build_command(spec, exe, params_file)
    return out


def graph_arbiter_config(checkpoint: Path | None = None) -> ArbiterConfig:
    """The arbiter's configuration as config/sim.yaml configures it (with ``checkpoint``'s residual bound)."""
    spec = next(s for s in node_specs(describe_graph("sim", config_dir=CONFIG)) if s.name == "arbiter")
    params = {k: v for k, v in node_parameters(spec).items() if k in config_defaults(ArbiterNodeConfig)}
    if checkpoint is not None:
        params["checkpoint"] = str(checkpoint)
    return config_from_values(ArbiterNodeConfig, params).to_arbiter_config()


def graph_envelope() -> EnvelopeConfig:
    """The arbiter's safety envelope as config/sim.yaml configures it."""
    return graph_arbiter_config().pipeline.envelope


def envelope_violations(records: list[StepRecord], env: EnvelopeConfig, tol: float = 1e-9) -> list[str]:
    """Every way a recorded command breaks the envelope (empty: all fine). Checks: finite final action and
    target, gripper bounds, translation and rotation step limits (unless the measured TCP was outside the box),
    target inside the box, and target = apply_delta(measured TCP, final) where the TCP is known."""
    bad = []
    lo, hi = np.array(env.workspace_min), np.array(env.workspace_max)
    for r in records:
        where = f"step {r.step}"
        if not np.all(np.isfinite(r.final)):
            bad.append(f"{where}: final action not finite: {r.final}")
            continue
        if not env.gripper_min - tol <= r.final[6] <= env.gripper_max + tol:
            bad.append(f"{where}: gripper {r.final[6]} outside [{env.gripper_min}, {env.gripper_max}]")
        pulled_in = "tcp_outside_workspace" in r.clip_reasons
        if np.linalg.norm(r.final[0:3]) > env.max_translation_step + tol and not pulled_in:
            bad.append(f"{where}: translation step {np.linalg.norm(r.final[0:3]):.6f} m > {env.max_translation_step}")
        if np.linalg.norm(r.final[3:6]) > env.max_rotation_step + tol:
            bad.append(f"{where}: rotation step {np.linalg.norm(r.final[3:6]):.6f} rad > {env.max_rotation_step}")
        if r.target_pos is None:
            if "tcp_pose_invalid" not in r.clip_reasons:
                bad.append(f"{where}: no target although the TCP pose was valid")
            continue
        if not (np.all(np.isfinite(r.target_pos)) and np.all(np.isfinite(r.target_quat))):
            bad.append(f"{where}: target not finite: {r.target_pos} {r.target_quat}")
            continue
        if np.any(r.target_pos < lo - tol) or np.any(r.target_pos > hi + tol):
            bad.append(f"{where}: target {r.target_pos} outside the box {lo} .. {hi}")
        if r.tcp_pos is not None and not pulled_in:
            expected = r.tcp_pos + r.final[0:3]
            if np.max(np.abs(expected - r.target_pos)) > 1e-6:
                bad.append(f"{where}: target {r.target_pos} != TCP {r.tcp_pos} + final {r.final[0:3]} "
                           f"(status {r.status}, clip reasons {list(r.clip_reasons)})")
    return bad


def _record(step, final, target=None, tcp=(0.4, 0.0, 0.3), reasons=()) -> StepRecord:
    final = np.asarray(final, dtype=np.float64)
    tcp = np.asarray(tcp, dtype=np.float64)
    target_pos, target_quat = apply_delta(tcp, [1.0, 0, 0, 0], final) if target is None else (np.asarray(target),
                                                                                            np.array([1.0, 0, 0, 0]))
    return StepRecord(step=step, base=final, residual=np.zeros(7), final=final, status="ok", clipped=False,
                      clip_reasons=tuple(reasons), target_pos=target_pos, target_quat=target_quat, tcp_pos=tcp)


def test_envelope_check_accepts_good_and_names_bad_commands():
    env = graph_envelope()
    assert env == EnvelopeConfig()  # config/sim.yaml states the documented defaults
    good = [_record(0, [0.03, 0.03, -0.02, 0.1, 0.1, 0.1, 1.0]), _record(1, [0, 0, 0, 0, 0, 0, 0])]
    assert envelope_violations(good, env) == []
    rot = Rotation.from_rotvec([0.2, 0.0, 0.0]).as_rotvec()
    bad = [_record(2, [0.04, 0.04, 0.0, 0, 0, 0, 0.5]),                       # 5.7 cm step
           _record(3, [0.0, 0.0, 0.0, *(rot * 1.5), 0.0]),                    # 0.3 rad
           _record(4, [0.0, 0.0, 0.0, 0, 0, 0, 1.2]),                         # gripper
           _record(5, [0.0, 0.0, 0.01, 0, 0, 0, 0], tcp=(0.4, 0.0, 0.595)),   # target z 0.605 > 0.6
           _record(6, [0.01, 0.0, 0.0, 0, 0, 0, 0], target=(0.45, 0.0, 0.3)),  # target is not TCP + final
           _record(7, [np.nan, 0, 0, 0, 0, 0, 0])]
    found = envelope_violations(bad, env)
    for step, text in ((2, "translation step"), (3, "rotation step"), (4, "gripper"), (5, "outside the box"),
                       (6, "!= TCP"), (7, "not finite")):
        assert any(f.startswith(f"step {step}:") and text in f for f in found), (step, found)


def test_small_checkpoints_load_like_the_nodes_load_them(tmp_path):
    base = make_base_checkpoint(tmp_path / "base", demos=1, epochs=2)
    residual = make_residual_checkpoint(tmp_path / "residual")
    policy = BasePolicy.from_checkpoint(base)
    assert policy.execute_steps == 8 and json.loads(base.with_suffix(".json").read_text())["kind"] == "base"
    res = ResidualPolicy.from_checkpoint(residual, expected_task="cube_lift",
                                         expected_layout=layout_for_task("cube_lift"))
    out = res(np.random.default_rng(0).normal(size=(5, res.obs_dim)))
    assert np.all(np.abs(out) <= DEFAULT_RESIDUAL_SCALE + 1e-9) and np.abs(out).max() > 1e-3


def test_graph_commands_match_the_supervisor(tmp_path):
    cmds = graph_commands(tmp_path, "cube_lift", "/x/res", "/x/base", {"sim": {"max_steps": 7}})
    assert list(cmds) == ["sim", "pose_estimator", "base", "residual", "arbiter"]
    assert cmds["base"][-2:] == ["-r", "/objects/poses:=/sim/object_poses_gt"]
    sim_params = (tmp_path / "sim.yaml").read_text()
    assert "max_steps: 7" in sim_params and "lockstep_pose_topic: /objects/poses" in sim_params
    assert pytest.importorskip("yaml").safe_load((tmp_path / "residual.yaml").read_text())["residual"][
        "ros__parameters"]["checkpoint"] == "/x/res"


def offline_lockstep_episode(task: str, seed: int, base_checkpoint: Path, residual_checkpoint: Path | None,
                             max_steps: int = 0) -> list[StepRecord]:
    """What the lockstep graph must do for one episode, computed by the trainer's one closed loop
    (trainer.closed_loop.ClosedLoop: the base chunk runner, the residual on the true poses, the action pipeline with
    the arbiter's configuration from config/sim.yaml and the checkpoint's residual bound, one sim env)."""
    from trainer.closed_loop import ClosedLoop
    from trainer.franka_backend import FrankaSimBackend

    arbiter_cfg = graph_arbiter_config(residual_checkpoint or SHIPPED / "residual" / task)
    residual = None
    if residual_checkpoint is not None:
        residual = ResidualPolicy.from_checkpoint(residual_checkpoint, expected_task=task,
                                                  expected_layout=layout_for_task(task))
    backend = FrankaSimBackend(task, 1, seed=0)
    loop = ClosedLoop(backend, BasePolicy.from_checkpoint(base_checkpoint), arbiter_cfg.pipeline,
                      compose_from=arbiter_cfg.compose_from)
    loop.reset([seed])
    out = []
    for t in range(max_steps or backend.horizon):
        tcp_pos = loop.state.tcp_pos[0].copy()
        seen = loop.observe()
        res = None if residual is None else residual(seen.residual_obs)
        step = loop.step(seen.base, res)
        p = step.pipeline.row(0)
        out.append(StepRecord(step=t, base=seen.base[0], residual=p.residual, final=p.action,
                              status="ok" if residual is not None else "disabled", clipped=p.clipped,
                              clip_reasons=p.reasons, target_pos=p.target_pos, target_quat=p.target_quat,
                              tcp_pos=tcp_pos))
        if step.result.success[0]:
            break
    backend.close()
    return out


def compare_with_eval(graph_episodes: list[dict], success: np.ndarray, steps: np.ndarray, seeds: list[int],
                      steps_tolerance: int = 0) -> list[str]:
    """Per seed, the graph's episode (results.json "episodes" of one phase) against residual-eval's (success,
    steps_to_success); both sides run the same action pipeline, envelope included, so every seed is compared.
    Steps to success may differ by ``steps_tolerance``. Returns the disagreements."""
    bad = []
    for i, seed in enumerate(seeds):
        ep = next(e for e in graph_episodes if e["seed"] == seed)
        eval_steps = int(steps[i]) if success[i] else None
        graph_steps = ep["steps"] if ep["success"] else None
        same_steps = (eval_steps is None and graph_steps is None) or (
            eval_steps is not None and graph_steps is not None and abs(eval_steps - graph_steps) <= steps_tolerance)
        if bool(success[i]) != ep["success"] or not same_steps:
            graph = f"success in {ep['steps']} steps" if ep["success"] else "failure"
            other = f"success in {steps[i]} steps" if success[i] else "failure"
            bad.append(f"seed {seed}: graph {graph}, residual-eval {other}")
    return bad
