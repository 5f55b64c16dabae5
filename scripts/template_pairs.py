"""Off-policy pairs for the built-in task: the same prompts as a pair file, answered by a template writer
instead of the model. SimPER's push on a response scales with its inverse perplexity, so pairs the
model did not write show where it stalls (docs/compare.md, "Pairs the model did not write").

    python scripts/template_pairs.py PAIRS.jsonl OUT.jsonl [--seed 0]

For every instruction row the chosen answer is a few plain sentences on the prompt's topic, shaped to
meet every constraint (bullets, paragraphs, a title, JSON, case, keywords, word counts, ...) and
checked by the task's checkers; the rejected answer is the same writer meeting a random proper subset
of them (none, often), so it scores lower. For a word problem the chosen answer states the right
number and the rejected one a wrong one, in the same words. A row the writer cannot satisfy is left
out and counted. Prompts, ids and task fields are kept; ``score_*`` are the checkers' scores.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path
from typing import Any

from simper.pairs import as_messages
from simper.tasks import instructions, score

SENTENCES = [
    "{Topic} is something many people notice every day",
    "There is a lot to say about {topic}",
    "Most people have a small story about {topic}",
    "I find {topic} interesting for several reasons",
    "A closer look at {topic} shows surprising details",
    "{Topic} can teach us to slow down",
    "Every season brings something new to {topic}",
    "Writers have described {topic} in many ways",
    "Children often ask questions about {topic}",
    "It takes time to understand {topic} well",
    "Some of my best memories involve {topic}",
    "People around the world enjoy {topic} in their own way",
]
SHORT = ["{Topic} matters", "Look closely at {topic}", "Enjoy {topic}", "Share it with others", "Take your time"]
SWAPS = {"the": "this", "and": "plus", "is": "seems", "very": "truly", "good": "fine", "also": "too"}
LETTER_WORDS = {"a": "banana", "e": "evergreen", "i": "initiative", "n": "nonnative", "o": "cocoon", "r": "error"}
LETTER_WORDS |= {"s": "possess", "t": "tattoo"}
PLACEHOLDERS = ["[name]", "[date]", "[address]", "[phone number]", "[city]"]


def topic_of(prompt: str) -> str:
    """The topic the prompt's task template was filled with, else a neutral one."""
    for template in instructions.TASKS + instructions.HELDOUT_TASKS:
        head, _, tail = template.partition("{topic}")
        match = re.search(re.escape(head) + r"(.+?)" + re.escape(tail), prompt)
        if match:
            return match.group(1)
    return "this subject"


