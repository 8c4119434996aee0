"""MuJoCo Franka simulator: robot model, Cartesian controller, five task scenes, gymnasium environments,
scripted experts, offscreen camera; plus the sim ROS node."""

import ctypes.util
import os
import sys


def _choose_gl_backend() -> str:
    """Set MUJOCO_GL before mujoco is imported: keep the user's, else egl if libEGL exists, else osmesa."""
    if "MUJOCO_GL" in os.environ or "mujoco" in sys.modules:
        return os.environ.get("MUJOCO_GL", "")
    backend = "egl" if ctypes.util.find_library("EGL") else "osmesa"
    os.environ["MUJOCO_GL"] = backend
    return backend


GL_BACKEND = _choose_gl_backend()
