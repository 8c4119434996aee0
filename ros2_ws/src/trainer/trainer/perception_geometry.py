"""The geometry of the fitted perception model (trainer.perception_model): which arm and hand parts stand between a
camera and an object, how far an object is from being hidden, and the cell (clearance bins per camera, grasped,
tipped) whose detection rate the model counts. Batched over (N envs, K objects); numpy only."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.spatial.transform import Rotation

HAND_SPHERES: tuple[tuple[float, float], ...] = ((0.02, 0.045), (0.07, 0.06))
"""(distance behind the TCP along its tool axis (m), radius (m)): the fingers and the hand (franka hand: TCP 0.1034 m
from the flange)."""
ARM_SPHERES: tuple[tuple[int, int, float], ...] = ((3, 3, 0.07), (4, 4, 0.07), (4, 5, 0.06), (5, 5, 0.06),
                                                   (7, 7, 0.06))
"""(DH frame a, DH frame b, radius (m)): spheres at the midpoint of the two frames' origins (the FR3's published DH
parameters, franka_sim.robot): the elbow, the forearm, the wrist, the flange."""
CLEARANCE_EDGES: tuple[float, ...] = (0.0, 1.5)
"""Bin edges of :func:`occlusion_clearance` (object angular radii): hidden (< 0), at the edge, clear (>= 1.5)."""
PHASES = ("far", "near", "grasped")
"""Phases of :func:`phases` (comparisons are reported per phase): the TCP over 10 cm from the object, within, or
grasping it."""

# --- geometry ------------------------------------------------------------------------------------------------------
def _tool_axis(tcp_quat: np.ndarray) -> np.ndarray:
    """(..., 3) the TCP's z axis (from the flange towards the fingers) in the base frame."""
    q = np.asarray(tcp_quat, dtype=np.float64)
    return Rotation.from_quat(q.reshape(-1, 4)).apply([0.0, 0.0, 1.0]).reshape(q.shape[:-1] + (3,))


def arm_link_origins(joint_pos: np.ndarray) -> np.ndarray:
    """(N, 8, 3) origins of the FR3's DH frames 0..7 in the base frame for joint positions (N, 7) (batched DH)."""
    from franka_sim.robot import DH_A, DH_ALPHA, DH_D

    q = np.asarray(joint_pos, dtype=np.float64)
    n = len(q)
    T = np.broadcast_to(np.eye(4), (n, 4, 4)).copy()
    out = np.zeros((n, 8, 3))
    for i in range(7):
        ca, sa, cq, sq = np.cos(DH_ALPHA[i]), np.sin(DH_ALPHA[i]), np.cos(q[:, i]), np.sin(q[:, i])
        A = np.zeros((n, 4, 4))
        A[:, 0, 0], A[:, 0, 1], A[:, 0, 3] = cq, -sq, DH_A[i]
        A[:, 1, 0], A[:, 1, 1], A[:, 1, 2], A[:, 1, 3] = sq * ca, cq * ca, -sa, -DH_D[i] * sa
        A[:, 2, 0], A[:, 2, 1], A[:, 2, 2], A[:, 2, 3] = sq * sa, cq * sa, ca, DH_D[i] * ca
        A[:, 3, 3] = 1.0
        T = T @ A
        out[:, i + 1] = T[:, :3, 3]
    return out


