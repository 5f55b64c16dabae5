"""Arithmetic word problems with an exact integer answer (one or two steps), GSM8K's kind made small.

Each kind of problem has wordings that training prompts use and wordings that are held out, and two
kinds (``compare``, ``double_then_spend``) appear in held-out wording only: a model that learned to
add, subtract, multiply and divide from the training wordings should solve them too.
"""

from __future__ import annotations

import random
import re
from typing import Any

NAMES = ["Tom", "Ana", "Li", "Sara", "Omar", "Mia", "Ben", "Yuki", "Ravi", "Eva", "Noah", "Zoe"]
ITEMS = ["apples", "books", "stamps", "marbles", "pencils", "cookies", "shells", "cards", "coins", "stickers"]

# kind -> (training wordings, held-out wordings); each a format string over the drawn numbers
WORDINGS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "add": (
        (
            "{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?",
            "{name} starts with {a} {item}. A friend gives {name} {b} more. How many {item} does {name} have?",
        ),
        ("After receiving {b} {item}, {name}, who already owned {a}, counts them all. What is the count?",),
    ),
    "sub": (
        (
            "{name} has {a} {item} and gives away {b}. How many {item} are left?",
            "There are {a} {item} in {name}'s bag. {name} uses {b} of them. How many {item} remain?",
        ),
        ("{name} owned {a} {item} until {b} were lost on a trip. What number of {item} does {name} still own?",),
    ),
    "mul": (
        (
            "{name} buys {a} boxes with {b} {item} in each box. How many {item} is that in total?",
            "Each of {a} shelves holds {b} {item}. How many {item} are on the shelves altogether?",
        ),
        ("{name} stacks {b} {item} on every one of {a} tables. How many {item} were stacked?",),
    ),
    "add_sub": (
        (
            "{name} has {a} {item}, finds {b} more, then loses {c}. How many {item} does {name} have now?",
            "{name} collects {a} {item}, is given {b}, and then hands out {c}. How many {item} are left?",
        ),
        ("Starting from {a} {item}, {name} gains {b} and later parts with {c}. How many {item} at the end?",),
    ),
    "mul_add": (
        (
            "{name} fills {a} bags with {b} {item} each and has {c} {item} left over. How many {item} in all?",
            "{name} packs {b} {item} into each of {a} jars and keeps {c} loose. How many {item} are there?",
        ),
        ("{a} groups of {b} {item} plus {c} extra {item}: how many {item} does {name} have?",),
    ),
    "share": (
        (
            "{name} shares {total} {item} equally among {b} friends. How many {item} does each get?",
            "{total} {item} are split evenly between {b} children by {name}. How many {item} per child?",
        ),
        ("If {name} deals {total} {item} out fairly to {b} people, what share of {item} does one person get?",),
    ),
    "compare": (
        (),
        ("{name} has {a} {item} and {other} has {b}. How many more {item} does {name} have than {other}?",),
    ),
    "double_then_spend": (
        (),
        ("{name} had {a} {item}, doubled that number, then spent {c}. How many {item} does {name} have now?",),
    ),
}
ANSWER_ASKS = (
    ("Give the final answer as a number at the end.",),
    ("End your reply with the answer as a number.", "Say the final number last."),
)  # (training, held out)


def make_arithmetic_task(rng: random.Random, phrasing: str = "seen") -> dict[str, Any]:
    """One- or two-step problem in training (``seen``) or held-out (``unseen``) wording; the answer is
    a non-negative integer."""
    side = 0 if phrasing == "seen" else 1
    kind = rng.choice([k for k, wordings in WORDINGS.items() if wordings[side]])
    name, other = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    a, b, c = rng.randint(3, 60), rng.randint(2, 30), 0
    if kind == "sub":
        a = a + b
    elif kind in ("mul", "mul_add"):
        a, b, c = rng.randint(2, 12), rng.randint(2, 12), rng.randint(1, 20)
    elif kind == "add_sub":
        c = rng.randint(1, a + b)
    elif kind == "share":
        a, b = rng.randint(2, 12), rng.randint(2, 8)  # a per person, b people
    elif kind == "compare":
        a = a + b
    elif kind == "double_then_spend":
        c = rng.randint(1, 2 * a)
    answer = {
        "add": a + b,
        "sub": a - b,
        "mul": a * b,
        "add_sub": a + b - c,
        "mul_add": a * b + c,
        "share": a,
        "compare": a - b,
        "double_then_spend": 2 * a - c,
    }[kind]
    text = rng.choice(WORDINGS[kind][side]).format(name=name, other=other, item=item, a=a, b=b, c=c, total=a * b)
    prompt = f"{text} {rng.choice(ANSWER_ASKS[side])}"
    return {"kind": "arithmetic", "prompt": prompt, "answer": answer, "phrasing": phrasing}


def final_number(response: str) -> int | None:
    """The last integer in the response (commas in numbers allowed), or None."""
    numbers = re.findall(r"-?\d[\d,]*(?:\.\d+)?", response)
    if not numbers:
        return None
    value = numbers[-1].replace(",", "")
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None
