"""From the data config to tokenized train and held-out sets, with a report of what was kept."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field

from transformers import PreTrainedTokenizerBase

from simper.data.formats import PreferencePair, load_pairs
from simper.data.sources import read_rows, source_identity
from simper.data.tokenize import TokenizedPair, tokenize_pairs
from simper.errors import UserError


@dataclass
class PreparedData:
    """Tokenized pairs and the log lines that say where they came from and what was dropped."""

    train: list[TokenizedPair]
    eval: list[TokenizedPair]
    report: list[str] = field(default_factory=list)


def read_pairs(sources: list[str], split: str, report: list[str]) -> tuple[list[PreferencePair], Counter]:
    """Read and normalize several sources, one format detected per source."""
    pairs, drops = [], Counter()
    for source in sources:
        rows = read_rows(source, split)
        source_pairs, fmt, source_drops = load_pairs(rows)
        report.append(f"{source}: {len(rows)} rows, format: {fmt}")
        pairs += source_pairs
        drops += source_drops
    return pairs, drops


def repeated_pairs(pairs: list[PreferencePair]) -> list[tuple[PreferencePair, PreferencePair]]:
    """``(repeat, its first occurrence)`` for every pair whose prompt, chosen and rejected responses
    all match an earlier pair's: the same rows read twice, say from two sources that overlap."""
    first: dict[str, PreferencePair] = {}
    repeats = []
    for pair in pairs:
        key = json.dumps([pair.prompt, pair.chosen, pair.rejected], sort_keys=True, default=repr)
        if key in first:
            repeats.append((pair, first[key]))
        else:
            first[key] = pair
    return repeats


def balance_by_length(pairs: list[TokenizedPair]) -> tuple[list[TokenizedPair], int]:
    """As many pairs whose chosen response is shorter than the rejected one as pairs where it is not.

    The excess of the larger side is dropped by a fixed draw (the same pairs whatever the training
    seed); the kept pairs stay in their order. Returns ``(kept, number dropped)``.
    """
    shorter = [i for i, p in enumerate(pairs) if len(p.chosen) < len(p.rejected)]
    rest = [i for i, p in enumerate(pairs) if len(p.chosen) >= len(p.rejected)]
    larger, smaller = (shorter, rest) if len(shorter) > len(rest) else (rest, shorter)
    random.Random(0).shuffle(larger)
    keep = set(smaller) | set(larger[: len(smaller)])
    return [p for i, p in enumerate(pairs) if i in keep], len(pairs) - len(keep)


def split_by_prompt(pairs: list[PreferencePair], fraction: float, seed: int) -> tuple[list, list]:
    """``(train, held_out)``: whole prompts held out, drawn in a seeded order while each brings the
    held-out pairs nearer to ``fraction`` of all (at least one prompt, and never every one). Holding out pairs instead
    would put other pairs of the same prompt, and repeated rows, on both sides (UltraFeedback-style
    data has several pairs per prompt), and the held-out numbers would read as better than they are."""
    if len(pairs) < 2:  # nothing to split: the caller says whether anything is left to train on
        return pairs, []
    groups: dict[str, list[int]] = {}
    for index, pair in enumerate(pairs):
        groups.setdefault(json.dumps(pair.prompt, sort_keys=True), []).append(index)
    if len(groups) < 2:
        raise UserError("data.eval_fraction: every pair has the same prompt, so none can be held out unseen")
    keys = list(groups)
    random.Random(seed).shuffle(keys)
    target, held_out = max(1, round(fraction * len(pairs))), set()
    for key in keys[:-1]:  # a prompt that overshoots the target by more than it helps is passed over
        if len(held_out) + len(groups[key]) - target < target - len(held_out):
            held_out.update(groups[key])
    if not held_out:  # every prompt was too large: the smallest one
        held_out.update(min((groups[key] for key in keys[:-1]), key=len))
    return [p for i, p in enumerate(pairs) if i not in held_out], [p for i, p in enumerate(pairs) if i in held_out]


def prepare_data(
    train_sources: list[str],
    eval_sources: list[str],
    *,
    tokenizer: PreTrainedTokenizerBase,
    split: str,
    eval_split: str,
    eval_fraction: float,
    max_length: int,
    max_prompt_length: int,
    seed: int,
    drop_truncated: str = "none",
    balance_lengths: bool = False,
) -> PreparedData:
    """Read, normalize, split and tokenize; raise :class:`UserError` if nothing is left to train on."""
    report: list[str] = []
    train_pairs, drops = read_pairs(train_sources, split, report)
    read_count = len(train_pairs) + sum(drops.values())
    repeated = repeated_pairs(train_pairs)
    if repeated:
        first, earlier = repeated[0]
        report.append(
            f"warning: training pairs read that repeat an earlier one word for word (prompt, chosen and rejected): "
            f"{len(repeated)} (the first: {first.origin}, as {earlier.origin}); repeats are kept, not merged"
        )
    if drop_truncated != "none":
        kept = [
            p for p in train_pairs if not (p.chosen_truncated or (drop_truncated == "any" and p.rejected_truncated))
        ]
        if len(kept) < len(train_pairs):
            which = "the chosen response" if drop_truncated == "chosen" else "a response"
            drops[f"with {which} cut off at generation (data.drop_truncated={drop_truncated})"] += len(
                train_pairs
            ) - len(kept)
        train_pairs = kept
    if eval_sources:
        trained = {source_identity(source, split) for source in train_sources}
        for source in eval_sources:
            if source_identity(source, eval_split) in trained:
                raise UserError(f"held-out data {source!r}: reads the same rows as a training source (not held out)")
        eval_pairs, _ = read_pairs(eval_sources, eval_split, report)
    elif eval_fraction > 0:
        train_pairs, eval_pairs = split_by_prompt(train_pairs, eval_fraction, seed)
    else:
        eval_pairs = []

    lengths = {"max_length": max_length, "max_prompt_length": max_prompt_length}
    train, train_drops = tokenize_pairs(train_pairs, tokenizer, **lengths)
    if balance_lengths:
        train, excess = balance_by_length(train)
        if excess:
            train_drops["to balance chosen-shorter and chosen-not-shorter pairs (data.balance_lengths)"] += excess
    held_out, _ = tokenize_pairs(eval_pairs, tokenizer, **lengths)
    drops += train_drops
    dropped = ", ".join(f"{count} {reason}" for reason, count in drops.most_common()) or "none"
    report.append(
        f"pairs read: {read_count}; kept for training: {len(train)}; held out: {len(held_out)}; dropped: {dropped}"
    )
    if not train:
        raise UserError(f"no training pair left after filtering ({dropped}); check the data and max_length")
    return PreparedData(train, held_out, report)
