"""Every constraint type has a passing and a failing response; prompts are distinct and splits disjoint;
held-out wording shares no sentence with training wording."""

from __future__ import annotations

import re

import pytest

from simper.tasks import arithmetic, instructions, make_tasks, score, split_of
from simper.tasks.arithmetic import final_number
from simper.tasks.instructions import CONSTRAINTS, TRAIN_PHRASINGS, check, describe

CASES = [
    ({"type": "lowercase"}, "all lower here.", "Not lower."),
    ({"type": "uppercase"}, "ALL CAPS HERE.", "Mostly CAPS."),
    ({"type": "max_words", "n": 5}, "one two three four", "one two three four five six"),
    ({"type": "min_words", "n": 3}, "one two three", "one two"),
    ({"type": "bullet_count", "n": 2}, "Intro\n* a\n* b", "* a\n* b\n* c"),
    ({"type": "include_keywords", "words": ["light", "home"]}, "Light comes home.", "Light only."),
    ({"type": "forbidden_words", "words": ["the", "and"]}, "Cats nap there.", "The cat naps."),
    ({"type": "end_phrase", "phrase": "That is all."}, "Done. That is all.", "That is all. More."),
    ({"type": "json_format"}, '```json\n{"a": 1}\n```', "{a: 1}"),
    ({"type": "paragraphs", "n": 2}, "First part.\n***\nSecond part.", "One part only."),
    ({"type": "title"}, "<<A Title>>\nText.", "<A Title>\nText."),
    ({"type": "postscript"}, "Body.\nP.S. more", "Body. PS more"),
    ({"type": "letter_frequency", "letter": "e", "n": 3}, "eee", "ee"),
    ({"type": "no_commas"}, "No commas here.", "Yes, a comma."),
    ({"type": "quotation"}, '"Quoted answer."', '"Half quoted.'),
    ({"type": "start_word", "word": "Today"}, "Today we go.", "We go today."),
    ({"type": "placeholders", "n": 2}, "At [address] on [date].", "At [address]."),
    ({"type": "highlights", "n": 1}, "This is *important* text.", "This is **bold** text."),
]


def test_every_constraint_type_is_covered():
    assert {case[0]["type"] for case in CASES} == set(CONSTRAINTS)
    assert len(CONSTRAINTS) >= 15


@pytest.mark.parametrize(("constraint", "good", "bad"), CASES, ids=[c[0]["type"] for c in CASES])
def test_checker_passes_and_fails(constraint, good, bad):
    assert check(constraint, good)
    assert not check(constraint, bad)
    sentences = [describe(constraint, i) for i in range(len(CONSTRAINTS[constraint["type"]].phrasings))]
    assert len(set(sentences)) == len(sentences) >= TRAIN_PHRASINGS + 2  # ≥ 4 to train on, 2 held out
    for value in (v for k, v in constraint.items() if k != "type"):  # every sentence states the parameters
        for sentence in sentences:
            assert all(str(item) in sentence for item in (value if isinstance(value, list) else [value]))


def test_arithmetic_scoring_takes_the_final_number():
    task = {"kind": "arithmetic", "prompt": "?", "answer": 1200}
    assert score(task, "3 × 400 = 1,200. The answer is 1,200.").reward == 1.0
    assert score(task, "It is 1200, no wait 1100.").reward == 0.0
    assert final_number("no number") is None and final_number("about 2.5") is None


def test_instruction_reward_is_the_fraction_met():
    task = {"kind": "instructions", "prompt": "?", "constraints": [{"type": "no_commas"}, {"type": "lowercase"}]}
    result = score(task, "Hello there")
    assert result.reward == 0.5 and result.results == {"0:no_commas": True, "1:lowercase": False}
    assert not result.passed


def test_prompts_are_distinct_reproducible_and_splits_never_overlap():
    train = make_tasks(500, seed=1)
    heldout = make_tasks(100, seed=1, split="heldout")
    assert len({t["prompt"] for t in train}) == 500
    assert make_tasks(500, seed=1) == train
    assert not {t["prompt"] for t in train} & {t["prompt"] for t in heldout}
    assert all(split_of(t["prompt"]) == "heldout" for t in heldout)
    kinds = {t["kind"] for t in train}
    assert kinds == {"instructions", "arithmetic"}
    assert all(1 <= len(t["constraints"]) <= 3 for t in train if t["kind"] == "instructions")


