"""Detect the preference format of a source and normalize its rows to :class:`PreferencePair`.

The formats TRL users already have:

- ``standard``: ``prompt``, ``chosen``, ``rejected`` strings.
- ``conversational``: ``prompt`` a list of messages, ``chosen``/``rejected`` lists of assistant
  messages. The UltraFeedback-binarized layout, where ``chosen``/``rejected`` repeat the prompt's
  turns (and ``prompt`` is a plain string), is recognised and the repeated turns stripped.
- ``implicit prompt``: only ``chosen``/``rejected``, each a full transcript, as Anthropic-HH text
  (``\\n\\nHuman: … \\n\\nAssistant: …``) or as message lists. The prompt is the shared prefix ending
  at the last turn boundary before the two diverge.

In any format, optional booleans ``chosen_truncated`` / ``rejected_truncated`` (``simper pairs``
writes them) mark a response cut off by a generation limit: it did not end, so it is trained
without an end-of-turn token (teaching the model to stop mid-sentence would shorten its answers).
"""

from __future__ import annotations

import ast
import json
from collections import Counter
from dataclasses import dataclass, replace

from simper.data.sources import Row, _type_name
from simper.errors import UserError

Messages = list[dict[str, str]]
ASSISTANT_MARKER = "\n\nAssistant:"


@dataclass(frozen=True)
class PreferencePair:
    """One normalized pair. Text pairs hold strings; chat pairs hold message lists.

    For a chat pair ``prompt`` is every turn before the response and ``chosen``/``rejected`` the
    assistant turn(s) that answer it.
    """

    prompt: str | Messages
    chosen: str | Messages
    rejected: str | Messages
    origin: str
    chosen_truncated: bool = False
    rejected_truncated: bool = False

    @property
    def is_chat(self) -> bool:
        return isinstance(self.chosen, list)


def detect_format(row: Row) -> str:
    """Name the format of a source from its first row (see the module docstring)."""
    values = row.values
    if "chosen" in values and "rejected" in values:
        chosen = values["chosen"]
        if "prompt" in values:
            prompt = values["prompt"]
            if isinstance(prompt, list):
                return "conversational"
            if isinstance(chosen, list):
                return "conversational (UltraFeedback layout)"
            return "standard"
        return "implicit prompt (messages)" if isinstance(chosen, list) else "implicit prompt (text)"
    found = ", ".join(map(str, values)) or "none"
    raise UserError(
        f"{row.origin.rsplit(':', 1)[0]}: cannot detect the preference format: columns found: {found}; "
        "expected prompt/chosen/rejected (standard or conversational) or chosen/rejected (implicit prompt)"
    )


def normalize(row: Row, fmt: str) -> PreferencePair:
    """Turn one row of a detected format into a :class:`PreferencePair`, or raise naming the field."""
    pair = _normalize(row, fmt)
    flags = {key: _flag(row, key) for key in ("chosen_truncated", "rejected_truncated")}
    return replace(pair, **flags) if any(flags.values()) else pair


def _flag(row: Row, key: str) -> bool:
    value = row.values.get(key, False)
    if not isinstance(value, bool):
        raise UserError(f"{row.origin}: field {key!r}: expected true or false, got {_type_name(value)}")
    return value


def _normalize(row: Row, fmt: str) -> PreferencePair:
    values = row.values
    required = ("chosen", "rejected") if fmt.startswith("implicit") else ("prompt", "chosen", "rejected")
    for key in required:
        if key not in values:
            raise UserError(f"{row.origin}: missing field {key!r}")
    if fmt == "standard":
        prompt = _string(row, "prompt", allow_empty=True)
        chosen, rejected = _string(row, "chosen"), _string(row, "rejected")
        repeated = prompt.endswith(ASSISTANT_MARKER) and chosen.startswith(prompt) and rejected.startswith(prompt)
        if repeated:  # HH transcripts as responses: an answer that merely starts like a short prompt stays
            chosen, rejected = chosen[len(prompt) :], rejected[len(prompt) :]
            if not chosen.strip() or not rejected.strip():
                raise UserError(f"{row.origin}: field 'chosen' or 'rejected': nothing after the prompt it repeats")
        return PreferencePair(prompt, chosen, rejected, row.origin)
    if fmt == "implicit prompt (text)":
        return _split_text_transcripts(row, _string(row, "chosen"), _string(row, "rejected"))
    if fmt == "conversational":
        prompt = message_list(row, "prompt")
        chosen, rejected = message_list(row, "chosen"), message_list(row, "rejected")
        if chosen[: len(prompt)] == prompt and rejected[: len(prompt)] == prompt and len(chosen) > len(prompt):
            chosen, rejected = chosen[len(prompt) :], rejected[len(prompt) :]  # responses repeat the prompt
        return _chat_pair(row, prompt, chosen, rejected)
    chosen, rejected = message_list(row, "chosen"), message_list(row, "rejected")
    if fmt == "conversational (UltraFeedback layout)":
        _string(row, "prompt")
    return _split_message_transcripts(row, chosen, rejected)


