"""Object poses in the robot base frame from one camera image with ArUco markers (pure: no rclpy).

Pipeline per image: detect markers (cv2.aruco, ``residual_core.markers``' dictionary) -> refine each marker's corners
(:mod:`pose_estimator_node.corners`) -> the two IPPE solutions of the square marker's pose in the camera's optical
frame (``cv2.solvePnPGeneric`` with ``SOLVEPNP_IPPE_SQUARE``) -> pick one (below) -> camera -> base frame with the
camera extrinsic -> marker -> object with the marker's pose in the object frame (``residual_core.markers.MARKERS``).

A small square seen at an angle has two poses that explain its corners almost equally well (the normal mirrored
about the line of sight; the other pose is tilted by ~2x the viewing angle). The choice, in order: the reprojection
error when one solution is clearly better (by ``ambiguity_margin_px``); else the solution closest in orientation to
this object's previous estimate (tracking, if younger than ``track_timeout_s`` and within ``track_max_angle_rad``);
else the one whose marker normal points most along ``normal_prior`` (default: up, which is right for markers on
top faces and for objects resting in their usual pose); else the lower reprojection error.

Confidence in [0, 1] = size factor (0 below ``min_side_px``, 1 from ``full_side_px``, linear between) x
reprojection factor ``exp(-(err / reproj_scale_px)^2)`` x ``ambiguous_confidence`` if the prior (not the image
or tracking) decided x ``unrefined_confidence`` if the corner refinement failed.

Frames: the extrinsic is the pose of the camera's *optical* frame (OpenCV: x right, y down, z forward) in the base
frame (``fr3_link0``); ``franka_sim.camera.extrinsics`` returns exactly that.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from residual_core.markers import ARUCO_DICTIONARY, MARKER_CELLS, MARKERS, MarkerSpec
from residual_core.sim_camera import SIM_CAMERA_LOOKAT, SIM_CAMERA_POS, look_at_xyaxes
from scipy.spatial.transform import Rotation

from pose_estimator_node.corners import RefineConfig, refine_corners

RESOLUTIONS = ("only", "reprojection", "tracking", "prior", "reprojection_ambiguous")
"""How the pose of a marker was chosen among the IPPE solutions (see the module docstring)."""


@dataclass(frozen=True)
class CameraModel:
    """Pinhole camera with OpenCV distortion, as sensor_msgs/CameraInfo gives it (K, D, size)."""

    K: np.ndarray
    """(3, 3) camera matrix."""
    D: np.ndarray
    """Distortion coefficients (OpenCV order; plumb_bob: k1 k2 p1 p2 k3); may be empty."""
    width: int
    """Image width (px)."""
    height: int
    """Image height (px)."""

    def __post_init__(self) -> None:
        K = np.asarray(self.K, dtype=np.float64).reshape(3, 3)
        D = np.asarray(self.D, dtype=np.float64).ravel()
        if not (np.all(np.isfinite(K)) and K[0, 0] > 0 and K[1, 1] > 0):
            raise ValueError(f"camera matrix K must be finite with fx, fy > 0 (uncalibrated camera?), got {K.tolist()}")
        if not np.all(np.isfinite(D)):
            raise ValueError(f"distortion coefficients must be finite, got {D.tolist()}")
        if self.width < 1 or self.height < 1:
            raise ValueError(f"image size must be positive, got {self.width}x{self.height}")
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "D", D)

    @classmethod
    def from_camera_info(cls, k: Sequence[float], d: Sequence[float], width: int, height: int) -> CameraModel:
        """From CameraInfo's ``k`` (9, row-major), ``d`` and size."""
        k = np.asarray(k, dtype=np.float64)
        if k.size != 9:
            raise ValueError(f"CameraInfo k must have 9 values, got {k.size}")
        return cls(k.reshape(3, 3), np.asarray(d, dtype=np.float64), int(width), int(height))

    @property
    def has_distortion(self) -> bool:
        return bool(np.any(self.D != 0.0))

    def undistort(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 2) distorted pixel coordinates -> undistorted pixel coordinates (same K)."""
        pts = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
        if not self.has_distortion:
            return pts.copy()
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-10)  # default 5 iterations: 1e-4 px off
        return cv2.undistortPoints(pts[:, None, :], self.K, self.D, None, None, self.K, criteria).reshape(-1, 2)


@dataclass(frozen=True)
class Extrinsic:
    """Pose of the camera's optical frame in the robot base frame."""

    pos: np.ndarray
    """(3,) position (m)."""
    quat_xyzw: np.ndarray
    """(4,) orientation, x y z w."""

    def __post_init__(self) -> None:
        pos = np.asarray(self.pos, dtype=np.float64).reshape(-1)
        quat = np.asarray(self.quat_xyzw, dtype=np.float64).reshape(-1)
        if pos.shape != (3,) or quat.shape != (4,) or not (np.all(np.isfinite(pos)) and np.all(np.isfinite(quat))):
            raise ValueError(f"camera extrinsic needs a finite position (3) and quaternion (4), got {pos}, {quat}")
        if not 0.5 < np.linalg.norm(quat) < 1.5:
            raise ValueError(f"camera quaternion {quat.tolist()} is not (close to) unit length")
        object.__setattr__(self, "pos", pos)
        object.__setattr__(self, "quat_xyzw", quat / np.linalg.norm(quat))

    @property
    def rotation(self) -> Rotation:
        return Rotation.from_quat(self.quat_xyzw)


