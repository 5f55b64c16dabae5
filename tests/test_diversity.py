"""Loops, distinct-n and sample diversity on texts worked by hand."""

from __future__ import annotations

import pytest

from simper.diversity import degeneration, distinct_n, is_looping, sample_diversity

PROSE = (
    "Glaciers form where snow piles up faster than it melts. Over many years the weight of new snow "
    "presses the older layers into dense ice, and the ice begins to flow downhill under its own weight. "
    "As a glacier moves it scrapes the rock below, carving valleys, carrying boulders far from home and "
    "leaving ridges of gravel where it stops. Today most glaciers are shrinking as summers grow warmer."
)


def test_a_cycling_phrase_is_a_loop_and_prose_or_a_numbered_list_is_not():
    assert is_looping("Here is my answer. " + "The sky is blue and the sea is wide. " * 12)
    assert is_looping("Sure! " + "!" * 60)
    assert not is_looping(PROSE)
    assert not is_looping("\n".join(f"* Fact {i}: item number {i} is listed here" for i in range(1, 15)))
    assert not is_looping("yes " * 20)  # too short to call


def test_distinct_n_by_hand():
    assert distinct_n(["a b a b"], 1) == pytest.approx(2 / 4)
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)  # (a b), (b a), (a b)
    assert distinct_n(["a b", "a b"], 2) == pytest.approx(1 / 2)
    assert distinct_n([""], 2) == 0.0


def test_degeneration_splits_cut_off_answers_into_loops_and_long_sound_ones():
    loop = "The sky is blue and the sea is wide. " * 12
    metrics = degeneration([loop, PROSE, "short."], [False, False, True])
    assert metrics["loop_share"] == pytest.approx(1 / 3)
    assert metrics["cutoff_share"] == pytest.approx(2 / 3) and metrics["cutoff_loop_share"] == pytest.approx(1 / 3)


def test_sample_diversity_is_one_for_disjoint_samples_and_one_over_k_for_identical_ones():
    identical = sample_diversity([["a b c"] * 4])
    assert identical["sample_distinct_2"] == pytest.approx(1 / 4) and identical["sample_unique_share"] == 1 / 4
    disjoint = sample_diversity([["a b", "c d", "e f", "g h"]])
    assert disjoint["sample_distinct_2"] == 1.0 and disjoint["sample_unique_share"] == 1.0
    assert sample_diversity([]) == {}