def load_pairs(rows: list[Row]) -> tuple[list[PreferencePair], str, Counter]:
    """Normalize all rows of one source.

    Returns:
        ``(pairs, format name, drops)``; ``drops`` counts pairs left out, by reason (a pair whose
        chosen response equals its rejected one teaches nothing and is dropped).
    """
    fmt = detect_format(rows[0])
    pairs, drops = [], Counter()
    for row in rows:
        pair = normalize(row, fmt)
        if pair.chosen == pair.rejected:
            drops["chosen identical to rejected"] += 1
            continue
        if _other_turns(pair):
            drops["with a response holding a user or system turn (the transcripts differ before their last turn)"] += 1
            continue
        pairs.append(pair)
    return pairs, fmt, drops


def _other_turns(pair: PreferencePair) -> bool:
    """Whether a response holds another speaker's turn, which training would teach the model to write."""
    if pair.is_chat:
        return any(m["role"] in ("user", "system") for m in [*pair.chosen, *pair.rejected])
    return pair.prompt.endswith(ASSISTANT_MARKER) and any(  # Anthropic-HH transcripts
        "\n\nHuman:" in response for response in (pair.chosen, pair.rejected)
    )


def _messages_as_text(value: str) -> bool:
    """Whether a string is a list of {role, content} messages written out (JSON or a Python repr)."""
    text = value.strip()
    if not (text.startswith("[{") and text.endswith("}]") and "role" in text[:200]):
        return False
    try:
        parsed = json.loads(text)
    except ValueError:
        try:
            parsed = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return False
    return isinstance(parsed, list) and all(isinstance(m, dict) and {"role", "content"} <= m.keys() for m in parsed)


def _string(row: Row, key: str, *, allow_empty: bool = False) -> str:
    value = row.values[key]
    if not isinstance(value, str):
        raise UserError(f"{row.origin}: field {key!r}: expected a string, got {_type_name(value)}")
    if not allow_empty and not value.strip():
        raise UserError(f"{row.origin}: field {key!r} is empty")
    if _messages_as_text(value):
        raise UserError(
            f"{row.origin}: field {key!r}: a list of messages written out as text (a CSV column or a string "
            "column holds no lists); save chat data as JSON Lines or Parquet"
        )
    return value


def message_list(row: Row, key: str) -> Messages:
    """Field ``key`` of ``row`` as a checked list of ``{role, content}`` messages (the error names the row,
    the field and the message)."""
    value = row.values[key]
    if not isinstance(value, list) or not value:
        got = "an empty list" if isinstance(value, list) else _type_name(value)
        raise UserError(f"{row.origin}: field {key!r}: expected a list of messages, got {got}")
    for index, message in enumerate(value):
        where = f"{row.origin}: field {key!r}[{index}]"
        if not isinstance(message, dict):
            raise UserError(f"{where}: expected a message object, got {_type_name(message)}")
        if not isinstance(message.get("role"), str):
            raise UserError(f"{where}: message has no string 'role'")
        if "content" not in message or message["content"] is None:
            raise UserError(f"{where}: message has no 'content'")
        if not isinstance(message["content"], str):
            got = _type_name(message["content"])
            raise UserError(f"{where}: 'content' must be a string, got {got}")
    # all its keys, for a template that reads name or tool_calls; None ones are Arrow's filler for keys
    # other messages of the column have, and would make equal turns differ
    return [{k: v for k, v in m.items() if v is not None} for m in value]


def _chat_pair(row: Row, prompt: Messages, chosen: Messages, rejected: Messages) -> PreferencePair:
    for key, response in (("chosen", chosen), ("rejected", rejected)):
        if not response:
            raise UserError(f"{row.origin}: field {key!r} holds no response after the prompt's turns")
        if response[-1]["role"] != "assistant":
            raise UserError(
                f"{row.origin}: field {key!r}: the last message must be the assistant's, "
                f"got role {response[-1]['role']!r}"
            )
        if not response[-1]["content"].strip():
            raise UserError(f"{row.origin}: field {key!r}: the assistant's message is empty")
    return PreferencePair(prompt, chosen, rejected, row.origin)


def _split_message_transcripts(row: Row, chosen: Messages, rejected: Messages) -> PreferencePair:
    """Prompt = the shared turns up to the last assistant turn at or before the transcripts differ."""
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    start = min(shared, len(chosen) - 1)
    while start > 0 and chosen[start]["role"] != "assistant":
        start -= 1
    if start == 0:
        raise UserError(
            f"{row.origin}: field 'chosen': cannot find the prompt: no assistant turn follows a shared prompt turn"
        )
    return _chat_pair(row, chosen[:start], chosen[start:], rejected[start:])


def _split_text_transcripts(row: Row, chosen: str, rejected: str) -> PreferencePair:
    """Prompt = the shared text up to and including the last ``\\n\\nAssistant:`` before they differ."""
    shared = 0
    limit = min(len(chosen), len(rejected))
    while shared < limit and chosen[shared] == rejected[shared]:
        shared += 1
    cut = chosen.rfind(ASSISTANT_MARKER, 0, shared)
    if cut < 0:
        raise UserError(
            f"{row.origin}: field 'chosen': cannot find the prompt: no shared {ASSISTANT_MARKER!r} turn "
            "before chosen and rejected differ"
        )
    end = cut + len(ASSISTANT_MARKER)
    prompt, chosen_reply, rejected_reply = chosen[:end], chosen[end:], rejected[end:]
    for key, reply in (("chosen", chosen_reply), ("rejected", rejected_reply)):
        if not reply.strip():
            raise UserError(f"{row.origin}: field {key!r}: the reply after the prompt is empty")
    return PreferencePair(prompt, chosen_reply, rejected_reply, row.origin)