@dataclass(frozen=True)
class ArucoConfig:
    """Detection, pose choice and confidence parameters."""

    min_side_px: float = 6.0
    """Markers whose mean side is below this (px) get confidence 0 (too few pixels per cell to trust)."""
    full_side_px: float = 12.0
    """Mean side (px) from which the size factor of the confidence is 1."""
    reproj_scale_px: float = 0.15
    """Reprojection error (RMS, px) at which the reprojection factor of the confidence is exp(-1)."""
    ambiguity_margin_px: float = 0.5
    """The IPPE solution with the lower reprojection error is taken outright only when the other's is higher by
    more than this (px); otherwise tracking or the normal prior decides."""
    ambiguous_confidence: float = 0.8
    """Confidence factor when the normal prior (or nothing) had to decide between the two solutions."""
    unrefined_confidence: float = 0.3
    """Confidence factor when the edge refinement failed and the detector's corners were used."""
    normal_prior: tuple[float, float, float] = (0.0, 0.0, 1.0)
    """Base-frame direction marker normals are expected to point along when the image cannot decide; (0, 0, 0):
    no prior."""
    track_timeout_s: float = 1.0
    """An object's previous estimate younger than this (s) decides between ambiguous solutions; 0: no tracking."""
    track_max_angle_rad: float = 0.5
    """Tracking decides only if a solution is within this angle of the previous orientation (else the object was
    moved or reset: the prior decides)."""
    refine_corners: bool = True
    """Refine corners by fitting lines to the marker edges (:mod:`pose_estimator_node.corners`)."""
    refine: RefineConfig = field(default_factory=RefineConfig)
    """Parameters of the corner refinement."""

    def __post_init__(self) -> None:
        if not 0 <= self.min_side_px < self.full_side_px:
            raise ValueError(f"need 0 <= min_side_px < full_side_px, got {self.min_side_px}, {self.full_side_px}")
        for name in ("reproj_scale_px", "ambiguity_margin_px"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("ambiguous_confidence", "unrefined_confidence"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        prior = np.asarray(self.normal_prior, dtype=np.float64)
        if prior.shape != (3,) or not np.all(np.isfinite(prior)):
            raise ValueError(f"normal_prior must be 3 finite numbers, got {self.normal_prior}")
        if self.track_timeout_s < 0 or not self.track_max_angle_rad > 0:
            raise ValueError(f"need track_timeout_s >= 0 and track_max_angle_rad > 0, got {self.track_timeout_s}, "
                             f"{self.track_max_angle_rad}")


@dataclass(frozen=True)
class ObjectEstimate:
    """One object's pose from its marker in one image."""

    name: str
    """Object name (residual_core.tasks)."""
    marker_id: int
    """ArUco id that was used."""
    pos: np.ndarray
    """(3,) object position in the base frame (m)."""
    quat_xyzw: np.ndarray
    """(4,) object orientation in the base frame."""
    confidence: float
    """In [0, 1]; see the module docstring."""
    reproj_err_px: float
    """RMS reprojection error of the chosen solution (px)."""
    side_px: float
    """Mean side of the marker in the image (px)."""
    refined: bool
    """True when the edge refinement succeeded."""
    resolution: str
    """How the solution was chosen: one of RESOLUTIONS."""
    other_err_px: float
    """RMS reprojection error of the other IPPE solution (px); inf when there was only one."""


@dataclass(frozen=True)
class EstimateResult:
    """Everything one image gave."""

    objects: dict[str, ObjectEstimate]
    """Detected task objects by name."""
    missing: tuple[str, ...]
    """Task objects whose marker was not detected."""
    unknown_ids: tuple[int, ...]
    """Detected marker ids that belong to no task object (other objects, false detections)."""
    detect_s: float
    """Time spent in the ArUco detector (s)."""
    total_s: float
    """Time for the whole image (s)."""


def sim_camera_extrinsic(camera=None) -> Extrinsic:
    """The optical frame of the sim's fixed scene camera in the base frame, from its position and MuJoCo x / y axes
    (MuJoCo cameras look along -z with y up, the optical frame along +z with y down). ``camera``: anything with
    ``pos`` and ``xyaxes()`` (franka_sim's ``CameraConfig``); None: :mod:`residual_core.sim_camera`'s numbers, which
    franka_sim's default ``CameraConfig`` also reads. Equal to ``franka_sim.camera.extrinsics`` of a compiled scene,
    without compiling one (or importing the simulator)."""
    if camera is None:
        pos, xyaxes = SIM_CAMERA_POS, look_at_xyaxes(SIM_CAMERA_POS, SIM_CAMERA_LOOKAT)
    else:
        pos, xyaxes = camera.pos, camera.xyaxes()
    axes = np.asarray(xyaxes, dtype=np.float64)
    x, y = axes[:3], axes[3:]
    mj = np.stack([x, y, np.cross(x, y)], axis=1)
    optical = mj @ np.diag([1.0, -1.0, -1.0])
    return Extrinsic(np.asarray(pos, dtype=np.float64), Rotation.from_matrix(optical).as_quat(canonical=True))


def image_to_gray(data: bytes | np.ndarray, height: int, width: int, encoding: str, row_step: int) -> np.ndarray:
    """A sensor_msgs/Image buffer (8-bit rgb8, bgr8, rgba8, bgra8 or mono8) as an (H, W) uint8 grey image."""
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
    if encoding not in channels:
        raise ValueError(f"unsupported image encoding {encoding!r}; supported: {', '.join(channels)}")
    ch = channels[encoding]
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes | bytearray | memoryview) else np.asarray(
        data, dtype=np.uint8).ravel()
    if row_step < width * ch or buf.size < row_step * height:
        raise ValueError(f"image buffer of {buf.size} bytes does not hold {height}x{width} {encoding} "
                         f"with row step {row_step}")
    img = buf[: row_step * height].reshape(height, row_step)[:, : width * ch].reshape(height, width, ch)
    if ch == 1:
        return np.ascontiguousarray(img[:, :, 0])
    code = {"rgb8": cv2.COLOR_RGB2GRAY, "bgr8": cv2.COLOR_BGR2GRAY, "rgba8": cv2.COLOR_RGBA2GRAY,
            "bgra8": cv2.COLOR_BGRA2GRAY}[encoding]
    return cv2.cvtColor(np.ascontiguousarray(img), code)


def square_object_points(size: float) -> np.ndarray:
    """(4, 3) corners of a square marker of side ``size`` in its own frame, in ArUco (and IPPE_SQUARE) order."""
    h = size / 2.0
    return np.array([[-h, h, 0.0], [h, h, 0.0], [h, -h, 0.0], [-h, -h, 0.0]])


def marker_pose_solutions(corners: np.ndarray, size: float, K: np.ndarray) -> list[tuple[Rotation, np.ndarray, float]]:
    """IPPE solutions (rotation, translation (3,), RMS reprojection error px) of a square marker in the optical
    frame, best first. ``corners`` (4, 2) are undistorted pixels in detection order."""
    n, rvecs, tvecs, errs = cv2.solvePnPGeneric(
        square_object_points(size), np.asarray(corners, dtype=np.float64).reshape(4, 1, 2), K, None,
        flags=cv2.SOLVEPNP_IPPE_SQUARE)
    errs = np.asarray(errs, dtype=np.float64).ravel()
    out = [(Rotation.from_rotvec(np.asarray(rvecs[i]).ravel()), np.asarray(tvecs[i], dtype=np.float64).ravel(),
            float(errs[i])) for i in range(int(n))]
    return sorted(out, key=lambda s: s[2])


def object_pose_from_marker(
    r_cam_marker: Rotation, t_cam_marker: np.ndarray, extrinsic: Extrinsic, spec: MarkerSpec
) -> tuple[np.ndarray, Rotation]:
    """Object pose (position, rotation) in the base frame from the marker's pose in the optical frame."""
    r_base_marker = extrinsic.rotation * r_cam_marker
    p_base_marker = extrinsic.rotation.apply(t_cam_marker) + extrinsic.pos
    r_obj_marker = Rotation.from_quat(spec.quat_xyzw)
    r_base_obj = r_base_marker * r_obj_marker.inv()
    return p_base_marker - r_base_obj.apply(np.asarray(spec.pos)), r_base_obj


def confidence(err_px: float, side_px: float, ambiguous: bool, refined: bool, cfg: ArucoConfig) -> float:
    """Confidence in [0, 1] from the reprojection error, the marker's size in pixels and how the pose was chosen."""
    if not (np.isfinite(err_px) and np.isfinite(side_px)):
        return 0.0
    size = float(np.clip((side_px - cfg.min_side_px) / (cfg.full_side_px - cfg.min_side_px), 0.0, 1.0))
    c = size * float(np.exp(-((err_px / cfg.reproj_scale_px) ** 2)))
    if ambiguous:
        c *= cfg.ambiguous_confidence
    if not refined:
        c *= cfg.unrefined_confidence
    return float(np.clip(c, 0.0, 1.0))


class ArucoPoseEstimator:
    """Estimates the task objects' poses from images; remembers the last estimate per object for tracking."""

    def __init__(
        self,
        object_names: Sequence[str],
        config: ArucoConfig = ArucoConfig(),
        markers: Mapping[str, MarkerSpec] = MARKERS,
        dictionary: int = ARUCO_DICTIONARY,
    ):
        unknown = [o for o in object_names if o not in markers]
        if unknown:
            raise ValueError(f"no marker for object(s) {unknown}; the marker table knows {sorted(markers)}")
        self.object_names = tuple(object_names)
        self.config = config
        self.specs = {o: markers[o] for o in self.object_names}
        self.by_id = {spec.marker_id: o for o, spec in self.specs.items()}
        if len(self.by_id) != len(self.specs):
            raise ValueError(f"objects {self.object_names} share marker ids")
        params = cv2.aruco.DetectorParameters()
        params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
        self._detector = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(dictionary), params)
        self._last: dict[str, tuple[Rotation, float]] = {}

    def reset(self) -> None:
        """Forget the previous estimates (no tracking until objects are seen again)."""
        self._last.clear()

    def remember(self, name: str, quat_xyzw, stamp_s: float) -> None:
        """Make ``quat_xyzw`` (base frame) object ``name``'s previous orientation, as of ``stamp_s`` (e.g. a known
        initial placement); estimates do this themselves when given an image time."""
        if name not in self.specs:
            raise ValueError(f"unknown object {name!r}; this estimator tracks {list(self.object_names)}")
        self._last[name] = (Rotation.from_quat(quat_xyzw), float(stamp_s))

    def detect(self, gray: np.ndarray) -> dict[int, list[np.ndarray]]:
        """Marker id -> list of (4, 2) corner arrays (distorted pixels, detection order)."""
        corners, ids, _ = self._detector.detectMarkers(gray)
        out: dict[int, list[np.ndarray]] = {}
        if ids is not None:
            for i, c in zip(ids.ravel(), corners, strict=True):
                out.setdefault(int(i), []).append(np.asarray(c, dtype=np.float64).reshape(4, 2))
        return out

    def _choose(self, name: str, solutions, extrinsic: Extrinsic, spec: MarkerSpec, stamp_s: float | None):
        """(index into solutions, resolution)."""
        cfg = self.config
        if len(solutions) == 1:
            return 0, "only"
        if solutions[1][2] - solutions[0][2] > cfg.ambiguity_margin_px:
            return 0, "reprojection"
        last = self._last.get(name)
        if (last is not None and stamp_s is not None and cfg.track_timeout_s > 0
                and 0.0 <= stamp_s - last[1] <= cfg.track_timeout_s):
            angles = [(object_pose_from_marker(r, t, extrinsic, spec)[1] * last[0].inv()).magnitude()
                      for r, t, _ in solutions]
            if min(angles) <= cfg.track_max_angle_rad:
                return int(np.argmin(angles)), "tracking"
        prior = np.asarray(cfg.normal_prior, dtype=np.float64)
        if np.linalg.norm(prior) > 0:
            normals = [(extrinsic.rotation * r).apply([0.0, 0.0, 1.0]) for r, _, _ in solutions]
            return int(np.argmax([n @ prior for n in normals])), "prior"
        return 0, "reprojection_ambiguous"

    def estimate_marker(
        self, name: str, gray: np.ndarray, corners: np.ndarray, camera: CameraModel, extrinsic: Extrinsic,
        stamp_s: float | None = None, update_tracking: bool = True,
    ) -> ObjectEstimate:
        """The pose of object ``name`` from its marker's detected ``corners`` (4, 2). With ``stamp_s`` (the image
        time, s) a recent previous estimate can decide between ambiguous solutions, and (``update_tracking``) this
        estimate becomes the previous one."""
        spec = self.specs[name]
        cfg = self.config
        border = 1.0 / MARKER_CELLS
        quiet = 0.5 * (spec.plate_size - spec.size) / spec.size
        undistort = camera.undistort if camera.has_distortion else None
        if cfg.refine_corners:
            ref = refine_corners(gray, corners, border, quiet, undistort, cfg.refine)
            pts, refined = ref.corners, ref.refined
        else:
            pts, refined = camera.undistort(corners), False
        side = float(np.mean(np.linalg.norm(pts - np.roll(pts, -1, axis=0), axis=1)))
        solutions = marker_pose_solutions(pts, spec.size, camera.K)
        idx, resolution = self._choose(name, solutions, extrinsic, spec, stamp_s)
        r_cm, t_cm, err = solutions[idx]
        pos, rot = object_pose_from_marker(r_cm, t_cm, extrinsic, spec)
        other = [s[2] for j, s in enumerate(solutions) if j != idx]
        ambiguous = resolution in ("prior", "reprojection_ambiguous")
        if stamp_s is not None and update_tracking and (refined or not cfg.refine_corners):
            self.remember(name, rot.as_quat(), stamp_s)  # unrefined corners are too unreliable to track from
        return ObjectEstimate(
            name=name, marker_id=spec.marker_id, pos=pos, quat_xyzw=rot.as_quat(canonical=True),
            confidence=confidence(err, side, ambiguous, refined, cfg), reproj_err_px=err, side_px=side,
            refined=refined, resolution=resolution, other_err_px=other[0] if other else float("inf"),
        )

    def estimate(
        self, gray: np.ndarray, camera: CameraModel, extrinsic: Extrinsic, stamp_s: float | None = None
    ) -> EstimateResult:
        """Poses of the task objects visible in ``gray`` (H, W) uint8 (use :func:`image_to_gray` for messages).

        When a marker id is detected more than once, the detection with the highest confidence is kept.
        """
        t0 = time.perf_counter()
        gray = np.asarray(gray)
        if gray.ndim != 2 or gray.dtype != np.uint8:
            raise ValueError(f"expected an (H, W) uint8 grey image, got {gray.shape} {gray.dtype}")
        if gray.shape != (camera.height, camera.width):
            raise ValueError(f"image is {gray.shape[1]}x{gray.shape[0]} but the camera info says "
                             f"{camera.width}x{camera.height}")
        found = self.detect(gray)
        t1 = time.perf_counter()
        objects: dict[str, ObjectEstimate] = {}
        for marker_id, candidates in found.items():
            name = self.by_id.get(marker_id)
            if name is None:
                continue
            ests = [self.estimate_marker(name, gray, c, camera, extrinsic, stamp_s, update_tracking=False)
                    for c in candidates]
            best = max(ests, key=lambda e: e.confidence)
            if stamp_s is not None and (best.refined or not self.config.refine_corners):
                self.remember(name, best.quat_xyzw, stamp_s)
            objects[name] = best
        return EstimateResult(
            objects=objects,
            missing=tuple(o for o in self.object_names if o not in objects),
            unknown_ids=tuple(sorted(i for i in found if i not in self.by_id)),
            detect_s=t1 - t0,
            total_s=time.perf_counter() - t0,
        )
