"""Human-teleop-like expert styles: per-episode speed, noise, hesitation, via points, misaligned descents."""

from __future__ import annotations

import numpy as np

from franka_sim.experts.machine import ExpertStyle


def teleop_style(rng: np.random.Generator) -> ExpertStyle:
    """A random human-teleop-like style: slower or faster, noisy, hesitant, sometimes misaligned."""
    speed = rng.uniform(0.5, 1.0)
    return ExpertStyle(
        max_step=0.02 * speed,
        max_rot_step=0.15 * speed,
        pos_noise=rng.uniform(0.001, 0.003),
        rot_noise=rng.uniform(0.005, 0.02),
        pause_prob=rng.uniform(0.0, 0.04),
        pause_steps=(2, 8),
        via_point_offset=rng.uniform(0.0, 0.08),
        misalign_prob=0.3,
        misalign_dist=rng.uniform(0.01, 0.025),
    )
