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

Camera model, extrinsic and image decoding: :mod:`pose_estimator_node.camera`; the pose maths:
:mod:`pose_estimator_node.ippe`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from residual_core.markers import ARUCO_DICTIONARY, MARKER_CELLS, MARKERS, MarkerSpec
from scipy.spatial.transform import Rotation

from pose_estimator_node.camera import CameraModel, Extrinsic
from pose_estimator_node.corners import RefineConfig, refine_corners
from pose_estimator_node.ippe import marker_pose_solutions, object_pose_from_marker

RESOLUTIONS = ("only", "reprojection", "tracking", "prior", "reprojection_ambiguous")
"""How the pose of a marker was chosen among the IPPE solutions (see the module docstring)."""


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
        """Poses of the task objects visible in ``gray`` (H, W) uint8 (messages:
        :func:`pose_estimator_node.camera.image_to_gray`).

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
