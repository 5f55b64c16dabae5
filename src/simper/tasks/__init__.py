"""Built-in verifiable tasks: prompts whose responses a program can score.

A task is a plain dict (it is written to and read from JSONL): ``{"id", "kind", "prompt", ...}``
with ``constraints`` for instruction tasks and ``answer`` for arithmetic ones.
"""

from __future__ import annotations

import hashlib
import inspect
import random
from dataclasses import dataclass, field
from typing import Any

from simper.tasks import arithmetic, instructions

SPLITS = ("train", "heldout", "heldout-phrasing")
"""``train``: training prompts; ``heldout``: other prompts in the same wording (held out by a hash of
the text); ``heldout-phrasing``: prompts whose constraint sentences, task templates, topics, framing
and arithmetic problem templates no training prompt uses."""
HELDOUT_BUCKETS = 5  # prompts whose hash falls in 5 of 100 buckets are held out, whatever the seed


def split_of(prompt: str) -> str:
    """Train or held-out, by a hash of the prompt text: the two splits never share a prompt."""
    bucket = int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % 100
    return "heldout" if bucket < HELDOUT_BUCKETS else "train"


def make_tasks(count: int, *, seed: int = 0, split: str = "train", math_fraction: float = 0.3) -> list[dict[str, Any]]:
    """``count`` distinct prompts of one split, drawn from ``seed``.

    Raises:
        ValueError: unknown split, or too few distinct prompts of that split can be drawn.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    rng = random.Random(f"{seed}:{split}")
    phrasing = "unseen" if split == "heldout-phrasing" else "seen"
    tasks, seen = [], set()
    for _ in range(count * 400):
        if len(tasks) == count:
            break
        task = (
            arithmetic.make_arithmetic_task(rng, phrasing)
            if rng.random() < math_fraction
            else instructions.make_instruction_task(rng, phrasing)
        )
        if task["prompt"] in seen or (phrasing == "seen" and split_of(task["prompt"]) != split):
            continue
        seen.add(task["prompt"])
        tasks.append({"id": f"{split}-{seed}-{len(tasks):05d}", **task})
    if len(tasks) < count:
        raise ValueError(f"only {len(tasks)} distinct {split} prompts could be drawn, {count} asked")
    return tasks


def task_problem(row: dict[str, Any]) -> str | None:
    """What keeps ``row`` from being a built-in task the checkers can score (a field and why), or None.

    A row of a prompt file scored by the ``builtin`` reward must say its ``kind``: ``arithmetic`` with
    an integer ``answer``, or ``instructions`` with ``constraints``, each a known ``type`` with exactly
    the parameters its checker takes."""
    kind = row.get("kind")
    if kind == "arithmetic":
        answer = row.get("answer")
        if not isinstance(answer, int) or isinstance(answer, bool):
            return f"field 'answer': expected an integer, got {answer!r}"
        return None
    if kind != "instructions":
        return f"field 'kind': expected 'instructions' or 'arithmetic', got {kind!r}"
    constraints = row.get("constraints")
    if not isinstance(constraints, list) or not constraints:
        return "field 'constraints': expected a non-empty list of constraints"
    for index, constraint in enumerate(constraints):
        name = constraint.get("type") if isinstance(constraint, dict) else None
        if name not in instructions.CONSTRAINTS:
            return f"field 'constraints' item {index}: unknown type {name!r}"
        expected = set(inspect.signature(instructions.CONSTRAINTS[name].check).parameters) - {"text"}
        given = instructions.parameters(constraint)  # without Arrow's None filler (Parquet, hub datasets)
        if set(given) != expected:
            wanted = f"expected parameters {sorted(expected)}, got {sorted(given)}"
            return f"field 'constraints' item {index} ({name}): {wanted}"
        for key, value in given.items():
            if not PARAMETER_TYPES[key](value):
                said = f"parameter {key!r}: {PARAMETER_SAYS[key]}, got {value!r}"
                return f"field 'constraints' item {index} ({name}): {said}"
    return None


PARAMETER_TYPES = {
    "n": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
    "words": lambda v: isinstance(v, list) and bool(v) and all(isinstance(w, str) and w for w in v),
    "phrase": lambda v: isinstance(v, str) and bool(v.strip()),
    "word": lambda v: isinstance(v, str) and bool(v.strip()),
    "letter": lambda v: isinstance(v, str) and len(v) == 1,
}
PARAMETER_SAYS = {
    "n": "expected a whole number ≥ 0",
    "words": "expected a non-empty list of words",
    "phrase": "expected a non-empty string",
    "word": "expected a non-empty string",
    "letter": "expected a single letter",
}


@dataclass(frozen=True)
class Score:
    """A response's reward in [0, 1] and the per-check results behind it."""

    reward: float
    results: dict[str, bool] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(self.results.values())


def score(task: dict[str, Any], response: str) -> Score:
    """Fraction of constraints met (instructions) or 1/0 for the right final number (arithmetic)."""
    if task["kind"] == "arithmetic":
        correct = arithmetic.final_number(response) == task["answer"]
        return Score(float(correct), {"answer": correct})
    results = {}
    for index, constraint in enumerate(task["constraints"]):
        results[f"{index}:{constraint['type']}"] = instructions.check(constraint, response)
    return Score(sum(results.values()) / max(len(results), 1), results)
