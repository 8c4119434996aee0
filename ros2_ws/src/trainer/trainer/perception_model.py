"""A perception model fitted to the camera pose estimator (issue 11, "A perception model fitted to the estimator").

Training cannot afford the camera path itself (rendering and ArUco every step: 10-30 steps/s); :class:`PoseAugmenter`
is cheap but drops poses i.i.d. with one rate, while the estimator misses whole grasp phases (the hand hides the
marker) and errs with a per-episode bias. :class:`FittedPerception` is a cheap, batched stand-in for
:class:`trainer.camera_path.CameraPerception` whose numbers come from measured estimator output:

* **Misses, decided geometrically per step** (trainer.perception_geometry). Per object and camera, how far the object
  is from being hidden by the arm or hand: spheres at the FR3's elbow, forearm, wrist and flange (from the joint
  positions through the published DH parameters) and at the fingers and hand (along the TCP's tool axis); the angle
  between the camera's rays to the object and to a sphere, less the sphere's angular radius, in units of the object's
  angular radius, the smallest over the spheres nearer the camera than the object (``occlusion_clearance``). That
  clearance, binned for each camera, with "grasped" (the object within 4 cm of the TCP, the gripper not fully open)
  and "tipped" (the object's z axis more than 45 deg from vertical: the cup lying) makes a cell (``cells``); each
  object's detection rate per cell is counted from the estimator's output (a Beta prior towards the object's overall
  rate for rarely seen cells), per task where the log has the task's episodes. The model draws a detection per object
  and step from its cell's rate.
* **Errors as measured.** Per object and phase (``PHASES``: far from the hand, near it, grasped; "any" for a phase
  rarely seen), an episode bootstrap (:class:`ErrorModel`): each episode follows one of the log's episodes, its mean
  error as the offset plus, per step, one of that episode's errors about its mean; the orientation error angle from
  its quantiles (about a random axis).
* **Latency**: ``latency_steps`` (0 in the lockstep sim, whose estimator answers each step's image before the
  residual acts): the estimate of step t is made from the state of step t - latency. A real camera's latency is the
  image stamp to pose arrival time of its log (see docs/PERCEPTION.md, "Refit from a real camera").

What the residual sees goes through the residual node's presence rule as on the camera path: a missed object is absent
at once (the estimator publishes a confidence-0 entry for it, which replaces the older pose).

The fit reads a :class:`trainer.camera_log.CameraLog`: per step and object the true pose, the TCP pose and gripper
width, and what the estimator published (detected or not, the pose). ``residual-perception record`` makes one from the
sim's camera path; a real camera log in the same CSV columns (truth from a reference, see docs/PERCEPTION.md) refits
the model with ``residual-perception fit --log``. ``residual-perception check`` compares the model with the estimator
on held-out episodes per task, object and phase.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from trainer.camera_log import CameraLog, log_cells, log_phases
from trainer.perception_geometry import PHASES, cells, n_cells, phases
from trainer.sim_backend import BatchState

MODEL_VERSION = 2

MAX_EPISODES = 40
"""Log episodes kept per object and phase in an :class:`ErrorModel` (evenly spaced over the log's)."""
MAX_RESIDUALS = 12
"""Per-step errors kept per episode in an :class:`ErrorModel`."""
QUANTILES = tuple(np.linspace(0.0, 1.0, 21).round(3).tolist())
"""Quantile levels at which error distributions are stored (0, 0.05, ..., 1)."""


# --- the model -----------------------------------------------------------------------------------------------------
@dataclass
class ErrorModel:
    """Position and orientation error of detected poses, as an episode bootstrap: an episode of the model draws one
    of the log's episodes (by its share of the images) and takes that episode's mean error as its offset; each step
    adds one of that episode's errors about its mean. The errors' shape across and within episodes (heavy tails: a
    few episodes hold most of the large errors, and an episode with a large offset need not be noisy) is kept as
    measured. The orientation error angle is drawn from its quantiles (about a random axis). ``bias``,
    ``episode_std``, ``step_std`` and ``outlier_fraction`` summarise (they are not sampled)."""

    samples: int
    bias: list[float]
    """(3,) mean of the episodes' mean errors (m)."""
    episode_std: list[float]
    """(3,) spread of the episodes' mean errors, per axis (m)."""
    step_std: list[float]
    """(3,) robust (MAD) per-step spread about the episode's mean, per axis (m)."""
    outlier_fraction: float
    """Fraction of steps whose error about the episode's mean is over 4 robust spreads."""
    angle_quantiles: list[float]
    """Orientation error angle (rad) at :data:`QUANTILES`."""
    episodes: list[dict] = field(default_factory=list)
    """Per log episode (up to :data:`MAX_EPISODES`): ``weight`` (its share of the images), ``offset_mm`` (3,) its
    mean error and ``residuals_mm`` (up to :data:`MAX_RESIDUALS` x 3, evenly spaced over the episode) its errors
    about that mean."""


@dataclass
class ObjectModel:
    detect_rate: list[float]
    """Per cell (:func:`cells`): the probability that the estimator publishes the object's pose."""
    cell_counts: list[int]
    """Per cell: images the rate was counted from."""
    overall_rate: float
    errors: dict[str, ErrorModel]
    """By phase (:data:`PHASES`) and "any" (all detected images; used for a phase seen in fewer than
    ``min_phase_samples`` images)."""


@dataclass
class PerceptionModelParams:
    objects: dict[str, ObjectModel]
    camera_positions: list[list[float]]
    latency_steps: int = 0
    fitted_from: dict = field(default_factory=dict)
    version: int = MODEL_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n")

    @classmethod
    def from_dict(cls, d: dict) -> PerceptionModelParams:
        if d.get("version") != MODEL_VERSION:
            raise ValueError(f"perception model version {d.get('version')!r}, this code reads {MODEL_VERSION}")
        objects = {name: ObjectModel(detect_rate=o["detect_rate"], cell_counts=o["cell_counts"],
                                     overall_rate=o["overall_rate"],
                                     errors={k: ErrorModel(**e) for k, e in o["errors"].items()})
                   for name, o in d["objects"].items()}
        params = cls(objects=objects, camera_positions=d["camera_positions"], latency_steps=int(d["latency_steps"]),
                     fitted_from=d.get("fitted_from", {}))
        want = n_cells(len(params.camera_positions))
        for name, o in objects.items():
            if len(o.detect_rate) != want:
                raise ValueError(f"perception model: {name} has {len(o.detect_rate)} cells, {want} expected")
        if params.latency_steps < 0:
            raise ValueError(f"latency_steps must be >= 0, got {params.latency_steps}")
        return params

    @classmethod
    def load(cls, path: Path) -> PerceptionModelParams:
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (KeyError, TypeError) as e:
            raise ValueError(f"{path}: not a perception model ({type(e).__name__}: {e})") from None


def _even(n: int, k: int) -> np.ndarray:
    """``min(n, k)`` indices evenly spaced over range(n)."""
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(int))


