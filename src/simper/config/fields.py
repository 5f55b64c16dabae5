"""How a config field is declared: its default, its ``--help`` text and, for some, its choices."""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any


def option(default: Any, help: str, *, whole_items: bool = False) -> Any:
    """A field with its help text (a list or dict default is copied for every instance).

    A list field's items are split at commas when loaded (``data.train=a.jsonl,b.jsonl``), unless
    ``whole_items``: then each item is kept as it is (a list of ``key=value`` that may hold commas)."""
    metadata = {"help": help, "whole_items": whole_items}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def choice_option(default: Any, help: str, choices: tuple[str, ...]) -> Any:
    """A field whose value must be one of ``choices`` (checked by :func:`check_choices`, listed in ``--help``)."""
    return field(default=default, metadata={"help": help, "choices": choices})


def check_choices(config: Any) -> None:
    """Every :func:`choice_option` field of ``config`` holds one of its choices (or None)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if "choices" in f.metadata and value is not None:
            check_choice(f.name, value, f.metadata["choices"])


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: {value!r} is not one of {', '.join(choices)}")
