"""PNG plots of a demo run (matplotlib, Agg backend; no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from residual_bringup.demo.results import PHASE_TITLES, EpisodeRecord, residual_magnitudes  # noqa: E402

COLOURS = {"base": "tab:blue", "residual": "tab:orange", "final": "tab:green", "tcp": "0.3"}


def plot_trajectory(episode: EpisodeRecord, path: str | Path, residual_gain: float = 5.0, every: int = 0) -> Path:
    """The TCP path of one episode seen from above (x-y) and from the side (x-z), with the base, residual and
    final translation of every ``every``-th step (0: about 60 arrows per kind) drawn as arrows from the TCP
    (residual arrows ``residual_gain`` x longer)."""
    recs = [r for r in episode.records if r.tcp_pos is not None]
    recs = recs[::max(1, every or len(recs) // 60)]
    if not recs:
        raise ValueError(f"episode {episode.episode} (seed {episode.seed}) has no steps with a TCP position")
    tcp = np.stack([r.tcp_pos for r in recs])
    vec = {k: np.stack([getattr(r, k)[0:3] for r in recs]) for k in ("base", "residual", "final")}
    vec["residual"] = vec["residual"] * residual_gain
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for ax, (i, j, labels) in zip(axes, ((0, 1, ("x (m)", "y (m)")), (0, 2, ("x (m)", "z (m)"))), strict=True):
        ax.plot(tcp[:, i], tcp[:, j], "-", color=COLOURS["tcp"], lw=1.2, label="TCP")
        ax.plot(tcp[0, i], tcp[0, j], "o", color=COLOURS["tcp"], ms=5)
        for key, label in (("base", "base"), ("residual", f"residual x{residual_gain:g}"), ("final", "final")):
            ax.quiver(tcp[:, i], tcp[:, j], vec[key][:, i], vec[key][:, j], color=COLOURS[key], angles="xy",
                      scale_units="xy", scale=1.0, width=0.003, label=label, alpha=0.85)
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
        ax.set_aspect("equal", adjustable="datalim")
        ax.grid(alpha=0.3)
    axes[0].set_title("top view")
    axes[1].set_title("side view")
    axes[0].legend(loc="best", fontsize=8)
    outcome = "success" if episode.success else "failure"
    fig.suptitle(f"{PHASE_TITLES.get(episode.phase, episode.phase)}, seed {episode.seed}: {outcome} after "
                 f"{episode.steps} steps (arrows: per-step translation from the TCP)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_residual_magnitude(episodes: list[EpisodeRecord], path: str | Path) -> Path:
    """|residual translation| (mm) and |residual rotation| (deg) per step, one line per episode, and their mean."""
    fig, axes = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    longest = max((len(e.records) for e in episodes), default=0)
    sums = np.zeros((2, longest))
    counts = np.zeros(longest)
    for e in episodes:
        trans, rot = residual_magnitudes(e.records)
        steps = [r.step for r in e.records]
        axes[0].plot(steps, trans * 1e3, lw=0.8, alpha=0.5)
        axes[1].plot(steps, np.degrees(rot), lw=0.8, alpha=0.5)
        n = len(trans)
        sums[0, :n] += trans * 1e3
        sums[1, :n] += np.degrees(rot)
        counts[:n] += 1
    if longest:
        mean = sums / np.maximum(counts, 1)
        for ax, m in zip(axes, mean, strict=True):
            ax.plot(np.arange(longest), m, color="k", lw=2, label="mean over episodes")
            ax.legend(loc="upper right", fontsize=8)
    axes[0].set_ylabel("|residual translation| (mm)")
    axes[1].set_ylabel("|residual rotation| (deg)")
    axes[1].set_xlabel("control step (20 Hz)")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"residual magnitude per step ({len(episodes)} episodes with the residual on)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
