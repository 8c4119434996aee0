"""Hand-eye calibration on the franka twin against a hidden camera pose: for each seed, start the twin with the
calibration board on the hand (calibration_board:=true) and its camera at ``twin_episodes.camera_extrinsic(seed)``,
run ``residual-handeye --motion twin``, and report the error of the result against that pose (docs/HANDEYE.md).

  .venv/bin/python tools/handeye_twin.py --seeds 0 1 2 --out /tmp/handeye_twin
  .venv/bin/python tools/handeye_twin.py --seeds 63:0 12:5 --out /tmp/handeye_twin   # camera seed : pose seed

A seed alone also picks the collection poses (``residual-handeye --seed``); CAMERA:POSES picks them apart
(tests/test_handeye_twin.py uses camera seed % 7 for the poses). Each run takes ~1-2 minutes (15 poses, real time).
Exit status 1 if any run fails or misses --tol-mm / --tol-deg.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))

import rostest_utils as ru  # noqa: E402
import twin_episodes as te  # noqa: E402

TWIN_CENTER = (0.5, 0.12, 0.22)
"""TCP centre of the collection poses on the twin: the hand-mounted board is then near the middle of the image."""


def twin_args(extrinsic: list[float], camera_rate_hz: float = 10.0) -> list[str]:
    params = ["calibration_board:=true", f"camera_extrinsic:={list(extrinsic)}", "law:=impedance",
              f"camera_rate_hz:={camera_rate_hz}"]
    return ["--ros-args", *(a for p in params for a in ("-p", p))]


def handeye_command(extrinsic: list[float], output: Path, poses: int = 15, seed: int = 0) -> list[str]:
    exe = str(Path(sys.executable).parent / "residual-handeye")
    return [exe, "--motion", "twin", "--setup", "eye_to_hand", "--poses", str(poses), "--seed", str(seed),
            "--center", *map(str, TWIN_CENTER), "--truth", *map(str, extrinsic), "--output", str(output)]


def parse_seed(text: str) -> tuple[int, int]:
    """``"63"`` -> (63, 63); ``"63:0"`` -> camera seed 63, pose seed 0."""
    cam, _, pose = text.partition(":")
    try:
        return int(cam), int(pose or cam)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SEED or CAMERA_SEED:POSE_SEED, got {text!r}") from None


def run_one(seed: int, pose_seed: int, out_dir: Path, env: dict[str, str], poses: int) -> dict:
    extrinsic = te.camera_extrinsic(seed)
    twin = ru.start_node_process([str(Path(sys.executable).parent / "franka-twin-node"), *twin_args(extrinsic)],
                                 env, out_dir, f"twin-{seed}")
    try:
        name = f"{seed}" if pose_seed == seed else f"{seed}-{pose_seed}"
        output = out_dir / f"handeye-{name}.json"
        proc = subprocess.run(handeye_command(extrinsic, output, poses, pose_seed), env=env, text=True,
                              capture_output=True, timeout=900, check=False)
        (out_dir / f"handeye-{name}.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            return {"seed": seed, "pose_seed": pose_seed, "returncode": proc.returncode,
                    "log": (proc.stdout + proc.stderr)[-2000:]}
        result = json.loads(output.read_text())
        return {"seed": seed, "pose_seed": pose_seed, "returncode": 0, "extrinsic": extrinsic,
                "hand_eye": result["hand_eye"], "output": str(output),
                **result["error_vs_truth"], "pairs_used": result["pairs_used"],
                "residual_position_mm_rms": result["residual_position_mm"]["rms"],
                "residual_rotation_deg_rms": result["residual_rotation_deg"]["rms"]}
    finally:
        twin.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=parse_seed, nargs="+", default=[(0, 0)],
                        help="camera_extrinsic seeds, one run each; CAMERA:POSES also sets the collection poses' seed")
    parser.add_argument("--poses", type=int, default=15, help="poses per run")
    parser.add_argument("--out", type=Path, default=None, help="folder for logs and results (default: a temp dir)")
    parser.add_argument("--tol-mm", type=float, default=2.0, help="position error allowed (mm)")
    parser.add_argument("--tol-deg", type=float, default=0.5, help="rotation error allowed (deg)")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="handeye_twin_"))
    out.mkdir(parents=True, exist_ok=True)
    env = ru.ros_test_env(ru.allocate_domain_id(os.getpid()), out / "ros_log")
    rows, ok = [], True
    for seed, pose_seed in args.seeds:
        row = run_one(seed, pose_seed, out, env, args.poses)
        rows.append(row)
        if row["returncode"] != 0:
            ok = False
            print(f"seed {seed}:{pose_seed}: residual-handeye exited {row['returncode']}\n{row['log']}")
            continue
        good = row["position_mm"] <= args.tol_mm and row["rotation_deg"] <= args.tol_deg
        ok &= good
        print(f"seed {seed}:{pose_seed}: error {row['position_mm']:.2f} mm, {row['rotation_deg']:.3f} deg, "
              f"{row['pairs_used']} "
              f"poses, residual RMS {row['residual_position_mm_rms']:.2f} mm / {row['residual_rotation_deg_rms']:.3f}"
              f" deg {'ok' if good else 'MISSED'}", flush=True)
    (out / "summary.json").write_text(json.dumps(rows, indent=1))
    print(f"results in {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
