"""``simper eval --export``: answer files for the benchmarks people publish, from their own question files.

Each format reads that benchmark's question file and writes the answer file its judge reads:

- ``alpaca_eval``: questions ``{"instruction", ...}`` (the AlpacaEval set, a JSON list or JSON
  lines); answers a JSON list of ``{"instruction", "output", "generator", "dataset"?}`` —
  ``alpaca_eval --model_outputs FILE``.
- ``arena_hard``: questions ``{"question_id", "turns": [{"content"}], ...}``; answers JSON lines
  ``{"question_id", "answer_id", "model_id", "choices": [{"index": 0, "turns": [{"content"}]}],
  "tstamp"}`` — the ``data/BENCH/model_answer/MODEL.jsonl`` Arena-Hard-Auto's judging step reads.
- ``mt_bench``: questions ``{"question_id", "turns": [str, str]}``; answers JSON lines as above
  with the turns as plain strings — FastChat's ``llm_judge/data/mt_bench/model_answer/MODEL.jsonl``.

Multi-turn questions are answered turn by turn, each turn seeing the model's earlier answers.
Answers are greedy (what these leaderboards compare) unless ``temperature`` is set.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from simper.data.sources import read_rows
from simper.errors import UserError

FORMATS = ("alpaca_eval", "arena_hard", "mt_bench")


def read_questions(path: str, fmt: str) -> list[dict[str, Any]]:
    """``[{"row": the question as read, "turns": [user message, ...]}]`` from a benchmark's file.

    Raises:
        UserError: a row without the fields the format needs, naming file, row and field.
    """
    if fmt not in FORMATS:
        raise UserError(f"--export must be one of {', '.join(FORMATS)}, got {fmt!r}")
    questions = []
    for row in read_rows(path):
        values = row.values
        if fmt == "alpaca_eval":
            turns = [values.get("instruction")]
            field = "instruction"
        else:
            turns = values.get("turns")
            field = "turns"
            if fmt == "arena_hard" and isinstance(turns, list):
                turns = [t.get("content") if isinstance(t, dict) else None for t in turns]
            if "question_id" not in values:
                raise UserError(f"{row.origin}: field 'question_id': missing")
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t for t in turns):
            expected = "a non-empty string" if fmt == "alpaca_eval" else "a non-empty list of user turns"
            raise UserError(f"{row.origin}: field {field!r}: expected {expected}")
        questions.append({"row": values, "turns": turns})
    if not questions:
        raise UserError(f"{path}: no questions")
    return questions


def answer(generator, tokenizer, questions: list[dict[str, Any]], **sampling: Any) -> list[list[str]]:
    """Each question's answers, one per user turn; turn t sees the question's turns and answers before it."""
    conversations: list[list[dict[str, str]]] = [[] for _ in questions]
    answers: list[list[str]] = [[] for _ in questions]
    for turn in range(max(len(q["turns"]) for q in questions)):
        todo = [i for i, q in enumerate(questions) if turn < len(q["turns"])]
        for i in todo:
            conversations[i].append({"role": "user", "content": questions[i]["turns"][turn]})
        result = generator(tokenizer, [conversations[i] for i in todo], **sampling)
        for i, texts in zip(todo, result.texts, strict=True):
            conversations[i].append({"role": "assistant", "content": texts[0]})
            answers[i].append(texts[0])
    return answers


def write_answers(path: Path, fmt: str, questions: list[dict[str, Any]], answers: list[list[str]], model_id: str):
    """Write ``answers`` in ``fmt``'s answer-file layout to ``path`` (a temporary name, then renamed)."""
    if fmt == "alpaca_eval":
        records = [
            {
                "instruction": q["row"]["instruction"],
                "output": a[0],
                "generator": model_id,
                **({"dataset": q["row"]["dataset"]} if "dataset" in q["row"] else {}),
            }
            for q, a in zip(questions, answers, strict=True)
        ]
        text = json.dumps(records, indent=2, ensure_ascii=False) + "\n"
    else:
        now = time.time()
        text = "".join(
            json.dumps(
                {
                    "question_id": q["row"]["question_id"],
                    "answer_id": uuid.uuid4().hex,
                    "model_id": model_id,
                    "choices": [{"index": 0, "turns": [{"content": t} for t in a] if fmt == "arena_hard" else list(a)}],
                    "tstamp": now,
                },
                ensure_ascii=False,
            )
            + "\n"
            for q, a in zip(questions, answers, strict=True)
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def export(
    model_name: str,
    questions_path: str,
    fmt: str,
    output: Path,
    *,
    model_id: str | None = None,
    max_new_tokens: int = 1024,
    batch_size: int = 64,
    temperature: float = 0.0,
    seed: int = 0,
    backend: str = "auto",
    trust_remote_code: bool = False,
) -> Path:
    """Answer a benchmark's questions with ``model_name`` and write its answer file into ``output``."""
    from simper import models
    from simper.generate import load_generator

    questions = read_questions(questions_path, fmt)  # a bad row stops here, before a model loads
    model_id = model_id or Path(model_name.rstrip("/")).name
    tokenizer = models.load_tokenizer(model_name, trust_remote_code=trust_remote_code)
    generator = load_generator(model_name, backend, seed=seed, trust_remote_code=trust_remote_code)
    sampling = dict(max_new_tokens=max_new_tokens, batch_size=batch_size, temperature=temperature, seed=seed)
    answers = answer(generator, tokenizer, questions, **sampling)
    name = "model_outputs.json" if fmt == "alpaca_eval" else f"{model_id}.jsonl"
    return write_answers(output / name, fmt, questions, answers, model_id)
