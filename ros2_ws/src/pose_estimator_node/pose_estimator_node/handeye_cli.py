"""``residual-handeye``: hand-eye calibration of the camera against the FR3 (docs/HANDEYE.md).

Collects N pairs (TCP pose, calibration board pose in the camera) over well-spread arm poses, solves
AX = XB / AX = ZB (pose_estimator_node.handeye), prints per-pose residuals and the result, and writes a JSON file
with the result, the residuals and the raw pairs.

  --motion twin    moves the arm itself: publishes each target on the tracking controller's topic (the franka twin,
                   started with calibration_board:=true for eye-to-hand) and waits until the TCP settles.
  --motion manual  the real robot: prints where to move the arm (guiding mode) for each pose and waits for Enter.
  --from-pairs F   no ROS: solve again from the pairs of an earlier run's JSON.

eye_to_hand (camera fixed, board on the hand) prints the ``hand_eye`` value the launch takes (camera colour optical
frame in fr3_link0: ``residual-launch --mode real --hand-eye X Y Z QX QY QZ QW`` / ``hand_eye:=...``).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import tyro
from residual_core.markers import CALIBRATION_BOARD_FIRST_ID, calibration_board
from residual_ros import franka_interfaces as fi

from pose_estimator_node import handeye as he

PREFIX = "[residual-handeye]"
EXIT_REFUSED = 3
"""Exit status when the solver refuses the data (too few or degenerate poses)."""


@dataclass(frozen=True)
class HandEyeArgs:
    """Options of residual-handeye."""

    setup: Literal["eye_to_hand", "eye_in_hand"] = "eye_to_hand"
    """eye_to_hand: camera fixed in the base frame, board on the hand (solves base->camera, and hand->board);
    eye_in_hand: camera on the hand, board fixed (solves hand->camera, and base->board)."""
    motion: Literal["twin", "manual"] = "manual"
    """twin: publish each pose on the controller's target topic and wait until the TCP settles; manual: print where
    to move the arm and wait for Enter (the real robot, moved by hand in guiding mode)."""
    from_pairs: Path | None = None
    """Solve from the pairs saved in an earlier run's output JSON instead of collecting (no ROS)."""
    poses: int = 15
    """Poses to visit (the first is the centre; poses where the board is not seen are skipped)."""
    center: Annotated[tuple[float, float, float] | None, tyro.conf.arg(metavar="X Y Z")] = None
    """TCP position (m, fr3_link0) the poses spread around; None: where the TCP is at the start. The orientation is
    always the starting one."""
    max_offset_m: float = 0.1
    """Largest position offset from the centre per axis (m; half of it in z)."""
    max_angle_deg: float = 30.0
    """Largest rotation from the starting orientation (deg), about tool axes that change from pose to pose."""
    max_yaw_deg: float = 20.0
    """Largest rotation about the tool z axis (deg): a board beside the hand turns away from the camera fastest
    about it."""
    seed: int = 0
    """Seed of the pose offsets and angles."""
    tcp_topic: str = fi.CURRENT_POSE.name
    """Measured TCP pose (PoseStamped in fr3_link0): franka's state broadcaster (best effort), or /tcp_pose."""
    image_topic: str = fi.COLOR_IMAGE.name
    """Colour image."""
    info_topic: str = fi.COLOR_INFO.name
    """Its CameraInfo (intrinsics, distortion)."""
    target_topic: str = fi.TRACKING_CONTROLLER.target.name
    """--motion twin: the tracking controller's target topic."""
    frames_per_pose: int = 3
    """Images per pose, after the TCP settled; the board pose is their mean."""
    settle_window_s: float = 0.5
    """The TCP has settled when it moved less than settle_pos_mm / settle_rot_deg over this long."""
    settle_pos_mm: float = 0.3
    """Settled: largest TCP movement over the window (mm)."""
    settle_rot_deg: float = 0.05
    """Settled: largest TCP rotation over the window (deg)."""
    pose_timeout_s: float = 20.0
    """Give up on a pose (skip it) when it has not settled / the board was not seen within this long."""
    min_markers: int = 2
    """Board markers an image must show to be used."""
    board_cols: int = 3
    """Calibration board: markers across (residual_core.markers.calibration_board)."""
    board_rows: int = 2
    """Markers down."""
    marker_size_m: float = 0.045
    """Side of each black marker square as printed (m)."""
    plate_size_m: float = 0.06
    """Pitch of the markers (marker + quiet zone, m)."""
    board_first_id: int = CALIBRATION_BOARD_FIRST_ID
    """Id of the top-left marker (DICT_4X4_50); the others follow row by row."""
    min_pairs: int = 8
    """Refuse with fewer usable poses."""
    min_rotation_spread_deg: float = 4.0
    """Refuse unless the poses' relative rotations spread this much about a second axis (RMS, deg)."""
    position_sigma_mm: float = 1.5
    """Board position noise the refinement assumes (mm)."""
    rotation_sigma_deg: float = 0.3
    """Board orientation noise the refinement assumes (deg)."""
    loss: Literal["linear", "soft_l1", "huber", "cauchy"] = "soft_l1"
    """The refinement's loss on the sigma-weighted residuals: linear is plain least squares; the robust ones let a
    misread board pose weigh less (docs/HANDEYE.md)."""
    reject_outliers: bool = False
    """Drop the poses flagged as outliers and solve again (once)."""
    truth: Annotated[tuple[float, float, float, float, float, float, float] | None,
                     tyro.conf.arg(metavar="X Y Z QX QY QZ QW")] = None
    """A known camera pose (e.g. the twin's camera_extrinsic) to report the calibration's error against."""
    output: Path = Path("handeye.json")
    """Where to write the result, the residuals and the pairs."""
    print_board: Path | None = None
    """Write a printable PNG of the board (10 px per mm) to this file and exit."""
    yes: bool = False
    """--motion manual: do not wait for Enter (take each pose as soon as the TCP settled; for scripted tests)."""

    def __post_init__(self) -> None:
        if self.poses < 3 or self.frames_per_pose < 1 or self.min_markers < 1:
            raise ValueError(f"need poses >= 3, frames_per_pose >= 1, min_markers >= 1, got {self.poses}, "
                             f"{self.frames_per_pose}, {self.min_markers}")
        for name in ("settle_window_s", "settle_pos_mm", "settle_rot_deg", "pose_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        self.board()  # checks the board layout
        self.solver()

    def board(self):
        return calibration_board(self.board_cols, self.board_rows, self.marker_size_m, self.plate_size_m,
                                 self.board_first_id)

    def solver(self) -> he.SolverConfig:
        return he.SolverConfig(min_pairs=self.min_pairs, min_rotation_spread_deg=self.min_rotation_spread_deg,
                               position_sigma_mm=self.position_sigma_mm, rotation_sigma_deg=self.rotation_sigma_deg,
                               loss=self.loss, reject_outliers=self.reject_outliers)


def report(result: he.HandEyeResult, truth: np.ndarray | None) -> dict:
    """Print the residual table and the result; returns the summary (plus the error against ``truth``)."""
    summary = result.summary()
    print(f"{PREFIX} residuals per pose (board pose in the camera: measured vs predicted):")
    print("   pose   pos (mm)   rot (deg)")
    for r in result.residuals:
        flag = " OUTLIER" if r.outlier else ""
        flag += " (dropped)" if not r.used else ""
        print(f"   {r.index:4d}   {r.position_mm:8.2f}   {r.rotation_deg:9.3f}{flag}")
    pos, rot = summary["residual_position_mm"], summary["residual_rotation_deg"]
    print(f"{PREFIX} {summary['pairs_used']}/{summary['pairs']} poses used; residual RMS {pos['rms']:.2f} mm, "
          f"{rot['rms']:.3f} deg (max {pos['max']:.2f} mm, {rot['max']:.3f} deg); rotation spread "
          f"{' / '.join(f'{v:.1f}' for v in summary['rotation_spread_deg'])} deg")
    if result.message:
        print(f"{PREFIX} {result.message}")
    if summary["outliers"]:
        print(f"{PREFIX} outlier pose(s) {summary['outliers']}: check the board was fully visible and the arm still "
              "(--reject-outliers drops them)")
    if truth is not None:
        pos_mm, rot_deg = he.transform_error(result.camera, truth)
        summary["error_vs_truth"] = {"position_mm": pos_mm, "rotation_deg": rot_deg}
        print(f"{PREFIX} error against --truth: {pos_mm:.2f} mm, {rot_deg:.3f} deg")
    values = " ".join(f"{v:.6f}" for v in result.hand_eye())
    print(f"{PREFIX} {summary['hand_eye_frames']}: {values}")
    if result.setup == "eye_to_hand":
        print(f"{PREFIX} use it as: residual-launch --mode real --hand-eye {values}   "
              f"(ros2 launch ... hand_eye:=\"[{values.replace(' ', ', ')}]\")")
    else:
        print(f"{PREFIX} (eye_in_hand: the camera's pose on the TCP; the launch's hand_eye is a fixed camera's pose)")
    return summary


def write_board_png(path: Path, args: HandEyeArgs, px_per_mm: float = 10.0) -> None:
    import cv2

    plate = int(round(args.plate_size_m * 1e3 * px_per_mm))
    marker = int(round(args.marker_size_m * 1e3 * px_per_mm))
    margin = (plate - marker) // 2
    img = np.full((args.board_rows * plate, args.board_cols * plate), 255, dtype=np.uint8)
    dictionary = cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_4X4_50)
    for k, spec in enumerate(args.board()):
        r, c = divmod(k, args.board_cols)
        y, x = r * plate + margin, c * plate + margin
        img[y:y + marker, x:x + marker] = cv2.aruco.generateImageMarker(dictionary, spec.marker_id, marker)
    cv2.imwrite(str(path), img)


