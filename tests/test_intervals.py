"""The intervals behind every gain simper reports: one run over prompts, several seeds over seeds and prompts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from simper.intervals import gain_interval, prompt_interval, seed_prompt_interval


def test_one_run_is_a_bootstrap_over_its_prompts():
    assert gain_interval(np.full(50, 0.1)) == pytest.approx([0.1, 0.1])
    low, high = prompt_interval(np.array([1.0] + [0.0] * 9))
    assert low == 0.0 and 0.2 <= high <= 0.4


def test_seeds_that_disagree_give_students_t_over_the_seeds():
    # every prompt moves alike within a seed: only the seeds' spread is left, with S - 1 degrees of freedom
    gains = np.array([[0.0] * 50, [0.1] * 50, [0.2] * 50])
    half = stats.t.ppf(0.975, 2) * 0.1 / np.sqrt(3)
    assert seed_prompt_interval(gains) == pytest.approx([0.1 - half, 0.1 + half])
    assert gain_interval(np.array([[0.1] * 50, [0.1] * 50])) == pytest.approx([0.1, 0.1])


def test_seeds_that_agree_give_the_prompts_interval():
    prompts = np.random.default_rng(0).normal(0.05, 0.3, 200)
    low, high = seed_prompt_interval(np.stack([prompts, prompts, prompts]))
    half = stats.t.ppf(0.975, 199) * prompts.std(ddof=1) / np.sqrt(200)
    assert [low, high] == pytest.approx([prompts.mean() - half, prompts.mean() + half])


def test_a_higher_confidence_uses_the_matching_quantile():
    # several intervals read together (Bonferroni): the t quantile moves, the bootstrap draws further out
    gains = np.array([[0.0] * 50, [0.1] * 50, [0.2] * 50])
    half = stats.t.ppf(1 - 0.0025 / 2, 2) * 0.1 / np.sqrt(3)
    assert gain_interval(gains, confidence=0.9975) == pytest.approx([0.1 - half, 0.1 + half])
    prompts = np.random.default_rng(0).normal(0.05, 0.3, 200)
    half = stats.t.ppf(1 - 0.0025 / 2, 199) * prompts.std(ddof=1) / np.sqrt(200)  # one run's far tails: t
    assert gain_interval(prompts, confidence=0.9975) == pytest.approx([prompts.mean() - half, prompts.mean() + half])
    with pytest.raises(ValueError, match="confidence"):
        gain_interval(prompts, confidence=1.0)


def test_seeds_whose_means_tie_still_carry_the_interaction():
    # each seed gains on its own third of the prompts: equal seed means, equal prompt means, yet not a
    # certain gain — the interval keeps the interaction's width instead of collapsing to a point
    gains = np.zeros((3, 12))
    for seed in range(3):
        gains[seed, seed * 4 : seed * 4 + 4] = 1.0
    low, high = seed_prompt_interval(gains)
    assert low < 1 / 3 < high and high - low > 0.2
    assert seed_prompt_interval(np.full((3, 12), 0.25)) == pytest.approx([0.25, 0.25])  # truly constant


def test_a_spread_that_cannot_be_measured_gives_no_interval():
    assert np.isnan(gain_interval(np.array([0.5]))).all()  # one prompt
    assert np.isnan(seed_prompt_interval(np.array([[0.1], [0.3], [0.2]]))).all()  # seeds on one prompt


@pytest.mark.parametrize("seed_sd", [0.0, 0.05, 0.1])
def test_three_seeds_cover_the_true_gain_95_percent_of_the_time(seed_sd):
    # gain = mu + seed effect + prompt effect + seed-by-prompt noise: the sizes of the 24-step main job's 3 seeds
    # (seeds disagree by ~0.03, per-prompt gains spread ~0.35 over 256 prompts) and beyond. The bootstrap
    # that redrew the three seeds fails the bounds: it covered 0.98 / 0.88 / 0.79 of 600 such trials.
    rng = np.random.default_rng(1)
    trials = 2000
    mu = 0.04
    gains = (
        mu
        + rng.normal(0, seed_sd, (trials, 3, 1))
        + rng.normal(0, 0.2, (trials, 1, 256))
        + rng.normal(0, 0.3, (trials, 3, 256))
    )
    covered = np.mean([low <= mu <= high for low, high in map(seed_prompt_interval, gains)])
    assert 0.90 <= covered <= 0.975