def write(topic: str, constraints: list[dict[str, Any]], rng: random.Random) -> str:
    """Plain sentences on ``topic`` shaped to meet every constraint in ``constraints``."""
    kinds = {c["type"]: c for c in constraints}
    sentences = [s.format(topic=topic, Topic=topic[:1].upper() + topic[1:]) for s in rng.sample(SENTENCES, 4)]
    if "include_keywords" in kinds:
        sentences.insert(1, "It brings to mind " + " and ".join(kinds["include_keywords"]["words"]))
    if "min_words" in kinds:
        extra = [s.format(topic=topic, Topic=topic[:1].upper() + topic[1:]) for s in SENTENCES]
        while sum(len(s.split()) for s in sentences) < kinds["min_words"]["n"] + 5:
            sentences.append(extra[len(sentences) % len(extra)])
    if "max_words" in kinds:  # short sentences, as many as the limit leaves room for
        short = [s.format(topic=topic, Topic=topic[:1].upper() + topic[1:]) for s in rng.sample(SHORT, len(SHORT))]
        sentences = sentences[1:2] if "include_keywords" in kinds else []
        while short and sum(len(s.split()) for s in [*sentences, short[0]]) < kinds["max_words"]["n"] - 14:
            sentences.append(short.pop(0))
    if "placeholders" in kinds:
        sentences.append("Write to " + " or ".join(PLACEHOLDERS[: kinds["placeholders"]["n"]]) + " for more")
    if "letter_frequency" in kinds:
        letter, needed = kinds["letter_frequency"]["letter"], kinds["letter_frequency"]["n"]
        word = LETTER_WORDS[letter]
        have = " ".join(sentences).lower().count(letter)
        if have < needed:
            sentences.append("Think of " + " ".join([word] * (-(-(needed - have) // word.count(letter)))))
    if "forbidden_words" in kinds:
        banned = kinds["forbidden_words"]["words"]
        sentences = [re.sub(r"\b\w+\b", lambda m: _swap(m.group(0), banned), s) for s in sentences]
    if "highlights" in kinds:
        for index in range(min(kinds["highlights"]["n"], len(sentences))):
            sentences[index] = f"*{sentences[index]}*"
    lines = [s + "." for s in sentences]
    if "bullet_count" in kinds:
        count = kinds["bullet_count"]["n"]
        items = (lines * count)[:count] if len(lines) < count else [*lines[: count - 1], " ".join(lines[count - 1 :])]
        body = "\n".join(f"* {item}" for item in items)
    elif "paragraphs" in kinds:
        count = kinds["paragraphs"]["n"]
        lines = (lines * count)[: max(count, len(lines))]
        parts = [" ".join(lines[i::count]) for i in range(count)]
        body = "\n***\n".join(parts)
    else:
        body = " ".join(lines)
    if "start_word" in kinds:
        body = f"{kinds['start_word']['word']} {body[:1].lower()}{body[1:]}"
    if "title" in kinds:
        body = f"<<{topic[:1].upper() + topic[1:]}>>\n{body}"
    if "json_format" in kinds:
        body = json.dumps({"answer": body})
    if "end_phrase" in kinds:
        body = f"{body} {kinds['end_phrase']['phrase']}"
    if "postscript" in kinds:
        body = f"{body}\nP.S. Thank you for asking"
    if "no_commas" in kinds:
        body = body.replace(",", "")
    if "lowercase" in kinds:
        body = body.lower()
    if "uppercase" in kinds:
        body = body.upper()
    if "quotation" in kinds:
        body = f'"{body}"'
    return body


BREAK = {
    "no_commas": lambda text, c: text.replace(". ", ", then ", 1),
    "forbidden_words": lambda text, c: f"{text} {c['words'][0].capitalize()} {c['words'][1]} so on.",
    "max_words": lambda text, c: " ".join([text] * (c["n"] // max(len(text.split()), 1) + 1)),
    "letter_frequency": lambda text, c: "Hmm yup.",
}
"""How to fail one constraint on purpose, for a rejected answer that met it by chance."""


def _swap(word: str, banned: list[str]) -> str:
    return SWAPS.get(word.lower(), "it") if word.lower() in banned else word


def answer_math(answer: int, wrong: bool, rng: random.Random) -> str:
    number = answer + rng.choice([-3, -2, -1, 1, 2, 3, 10]) if wrong else answer
    number = abs(number) if number != answer or not wrong else number + 1
    return f"Working through the numbers in the question step by step gives {number}. The answer is {number}."


def template_pair(row: dict[str, Any], rng: random.Random) -> dict[str, Any] | None:
    """``row`` with template-written chosen and rejected answers, or None when the writer cannot meet all
    of its constraints (or the rejected answer would score as well)."""
    prompt = row["prompt"]
    text = as_messages(prompt)[-1]["content"]
    if row["kind"] == "arithmetic":
        chosen, rejected = answer_math(row["answer"], False, rng), answer_math(row["answer"], True, rng)
    else:
        constraints = row["constraints"]
        chosen = write(topic_of(text), constraints, rng)
        subset = [c for c in constraints if rng.random() < 0.3][: len(constraints) - 1]
        rejected = write(topic_of(text), subset, rng)
        for constraint in constraints:  # a constraint the plain sentences meet by chance is broken on purpose
            if constraint not in subset and score(row, rejected).reward >= 1.0:
                rejected = BREAK.get(constraint["type"], lambda text, c: text)(rejected, constraint)
    good, bad = score(row, chosen).reward, score(row, rejected).reward
    if good < 1.0 or bad >= good:
        return None
    fields = {k: v for k, v in row.items() if k not in ("chosen", "rejected", "score_chosen", "score_rejected")}
    for key in ("chosen_truncated", "rejected_truncated", "tie_broken"):
        fields.pop(key, None)
    as_turn = (lambda t: [{"role": "assistant", "content": t}]) if isinstance(prompt, list) else (lambda t: t)
    return {
        **fields,
        "chosen": as_turn(chosen),
        "rejected": as_turn(rejected),
        "score_chosen": good,
        "score_rejected": bad,
        "reward": "builtin",
        "writer": "template",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", help="pair file with built-in task fields (kind, constraints or answer)")
    parser.add_argument("output")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    rows = [json.loads(line) for line in Path(args.pairs).read_text().split("\n") if line.strip()]
    written = [pair for row in rows if (pair := template_pair(row, rng)) is not None]
    with open(args.output, "w") as sink:
        sink.writelines(json.dumps(pair) + "\n" for pair in written)
    print(
        f"{len(written)} of {len(rows)} rows written to {args.output}; {len(rows) - len(written)} left out",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