def solve_and_write(args: HandEyeArgs, tcp: list[np.ndarray], boards: list[np.ndarray], meta: dict) -> int:
    truth = None if args.truth is None else he.pose_matrix(args.truth[:3], args.truth[3:])
    try:
        result = he.solve(args.setup, tcp, boards, args.solver())
    except he.HandEyeError as exc:
        print(f"{PREFIX} refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    summary = report(result, truth)
    summary["pairs_data"] = [{"tcp": [*map(float, he.matrix_pose(A)[0]), *map(float, he.matrix_pose(A)[1])],
                              "board_in_camera": [*map(float, he.matrix_pose(B)[0]),
                                                  *map(float, he.matrix_pose(B)[1])]}
                             for A, B in zip(tcp, boards, strict=True)]
    summary["collection"] = meta
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=1))
    print(f"{PREFIX} wrote {args.output}")
    return 0


def load_pairs(path: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    data = json.loads(Path(path).read_text())
    pairs = data.get("pairs_data")
    if not pairs:
        raise ValueError(f"{path} has no pairs_data (not a residual-handeye output?)")
    tcp = [he.pose_matrix(p["tcp"][:3], p["tcp"][3:]) for p in pairs]
    boards = [he.pose_matrix(p["board_in_camera"][:3], p["board_in_camera"][3:]) for p in pairs]
    return tcp, boards


def main(argv: list[str] | None = None) -> int:
    try:
        args = tyro.cli(HandEyeArgs, args=argv, prog="residual-handeye", description=__doc__)
    except ValueError as exc:
        print(f"{PREFIX} {exc}", file=sys.stderr)
        return 2
    if args.print_board is not None:
        write_board_png(args.print_board, args)
        width, height = args.board_cols * args.plate_size_m * 100, args.board_rows * args.plate_size_m * 100
        print(f"{PREFIX} wrote {args.print_board}: print it at 10 px/mm ({width:.0f} x {height:.0f} cm) and check "
              "the printed marker side is "
              f"{args.marker_size_m * 1e3:g} mm")
        return 0
    if args.from_pairs is not None:
        try:
            tcp, boards = load_pairs(args.from_pairs)
        except (OSError, ValueError, KeyError) as exc:
            print(f"{PREFIX} {exc}", file=sys.stderr)
            return 2
        return solve_and_write(args, tcp, boards, {"from_pairs": str(args.from_pairs)})
    from pose_estimator_node.handeye_collect import collect

    t0 = time.monotonic()
    from rclpy.executors import ExternalShutdownException

    try:
        tcp, boards, meta = collect(args)
    except (KeyboardInterrupt, ExternalShutdownException):
        print(f"{PREFIX} interrupted: nothing solved or written", file=sys.stderr)
        return 130
    meta["seconds"] = time.monotonic() - t0
    return solve_and_write(args, tcp, boards, meta)


if __name__ == "__main__":
    sys.exit(main())
