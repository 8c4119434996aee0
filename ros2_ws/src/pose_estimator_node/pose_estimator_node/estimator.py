"""Object poses in the robot base frame from one camera image with ArUco markers (pure: no rclpy).

Pipeline per image: detect markers (cv2.aruco, ``residual_core.markers``' dictionary) -> refine each marker's corners
(:mod:`pose_estimator_node.corners`) -> the two IPPE solutions of the square marker's pose in the camera's optical
frame (``cv2.solvePnPGeneric`` with ``SOLVEPNP_IPPE_SQUARE``) -> pick one (below) -> camera -> base frame with the
camera extrinsic -> marker -> object with the marker's pose in the object frame (``residual_core.markers.MARKERS``).

An object may carry several markers (the cubes one per face), and several cameras may see it (``estimate_views``:
the sim's scene and front cameras). When two or more distinct markers, or one marker in two images, are detected
(with refined corners), every IPPE solution of every one of them is a hypothesis of the object's pose in the base
frame; each marker joins a hypothesis with its solution closest to it when that is within ``fuse_max_pos_m`` and
``fuse_max_angle_rad``; the hypothesis most (image, marker) pairs agree with (then the lowest summed error) decides
every member's solution (resolution "agreement": the images decide, not tracking or the prior), and the members of
one image are also fitted together by Levenberg-Marquardt over all their corners (``ippe.refine_object_pose``;
resolution "joint"). The object's estimate is the most confident of these (a marker seen at a grazing angle has less
accurate corners, which raises the joint fit's error and so lowers its confidence). If no two agree, the most
confident single marker's estimate is used. Agreement matters most across cameras: a small marker's wrong IPPE
solution, once remembered, is kept by tracking frame after frame (measured: the cube's top marker 35 mm off for
several steps of a pick_place episode while the front camera saw the cube right).

Confidence in [0, 1] = size factor (0 below ``min_side_px``, 1 from ``full_side_px``, linear between; of the largest
marker used) x reprojection factor ``exp(-(err / reproj_scale_px)^2)`` (err: RMS over the corners used) x
``ambiguous_confidence`` if the prior (not the image or tracking) decided x ``unrefined_confidence`` if the corner
refinement failed.

Camera model, extrinsic and image decoding: :mod:`pose_estimator_node.camera`; the pose maths:
:mod:`pose_estimator_node.ippe`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from residual_core.markers import ARUCO_DICTIONARY, MARKER_CELLS, MARKERS, MarkerSpec, resting_up
from scipy.spatial.transform import Rotation

from pose_estimator_node.camera import CameraModel, Extrinsic
from pose_estimator_node.corners import RefineConfig, refine_corners
from pose_estimator_node.ippe import (
    camera_to_base,
    marker_pose_solutions,
    object_in_camera,
    object_pose_from_marker,
    refine_object_pose,
)

RESOLUTIONS = ("only", "reprojection", "tracking", "prior", "reprojection_ambiguous", "agreement", "joint")
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
    fuse_max_pos_m: float = 0.02
    """Two markers of one object agree on its pose when their object positions are within this (m) ..."""
    fuse_max_angle_rad: float = 0.35
    """... and their object orientations within this angle (rad)."""

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
        if not (self.fuse_max_pos_m > 0 and self.fuse_max_angle_rad > 0):
            raise ValueError(f"need fuse_max_pos_m > 0 and fuse_max_angle_rad > 0, got {self.fuse_max_pos_m}, "
                             f"{self.fuse_max_angle_rad}")
        if self.track_timeout_s < 0 or not self.track_max_angle_rad > 0:
            raise ValueError(f"need track_timeout_s >= 0 and track_max_angle_rad > 0, got {self.track_timeout_s}, "
                             f"{self.track_max_angle_rad}")


@dataclass(frozen=True)
class ObjectEstimate:
    """One object's pose from its markers in one image."""

    name: str
    """Object name (residual_core.tasks)."""
    marker_id: int
    """ArUco id of the (largest) marker that was used."""
    pos: np.ndarray
    """(3,) object position in the base frame (m)."""
    quat_xyzw: np.ndarray
    """(4,) object orientation in the base frame."""
    confidence: float
    """In [0, 1]; see the module docstring."""
    reproj_err_px: float
    """RMS reprojection error of the chosen solution (px)."""
    side_px: float
    """Mean side of the (largest) marker in the image (px)."""
    refined: bool
    """True when the edge refinement succeeded."""
    resolution: str
    """How the solution was chosen: one of RESOLUTIONS."""
    other_err_px: float
    """RMS reprojection error of the other IPPE solution (px); inf when there was only one or several markers were
    fitted together."""
    marker_ids: tuple[int, ...] = ()
    """ArUco ids of all the markers whose corners were used (``(marker_id,)`` for one)."""


