"""Process-level settings for the per-step policy loops."""

from __future__ import annotations


def limit_blas_threads(n: int = 1) -> None:
    """Limit BLAS (OpenBLAS / MKL) to ``n`` threads for the rest of the process.

    The residual's numpy forward pass and the observation maths are tiny matrix products; with OpenBLAS's
    default of one thread per core they fight the MuJoCo physics threads for the same two cores, and a
    batch forward pass went from 0.2 ms to 14 ms (measured with cProfile during evaluation). The CLIs that step
    policies call this once at start-up; the ROS nodes call :func:`limit_compute_threads`, which covers it.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n, user_api="blas")


def limit_compute_threads(n: int = 1) -> dict[str, int]:
    """Limit every compute thread pool already loaded in this process to ``n`` threads: BLAS and OpenMP (via
    threadpoolctl), torch's intra-op pool and OpenCV's, where those modules are imported. Returns what was set.

    For the graph's node processes (six Python processes on two cores here): a pool of one thread per core in
    each node makes their worker threads fight over the cores, and idle pool threads spin-wait after each parallel
    region, so a base inference or a residual forward pass could delay another node's step on the control path.
    Call it after the node's heavy modules are imported (pools of libraries loaded later are not covered).
    """
    import sys

    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)
    done = {"threadpoolctl": n}
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
        done["torch"] = n
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(n)
        done["cv2"] = n
    return done
