"""Formats: detection, normalization, and every layout of the same data giving the same pairs."""

from __future__ import annotations

import pytest

from simper.data.formats import load_pairs
from simper.data.sources import Row
from simper.errors import UserError


def rows(*values):
    return [Row(v, f"f.jsonl:line {i + 1}") for i, v in enumerate(values)]


def msgs(*turns):
    return [{"role": role, "content": text} for role, text in turns]


USER = ("user", "What is 2+2?")


def test_text_formats_give_the_same_pairs():
    standard = rows({"prompt": "\n\nHuman: What is 2+2?\n\nAssistant:", "chosen": " 4.", "rejected": " 5."})
    implicit = rows(
        {
            "chosen": "\n\nHuman: What is 2+2?\n\nAssistant: 4.",
            "rejected": "\n\nHuman: What is 2+2?\n\nAssistant: 5.",
        }
    )
    (a,), fmt_a, _ = load_pairs(standard)
    (b,), fmt_b, _ = load_pairs(implicit)
    assert (fmt_a, fmt_b) == ("standard", "implicit prompt (text)")
    assert (a.prompt, a.chosen, a.rejected) == (b.prompt, b.chosen, b.rejected)


def test_hh_multi_turn_prompt_ends_at_last_shared_assistant_marker():
    history = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: 2+2?\n\nAssistant:"
    (pair,), _, _ = load_pairs(rows({"chosen": history + " 4", "rejected": history + " 22"}))
    assert pair.prompt == history and pair.chosen == " 4" and pair.rejected == " 22"


def test_chat_formats_give_the_same_pairs():
    chosen, rejected = msgs(("assistant", "4")), msgs(("assistant", "5"))
    layouts = {
        "conversational": {"prompt": msgs(USER), "chosen": chosen, "rejected": rejected},
        "conversational (UltraFeedback layout)": {
            "prompt": USER[1],
            "chosen": msgs(USER, ("assistant", "4")),
            "rejected": msgs(USER, ("assistant", "5")),
        },
        "implicit prompt (messages)": {
            "chosen": msgs(USER, ("assistant", "4")),
            "rejected": msgs(USER, ("assistant", "5")),
        },
    }
    for expected_fmt, layout in layouts.items():
        (pair,), fmt, _ = load_pairs(rows(layout))
        assert fmt == expected_fmt
        assert (pair.prompt, pair.chosen, pair.rejected) == (msgs(USER), chosen, rejected)


def test_identical_pairs_are_dropped_and_counted():
    pairs, _, drops = load_pairs(
        rows({"prompt": "p", "chosen": "a", "rejected": "a"}, {"prompt": "p", "chosen": "a", "rejected": "b"})
    )
    assert len(pairs) == 1 and drops == {"chosen identical to rejected": 1}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {"prompt": "p", "chosen": None, "rejected": "b"},
            r"line 1: field 'chosen': expected a string, got null",
        ),
        ({"prompt": "p", "chosen": 3, "rejected": "b"}, r"field 'chosen': expected a string, got a number"),
        ({"prompt": "p", "chosen": "  ", "rejected": "b"}, r"field 'chosen' is empty"),
        ({"question": "p", "answer": "a"}, r"columns found: question, answer"),
        (
            {"prompt": msgs(USER), "chosen": msgs(("user", "x")), "rejected": msgs(("assistant", "y"))},
            r"field 'chosen': the last message must be the assistant's",
        ),
        (
            {"prompt": msgs(USER), "chosen": [{"role": "assistant"}], "rejected": msgs(("assistant", "y"))},
            r"field 'chosen'\[0\]: message has no 'content'",
        ),
        ({"chosen": "no marker a", "rejected": "no marker b"}, r"cannot find the prompt"),
        (
            {"prompt": "p", "chosen": "a", "rejected": "b", "rejected_truncated": "yes"},
            r"line 1: field 'rejected_truncated': expected true or false, got a string",
        ),
    ],
)
def test_bad_rows_name_line_and_field(row, message):
    with pytest.raises(UserError, match=message):
        load_pairs(rows(row))


def test_missing_field_in_a_later_row():
    with pytest.raises(UserError, match=r"line 2: missing field 'rejected'"):
        load_pairs(rows({"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": "a"}))


def test_truncation_flags_are_read_in_any_format():
    (plain,), _, _ = load_pairs(rows({"prompt": "p", "chosen": "a", "rejected": "b"}))
    assert not plain.chosen_truncated and not plain.rejected_truncated
    flagged = {"prompt": msgs(USER), "chosen": msgs(("assistant", "a")), "rejected": msgs(("assistant", "b"))}
    (pair,), _, _ = load_pairs(rows({**flagged, "chosen_truncated": False, "rejected_truncated": True}))
    assert not pair.chosen_truncated and pair.rejected_truncated
