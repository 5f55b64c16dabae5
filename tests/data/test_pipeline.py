"""Splitting the training file into training and held-out pairs."""

from __future__ import annotations

import pytest

from simper.data.formats import PreferencePair
from simper.data.pipeline import split_by_prompt
from simper.errors import UserError


def test_eval_fraction_holds_out_whole_prompts():
    """Four pairs per prompt and repeated rows: a pair-level split put 6 of 10 held-out pairs beside an
    identical training pair; held out by prompt, no held-out prompt is trained on."""
    pairs = [PreferencePair(f"prompt {i // 4}", f"good {i}", f"bad {i}", f"line {i}") for i in range(40)]
    pairs += pairs[:10]  # repeated rows
    train, held_out = split_by_prompt(pairs, 0.2, seed=3)
    assert {p.prompt for p in train}.isdisjoint({p.prompt for p in held_out})
    assert len(train) + len(held_out) == len(pairs) and 8 <= len(held_out) <= 14
    assert split_by_prompt(pairs, 0.2, seed=3) == (train, held_out)  # seeded
    assert split_by_prompt(pairs, 0.2, seed=4) != (train, held_out)
    assert split_by_prompt(pairs[:8], 0.9, seed=3)[0]  # one prompt is always left to train on
    with pytest.raises(UserError, match="every pair has the same prompt"):
        split_by_prompt(pairs[:4], 0.5, seed=3)
