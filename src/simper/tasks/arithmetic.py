"""Arithmetic word problems with an exact integer answer (one or two steps), GSM8K's kind made small."""

from __future__ import annotations

import random
import re
from typing import Any

NAMES = ["Tom", "Ana", "Li", "Sara", "Omar", "Mia", "Ben", "Yuki", "Ravi", "Eva", "Noah", "Zoe"]
ITEMS = ["apples", "books", "stamps", "marbles", "pencils", "cookies", "shells", "cards", "coins", "stickers"]


def make_arithmetic_task(rng: random.Random) -> dict[str, Any]:
    """One- or two-step problem; the answer is a non-negative integer."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b = rng.randint(3, 60), rng.randint(2, 30)
    kind = rng.choice(["add", "sub", "mul", "add_sub", "mul_add", "share"])
    if kind == "add":
        text, answer = f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?", a + b
    elif kind == "sub":
        a = a + b
        text, answer = f"{name} has {a} {item} and gives away {b}. How many {item} are left?", a - b
    elif kind == "mul":
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        text, answer = f"{name} buys {a} boxes with {b} {item} in each box. How many {item} is that in total?", a * b
    elif kind == "add_sub":
        c = rng.randint(1, a + b)
        text = f"{name} has {a} {item}, finds {b} more, then loses {c}. How many {item} does {name} have now?"
        answer = a + b - c
    elif kind == "mul_add":
        a, b, c = rng.randint(2, 9), rng.randint(2, 9), rng.randint(1, 20)
        text = f"{name} fills {a} bags with {b} {item} each and has {c} {item} left over. How many {item} in all?"
        answer = a * b + c
    else:
        per, people = rng.randint(2, 12), rng.randint(2, 8)
        text = f"{name} shares {per * people} {item} equally among {people} friends. How many {item} does each get?"
        answer = per
    prompt = f"{text} Give the final answer as a number at the end."
    return {"kind": "arithmetic", "prompt": prompt, "answer": answer}


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