@dataclass(frozen=True)
class EstimateResult:
    """Everything one image gave."""

    objects: dict[str, ObjectEstimate]
    """Detected task objects by name."""
    missing: tuple[str, ...]
    """Task objects none of whose markers was detected."""
    unknown_ids: tuple[int, ...]
    """Detected marker ids that belong to no task object (other objects, false detections)."""
    detect_s: float
    """Time spent in the ArUco detector (s)."""
    total_s: float
    """Time for the whole image (s)."""


@dataclass(frozen=True)
class _View:
    """One detected marker of an object in one camera's image, ready for pose estimation."""

    spec: MarkerSpec
    pts: np.ndarray
    """(4, 2) corners, undistorted pixels, detection order."""
    refined: bool
    side: float
    """Mean side (px)."""
    solutions: list
    """IPPE solutions (rotation, translation, RMS error px) of the marker in the optical frame, best first."""
    camera: CameraModel
    extrinsic: Extrinsic
    image: int = 0
    """Which of the images estimated together it is in."""

    def object_poses(self) -> list[tuple[np.ndarray, Rotation]]:
        """The object's pose in the base frame (position, rotation) from each IPPE solution."""
        return [object_pose_from_marker(r, t, self.extrinsic, self.spec) for r, t, _ in self.solutions]


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
        markers: Mapping[str, MarkerSpec | Sequence[MarkerSpec]] = MARKERS,
        dictionary: int = ARUCO_DICTIONARY,
    ):
        unknown = [o for o in object_names if o not in markers]
        if unknown:
            raise ValueError(f"no marker for object(s) {unknown}; the marker table knows {sorted(markers)}")
        self.object_names = tuple(object_names)
        self.config = config
        self.markers: dict[str, tuple[MarkerSpec, ...]] = {
            o: (markers[o],) if isinstance(markers[o], MarkerSpec) else tuple(markers[o]) for o in self.object_names}
        """Object -> its markers, the main one first."""
        self.specs = {o: ms[0] for o, ms in self.markers.items()}
        """Object -> its main marker."""
        self.by_id: dict[int, tuple[str, MarkerSpec]] = {}
        for o, ms in self.markers.items():
            for m in ms:
                if m.marker_id in self.by_id:
                    raise ValueError(f"marker id {m.marker_id} is used twice ({self.by_id[m.marker_id][0]}, {o})")
                self.by_id[m.marker_id] = (o, m)
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
        # The age is rounded to the nanosecond (the stamps' resolution): whether the previous estimate is recent enough
        # must not depend on the clock's offset (a continuous sim clock, or residual-eval's per-episode time).
        if (last is not None and stamp_s is not None and cfg.track_timeout_s > 0
                and 0.0 <= round(stamp_s - last[1], 9) <= cfg.track_timeout_s):
            angles = [(object_pose_from_marker(r, t, extrinsic, spec)[1] * last[0].inv()).magnitude()
                      for r, t, _ in solutions]
            if min(angles) <= cfg.track_max_angle_rad:
                return int(np.argmin(angles)), "tracking"
        prior = np.asarray(cfg.normal_prior, dtype=np.float64)
        if np.linalg.norm(prior) > 0:
            prior = prior / np.linalg.norm(prior)
            expected = float(spec.normal_in_object() @ resting_up(name))
            normals = [(extrinsic.rotation * r).apply([0.0, 0.0, 1.0]) for r, _, _ in solutions]
            return int(np.argmin([abs(n @ prior - expected) for n in normals])), "prior"
        return 0, "reprojection_ambiguous"

    def _marker_view(self, spec: MarkerSpec, gray: np.ndarray, corners: np.ndarray, camera: CameraModel,
                     extrinsic: Extrinsic, image: int = 0) -> _View:
        """One detected marker: its corners refined and undistorted, its size in pixels and its IPPE solutions."""
        cfg = self.config
        quiet = 0.5 * (spec.plate_size - spec.size) / spec.size
        undistort = camera.undistort if camera.has_distortion else None
        if cfg.refine_corners:
            ref = refine_corners(gray, corners, 1.0 / MARKER_CELLS, quiet, undistort, cfg.refine)
            pts, refined = ref.corners, ref.refined
        else:
            pts, refined = camera.undistort(corners), False
        side = float(np.mean(np.linalg.norm(pts - np.roll(pts, -1, axis=0), axis=1)))
        return _View(spec, pts, refined, side, marker_pose_solutions(pts, spec.size, camera.K), camera, extrinsic,
                     image)

    def _single(self, name: str, view: _View, stamp_s: float | None, idx: int | None = None) -> ObjectEstimate:
        """The object's pose from one marker: the IPPE solution ``idx`` (chosen by the other markers' agreement), or
        the one chosen as the module docstring says."""
        if idx is None:
            idx, resolution = self._choose(name, view.solutions, view.extrinsic, view.spec, stamp_s)
        else:
            resolution = "agreement"
        r_cm, t_cm, err = view.solutions[idx]
        pos, rot = object_pose_from_marker(r_cm, t_cm, view.extrinsic, view.spec)
        other = [sol[2] for j, sol in enumerate(view.solutions) if j != idx]
        ambiguous = resolution in ("prior", "reprojection_ambiguous")
        return ObjectEstimate(
            name=name, marker_id=view.spec.marker_id, pos=pos, quat_xyzw=rot.as_quat(canonical=True),
            confidence=confidence(err, view.side, ambiguous, view.refined, self.config), reproj_err_px=err,
            side_px=view.side, refined=view.refined, resolution=resolution,
            other_err_px=other[0] if other else float("inf"), marker_ids=(view.spec.marker_id,),
        )

    def _agreement(self, views: Sequence[_View]) -> list[tuple[_View, int]] | None:
        """The markers (of one object, in any of the images) that agree on its pose, each with its agreeing IPPE
        solution: every solution of every marker is a hypothesis; a marker joins one with its solution closest to it
        when within ``fuse_max_pos_m`` and ``fuse_max_angle_rad``; the hypothesis with the most distinct (image,
        marker) members wins, then the lowest summed error. None unless two distinct markers or images agree."""
        cfg = self.config
        poses = [v.object_poses() for v in views]
        best = None
        for hyp_pos, hyp_rot in (h for cands in poses for h in cands):
            members = []
            for v, cands in zip(views, poses, strict=True):
                angles = [(r * hyp_rot.inv()).magnitude() for _, r in cands]
                j = int(np.argmin(angles))
                if angles[j] <= cfg.fuse_max_angle_rad and np.linalg.norm(cands[j][0] - hyp_pos) <= cfg.fuse_max_pos_m:
                    members.append((v, j))
            distinct = len({(v.image, v.spec.marker_id) for v, _ in members})
            key = (distinct, -sum(v.solutions[j][2] for v, j in members))
            if distinct >= 2 and (best is None or key > best[0]):
                best = (key, members)
        return None if best is None else best[1]

    def _joint(self, name: str, members: Sequence[tuple[_View, int]]) -> ObjectEstimate:
        """One pose from the corners of agreeing markers in one image (module docstring), from the first's solution."""
        v0, j0 = members[0]
        hyp = object_in_camera(v0.solutions[j0][0], v0.solutions[j0][1], v0.spec)
        obj = np.concatenate([v.spec.corners_in_object() for v, _ in members])
        img = np.concatenate([v.pts for v, _ in members])
        r, t, err = refine_object_pose(obj, img, v0.camera.K, *hyp)
        main = max((v for v, _ in members), key=lambda v: v.side)
        pos, rot = camera_to_base(r, t, v0.extrinsic)
        return ObjectEstimate(
            name=name, marker_id=main.spec.marker_id, pos=pos, quat_xyzw=rot.as_quat(canonical=True),
            confidence=confidence(err, main.side, False, True, self.config), reproj_err_px=err, side_px=main.side,
            refined=True, resolution="joint", other_err_px=float("inf"),
            marker_ids=tuple(v.spec.marker_id for v, _ in members),
        )

    def _decide(self, name: str, views: Sequence[_View], stamp_s: float | None) -> ObjectEstimate:
        """The object's estimate from all its detected markers (module docstring)."""
        usable = [v for v in views if v.refined or not self.config.refine_corners]
        agreed = self._agreement(usable) if len(usable) > 1 else None
        if agreed is None:
            ests = [self._single(name, v, stamp_s) for v in views]
        else:
            ests = [self._single(name, v, stamp_s, j) for v, j in agreed]
            for image in sorted({v.image for v, _ in agreed}):
                same = [(v, j) for v, j in agreed if v.image == image]
                if len({v.spec.marker_id for v, _ in same}) > 1:
                    ests.append(self._joint(name, same))
        return max(ests, key=lambda e: e.confidence)

    def estimate_marker(
        self, name: str, gray: np.ndarray, corners: np.ndarray, camera: CameraModel, extrinsic: Extrinsic,
        stamp_s: float | None = None, update_tracking: bool = True, spec: MarkerSpec | None = None,
    ) -> ObjectEstimate:
        """The pose of object ``name`` from one marker's detected ``corners`` (4, 2) (``spec``: which of the object's
        markers; default its main one). With ``stamp_s`` (the image time, s) a recent previous estimate can decide
        between ambiguous solutions, and (``update_tracking``) this estimate becomes the previous one."""
        view = self._marker_view(self.specs[name] if spec is None else spec, gray, corners, camera, extrinsic)
        est = self._single(name, view, stamp_s)
        if stamp_s is not None and update_tracking and (est.refined or not self.config.refine_corners):
            self.remember(name, est.quat_xyzw, stamp_s)  # unrefined corners are too unreliable to track from
        return est

    def estimate(
        self, gray: np.ndarray, camera: CameraModel, extrinsic: Extrinsic, stamp_s: float | None = None
    ) -> EstimateResult:
        """Poses of the task objects visible in ``gray`` (H, W) uint8 (messages:
        :func:`pose_estimator_node.camera.image_to_gray`): :meth:`estimate_views` of one image."""
        return self.estimate_views([(gray, camera, extrinsic)], stamp_s)

    def estimate_views(
        self, views: Sequence[tuple[np.ndarray, CameraModel, Extrinsic]], stamp_s: float | None = None
    ) -> EstimateResult:
        """Poses of the task objects from one or more cameras' images of one instant, ``views``: (grey (H, W) uint8
        image, camera, extrinsic) each.

        Per object, all its markers detected in any of the images: if two or more distinct markers (or one marker in
        two images) agree on a pose, the most confident of the agreeing markers' estimates (each with its agreeing
        IPPE solution) and of the joint fits of agreeing markers within one image; otherwise the most confident
        single marker's estimate (a marker id detected twice in one image: the more confident detection).
        """
        t0 = time.perf_counter()
        if not views:
            raise ValueError("estimate_views needs at least one view")
        detect_s = 0.0
        found_ids: set[int] = set()
        by_object: dict[str, list[_View]] = {}
        for image, (gray, camera, extrinsic) in enumerate(views):
            gray = np.asarray(gray)
            if gray.ndim != 2 or gray.dtype != np.uint8:
                raise ValueError(f"expected an (H, W) uint8 grey image, got {gray.shape} {gray.dtype}")
            if gray.shape != (camera.height, camera.width):
                raise ValueError(f"image is {gray.shape[1]}x{gray.shape[0]} but the camera info says "
                                 f"{camera.width}x{camera.height}")
            t1 = time.perf_counter()
            found = self.detect(gray)
            detect_s += time.perf_counter() - t1
            found_ids.update(found)
            for marker_id, candidates in found.items():
                if marker_id in self.by_id:
                    name, spec = self.by_id[marker_id]
                    by_object.setdefault(name, []).extend(
                        self._marker_view(spec, gray, c, camera, extrinsic, image) for c in candidates)
        objects: dict[str, ObjectEstimate] = {}
        for name in self.object_names:
            if name not in by_object:
                continue
            best = self._decide(name, by_object[name], stamp_s)
            if stamp_s is not None and (best.refined or not self.config.refine_corners):
                self.remember(name, best.quat_xyzw, stamp_s)
            objects[name] = best
        return EstimateResult(
            objects=objects,
            missing=tuple(o for o in self.object_names if o not in objects),
            unknown_ids=tuple(sorted(i for i in found_ids if i not in self.by_id)),
            detect_s=detect_s,
            total_s=time.perf_counter() - t0,
        )


PublishedPose = tuple[str, np.ndarray, np.ndarray, float]
"""(name, position (3,), quaternion x y z w (4,), confidence): one entry of the estimator node's ObjectPoseArray."""


def published_poses(result: EstimateResult, object_names: Sequence[str]) -> list[PublishedPose]:
    """What the estimator node publishes for one image: one entry per task object in ``object_names`` order, the
    estimate of a detected object, an all-zero pose with confidence 0 for one not detected (the "not seen" entry that
    residual_ros.validate accepts and the residual node's presence rule turns into a dropout). ``residual-eval
    --pose-source camera`` feeds the same entries to the residual's pose inputs."""
    out: list[PublishedPose] = []
    for name in object_names:
        est = result.objects.get(name)
        if est is None:
            out.append((name, np.zeros(3), np.zeros(4), 0.0))
        else:
            out.append((name, est.pos, est.quat_xyzw, est.confidence))
    return out
