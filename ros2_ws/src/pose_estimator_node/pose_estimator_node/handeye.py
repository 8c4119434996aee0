"""Hand-eye calibration: the solver and its data (pure: numpy + scipy; no rclpy, no cv2).

Two setups, one equation. Per pose i the robot reports the TCP pose ``A_i`` = T(fr3_link0 <- fr3_hand_tcp) and the
camera sees the calibration board at ``T_cam_board_i`` (both 4x4 homogeneous matrices):

* ``eye_to_hand``: the camera is fixed in the base frame, the board rides on the hand.
  ``A_i X = Z B_i`` with X = T(tcp <- board) (a by-product), Z = T(base <- camera optical frame) (the result: the
  launch's ``hand_eye``), B_i = T_cam_board_i.
* ``eye_in_hand``: the camera rides on the hand, the board is fixed.
  ``A_i X = Z B_i`` with X = T(tcp <- camera) (the result), Z = T(base <- board) (a by-product),
  B_i = inverse(T_cam_board_i).

Solution (:func:`solve`), written for this project (the pinned OpenCV 5 wheel has no ``calibrateHandEye``):

1. Closed form from relative motions. For every pair (i, j): C = A_j^-1 A_i and D = B_j^-1 B_i satisfy C X = X D
   (AX = XB). Rotations: the rotation vectors satisfy c = R_X d (Park and Martin's observation); R_X is the rotation
   that best maps all d onto all c (the SVD solution of the orthogonal Procrustes problem, over all pairs).
   Translation: (R_C - I) t_X = R_X t_D - t_C, stacked over all pairs, linear least squares.
   Then Z is the mean of A_i X B_i^-1 (rotations: the chordal mean, projected back onto SO(3) by SVD).
2. Nonlinear refinement over all poses (``scipy.optimize.least_squares``) of X and Z together, on the difference
   between the measured board pose in the camera and the one X, Z and A_i predict: position (m) over
   ``position_sigma_mm`` and rotation (rad) over ``rotation_sigma_deg``, so the two are weighed like the estimator's
   noise; with a robust ``loss`` (default soft_l1: quadratic within about one sigma, linear beyond), so one board pose
   misread by a few mm (a corner hidden by the hand; measured on the twin: one pose 3.5 mm off the others' fit moved
   the camera 2.1 mm, 0.8 mm with soft_l1) pulls the solution less than the rest hold it.

Refusals (:class:`HandEyeError`): fewer than ``min_pairs`` poses; rotations that do not pin the solution down (AX = XB
fixes R_X only with relative rotations about at least two different axes, and t_X only then too): the second largest
spread of the relative rotations (RMS over all pairs along the second principal axis) must reach
``min_rotation_spread_deg``. Per pose residuals (position mm, rotation deg) are reported; poses far above the others
are flagged as outliers (and dropped, once, with ``reject_outliers``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

SETUPS = ("eye_to_hand", "eye_in_hand")
LOSSES = ("linear", "soft_l1", "huber", "cauchy")
"""The refinement's losses (scipy.optimize.least_squares names)."""


class HandEyeError(ValueError):
    """The data cannot give a trustworthy calibration (too few poses, too little rotation diversity)."""


# --- poses as 4x4 matrices -----------------------------------------------------------------------------------------
def pose_matrix(pos: Sequence[float], quat_xyzw: Sequence[float]) -> np.ndarray:
    """(4, 4) homogeneous transform from a position and a quaternion x y z w."""
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat(np.asarray(quat_xyzw, dtype=np.float64)).as_matrix()
    T[:3, 3] = np.asarray(pos, dtype=np.float64)
    return T


def matrix_pose(T: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position (3,), quaternion x y z w (4,), w >= 0) of a (4, 4) transform."""
    return np.asarray(T[:3, 3], dtype=np.float64).copy(), Rotation.from_matrix(T[:3, :3]).as_quat(canonical=True)


def invert(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid (4, 4) transform."""
    out = np.eye(4)
    out[:3, :3] = T[:3, :3].T
    out[:3, 3] = -T[:3, :3].T @ T[:3, 3]
    return out


def project_rotation(M: np.ndarray) -> np.ndarray:
    """The rotation matrix nearest (Frobenius) to a (3, 3) matrix."""
    U, _, Vt = np.linalg.svd(M)
    return U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt


def _pose_from_params(p: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = Rotation.from_rotvec(p[:3]).as_matrix()
    T[:3, 3] = p[3:6]
    return T


def _params_from_pose(T: np.ndarray) -> np.ndarray:
    return np.concatenate([Rotation.from_matrix(T[:3, :3]).as_rotvec(), T[:3, 3]])


def _rotation_angle(R: np.ndarray) -> float:
    return float(Rotation.from_matrix(R).magnitude())  # accurate near 0, unlike arccos of the trace


# --- configuration and results -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SolverConfig:
    """How :func:`solve` decides and weighs."""

    min_pairs: int = 8
    """Fewest (TCP pose, board pose) pairs accepted (>= 3; a dozen or more well-spread poses are recommended)."""
    min_rotation_spread_deg: float = 4.0
    """Refuse unless the relative rotations between poses spread at least this much (deg, RMS) along their second
    principal axis: rotations about one axis only leave the solution undetermined."""
    position_sigma_mm: float = 1.5
    """Expected noise of a board position measurement (mm): the refinement's position weight."""
    rotation_sigma_deg: float = 0.3
    """Expected noise of a board orientation measurement (deg): the refinement's rotation weight."""
    outlier_position_mm: float = 5.0
    """A pose's position residual above this and above 3x the median residual flags it an outlier (mm)."""
    outlier_rotation_deg: float = 1.0
    """A pose's rotation residual above this and above 3x the median residual flags it an outlier (deg)."""
    loss: str = "soft_l1"
    """The refinement's loss on the sigma-weighted residuals (scipy.optimize.least_squares, f_scale 1): "linear"
    (plain least squares), "soft_l1", "huber" or "cauchy" (robust: a misread pose weighs less)."""
    reject_outliers: bool = False
    """Solve again without the flagged poses (once; only while min_pairs remain)."""
    refine: bool = True
    """Run the nonlinear refinement after the closed form."""

    def __post_init__(self) -> None:
        if self.min_pairs < 3:
            raise ValueError(f"min_pairs must be >= 3 (two relative motions), got {self.min_pairs}")
        for name in ("position_sigma_mm", "rotation_sigma_deg", "outlier_position_mm", "outlier_rotation_deg"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.min_rotation_spread_deg < 0:
            raise ValueError(f"min_rotation_spread_deg must be >= 0, got {self.min_rotation_spread_deg}")


@dataclass(frozen=True)
class PairResidual:
    """How well pose ``index`` fits the solution: measured vs predicted board pose in the camera frame."""

    index: int
    position_mm: float
    rotation_deg: float
    outlier: bool
    used: bool = True
    """False: dropped as an outlier before the final solve (``reject_outliers``)."""


@dataclass
class HandEyeResult:
    """A solved calibration. Transforms are (4, 4) matrices; see the module docstring for X and Z."""

    setup: str
    camera: np.ndarray
    """eye_to_hand: T(base <- camera optical frame) (the launch's hand_eye); eye_in_hand: T(tcp <- camera)."""
    board: np.ndarray
    """eye_to_hand: T(tcp <- board); eye_in_hand: T(base <- board)."""
    residuals: list[PairResidual]
    rotation_spread_deg: tuple[float, float, float]
    """RMS of the relative rotations along their principal axes (deg), largest first."""
    closed_form_camera: np.ndarray
    """The camera transform before the refinement."""
    refined: bool
    message: str = ""

    def hand_eye(self) -> list[float]:
        """``x y z qx qy qz qw`` of the camera transform (for eye_to_hand the launch's ``--hand-eye`` value)."""
        pos, quat = matrix_pose(self.camera)
        return [*map(float, pos), *map(float, quat)]

    def summary(self) -> dict:
        """Numbers only (JSON / YAML friendly)."""
        used = [r for r in self.residuals if r.used]
        bpos, bquat = matrix_pose(self.board)
        return {
            "setup": self.setup,
            "hand_eye": self.hand_eye(),
            "hand_eye_frames": ("fr3_link0 -> camera_color_optical_frame" if self.setup == "eye_to_hand"
                                else "fr3_hand_tcp -> camera_color_optical_frame"),
            "board": [*map(float, bpos), *map(float, bquat)],
            "board_frames": "fr3_hand_tcp -> board" if self.setup == "eye_to_hand" else "fr3_link0 -> board",
            "pairs": len(self.residuals),
            "pairs_used": len(used),
            "refined": self.refined,
            "rotation_spread_deg": [float(v) for v in self.rotation_spread_deg],
            "residual_position_mm": {"rms": _rms([r.position_mm for r in used]),
                                     "max": max((r.position_mm for r in used), default=0.0)},
            "residual_rotation_deg": {"rms": _rms([r.rotation_deg for r in used]),
                                      "max": max((r.rotation_deg for r in used), default=0.0)},
            "outliers": [r.index for r in self.residuals if r.outlier],
            "per_pair": [asdict(r) for r in self.residuals],
            "message": self.message,
        }


def _rms(values: Sequence[float]) -> float:
    return float(np.sqrt(np.mean(np.square(values)))) if len(values) else 0.0


# --- the solver ----------------------------------------------------------------------------------------------------
def _equation_terms(setup: str, tcp_poses: Sequence[np.ndarray], board_in_camera: Sequence[np.ndarray]):
    """(A_i, B_i) of A_i X = Z B_i for ``setup``."""
    if setup not in SETUPS:
        raise ValueError(f"setup must be one of {SETUPS}, got {setup!r}")
    A = [np.asarray(T, dtype=np.float64) for T in tcp_poses]
    B = [np.asarray(T, dtype=np.float64) for T in board_in_camera]
    if setup == "eye_in_hand":
        B = [invert(T) for T in B]
    return A, B


def rotation_spread_deg(tcp_poses: Sequence[np.ndarray]) -> tuple[float, float, float]:
    """RMS (deg) of the relative rotations between all pairs of TCP poses along their principal axes, largest first.
    The second must be well above zero for a unique solution (rotations about two or more axes)."""
    vecs = [Rotation.from_matrix(tcp_poses[j][:3, :3].T @ tcp_poses[i][:3, :3]).as_rotvec()
            for i, j in itertools.combinations(range(len(tcp_poses)), 2)]
    if not vecs:
        return (0.0, 0.0, 0.0)
    V = np.asarray(vecs)
    eig = np.clip(np.linalg.eigvalsh(V.T @ V / len(V)), 0.0, None)[::-1]
    return tuple(float(np.degrees(np.sqrt(e))) for e in eig)


def closed_form(A: Sequence[np.ndarray], B: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(X, Z) of A_i X = Z B_i from all pairs of relative motions (module docstring, step 1)."""
    pairs = list(itertools.combinations(range(len(A)), 2))
    C = [invert(A[j]) @ A[i] for i, j in pairs]
    D = [invert(B[j]) @ B[i] for i, j in pairs]
    c = np.array([Rotation.from_matrix(T[:3, :3]).as_rotvec() for T in C])
    d = np.array([Rotation.from_matrix(T[:3, :3]).as_rotvec() for T in D])
    R_X = project_rotation(c.T @ d)  # argmax_R sum c_k . R d_k
    lhs = np.concatenate([T[:3, :3] - np.eye(3) for T in C])
    rhs = np.concatenate([R_X @ Dk[:3, 3] - Ck[:3, 3] for Ck, Dk in zip(C, D, strict=True)])
    t_X = np.linalg.lstsq(lhs, rhs, rcond=None)[0]
    X = np.eye(4)
    X[:3, :3], X[:3, 3] = R_X, t_X
    Zs = [Ai @ X @ invert(Bi) for Ai, Bi in zip(A, B, strict=True)]
    Z = np.eye(4)
    Z[:3, :3] = project_rotation(sum(T[:3, :3] for T in Zs))
    Z[:3, 3] = np.mean([T[:3, 3] for T in Zs], axis=0)
    return X, Z


def predicted_board_in_camera(setup: str, tcp_pose: np.ndarray, X: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """T_cam_board that X and Z predict at TCP pose ``tcp_pose`` (B_i = Z^-1 A_i X, inverted for eye_in_hand)."""
    B = invert(Z) @ tcp_pose @ X
    return B if setup == "eye_to_hand" else invert(B)


def pose_errors(measured: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position difference in the camera frame (3,) m, rotation vector of predicted^-1 measured (3,) rad)."""
    dpos = predicted[:3, 3] - measured[:3, 3]
    drot = Rotation.from_matrix(predicted[:3, :3].T @ measured[:3, :3]).as_rotvec()
    return dpos, drot


def refine(setup: str, tcp_poses, board_in_camera, X0: np.ndarray, Z0: np.ndarray, cfg: SolverConfig):
    """(X, Z) minimising the weighted board pose differences over all poses (module docstring, step 2)."""
    w_pos = 1.0 / (cfg.position_sigma_mm * 1e-3)
    w_rot = 1.0 / np.radians(cfg.rotation_sigma_deg)

    def residuals(p):
        X, Z = _pose_from_params(p[:6]), _pose_from_params(p[6:])
        out = []
        for A_i, B_i in zip(tcp_poses, board_in_camera, strict=True):
            dpos, drot = pose_errors(B_i, predicted_board_in_camera(setup, A_i, X, Z))
            out.append(np.concatenate([w_pos * dpos, w_rot * drot]))
        return np.concatenate(out)

    # Levenberg-Marquardt takes only the linear loss; the trust region method takes every one
    sol = least_squares(residuals, np.concatenate([_params_from_pose(X0), _params_from_pose(Z0)]),
                        method="lm" if cfg.loss == "linear" else "trf", loss=cfg.loss, f_scale=1.0, xtol=1e-12,
                        ftol=1e-12)
    return _pose_from_params(sol.x[:6]), _pose_from_params(sol.x[6:])


def _flag(pos_mm: np.ndarray, rot_deg: np.ndarray, cfg: SolverConfig) -> np.ndarray:
    pos_lim = max(cfg.outlier_position_mm, 3.0 * float(np.median(pos_mm)))
    rot_lim = max(cfg.outlier_rotation_deg, 3.0 * float(np.median(rot_deg)))
    return (pos_mm > pos_lim) | (rot_deg > rot_lim)


def _check(tcp_poses, cfg: SolverConfig) -> tuple[float, float, float]:
    n = len(tcp_poses)
    if n < cfg.min_pairs:
        raise HandEyeError(f"too few poses: {n} (need at least {cfg.min_pairs}; collect 12-15 poses spread over "
                           "+-10 cm and up to ~30 deg about different axes)")
    spread = rotation_spread_deg(tcp_poses)
    if spread[1] < cfg.min_rotation_spread_deg:
        raise HandEyeError(
            "poses not spread enough: the relative rotations between poses spread "
            f"{spread[0]:.1f} / {spread[1]:.1f} / {spread[2]:.1f} deg (RMS along their principal axes) and the "
            f"second must reach {cfg.min_rotation_spread_deg:g} deg; rotate the hand about at least two different "
            "axes (e.g. tilt +-20-30 deg about x and y, and turn about z)")
    return spread


def solve(setup: str, tcp_poses: Sequence[np.ndarray], board_in_camera: Sequence[np.ndarray],
          cfg: SolverConfig = SolverConfig()) -> HandEyeResult:
    """Hand-eye calibration from N pairs: ``tcp_poses`` (4, 4) T(base <- tcp) and ``board_in_camera`` (4, 4)
    T(camera optical frame <- board), measured at the same instants. Raises :class:`HandEyeError` on too few or
    degenerate poses."""
    if len(tcp_poses) != len(board_in_camera):
        raise ValueError(f"{len(tcp_poses)} TCP poses but {len(board_in_camera)} board poses")
    A, B = _equation_terms(setup, tcp_poses, board_in_camera)
    meas = [np.asarray(T, dtype=np.float64) for T in board_in_camera]
    spread = _check(A, cfg)
    used = np.ones(len(A), dtype=bool)
    message = ""
    for attempt in range(2):
        idx = np.flatnonzero(used)
        X0, Z0 = closed_form([A[i] for i in idx], [B[i] for i in idx])
        X, Z = (refine(setup, [A[i] for i in idx], [meas[i] for i in idx], X0, Z0, cfg) if cfg.refine
                else (X0, Z0))
        errs = [pose_errors(meas[i], predicted_board_in_camera(setup, A[i], X, Z)) for i in range(len(A))]
        pos_mm = np.array([1e3 * np.linalg.norm(p) for p, _ in errs])
        rot_deg = np.array([np.degrees(np.linalg.norm(r)) for _, r in errs])
        flagged = _flag(pos_mm, rot_deg, cfg) & used
        if attempt == 0 and cfg.reject_outliers and flagged.any():
            if used.sum() - flagged.sum() < cfg.min_pairs:
                message = (f"{int(flagged.sum())} outlier(s) kept: dropping them would leave fewer than "
                           f"{cfg.min_pairs} poses")
                break
            used &= ~flagged
            message = f"dropped outlier pose(s) {np.flatnonzero(flagged).tolist()} and solved again"
            spread = _check([A[i] for i in np.flatnonzero(used)], cfg)
            continue
        break
    outlier = _flag(pos_mm[used], rot_deg[used], cfg)
    flags = np.zeros(len(A), dtype=bool)
    flags[np.flatnonzero(used)] = outlier
    flags |= ~used
    residuals = [PairResidual(int(i), float(pos_mm[i]), float(rot_deg[i]), bool(flags[i]), bool(used[i]))
                 for i in range(len(A))]
    camera, board = (Z, X) if setup == "eye_to_hand" else (X, Z)
    closed_camera = Z0 if setup == "eye_to_hand" else X0
    return HandEyeResult(setup, camera, board, residuals, spread, closed_camera, cfg.refine, message)


def transform_error(T_est: np.ndarray, T_true: np.ndarray) -> tuple[float, float]:
    """(position error mm, rotation error deg) between two transforms."""
    pos = 1e3 * float(np.linalg.norm(T_est[:3, 3] - T_true[:3, 3]))
    return pos, float(np.degrees(_rotation_angle(T_est[:3, :3].T @ T_true[:3, :3])))


# --- where to move the arm -----------------------------------------------------------------------------------------
_AXES = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, -1, 0], [1, 0, 1], [0, 1, 1], [1, 0, -1],
                  [0, 1, -1], [1, 1, 1], [1, -1, 1], [-1, 1, 1], [1, 1, -1]], dtype=np.float64)