def _fit_errors(pos_err: np.ndarray, ang: np.ndarray, episodes: np.ndarray) -> ErrorModel:
    ids = np.unique(episodes)
    means = np.array([pos_err[episodes == e].mean(axis=0) for e in ids])
    resid = pos_err - means[np.searchsorted(ids, episodes)]
    mad = np.median(np.abs(resid - np.median(resid, axis=0)), axis=0) * 1.4826
    step_std = np.maximum(mad, 1e-5)
    counts = np.array([np.sum(episodes == e) for e in ids], dtype=float)
    kept = _even(len(ids), MAX_EPISODES)
    table = []
    for j in kept:
        r = resid[episodes == ids[j]]
        table.append({"weight": round(float(counts[j] / counts[kept].sum()), 6),
                      "offset_mm": np.round(means[j] * 1e3, 2).tolist(),
                      "residuals_mm": np.round(r[_even(len(r), MAX_RESIDUALS)] * 1e3, 2).tolist()})
    return ErrorModel(samples=int(len(pos_err)), bias=means.mean(axis=0).tolist(),
                      episode_std=(means.std(axis=0) if len(means) > 1 else np.zeros(3)).tolist(),
                      step_std=step_std.tolist(),
                      outlier_fraction=float((np.linalg.norm(resid / step_std, axis=1) > 4.0).mean()),
                      angle_quantiles=np.quantile(ang[np.isfinite(ang)], QUANTILES).tolist()
                      if np.isfinite(ang).any() else [0.0] * len(QUANTILES), episodes=table)


