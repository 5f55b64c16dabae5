"""Verifiable instructions: a short task plus machine-checkable constraints (IFEval's kind, made by us).

Each constraint type has a generator of its parameters, the sentence that states it in the prompt,
and a checker on the response text. A prompt pairs a base task with one to three compatible
constraints.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TOPICS = [
    "the ocean",
    "coffee",
    "a rainy day",
    "learning to cook",
    "city parks",
    "the moon",
    "bicycles",
    "libraries",
    "winter mornings",
    "honeybees",
    "a first job",
    "trains",
    "gardening",
    "the history of maps",
    "friendship",
    "volcanoes",
    "board games",
    "sleep",
    "recycling",
    "the desert",
    "public transport",
    "old photographs",
    "mountains",
    "a small bakery",
    "rivers",
    "learning a language",
    "street food",
    "clocks",
    "penguins",
    "the night sky",
    "music lessons",
    "a lighthouse",
    "saving money",
    "forests",
    "bridges",
    "tea",
    "robots",
    "a long walk",
    "museums",
    "weather forecasts",
    "kites",
    "the post office",
    "chess",
    "islands",
    "soap",
    "umbrellas",
    "birthdays",
    "windmills",
    "a village market",
    "paper",
    "owls",
    "running",
    "snow",
    "maps",
]
TASKS = [
    "Write a short note about {topic}.",
    "Describe {topic} to a child.",
    "Give some advice about {topic}.",
    "Write a few sentences about {topic}.",
    "Explain why people like {topic}.",
    "Write a short story about {topic}.",
    "Write a product description related to {topic}.",
    "Write a short blog post about {topic}.",
    "List some facts about {topic}.",
    "Write a short poem about {topic}.",
]
KEYWORDS = ["light", "water", "friend", "simple", "morning", "green", "quiet", "history", "music", "home"]
END_PHRASES = ["Is there anything else I can help with?", "That is all.", "Thank you for reading."]
START_WORDS = ["Today", "Imagine", "Yes", "First", "Once"]
LETTERS = "aeinorst"


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9']+", text)


def _strip_fences(text: str) -> str:
    text = text.strip()
    match = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, flags=re.S)
    return match.group(1) if match else text


def _is_json(text: str) -> bool:
    try:
        json.loads(_strip_fences(text))
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class ConstraintType:
    """A kind of constraint: how to draw its parameters, how to state it, how to check it."""

    name: str
    params: Callable[[random.Random], dict[str, Any]]
    describe: Callable[..., str]
    check: Callable[..., bool]
    conflicts: frozenset[str] = frozenset()


FORMAT_OWNERS = frozenset({"json_format", "quotation", "bullet_count", "paragraphs", "title", "postscript"})

CONSTRAINTS: dict[str, ConstraintType] = {
    c.name: c
    for c in [
        ConstraintType(
            "lowercase",
            lambda rng: {},
            lambda: "Your entire response must be in lowercase letters; no capital letters are allowed.",
            lambda text: bool(re.search(r"[a-z]", text)) and text == text.lower(),
            frozenset({"uppercase", "start_word", "title", "postscript", "json_format"}),
        ),
        ConstraintType(
            "uppercase",
            lambda rng: {},
            lambda: "Your entire response must be in English capital letters only.",
            lambda text: bool(re.search(r"[A-Z]", text)) and text == text.upper(),
            frozenset({"lowercase", "start_word", "postscript", "json_format", "letter_frequency"}),
        ),
        ConstraintType(
            "max_words",
            lambda rng: {"n": rng.choice([20, 30, 50, 80])},
            lambda n: f"Answer in fewer than {n} words.",
            lambda text, n: len(_words(text)) < n,
            frozenset({"min_words", "paragraphs"}),
        ),
        ConstraintType(
            "min_words",
            lambda rng: {"n": rng.choice([40, 60, 100])},
            lambda n: f"Answer with at least {n} words.",
            lambda text, n: len(_words(text)) >= n,
            frozenset({"max_words", "json_format"}),
        ),
        ConstraintType(
            "bullet_count",
            lambda rng: {"n": rng.randint(2, 5)},
            lambda n: f"Your answer must contain exactly {n} bullet points, each on its own line starting with '* '.",
            lambda text, n: len(re.findall(r"^\s*[*-] ", text, flags=re.M)) == n,
            FORMAT_OWNERS - {"bullet_count", "title", "postscript"},
        ),
        ConstraintType(
            "include_keywords",
            lambda rng: {"words": rng.sample(KEYWORDS, rng.randint(1, 2))},
            lambda words: "Include the keywords " + " and ".join(f"'{w}'" for w in words) + " in your response.",
            lambda text, words: all(re.search(rf"\b{re.escape(w)}\b", text, flags=re.I) for w in words),
            frozenset({"forbidden_words"}),
        ),
        ConstraintType(
            "forbidden_words",
            lambda rng: {"words": rng.sample(["the", "and", "is", "very", "good", "also"], 2)},
            lambda words: (
                "Do not use the words " + " or ".join(f"'{w}'" for w in words) + " anywhere in your response."
            ),
            lambda text, words: not any(re.search(rf"\b{re.escape(w)}\b", text, flags=re.I) for w in words),
            frozenset({"include_keywords"}),
        ),
        ConstraintType(
            "end_phrase",
            lambda rng: {"phrase": rng.choice(END_PHRASES)},
            lambda phrase: f"Finish your response with this exact phrase: {phrase} No other words should follow it.",
            lambda text, phrase: text.strip().endswith(phrase),
            frozenset({"json_format", "quotation", "postscript", "lowercase", "uppercase"}),
        ),
        ConstraintType(
            "json_format",
            lambda rng: {},
            lambda: "Your entire output must be valid JSON; you may wrap it in a ```json code block.",
            lambda text: _is_json(text),
            FORMAT_OWNERS | {"end_phrase", "start_word", "lowercase", "uppercase", "min_words"},
        ),
        ConstraintType(
            "paragraphs",
            lambda rng: {"n": rng.randint(2, 4)},
            lambda n: (
                f"Your response must have exactly {n} paragraphs, separated from each other by the markdown "
                "divider ***."
            ),
            lambda text, n: len([p for p in text.split("***") if p.strip()]) == n and text.count("***") == n - 1,
            FORMAT_OWNERS - {"paragraphs", "title", "postscript"} | {"max_words"},
        ),
        ConstraintType(
            "title",
            lambda rng: {},
            lambda: "Your answer must contain a title, wrapped in double angular brackets, such as <<my title>>.",
            lambda text: bool(re.search(r"<<[^<>\n]+>>", text)),
            frozenset({"json_format", "quotation", "lowercase"}),
        ),
        ConstraintType(
            "postscript",
            lambda rng: {},
            lambda: "At the end of your response, add a postscript starting with P.S.",
            lambda text: bool(re.search(r"^\s*P\.S\.", text, flags=re.M)),
            frozenset({"json_format", "quotation", "end_phrase", "lowercase", "uppercase"}),
        ),
        ConstraintType(
            "letter_frequency",
            lambda rng: {"letter": rng.choice(LETTERS), "n": rng.choice([5, 10, 15])},
            lambda letter, n: f"In your response, the letter '{letter}' should appear at least {n} times.",
            lambda text, letter, n: text.lower().count(letter) >= n,
            frozenset({"uppercase"}),
        ),
        ConstraintType(
            "no_commas",
            lambda rng: {},
            lambda: "In your entire response, refrain from the use of any commas.",
            lambda text: "," not in text,
            frozenset({"json_format"}),
        ),
        ConstraintType(
            "quotation",
            lambda rng: {},
            lambda: "Wrap your entire response with double quotation marks.",
            lambda text: len(text.strip()) > 1 and text.strip()[0] == '"' and text.strip()[-1] == '"',
            FORMAT_OWNERS - {"quotation"} | {"end_phrase"},
        ),
        ConstraintType(
            "start_word",
            lambda rng: {"word": rng.choice(START_WORDS)},
            lambda word: f"The first word of your response must be '{word}'.",
            lambda text, word: (_words(text)[:1] or [""])[0] == word,
            frozenset({"lowercase", "uppercase", "json_format", "quotation", "title"}),
        ),
        ConstraintType(
            "placeholders",
            lambda rng: {"n": rng.randint(1, 3)},
            lambda n: f"The response must contain at least {n} placeholders in square brackets, such as [address].",
            lambda text, n: len(re.findall(r"\[[^\[\]\n]+\]", text)) >= n,
            frozenset({"json_format"}),
        ),
        ConstraintType(
            "highlights",
            lambda rng: {"n": rng.randint(1, 3)},
            lambda n: f"Highlight at least {n} sections in your answer with markdown, i.e. *highlighted section*.",
            lambda text, n: len(re.findall(r"(?<!\*)\*[^\n*]+\*(?!\*)", text)) >= n,
            frozenset({"json_format"}),
        ),
    ]
}


def make_instruction_task(rng: random.Random) -> dict[str, Any]:
    """A base task with one to three mutually compatible constraints."""
    prompt = rng.choice(TASKS).format(topic=rng.choice(TOPICS))
    chosen: list[dict[str, Any]] = []
    names = list(CONSTRAINTS)
    for _ in range(rng.choice([1, 1, 2, 2, 3])):
        taken = {c["type"] for c in chosen}
        blocked = taken | {bad for t in taken for bad in CONSTRAINTS[t].conflicts}
        options = [n for n in names if n not in blocked and not (CONSTRAINTS[n].conflicts & taken)]
        if not options:
            break
        name = rng.choice(options)
        chosen.append({"type": name, **CONSTRAINTS[name].params(rng)})
    text = " ".join([prompt, *(describe(c) for c in chosen)])
    return {"kind": "instructions", "prompt": text, "constraints": chosen}


def describe(constraint: dict[str, Any]) -> str:
    params = {k: v for k, v in constraint.items() if k != "type"}
    return CONSTRAINTS[constraint["type"]].describe(**params)


def check(constraint: dict[str, Any], response: str) -> bool:
    params = {k: v for k, v in constraint.items() if k != "type"}
    return bool(CONSTRAINTS[constraint["type"]].check(response, **params))