def test_heldout_phrasing_prompts_share_no_sentence_template_topic_or_problem_wording_with_training():
    train = make_tasks(600, seed=3)
    unseen = make_tasks(300, seed=3, split="heldout-phrasing")
    assert {t["phrasing"] for t in train} == {"seen"} and {t["phrasing"] for t in unseen} == {"unseen"}
    seen = [c.phrasings[i] for c in CONSTRAINTS.values() for i in range(TRAIN_PHRASINGS)]
    seen += instructions.TASKS + [w for wordings, _ in arithmetic.WORDINGS.values() for w in wordings]
    seen += list(arithmetic.ANSWER_ASKS[0])
    # each training sentence as a pattern that matches it with any numbers, names or words filled in
    patterns = [re.compile(".+?".join(map(re.escape, re.split(r"\{\w+\}", sentence)))) for sentence in seen]
    for task in unseen:
        assert not any(pattern.search(task["prompt"]) for pattern in patterns), task["prompt"]
        if task["kind"] == "instructions":
            assert not any(f"about {topic}" in task["prompt"] for topic in instructions.TOPICS)
    assert {t["kind"] for t in unseen} == {"instructions", "arithmetic"}
    assert make_tasks(300, seed=3, split="heldout-phrasing") == unseen  # reproducible


def test_every_arithmetic_wording_gives_the_right_answer():
    import random

    rng = random.Random(0)
    for phrasing in ("seen", "unseen"):
        for _ in range(400):
            task = arithmetic.make_arithmetic_task(rng, phrasing)
            numbers = [int(n) for n in re.findall(r"\d+", task["prompt"])]
            assert task["answer"] >= 0
            assert _solve(task["prompt"], numbers) == task["answer"], task["prompt"]


def _solve(prompt: str, n: list[int]) -> int:
    """Each wording solved from its own text, independently of the generator's arithmetic."""
    text = prompt.lower()
    if "doubled" in text:
        return 2 * n[0] - n[1]
    if "more" in text and "than" in text:
        return n[0] - n[1]
    if len(n) == 3:
        if any(w in text for w in ("bags with", "jars and", "groups of")):
            return n[0] * n[1] + n[2]
        return n[0] + n[1] - n[2]
    if any(w in text for w in ("equally", "evenly", "fairly")):
        return n[0] // n[1]
    if any(w in text for w in ("boxes with", "shelves holds", "every one of")):
        return n[0] * n[1]
    if any(w in text for w in ("gives away", "uses", "lost")):
        return n[0] - n[1]
    return n[0] + n[1]


def test_handwritten_prompts_are_scorable_tasks_in_wording_no_generator_sentence_uses():
    from simper.pairs import read_prompts
    from simper.resources import prompt_file

    rows = read_prompts(prompt_file("handwritten"), tasks=True)  # every row a task the checkers can score
    assert len(rows) == 96 and len({r["id"] for r in rows}) == 96 and len({r["prompt"] for r in rows}) == 96
    assert sum(r["kind"] == "arithmetic" for r in rows) == 32 and {r["phrasing"] for r in rows} == {"unseen"}
    # every sentence the generator can write, training's and held-out alike, with any parameter filled in
    sentences = [p for c in CONSTRAINTS.values() for p in c.phrasings] + instructions.TASKS + instructions.HELDOUT_TASKS
    sentences += [w for both in arithmetic.WORDINGS.values() for side in both for w in side]
    sentences += [ask for side in arithmetic.ANSWER_ASKS for ask in side]
    patterns = [re.compile(".+?".join(map(re.escape, re.split(r"\{\w+\}", s))), re.I) for s in sentences]
    for row in rows:
        assert not any(pattern.search(row["prompt"]) for pattern in patterns), row["prompt"]
        assert not row["prompt"].startswith(("Requirements:", "Here is what I need."))  # the generator's framings


def test_arrow_none_filler_in_a_constraint_is_ignored_by_validation_and_checker():
    from simper.tasks import task_problem

    # a Parquet or hub-dataset column gives every constraint every key, the missing ones as None
    row = {"kind": "instructions", "prompt": "Hi.", "constraints": [{"type": "max_words", "n": 5, "words": None}]}
    assert task_problem(row) is None
    assert score(row, "one two three").reward == 1.0 and score(row, "one two three four five six").reward == 0.0


def test_a_file_named_like_a_shipped_prompt_set_is_read_as_the_file(tmp_path, monkeypatch):
    from simper.resources import HANDWRITTEN_PROMPTS, prompt_file

    assert prompt_file("handwritten") == str(HANDWRITTEN_PROMPTS)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "handwritten").write_text("")
    assert prompt_file("handwritten") == "handwritten"