def fit(log: CameraLog, camera_positions: Sequence, latency_steps: int = 0, prior_strength: float = 4.0,
        min_phase_samples: int = 50, fitted_from: dict | None = None) -> PerceptionModelParams:
    """Fit the model to a camera log (see the module docstring)."""
    if len(log) == 0:
        raise ValueError("the camera log is empty")
    cell = log_cells(log, camera_positions)
    pos_err, ang = log.errors()
    ph = log_phases(log)
    objects: dict[str, ObjectModel] = {}
    pairs = {(t, o) for t, o in zip(log.task.tolist(), log.object.tolist(), strict=True)}
    # per task and object; and per object over the tasks where several tasks have it (a fallback for other tasks)
    shared = sorted(o for o in {o for _, o in pairs} if sum(o == p for _, p in pairs) > 1)
    keys = shared + sorted(f"{t}/{o}" for t, o in pairs)
    for name in keys:
        task, _, obj = name.rpartition("/")
        sel = (log.object == obj) & ((log.task == task) if task else True)
        det = log.detected[sel]
        overall = float(det.mean())
        counts = np.bincount(cell[sel], minlength=n_cells(len(camera_positions)))
        hits = np.bincount(cell[sel], weights=det.astype(float), minlength=len(counts))
        rate = (hits + prior_strength * overall) / (counts + prior_strength)
        det_sel = sel & log.detected
        if det_sel.sum() < 2:
            raise ValueError(f"{name}: detected in {int(det_sel.sum())} image(s): too few to fit its errors")
        errors = {"any": _fit_errors(pos_err[det_sel], ang[det_sel], log.episode[det_sel])}
        for p, phase in enumerate(PHASES):
            m = det_sel & (ph == p)
            if m.sum() >= min_phase_samples:
                errors[phase] = _fit_errors(pos_err[m], ang[m], log.episode[m])
        objects[name] = ObjectModel(detect_rate=rate.tolist(), cell_counts=counts.astype(int).tolist(),
                                    overall_rate=overall, errors=errors)
    return PerceptionModelParams(objects=objects, camera_positions=[list(map(float, c)) for c in camera_positions],
                                 latency_steps=int(latency_steps), fitted_from=dict(fitted_from or {}))