"""Rotation axes (tool frame) the collection poses cycle through: the three axes first, then diagonals."""


def collection_poses(center_pos: Sequence[float], center_quat_xyzw: Sequence[float], n: int = 15,
                     max_offset_m: float = 0.1, max_angle_deg: float = 30.0, seed: int = 0,
                     max_yaw_deg: float | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` TCP targets (position, quaternion x y z w) spread around a centre pose: the first is the centre; the
    others are rotated about the tool-frame axes of ``_AXES`` in turn (alternating sign) by 70-100 % of
    ``max_angle_deg`` and moved by up to ``max_offset_m`` per axis (half of it in z). ``max_yaw_deg``: a smaller
    bound for the rotation about the tool z axis (a board or camera on the side of the hand turns away fastest about
    it); default: the same as the others."""
    if n < 1 or max_offset_m < 0 or not 0 < max_angle_deg < 90:
        raise ValueError(f"need n >= 1, max_offset_m >= 0 and 0 < max_angle_deg < 90, got {n}, {max_offset_m}, "
                         f"{max_angle_deg}")
    rng = np.random.default_rng(seed)
    center = np.asarray(center_pos, dtype=np.float64)
    r0 = Rotation.from_quat(center_quat_xyzw)
    yaw_scale = 1.0 if max_yaw_deg is None else max_yaw_deg / max_angle_deg
    out = [(center.copy(), r0.as_quat(canonical=True))]
    for k in range(1, n):
        axis = _AXES[(k - 1) % len(_AXES)] / np.linalg.norm(_AXES[(k - 1) % len(_AXES)])
        angle = np.radians(max_angle_deg) * rng.uniform(0.7, 1.0) * (1.0 if k % 2 else -1.0)
        rotvec = axis * angle
        rotvec[2] *= yaw_scale
        offset = rng.uniform(-max_offset_m, max_offset_m, 3) * np.array([1.0, 1.0, 0.5])
        out.append((center + offset, (r0 * Rotation.from_rotvec(rotvec)).as_quat(canonical=True)))
    return out
