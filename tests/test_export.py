"""simper eval --export: each benchmark's answer file from a small fixture of its question file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simper.cli import main

BENCH = Path(__file__).parent / "data" / "benchmarks"


def export(tiny_model_dir, fmt, questions, output):
    args = ["eval", str(tiny_model_dir), "--export", fmt, "--prompts", str(questions), "--output", str(output)]
    return main([*args, "--max-new-tokens", "6", "--model-id", "tiny"])


def test_alpaca_eval_model_outputs(tiny_model_dir, tmp_path):
    assert export(tiny_model_dir, "alpaca_eval", BENCH / "alpaca_eval.json", tmp_path) == 0
    outputs = json.loads((tmp_path / "model_outputs.json").read_text())
    questions = json.loads((BENCH / "alpaca_eval.json").read_text())
    assert [o["instruction"] for o in outputs] == [q["instruction"] for q in questions]
    assert all(o["generator"] == "tiny" and isinstance(o["output"], str) for o in outputs)
    assert [o["dataset"] for o in outputs] == ["helpful_base"] * 2


@pytest.mark.parametrize("fmt", ["arena_hard", "mt_bench"])
def test_arena_hard_and_mt_bench_answer_files_answer_every_turn(tiny_model_dir, tmp_path, fmt):
    assert export(tiny_model_dir, fmt, BENCH / f"{fmt}.jsonl", tmp_path) == 0
    answers = [json.loads(line) for line in (tmp_path / "tiny.jsonl").read_text().splitlines()]
    questions = [json.loads(line) for line in (BENCH / f"{fmt}.jsonl").read_text().splitlines()]
    assert [a["question_id"] for a in answers] == [q["question_id"] for q in questions]
    for a, q in zip(answers, questions, strict=True):
        assert a["model_id"] == "tiny" and len(a["answer_id"]) == 32 and a["tstamp"] > 0
        (choice,) = a["choices"]
        assert choice["index"] == 0 and len(choice["turns"]) == len(q["turns"])
        kind = dict if fmt == "arena_hard" else str  # Arena-Hard: {"content": ...}; MT-Bench: plain strings
        assert all(isinstance(turn, kind) for turn in choice["turns"])


def test_second_turns_see_the_first_answer(tiny_model_dir, monkeypatch):
    from simper.export import answer

    seen = []

    def generator(tokenizer, conversations, **_):
        seen.append([list(c) for c in conversations])  # as they were at the call
        return type("G", (), {"texts": [[f"answer {len(c)}"] for c in conversations]})()

    questions = [{"row": {}, "turns": ["one", "two"]}, {"row": {}, "turns": ["solo"]}]
    assert answer(generator, None, questions) == [["answer 1", "answer 3"], ["answer 1"]]
    assert seen[1] == [[{"role": "user", "content": "one"}, {"role": "assistant", "content": "answer 1"},
                        {"role": "user", "content": "two"}]]  # fmt: skip


@pytest.mark.parametrize(
    ("fmt", "row", "message"),
    [
        ("alpaca_eval", '{"prompt": "x"}', "field 'instruction': expected a non-empty string"),
        ("mt_bench", '{"turns": ["x"]}', "field 'question_id': missing"),
        ("arena_hard", '{"question_id": 1, "turns": ["x"]}', "field 'turns': expected a non-empty list"),
    ],
)
def test_a_bad_question_names_file_line_and_field(tiny_model_dir, tmp_path, capsys, fmt, row, message):
    questions = tmp_path / "q.jsonl"
    questions.write_text(row + "\n")
    assert export(tiny_model_dir, fmt, questions, tmp_path / "out") == 2
    assert f"q.jsonl:line 1: {message}" in capsys.readouterr().err and not (tmp_path / "out").exists()