class FittedPerception:
    """The fitted model as a perception model for :class:`trainer.closed_loop.ClosedLoop` (``view``, like
    :class:`trainer.camera_path.CameraPerception`): batched numpy, seeded (the same numbers for the same seed and the
    same sequence of calls)."""

    def __init__(self, params: PerceptionModelParams, object_names: Sequence[str], seed: int | None = None,
                 task: str | None = None):
        """``task``: use the fit of the task's own episodes ("task/object") where the model has one (the same object
        is seen differently in different tasks: a cube lifted high is hidden longer than one carried low); see
        :meth:`fit_key`."""
        keys = {o: self.fit_key(params, o, task) for o in object_names}
        missing = [o for o, k in keys.items() if k is None]
        if missing:
            raise ValueError(f"the perception model has no fit for {missing} (it has {sorted(params.objects)})")
        self.params = params
        self.object_names = tuple(object_names)
        self.keys = tuple(keys[o] for o in self.object_names)
        """The fit used for each object ("task/object" or "object")."""
        self._rng = np.random.default_rng(seed)
        self._rates = np.array([params.objects[k].detect_rate for k in self.keys])  # (K, cells)
        self._episode: np.ndarray | None = None  # (N, K, phases): log episode followed
        self._history: list[BatchState] = []

    @staticmethod
    def fit_key(params: PerceptionModelParams, obj: str, task: str | None) -> str | None:
        """The fit for ``obj`` in ``task``: the task's own, else the object's over several tasks, else the one task's
        that has the object; None: none."""
        if f"{task}/{obj}" in params.objects:
            return f"{task}/{obj}"
        if obj in params.objects:
            return obj
        others = [k for k in params.objects if k.rpartition("/")[2] == obj and "/" in k]
        return others[0] if len(others) == 1 else None

    @property
    def num_envs(self) -> int:
        return 0 if self._episode is None else len(self._episode)

    def _error(self, key: str, condition: str) -> ErrorModel:
        errors = self.params.objects[key].errors
        return errors.get(condition, errors["any"])

    def _draw_episodes(self, n: int) -> np.ndarray:
        """(n, K, phases): which log episode each env's object follows in each phase (by the episodes' weights)."""
        out = np.zeros((n, len(self.object_names), len(PHASES)), dtype=np.int64)
        for k, key in enumerate(self.keys):
            for c, cond in enumerate(PHASES):
                cdf = np.cumsum([ep["weight"] for ep in self._error(key, cond).episodes])
                out[:, k, c] = np.minimum(np.searchsorted(cdf / cdf[-1], self._rng.random(n), side="right"),
                                          len(cdf) - 1)
        return out

    def reset(self, num_envs: int) -> None:
        if int(num_envs) != num_envs or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        self._episode = self._draw_episodes(int(num_envs))
        self._history = []

    def reset_env(self, env_ids) -> None:
        if self._episode is None:
            raise RuntimeError("FittedPerception: call reset(num_envs) before reset_env")
        ids = np.atleast_1d(np.asarray(env_ids, dtype=np.int64))
        self._episode[ids] = self._draw_episodes(len(ids))
        # (a latency buffer keeps other envs' states; a reset env's own past is from its last episode: forget it by
        # not delaying it until it has a history again)
        for past in self._history:
            past.obj_pos[ids] = np.nan

    def _delayed(self, s: BatchState) -> BatchState:
        lat = self.params.latency_steps
        if lat == 0:
            return s
        self._history.append(BatchState(**{f: np.array(getattr(s, f), dtype=np.float64, copy=True)
                                           for f in BatchState.__dataclass_fields__}))
        self._history = self._history[-(lat + 1):]
        old = self._history[0]
        fresh = ~np.all(np.isfinite(old.obj_pos.reshape(len(old.obj_pos), -1)), axis=1)
        if not fresh.any():
            return old
        mixed = BatchState(**{f: np.array(getattr(old, f), copy=True) for f in BatchState.__dataclass_fields__})
        for f in BatchState.__dataclass_fields__:
            getattr(mixed, f)[fresh] = getattr(s, f)[fresh]
        return mixed

    def sample(self, s: BatchState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Positions (N, K, 3), quaternions (N, K, 4) and present (N, K) for the state ``s`` (true poses)."""
        if self._episode is None or len(self._episode) != len(s.obj_pos):
            raise RuntimeError(f"FittedPerception has {self.num_envs} envs, the state {len(s.obj_pos)}: call reset")
        return self._draw(self._delayed(s), self._episode)

    def _draw(self, src: BatchState, episode: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One draw for the states ``src`` (N envs) following the log episodes ``episode`` (N, K, phases)."""
        n, k = src.obj_pos.shape[:2]
        cell = cells(src.obj_pos, src.obj_quat, src.tcp_pos, src.tcp_quat, src.gripper_width, src.joint_pos,
                     self.params.camera_positions)
        ph = phases(src.obj_pos, src.tcp_pos, src.gripper_width)
        # draw everything every step so the stream depends only on the seed and shapes
        u_detect = self._rng.random((n, k))
        u_residual = self._rng.random((n, k))
        u_angle = self._rng.random((n, k))
        rot_axis = self._rng.standard_normal((n, k, 3))
        present = u_detect < self._rates[np.arange(k)[None, :], cell]
        pos = np.array(src.obj_pos, dtype=np.float64, copy=True)
        quat = np.array(src.obj_quat, dtype=np.float64, copy=True)
        angle = np.zeros((n, k))
        for j, key in enumerate(self.keys):
            for c, cond in enumerate(PHASES):
                m = ph[:, j] == c
                if not m.any():
                    continue
                e = self._error(key, cond)
                rows = np.flatnonzero(m)
                for ep in np.unique(episode[rows, j, c]):
                    sub = rows[episode[rows, j, c] == ep]
                    table = e.episodes[ep]
                    res = np.asarray(table["residuals_mm"], dtype=np.float64).reshape(-1, 3)
                    pick = (u_residual[sub, j] * len(res)).astype(int)
                    pos[sub, j] += (np.asarray(table["offset_mm"]) + res[pick]) * 1e-3
                angle[m, j] = np.interp(u_angle[m, j], QUANTILES, e.angle_quantiles)
        norm = np.linalg.norm(rot_axis, axis=-1, keepdims=True)
        rotvec = rot_axis / np.maximum(norm, 1e-12) * angle[..., None]
        quat = (Rotation.from_rotvec(rotvec.reshape(-1, 3)) * Rotation.from_quat(quat.reshape(-1, 4))).as_quat()
        quat = quat.reshape(n, k, 4)
        pos[~present] = 0.0
        quat[~present] = 0.0
        return pos, quat, present

    def view(self, s: BatchState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.sample(s)


# --- comparing the model with the estimator --------------------------------------------------------------------------
def model_on_log(log: CameraLog, params: PerceptionModelParams, seed: int = 0, repeats: int = 1) -> CameraLog:
    """What the model would have published for every row of ``log`` (its truth, TCP and gripper), each (episode,
    object) following one log episode per phase, as in an episode run; ``repeats`` independent runs over the log,
    concatenated (the model's heavy-tailed episode draws make one run's quantiles noisy)."""
    runs = []
    for r in range(int(repeats)):
        out = CameraLog(**{f: np.array(getattr(log, f), copy=True) for f in CameraLog.__dataclass_fields__})
        for task, name in sorted({(t, o) for t, o in zip(log.task.tolist(), log.object.tolist(), strict=True)}):
            model = FittedPerception(params, [name], seed=seed * 1000 + r, task=task)
            sel = np.flatnonzero((log.object == name) & (log.task == task))
            episodes, env = np.unique(log.episode[sel], return_inverse=True)
            followed = model._draw_episodes(len(episodes))[env.reshape(-1)]
            rows = BatchState(obj_pos=log.true_pos[sel][:, None], obj_quat=log.true_quat[sel][:, None],
                              joint_pos=log.joint_pos[sel], joint_vel=np.zeros((len(sel), 7)),
                              gripper_width=log.gripper_width[sel], tcp_pos=log.tcp_pos[sel],
                              tcp_quat=log.tcp_quat[sel])
            pos, quat, present = model._draw(rows, followed)
            out.detected[sel], out.est_pos[sel], out.est_quat[sel] = present[:, 0], pos[:, 0], quat[:, 0]
        runs.append(out)
    return runs[0] if len(runs) == 1 else CameraLog.concat(runs)


def _stats(detected: np.ndarray, pos_err: np.ndarray) -> tuple[float, float, float]:
    """Dropout rate, position error p50 and p90 (mm) of some rows."""
    norms = np.linalg.norm(pos_err[detected], axis=1) * 1e3
    p50, p90 = np.percentile(norms, (50, 90)) if len(norms) else (np.nan, np.nan)
    return float(1 - detected.mean()), float(p50), float(p90)


def compare(log: CameraLog, modelled: CameraLog, bootstrap: int = 300, seed: int = 0) -> list[dict]:
    """Per task, object and phase: images and episodes, the estimator's and the model's dropout rate and position
    (mm) / orientation (deg) error quantiles of the detected poses, and the estimator's 90 % interval over its
    episodes (``bootstrap`` resamples of the log's episodes: the estimator's rates vary far more between episodes
    than between steps) with whether the model's value lies in it (``*_in_interval``). ``modelled`` may hold
    several runs of the model over ``log`` (:func:`model_on_log` ``repeats``)."""
    rows = []
    rng = np.random.default_rng(seed)
    ph, m_ph = log_phases(log), log_phases(modelled)
    e_pos, e_ang = log.errors()
    m_pos, m_ang = modelled.errors()
    keys = sorted({(t, o) for t, o in zip(log.task.tolist(), log.object.tolist(), strict=True)})
    for task, name in keys:
        for p, phase in enumerate(PHASES):
            sel = (log.task == task) & (log.object == name) & (ph == p)
            msel = (modelled.task == task) & (modelled.object == name) & (m_ph == p)
            if not sel.any():
                continue
            episodes = np.unique(log.episode[sel])
            row = {"task": task, "object": name, "phase": phase, "images": int(sel.sum()),
                   "episodes": int(len(episodes)),
                   "dropout_estimator": float(1 - log.detected[sel].mean()),
                   "dropout_model": float(1 - modelled.detected[msel].mean())}
            for who, lg, s_, pe, ae in (("estimator", log, sel, e_pos, e_ang), ("model", modelled, msel, m_pos, m_ang)):
                d = s_ & lg.detected
                norms = np.linalg.norm(pe[d], axis=1) * 1e3
                angles = np.degrees(ae[d & np.isfinite(ae)])
                for q in (50, 90, 99):
                    row[f"pos_p{q}_mm_{who}"] = float(np.percentile(norms, q)) if len(norms) else None
                    row[f"rot_p{q}_deg_{who}"] = float(np.percentile(angles, q)) if len(angles) else None
            by_ep = {e: np.flatnonzero(sel & (log.episode == e)) for e in episodes}
            boots = []
            for _ in range(bootstrap):
                idx = np.concatenate([by_ep[e] for e in rng.choice(episodes, len(episodes))])
                boots.append(_stats(log.detected[idx], e_pos[idx]))
            boots = np.array(boots)
            for c, key in enumerate(("dropout", "pos_p50_mm", "pos_p90_mm")):
                col = boots[:, c][np.isfinite(boots[:, c])]
                lo, hi = (np.percentile(col, (5, 95)) if len(col) else (np.nan, np.nan))
                row[f"{key}_estimator_interval"] = [float(lo), float(hi)] if len(col) else None
                value = row[f"{key}_model"]
                row[f"{key}_in_interval"] = (None if value is None or not len(col) else
                                             bool(lo - 1e-9 <= value <= hi + 1e-9))
            rows.append(row)
    return rows
