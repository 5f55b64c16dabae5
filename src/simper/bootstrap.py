"""The one bootstrap interval simper reports: gains resampled over prompts and, with several runs, seeds."""

from __future__ import annotations

import numpy as np


def bootstrap_interval(gains: np.ndarray, draws: int = 2000, seed: int = 0) -> list[float]:
    """95% interval of the mean of ``gains`` — per prompt ``(prompts,)``, or ``(runs, prompts)`` for
    several runs on the same prompts — when the prompts (and the runs) are drawn again with
    replacement, by a fixed draw. It says whether a gain is larger than what another set of prompts
    (and another set of seeds) would move it by."""
    gains = np.atleast_2d(gains)
    runs, prompts = gains.shape
    rng = np.random.default_rng(seed)
    columns = rng.integers(0, prompts, (draws, prompts))
    rows = rng.integers(0, runs, (draws, runs)) if runs > 1 else np.zeros((draws, 1), dtype=int)
    means = gains[rows[:, :, None], columns[:, None, :]].mean(axis=(1, 2))
    return [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))]
