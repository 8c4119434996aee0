"""Process-level settings for the per-step policy loops."""

from __future__ import annotations


def limit_blas_threads(n: int = 1) -> None:
    """Limit BLAS (OpenBLAS / MKL) to ``n`` threads for the rest of the process.

    The residual's numpy forward pass and the observation maths are tiny matrix products; with OpenBLAS's
    default of one thread per core they fight the MuJoCo physics threads for the same two cores, and a
    batch forward pass went from 0.2 ms to 14 ms (measured with cProfile during evaluation). Every CLI and
    node that steps policies calls this once at start-up.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n, user_api="blas")