def occluder_spheres(joint_pos: np.ndarray, tcp_pos: np.ndarray, tcp_quat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centres (N, P, 3) and radii (P,) of the spheres standing for the arm and hand (:data:`ARM_SPHERES`,
    :data:`HAND_SPHERES`)."""
    origins = arm_link_origins(joint_pos)
    axis = _tool_axis(tcp_quat)
    centres = [0.5 * (origins[:, a] + origins[:, b]) for a, b, _ in ARM_SPHERES]
    centres += [np.asarray(tcp_pos, dtype=np.float64) - back * axis for back, _ in HAND_SPHERES]
    radii = [r for _, _, r in ARM_SPHERES] + [r for _, r in HAND_SPHERES]
    return np.stack(centres, axis=1), np.asarray(radii)


def occlusion_clearance(obj_pos: np.ndarray, spheres: tuple[np.ndarray, np.ndarray], camera_pos: np.ndarray,
                        object_radius: float = 0.03) -> np.ndarray:
    """(N, K): how clear each object is of the arm and hand as seen from a camera at ``camera_pos`` (3,), in object
    angular radii: min over the ``spheres`` (:func:`occluder_spheres`) nearer the camera than the object of (angle
    between the rays to the object and to the sphere - the sphere's angular radius) / the object's angular radius.
    Below 0: the object's centre is behind a sphere; no sphere in front: 10."""
    obj = np.asarray(obj_pos, dtype=np.float64)  # (N, K, 3)
    cam = np.asarray(camera_pos, dtype=np.float64).reshape(1, 1, 3)
    to_obj = obj - cam
    d_obj = np.linalg.norm(to_obj, axis=-1)  # (N, K)
    u_obj = to_obj / np.maximum(d_obj[..., None], 1e-9)
    alpha = np.arctan2(object_radius, d_obj)
    centres, radii = spheres
    out = np.full(d_obj.shape, 10.0)
    for p, radius in enumerate(radii):
        to_s = centres[:, p][:, None, :] - cam  # (N, 1, 3)
        d_s = np.linalg.norm(to_s, axis=-1)  # (N, 1)
        u_s = to_s / np.maximum(d_s[..., None], 1e-9)
        angle = np.arccos(np.clip(np.sum(u_obj * u_s, axis=-1), -1.0, 1.0))
        rho = np.arcsin(np.clip(radius / np.maximum(d_s, radius), 0.0, 1.0))
        out = np.where(d_s < d_obj, np.minimum(out, (angle - rho) / alpha), out)
    return out


def grasped(obj_pos: np.ndarray, tcp_pos: np.ndarray, gripper_width: np.ndarray, grasp_radius_m: float = 0.04,
            open_width_m: float = 0.075) -> np.ndarray:
    """(N, K) bool: the object is within ``grasp_radius_m`` of the TCP and the gripper is not fully open."""
    dist = np.linalg.norm(np.asarray(obj_pos) - np.asarray(tcp_pos)[:, None, :], axis=-1)
    return (dist < grasp_radius_m) & (np.asarray(gripper_width)[:, None] < open_width_m)


def tipped(obj_quat: np.ndarray) -> np.ndarray:
    """(N, K) bool: the object's z axis is more than 45 deg from the vertical."""
    q = np.asarray(obj_quat, dtype=np.float64)
    z = Rotation.from_quat(q.reshape(-1, 4)).apply([0.0, 0.0, 1.0]).reshape(q.shape[:-1] + (3,))
    return z[..., 2] < np.cos(np.pi / 4)


def phases(obj_pos: np.ndarray, tcp_pos: np.ndarray, gripper_width: np.ndarray) -> np.ndarray:
    """(N, K) index into :data:`PHASES`."""
    dist = np.linalg.norm(np.asarray(obj_pos) - np.asarray(tcp_pos)[:, None, :], axis=-1)
    out = np.where(dist > 0.10, 0, 1)
    return np.where(grasped(obj_pos, tcp_pos, gripper_width), 2, out)


def n_cells(n_cameras: int) -> int:
    return (len(CLEARANCE_EDGES) + 1) ** n_cameras * 4


def cells(obj_pos, obj_quat, tcp_pos, tcp_quat, gripper_width, joint_pos, camera_positions: Sequence) -> np.ndarray:
    """(N, K) cell index in [0, :func:`n_cells`): the clearance bin per camera, grasped, tipped."""
    idx = np.zeros(np.asarray(obj_pos).shape[:2], dtype=np.int64)
    spheres = occluder_spheres(joint_pos, tcp_pos, tcp_quat)
    for cam in camera_positions:
        c = occlusion_clearance(obj_pos, spheres, np.asarray(cam))
        idx = idx * (len(CLEARANCE_EDGES) + 1) + np.digitize(c, CLEARANCE_EDGES)
    idx = idx * 2 + grasped(obj_pos, tcp_pos, gripper_width)
    return idx * 2 + tipped(obj_quat)
