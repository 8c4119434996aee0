"""The perception model fitted to the camera estimator (trainer.perception_model, residual-perception)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from trainer.camera_log import LOG_COLUMNS, CameraLog
from trainer.perception_cli import main as perception_main
from trainer.perception_cli import parse_seeds, sim_camera_positions
from trainer.perception_geometry import (
    arm_link_origins,
    cells,
    grasped,
    n_cells,
    occluder_spheres,
    occlusion_clearance,
)
from trainer.perception_model import FittedPerception, PerceptionModelParams, compare, fit, model_on_log
from trainer.sim_backend import BatchState

CAMS = sim_camera_positions()
HOME_Q = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
DOWN = Rotation.from_euler("x", 180, degrees=True).as_quat()  # tool axis pointing down (-z)


def synthetic_log(episodes=40, steps=60, seed=0, bias=(0.002, -0.001, 0.0), ep_std=0.0015, step_std=0.0008,
                  rate_free=0.95, rate_grasped=0.3) -> CameraLog:
    """A log whose estimator misses depend on being grasped and whose errors have a known bias, per-episode offset
    and per-step spread."""
    rng = np.random.default_rng(seed)
    rows = {k: [] for k in CameraLog.__dataclass_fields__}
    for e in range(episodes):
        obj = np.array([0.5 + rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1), 0.03])
        offset = np.asarray(bias) + rng.standard_normal(3) * ep_std
        for t in range(steps):
            g = t >= steps // 2  # second half grasped: the TCP on the object, the gripper closed
            tcp = obj + (np.zeros(3) if g else np.array([0.0, 0.0, 0.25 - 0.008 * t]))
            det = rng.random() < (rate_grasped if g else rate_free)
            rows["task"].append("cube_lift")
            rows["episode"].append(e)
            rows["step"].append(t)
            rows["object"].append("cube")
            rows["true_pos"].append(obj)
            rows["true_quat"].append([0.0, 0.0, 0.0, 1.0])
            rows["tcp_pos"].append(tcp)
            rows["tcp_quat"].append(DOWN)
            rows["gripper_width"].append(0.05 if g else 0.08)
            rows["joint_pos"].append(HOME_Q)
            rows["detected"].append(det)
            rows["est_pos"].append(obj + offset + rng.standard_normal(3) * step_std if det else np.zeros(3))
            q = (Rotation.from_rotvec(rng.standard_normal(3) * 0.01) * Rotation.identity()).as_quat()
            rows["est_quat"].append(q if det else np.zeros(4))
    return CameraLog(**{k: np.array(v) for k, v in rows.items()})


def test_the_arm_spheres_follow_the_published_kinematics():
    from franka_sim.robot import FLANGE_D, TCP_OFFSET, forward_kinematics

    rng = np.random.default_rng(0)
    q = HOME_Q + rng.uniform(-0.5, 0.5, (5, 7))
    origins = arm_link_origins(q)
    for i in range(5):
        tcp = forward_kinematics(q[i])
        flange_origin = tcp[:3, 3] - (FLANGE_D + TCP_OFFSET) * tcp[:3, 2]
        assert np.allclose(origins[i, 7], flange_origin, atol=1e-9)
        assert np.allclose(origins[i, 1], [0.0, 0.0, 0.333])


def test_a_cube_behind_the_hand_or_arm_is_hidden_and_one_far_from_them_is_clear():
    cam = np.array(CAMS[0])
    obj = np.array([[[0.5, 0.0, 0.03], [0.5, 0.3, 0.03]]])
    # the TCP on the ray from the camera to the first cube, 15 cm in front of it
    ray = (obj[0, 0] - cam) / np.linalg.norm(obj[0, 0] - cam)
    tcp = (obj[0, 0] - 0.15 * ray)[None]
    tool = Rotation.align_vectors([ray], [[0.0, 0.0, 1.0]])[0].as_quat()[None]
    spheres = occluder_spheres(HOME_Q[None], tcp, tool)
    hand_only = (spheres[0][:, -2:], spheres[1][-2:])
    c = occlusion_clearance(obj, hand_only, cam)
    assert c[0, 0] < 0 and c[0, 1] > 1.5
    # the hand behind the object (seen from this camera) does not hide it
    behind = (obj[0, 0] + 0.15 * ray)[None]
    far_hand = occluder_spheres(HOME_Q[None], behind, tool)
    assert occlusion_clearance(obj, (far_hand[0][:, -2:], far_hand[1][-2:]), cam)[0, 0] == 10.0
    # an arm sphere (the elbow) placed on the ray hides the cube too
    elbow = (np.array([[obj[0, 0] - 0.3 * ray]]), np.array([0.07]))
    assert occlusion_clearance(obj, elbow, cam)[0, 0] < 0
    idx = cells(obj, np.tile([0.0, 0.0, 0.0, 1.0], (1, 2, 1)), tcp, tool, np.array([0.08]), HOME_Q[None], CAMS)
    assert idx.shape == (1, 2) and np.all((0 <= idx) & (idx < n_cells(2))) and idx[0, 0] != idx[0, 1]


def test_the_fit_recovers_the_rates_and_errors_it_was_made_from():
    log = synthetic_log()
    params = fit(log, CAMS)
    m = params.objects["cube_lift/cube"]
    for e in (m.errors["far"], m.errors["grasped"], m.errors["any"]):
        assert np.allclose(e.bias, (0.002, -0.001, 0.0), atol=0.0008), e.bias
        assert np.allclose(e.step_std, 0.0008, rtol=0.2), e.step_std
        assert np.allclose(e.episode_std, 0.0015, rtol=0.45), e.episode_std
        assert e.outlier_fraction < 0.03  # Gaussian: (nearly) no tail
    g = grasped(log.true_pos[:, None], log.tcp_pos, log.gripper_width)[:, 0]
    cell = cells(log.true_pos[:, None], log.true_quat[:, None], log.tcp_pos, log.tcp_quat, log.gripper_width,
                 log.joint_pos, CAMS)[:, 0]
    rate = np.asarray(m.detect_rate)
    assert abs(np.average(rate[cell[g]]) - 0.3) < 0.05 and abs(np.average(rate[cell[~g]]) - 0.95) < 0.03
    # and the model reproduces them on held-out episodes (another seed)
    held_out = synthetic_log(seed=1)
    rows = compare(held_out, model_on_log(held_out, params, seed=3))
    by_phase = {r["phase"]: r for r in rows}
    assert abs(by_phase["grasped"]["dropout_model"] - by_phase["grasped"]["dropout_estimator"]) < 0.06
    assert abs(by_phase["far"]["dropout_model"] - by_phase["far"]["dropout_estimator"]) < 0.04
    for q in (50, 90):
        est, mod = by_phase["grasped"][f"pos_p{q}_mm_estimator"], by_phase["grasped"][f"pos_p{q}_mm_model"]
        assert abs(mod - est) / est < 0.3, (q, est, mod)


def test_the_model_as_a_perception_model_is_seeded_and_absent_poses_are_zero():
    params = fit(synthetic_log(episodes=10), CAMS)
    s = BatchState(obj_pos=np.tile([0.5, 0.0, 0.03], (4, 1, 1)), obj_quat=np.tile([0.0, 0.0, 0.0, 1.0], (4, 1, 1)),
                   joint_pos=np.tile(HOME_Q, (4, 1)), joint_vel=np.zeros((4, 7)), gripper_width=np.full(4, 0.05),
                   tcp_pos=np.tile([0.5, 0.0, 0.03], (4, 1)), tcp_quat=np.tile(DOWN, (4, 1)))
    runs = []
    for _ in range(2):
        model = FittedPerception(params, ["cube"], seed=11)
        model.reset(4)
        runs.append([model.view(s) for _ in range(30)])
    for (p1, q1, m1), (p2, q2, m2) in zip(*runs, strict=True):
        assert np.array_equal(p1, p2) and np.array_equal(q1, q2) and np.array_equal(m1, m2)
    pos, quat, present = np.concatenate([r[0] for r in runs[0]]), np.concatenate([r[1] for r in runs[0]]), \
        np.concatenate([r[2] for r in runs[0]])
    assert 0.1 < present.mean() < 0.6  # grasped: detected about 0.3 of the time
    assert np.all(pos[~present] == 0) and np.all(quat[~present] == 0)
    err = np.linalg.norm(pos[present] - [0.5, 0.0, 0.03], axis=-1)
    assert err.max() < 0.02 and err.mean() > 0.0005
    with pytest.raises(ValueError, match="no fit for"):
        FittedPerception(params, ["cup"])


def test_latency_shows_the_state_of_steps_ago():
    params = fit(synthetic_log(episodes=10, rate_free=1.0, rate_grasped=1.0, step_std=0.0, ep_std=0.0,
                               bias=(0, 0, 0)), CAMS, latency_steps=2)
    model = FittedPerception(params, ["cube"], seed=0)
    model.reset(1)
    seen = []
    for t in range(5):
        x = 0.4 + 0.01 * t
        s = BatchState(obj_pos=np.array([[[x, 0.0, 0.03]]]), obj_quat=np.array([[[0.0, 0.0, 0.0, 1.0]]]),
                       joint_pos=HOME_Q[None], joint_vel=np.zeros((1, 7)), gripper_width=np.array([0.08]),
                       tcp_pos=np.array([[x, 0.0, 0.3]]), tcp_quat=DOWN[None])
        seen.append(model.view(s)[0][0, 0, 0])
    assert np.allclose(seen, [0.40, 0.40, 0.40, 0.41, 0.42], atol=1e-4), seen


def test_camera_logs_round_trip_through_csv_and_bad_files_are_refused(tmp_path):
    log = synthetic_log(episodes=2, steps=5)
    path = tmp_path / "log.csv"
    log.to_csv(path)
    back = CameraLog.from_csv(path)
    assert np.array_equal(back.detected, log.detected) and np.allclose(back.true_pos, log.true_pos, atol=1e-6)
    assert list(back.task) == list(log.task)
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a camera log"):
        CameraLog.from_csv(tmp_path / "bad.csv")
    lines = path.read_text().splitlines()
    (tmp_path / "short.csv").write_text("\n".join([lines[0], lines[1], "cube_lift,0,1"]) + "\n")
    with pytest.raises(ValueError, match="line"):
        CameraLog.from_csv(tmp_path / "short.csv")
    broken = lines[1].replace("cube_lift,0,0,cube,", "cube_lift,0,0,cube,x")
    (tmp_path / "nan.csv").write_text("\n".join([lines[0], broken]) + "\n")
    with pytest.raises(ValueError, match="not a number"):
        CameraLog.from_csv(tmp_path / "nan.csv")
    assert LOG_COLUMNS[0] == "task" and len(LOG_COLUMNS) == 34


def test_the_cli_fits_and_checks_and_refuses_bad_input(tmp_path, capsys):
    synthetic_log(seed=0).to_csv(tmp_path / "fit.csv")
    synthetic_log(seed=1, episodes=10).to_csv(tmp_path / "check.csv")
    assert perception_main(["fit", "--log", str(tmp_path / "fit.csv"), "--out", str(tmp_path / "m.json")]) == 0
    params = PerceptionModelParams.load(tmp_path / "m.json")
    assert params.fitted_from["episodes"] == 40 and len(params.camera_positions) == 2
    assert perception_main(["check", "--log", str(tmp_path / "check.csv"), "--model", str(tmp_path / "m.json"),
                            "--json-out", str(tmp_path / "c.json"), "--png-out", str(tmp_path / "c.png")]) == 0
    rows = json.loads((tmp_path / "c.json").read_text())["rows"]
    assert {r["phase"] for r in rows} == {"far", "near", "grasped"} and (tmp_path / "c.png").stat().st_size > 1000
    summary = json.loads((tmp_path / "c.json").read_text())["summary"]
    assert summary["rows"] == 3 and summary["dropout"]["judged"] == 3
    assert summary["dropout"]["in_interval"] >= 2  # the model was fitted to the process the check log comes from
    assert "| cube_lift | cube | grasped |" in capsys.readouterr().out
    assert perception_main(["fit", "--log", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "x.json")]) == 2
    assert "no camera log" in capsys.readouterr().err
    data = json.loads((tmp_path / "m.json").read_text())
    data["version"] = 99
    (tmp_path / "old.json").write_text(json.dumps(data))
    assert perception_main(["check", "--log", str(tmp_path / "check.csv"), "--model", str(tmp_path / "old.json")]) == 2
    assert "version" in capsys.readouterr().err


def test_parse_seeds():
    assert parse_seeds("100-102,7") == [100, 101, 102, 7]
    for bad in ("", "5-3", "a"):
        with pytest.raises(ValueError):
            parse_seeds(bad)


def test_record_logs_every_image_of_a_camera_path_episode_with_its_true_state():
    """``residual-perception record``: one row per image and object, the estimator's poses as published (close to
    the truth when detected), the true state of the step the image was rendered from."""
    from residual_core.checkpoint import default_base_checkpoint
    from residual_learning.base_policy import BasePolicy
    from trainer.perception_cli import record_task

    log, outcome = record_task("pick_place", [3], BasePolicy.from_checkpoint(default_base_checkpoint()))
    steps = sorted(set(log.step.tolist()))
    assert steps == list(range(len(steps))) and len(steps) > 20
    assert len(log) == 2 * len(steps) and set(log.object.tolist()) == {"cube", "target"}
    assert outcome["task"] == "pick_place" and outcome["seeds"] == [3]
    pos_err, _ = log.errors()
    det = log.detected
    assert 0.3 < det.mean() <= 1.0
    assert np.nanmedian(np.linalg.norm(pos_err[det], axis=1)) < 0.005
    # "detected": published with at least the residual's min_confidence (a low-confidence pose is a miss too)
    assert not np.any(det & np.all(log.est_quat == 0, axis=1)) and (~det).any()
    cube = log.object == "cube"
    assert np.allclose(log.true_pos[cube][0, 2], log.true_pos[cube][1, 2], atol=1e-3)  # resting at the start


@pytest.mark.parametrize("sub, options", [("record", ["--out", "--task", "--seeds", "--base-checkpoint",
                                                      "--one-camera"]),
                                          ("fit", ["--log", "--out", "--latency-steps", "--camera-positions"]),
                                          ("check", ["--log", "--model", "--repeats", "--min-images", "--json-out",
                                                     "--png-out"])])
def test_help_explains_every_option(sub, options, capsys):
    with pytest.raises(SystemExit) as exit_info:
        perception_main([sub, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in options:
        assert option in text, f"{sub} --help lacks {option}"


def test_each_task_gets_its_own_fit_and_other_tasks_a_fallback():
    a = synthetic_log(episodes=6, rate_grasped=0.2)
    b = synthetic_log(episodes=6, seed=5, rate_grasped=0.8)
    b.task = np.full(len(b), "pick_place")
    params = fit(CameraLog.concat([a, b]), CAMS)
    assert {"cube", "cube_lift/cube", "pick_place/cube"} <= set(params.objects)
    assert FittedPerception(params, ["cube"], task="cube_lift").keys == ("cube_lift/cube",)
    assert FittedPerception(params, ["cube"], task="stack_cube").keys == ("cube",)  # over both tasks
    one = fit(a, CAMS)
    assert "cube" not in one.objects and FittedPerception(one, ["cube"], task="stack_cube").keys == ("cube_lift/cube",)
    rows = {r["task"]: r for r in compare(CameraLog.concat([a, b]),
                                          model_on_log(CameraLog.concat([a, b]), params, repeats=5))
            if r["phase"] == "grasped"}
    assert rows["cube_lift"]["dropout_model"] > 0.6 and rows["pick_place"]["dropout_model"] < 0.35


def test_the_shipped_model_covers_every_task_with_its_own_fit():
    from residual_core.checkpoint import checkpoint_root
    from residual_core.tasks import TASK_OBJECTS

    params = PerceptionModelParams.load(checkpoint_root() / "perception" / "camera.json")
    assert params.latency_steps == 0 and len(params.camera_positions) == 2
    for task, objects in TASK_OBJECTS.items():
        model = FittedPerception(params, objects, seed=0, task=task)
        assert model.keys == tuple(f"{task}/{o}" for o in objects)
