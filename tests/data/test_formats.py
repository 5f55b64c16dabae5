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


def test_responses_holding_another_speakers_turn_are_dropped_and_counted():
    """Transcripts that differ before their last turn leave a user turn inside the response: training
    would teach the model to write the user's words. Such pairs are left out and counted."""
    earlier = msgs(USER, ("assistant", "hello"), ("user", "tell me a joke"), ("assistant", "A joke."))
    other = msgs(USER, ("assistant", "hi"), ("user", "tell me a joke"), ("assistant", "A joke."))
    fine = {"chosen": msgs(USER, ("assistant", "4")), "rejected": msgs(USER, ("assistant", "5"))}
    pairs, _, drops = load_pairs(rows(fine, {"chosen": earlier, "rejected": other}))
    assert len(pairs) == 1 and sum(drops.values()) == 1 and "user or system turn" in next(iter(drops))
    text = {"chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: joke?\n\nAssistant: A joke.",
            "rejected": "\n\nHuman: hi\n\nAssistant: hi\n\nHuman: joke?\n\nAssistant: A joke."}  # fmt: skip
    assert load_pairs(rows(text))[0] == []


def test_standard_responses_that_repeat_the_prompt_are_cut_after_it():
    prompt = "\n\nHuman: What is 2+2?\n\nAssistant:"
    (pair,), _, _ = load_pairs(rows({"prompt": prompt, "chosen": prompt + " 4.", "rejected": prompt + " 5."}))
    assert (pair.prompt, pair.chosen, pair.rejected) == (prompt, " 4.", " 5.")


def test_a_message_list_written_as_text_is_refused_by_row_and_field():
    """A CSV (or a pandas string column) holds a message list as its Python repr: read as a standard
    pair, the repr itself would be trained on."""
    repr_row = {"prompt": "[{'role': 'user', 'content': 'Hi'}]", "chosen": "a", "rejected": "b"}
    with pytest.raises(UserError, match=r"f.jsonl:line 1: field 'prompt': a list of messages written out as text"):
        load_pairs(rows(repr_row))


def test_messages_keep_their_other_keys_for_the_template():
    chosen = [{"role": "assistant", "content": "", "tool_calls": [{"name": "add"}]}, {"role": "tool", "content": "4"},
              {"role": "assistant", "content": "It is 4."}]  # fmt: skip
    (pair,), _, _ = load_pairs(rows({"prompt": msgs(USER), "chosen": chosen, "rejected": msgs(("assistant", "5"))}))
    assert pair.chosen[0]["tool_calls"] == [{"name": "add"}]


def test_none_keys_from_a_columnar_file_do_not_split_equal_turns():
    """Arrow gives every message of a column every key another message has, None where absent: the
    repeated user turn must still match the prompt's (else every pair was dropped)."""
    chosen = [{"role": "user", "content": USER[1], "name": None}, {"role": "assistant", "content": "4", "name": "bot"}]
    rejected = [{"role": "user", "content": USER[1], "name": None}, {"role": "assistant", "content": "5", "name": None}]
    (pair,), _, drops = load_pairs(rows({"prompt": msgs(USER), "chosen": chosen, "rejected": rejected}))
    assert not drops and pair.chosen == [{"role": "assistant", "content": "4", "name": "bot"}]


def test_an_answer_that_is_json_data_is_not_mistaken_for_messages():
    answer = '[{"name": "Ada", "role": "engineer"}]'
    (pair,), _, _ = load_pairs(rows({"prompt": "List the staff as JSON.", "chosen": answer, "rejected": "[]"}))
    assert pair.chosen == answer
