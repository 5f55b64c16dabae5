"""Verifiable instructions: a short task plus machine-checkable constraints (IFEval's kind, made by us).

Each constraint type has a generator of its parameters, six sentences that state it (four used by
training prompts, two held out), and a checker on the response text. A prompt pairs a base task
with one to three compatible constraints. Prompts in held-out wording use held-out constraint
sentences, task templates, topics and framings only: what they test is whether a model learned
the constraint rather than one way of saying it.
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
HELDOUT_TASKS = [
    "Compose a brief piece on {topic}.",
    "Tell me about {topic}.",
    "I'm writing a newsletter: draft a paragraph on {topic}.",
    "What would you say to someone curious about {topic}?",
    "Write an email to a friend about {topic}.",
    "Summarize what makes {topic} interesting.",
]
HELDOUT_TOPICS = [
    "glaciers",
    "origami",
    "electric cars",
    "jazz",
    "a busy airport",
    "comets",
    "sourdough bread",
    "hiking boots",
    "a quiet harbour",
    "thunderstorms",
    "tide pools",
    "handwriting",
    "a night train",
    "solar panels",
    "octopuses",
    "a garden shed",
    "street musicians",
    "autumn leaves",
    "fountain pens",
    "desert plants",
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
    """A kind of constraint: how to draw its parameters, the sentences that state it, how to check it.

    ``phrasings`` are format strings over the parameters (a list parameter ``words`` is also given as
    ``words_and`` and ``words_or``). The first :data:`TRAIN_PHRASINGS` are the ones training prompts
    use (the first is the one the shipped pairs were made with); the rest are held out, so an
    evaluation can ask whether a model learned the constraint or one way of saying it.
    """

    name: str
    params: Callable[[random.Random], dict[str, Any]]
    phrasings: tuple[str, ...]
    check: Callable[..., bool]
    conflicts: frozenset[str] = frozenset()


TRAIN_PHRASINGS = 4  # phrasings 0-3 of every constraint type train; 4 and on are held out

FORMAT_OWNERS = frozenset({"json_format", "quotation", "bullet_count", "paragraphs", "title", "postscript"})

CONSTRAINTS: dict[str, ConstraintType] = {
    c.name: c
    for c in [
        ConstraintType(
            "lowercase",
            lambda rng: {},
            (
                "Your entire response must be in lowercase letters; no capital letters are allowed.",
                "Write your whole answer in lowercase, with no capital letters at all.",
                "Use only lowercase letters in your reply; do not capitalize anything.",
                "Every letter of your response should be lowercase.",
                "no capitals anywhere, please: keep all of it in small letters.",
                "Make sure nothing you write is capitalized; stick to lower case throughout.",
            ),
            lambda text: bool(re.search(r"[a-z]", text)) and text == text.lower(),
            frozenset({"uppercase", "start_word", "title", "postscript", "json_format"}),
        ),
        ConstraintType(
            "uppercase",
            lambda rng: {},
            (
                "Your entire response must be in English capital letters only.",
                "Write your whole answer in capital letters.",
                "Respond using uppercase letters only.",
                "Every letter of your response must be a capital letter.",
                "Type the entire reply in ALL CAPS.",
                "Please shout: no lowercase letters anywhere in what you write.",
            ),
            lambda text: bool(re.search(r"[A-Z]", text)) and text == text.upper(),
            frozenset({"lowercase", "start_word", "postscript", "json_format", "letter_frequency"}),
        ),
        ConstraintType(
            "max_words",
            lambda rng: {"n": rng.choice([20, 30, 50, 80])},
            (
                "Answer in fewer than {n} words.",
                "Keep your response under {n} words.",
                "Use less than {n} words in total.",
                "Your reply must be shorter than {n} words.",
                "Be brief: stay below {n} words.",
                "The word count of your answer has to be lower than {n}.",
            ),
            lambda text, n: len(_words(text)) < n,
            frozenset({"min_words", "paragraphs"}),
        ),
        ConstraintType(
            "min_words",
            lambda rng: {"n": rng.choice([40, 60, 100])},
            (
                "Answer with at least {n} words.",
                "Your response should be {n} words or longer.",
                "Write no fewer than {n} words.",
                "Make your answer at least {n} words long.",
                "I need a reply of {n} words at minimum.",
                "Don't stop before you have written {n} words.",
            ),
            lambda text, n: len(_words(text)) >= n,
            frozenset({"max_words", "json_format"}),
        ),
        ConstraintType(
            "bullet_count",
            lambda rng: {"n": rng.randint(2, 5)},
            (
                "Your answer must contain exactly {n} bullet points, each on its own line starting with '* '.",
                "Give exactly {n} bullet points, each line starting with '* '.",
                "Format the answer as a list of exactly {n} items, each on a new line that begins with '* '.",
                "Use precisely {n} markdown bullets ('* ' at the start of each line).",
                "Structure it as {n} bullet points, no more and no fewer, using '* ' for each.",
                "Present your answer as exactly {n} lines that each start with an asterisk and a space.",
            ),
            lambda text, n: len(re.findall(r"^\s*[*-] ", text, flags=re.M)) == n,
            FORMAT_OWNERS - {"bullet_count", "title", "postscript"},
        ),
        ConstraintType(
            "include_keywords",
            lambda rng: {"words": rng.sample(KEYWORDS, rng.randint(1, 2))},
            (
                "Include the keywords {words_and} in your response.",
                "Make sure the words {words_and} appear in your answer.",
                "Your response must mention {words_and}.",
                "Use the words {words_and} somewhere in your reply.",
                "Work {words_and} into what you write.",
                "Somewhere in the text, {words_and} must show up.",
            ),
            lambda text, words: all(re.search(rf"\b{re.escape(w)}\b", text, flags=re.I) for w in words),
            frozenset({"forbidden_words"}),
        ),
        ConstraintType(
            "forbidden_words",
            lambda rng: {"words": rng.sample(["the", "and", "is", "very", "good", "also"], 2)},
            (
                "Do not use the words {words_or} anywhere in your response.",
                "Avoid the words {words_or} completely.",
                "Your answer must not contain the words {words_or}.",
                "Never write the words {words_or} in your reply.",
                "The words {words_and} are banned from your answer.",
                "Steer clear of {words_or}: neither may appear.",
            ),
            lambda text, words: not any(re.search(rf"\b{re.escape(w)}\b", text, flags=re.I) for w in words),
            frozenset({"include_keywords"}),
        ),
        ConstraintType(
            "end_phrase",
            lambda rng: {"phrase": rng.choice(END_PHRASES)},
            (
                "Finish your response with this exact phrase: {phrase} No other words should follow it.",
                "End your answer with the exact words: {phrase}",
                "The last words of your response must be exactly: {phrase}",
                "Close your reply with this phrase and nothing after it: {phrase}",
                "Your final words must be exactly these, with nothing following: {phrase}",
                "Wrap up by writing {phrase} as the very end of your answer.",
            ),
            lambda text, phrase: text.strip().endswith(phrase),
            frozenset({"json_format", "quotation", "postscript", "lowercase", "uppercase"}),
        ),
        ConstraintType(
            "json_format",
            lambda rng: {},
            (
                "Your entire output must be valid JSON; you may wrap it in a ```json code block.",
                "Respond only with valid JSON (a ```json code block is fine).",
                "Format your whole answer as JSON.",
                "Return the answer as a JSON object and nothing else.",
                "Output must parse as JSON, with no text outside it.",
                "Reply in JSON format only.",
            ),
            lambda text: _is_json(text),
            FORMAT_OWNERS | {"end_phrase", "start_word", "lowercase", "uppercase", "min_words"},
        ),
        ConstraintType(
            "paragraphs",
            lambda rng: {"n": rng.randint(2, 4)},
            (
                "Your response must have exactly {n} paragraphs, separated from each other by the markdown "
                "divider ***.",
                "Write exactly {n} paragraphs and put the divider *** between them.",
                "Split your answer into {n} paragraphs, using *** as the separator.",
                "Give {n} paragraphs, separated by ***.",
                "I want {n} paragraphs exactly; put a line with *** between consecutive ones.",
                "Use the markdown divider *** to separate your answer into precisely {n} paragraphs.",
            ),
            lambda text, n: len([p for p in text.split("***") if p.strip()]) == n and text.count("***") == n - 1,
            FORMAT_OWNERS - {"paragraphs", "title", "postscript"} | {"max_words"},
        ),
        ConstraintType(
            "title",
            lambda rng: {},
            (
                "Your answer must contain a title, wrapped in double angular brackets, such as <<my title>>.",
                "Give your answer a title in double angular brackets, like <<title>>.",
                "Start with a title wrapped in << and >>.",
                "Include a title formatted as <<title here>>.",
                "Put a heading between double angle brackets, for example <<A Day Out>>.",
                "Add a title, and mark it by enclosing it in << >>.",
            ),
            lambda text: bool(re.search(r"<<[^<>\n]+>>", text)),
            frozenset({"json_format", "quotation", "lowercase"}),
        ),
        ConstraintType(
            "postscript",
            lambda rng: {},
            (
                "At the end of your response, add a postscript starting with P.S.",
                "End with a postscript that begins with P.S.",
                "Add a P.S. at the end of your answer.",
                "After your main answer, include a line starting with P.S.",
                "Finish with a short postscript, a line beginning with P.S.",
                "Remember to append a P.S. note after everything else.",
            ),
            lambda text: bool(re.search(r"^\s*P\.S\.", text, flags=re.M)),
            frozenset({"json_format", "quotation", "end_phrase", "lowercase", "uppercase"}),
        ),
        ConstraintType(
            "letter_frequency",
            lambda rng: {"letter": rng.choice(LETTERS), "n": rng.choice([5, 10, 15])},
            (
                "In your response, the letter '{letter}' should appear at least {n} times.",
                "Use the letter '{letter}' at least {n} times.",
                "The letter '{letter}' must occur {n} or more times in your answer.",
                "Make sure your reply contains the letter '{letter}' no fewer than {n} times.",
                "Count your '{letter}'s: there must be at least {n} of them.",
                "Your text needs {n} or more occurrences of the letter '{letter}'.",
            ),
            lambda text, letter, n: text.lower().count(letter) >= n,
            frozenset({"uppercase"}),
        ),
        ConstraintType(
            "no_commas",
            lambda rng: {},
            (
                "In your entire response, refrain from the use of any commas.",
                "Do not use any commas.",
                "Your answer must contain no commas at all.",
                "Write without a single comma.",
                "Commas are not allowed anywhere in your reply.",
                "Avoid the comma character completely.",
            ),
            lambda text: "," not in text,
            frozenset({"json_format"}),
        ),
        ConstraintType(
            "quotation",
            lambda rng: {},
            (
                "Wrap your entire response with double quotation marks.",
                "Put your whole answer inside double quotes.",
                "Enclose the entire response in double quotation marks.",
                'Your answer must begin and end with a double quote (").',
                'Surround everything you write with " marks.',
                'Quote your full reply: start it with " and end it with ".',
            ),
            lambda text: len(text.strip()) > 1 and text.strip()[0] == '"' and text.strip()[-1] == '"',
            FORMAT_OWNERS - {"quotation"} | {"end_phrase"},
        ),
        ConstraintType(
            "start_word",
            lambda rng: {"word": rng.choice(START_WORDS)},
            (
                "The first word of your response must be '{word}'.",
                "Begin your answer with the word '{word}'.",
                "Start your response with '{word}'.",
                "Your reply has to open with the word '{word}'.",
                "Let '{word}' be the very first word you write.",
                "Open with '{word}' before anything else.",
            ),
            lambda text, word: (_words(text)[:1] or [""])[0] == word,
            frozenset({"lowercase", "uppercase", "json_format", "quotation", "title"}),
        ),
        ConstraintType(
            "placeholders",
            lambda rng: {"n": rng.randint(1, 3)},
            (
                "The response must contain at least {n} placeholders in square brackets, such as [address].",
                "Include at least {n} placeholders written in square brackets, like [name].",
                "Use {n} or more bracketed placeholders such as [date].",
                "Leave at least {n} placeholders in square brackets, for example [city].",
                "Put in no fewer than {n} fill-in-the-blank fields, each written like [item].",
                "Mark at least {n} spots to fill in later with square brackets, as in [phone number].",
            ),
            lambda text, n: len(re.findall(r"\[[^\[\]\n]+\]", text)) >= n,
            frozenset({"json_format"}),
        ),
        ConstraintType(
            "highlights",
            lambda rng: {"n": rng.randint(1, 3)},
            (
                "Highlight at least {n} sections in your answer with markdown, i.e. *highlighted section*.",
                "Highlight {n} or more parts of your answer with single asterisks, like *this*.",
                "Use markdown to highlight at least {n} sections, e.g. *important part*.",
                "Mark at least {n} phrases as highlighted with *asterisks*.",
                "Emphasize no fewer than {n} passages using *single asterisks*.",
                "Make {n} or more sections stand out by wrapping them in single asterisks (*like so*).",
            ),
            lambda text, n: len(re.findall(r"(?<!\*)\*[^\n*]+\*(?!\*)", text)) >= n,
            frozenset({"json_format"}),
        ),
    ]
}


PHRASINGS = ("seen", "unseen")
"""``seen``: the phrasings, task templates, topics and framing training prompts use; ``unseen``: only
held-out ones, so a prompt of that kind shares no sentence with any training prompt."""


def make_instruction_task(rng: random.Random, phrasing: str = "seen") -> dict[str, Any]:
    """A base task with one to three mutually compatible constraints, stated in ``phrasing`` words."""
    seen = phrasing == "seen"
    task = rng.choice(TASKS if seen else HELDOUT_TASKS).format(topic=rng.choice(TOPICS if seen else HELDOUT_TOPICS))
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
    wordings = range(TRAIN_PHRASINGS) if seen else range(TRAIN_PHRASINGS, len(CONSTRAINTS["lowercase"].phrasings))
    sentences = [describe(c, rng.choice(wordings)) for c in chosen]
    frame = FRAMES[0] if seen else rng.choice(FRAMES[1:])
    return {"kind": "instructions", "prompt": frame(task, sentences), "constraints": chosen, "phrasing": phrasing}


FRAMES: tuple[Callable[[str, list[str]], str], ...] = (
    lambda task, rules: " ".join([task, *rules]),  # the one training prompts use
    lambda task, rules: " ".join(rules) + "\n\n" + task,
    lambda task, rules: task + "\n\nRequirements:\n" + "\n".join(f"- {rule}" for rule in rules),
    lambda task, rules: f"Here is what I need. {task} Please follow these rules: " + " ".join(rules),
)
"""How a task and its constraint sentences make one prompt; the first is the training framing."""


def describe(constraint: dict[str, Any], phrasing: int = 0) -> str:
    """The sentence that states ``constraint``, in phrasing number ``phrasing`` of its type."""
    params = {k: v for k, v in constraint.items() if k != "type"}
    fields = dict(params)
    for key, value in params.items():
        if isinstance(value, list):
            fields[f"{key}_and"] = " and ".join(f"'{v}'" for v in value)
            fields[f"{key}_or"] = " or ".join(f"'{v}'" for v in value)
    return CONSTRAINTS[constraint["type"]].phrasings[phrasing].format(**fields)


def parameters(constraint: dict[str, Any]) -> dict[str, Any]:
    """A constraint's parameters: its keys but ``type``, without None values (Arrow gives every
    constraint of a Parquet or hub-dataset column every key, the ones it lacks as None)."""
    return {k: v for k, v in constraint.items() if k != "type" and v is not None}


def check(constraint: dict[str, Any], response: str) -> bool:
    return bool(CONSTRAINTS[constraint["type"]].check(response, **parameters(constraint)))
