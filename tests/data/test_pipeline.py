"""Splitting the training file into training and held-out pairs; repeated pairs."""

from __future__ import annotations

import pytest

from simper.data.formats import PreferencePair
from simper.data.pipeline import repeated_pairs, split_by_prompt
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
    assert split_by_prompt(pairs[:1], 0.5, seed=3) == (pairs[:1], [])  # the caller reports what is left
    skewed = [PreferencePair("big", f"a{i}", f"b{i}", "") for i in range(90)]
    skewed += [PreferencePair(f"p{i}", "a", "b", "") for i in range(10)]
    for seed in range(5):  # one prompt holds 90 of 100 pairs: it is never what a 5% split holds out
        assert 1 <= len(split_by_prompt(skewed, 0.05, seed)[1]) <= 9


def test_a_held_out_source_that_is_a_training_source_is_refused(tmp_path):
    """A save_to_disk folder of one dataset has no splits: ``folder`` as training data and ``folder``
    for the held-out set (split 'test') read the same rows; a split named on it does not exist."""
    import datasets

    from simper.data.pipeline import prepare_data
    from simper.data.sources import read_rows

    rows = [{"prompt": f"p{i}", "chosen": "a", "rejected": "b"} for i in range(4)]
    folder = tmp_path / "saved"
    datasets.Dataset.from_list(rows).save_to_disk(str(folder))
    settings = dict(tokenizer=None, split="train", eval_split="test", eval_fraction=0.0, max_length=64,
                    max_prompt_length=32, seed=0)  # fmt: skip
    with pytest.raises(UserError, match="reads the same rows as a training source"):
        prepare_data([str(folder)], [str(folder)], **settings)
    with pytest.raises(UserError, match="holds one dataset, without splits"):
        read_rows(f"{folder}:nosuchsplit")
    assert len(read_rows(str(folder))) == 4


def test_repeated_pairs_are_word_for_word_copies_in_any_key_order():
    """Chat messages whose keys come in another order are the same pair; one differing character, or
    chosen and rejected swapped, is another pair. Extra message fields that JSON cannot write (bytes)
    do not crash the check."""
    user = [{"role": "user", "content": "Hi"}]
    answer = [{"role": "assistant", "content": "Hello", "meta": b"\x00"}]
    reordered = [{"content": "Hello", "meta": b"\x00", "role": "assistant"}]
    other = [{"role": "assistant", "content": "Hello."}]
    pairs = [
        PreferencePair(user, answer, other, "a.jsonl:line 1"),
        PreferencePair(user, reordered, other, "b.jsonl:line 7"),  # a copy of line 1
        PreferencePair(user, other, answer, "b.jsonl:line 8"),  # swapped: another pair
        PreferencePair("Say hi.", "Hi!", "No.", "c.jsonl:line 1"),
        PreferencePair("Say hi.", "Hi!", "No!", "c.jsonl:line 2"),
        PreferencePair("Say hi.", "Hi!", "No.", "c.jsonl:line 3"),  # a copy of c's line 1
    ]
    assert [(a.origin, b.origin) for a, b in repeated_pairs(pairs)] == [
        ("b.jsonl:line 7", "a.jsonl:line 1"),
        ("c.jsonl:line 3", "c.jsonl:line 1"),
    ]
