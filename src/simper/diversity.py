"""Degeneration and diversity of generated text: the risks of a mode-seeking objective, measured.

- a *repetition loop*: the end of a response cycles through the same few phrases (what a small
  model does when it never finds its stop token); the share of responses caught in one;
- *distinct-n* (Li et al. 2016): distinct n-grams over all n-grams of a set of responses;
- *sample diversity*: for k answers sampled from one prompt, the distinct-2 of the k pooled, averaged
  over prompts (1 = no two samples share a word pair; 1/k = all k identical).
"""

from __future__ import annotations

import re

LOOP_TAIL = 80  # words at the end of a response that are looked at
LOOP_MIN_WORDS = 40  # shorter responses are never called loops
LOOP_DISTINCT = 0.6  # fewer distinct 4-grams than this share of the tail's 4-grams is a loop


def words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks, the units loops and n-grams are counted in."""
    return re.findall(r"\w+|[^\w\s]", text.lower())


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def is_looping(text: str) -> bool:
    """Whether the last :data:`LOOP_TAIL` words repeat themselves: under :data:`LOOP_DISTINCT` of
    their 4-grams distinct. A phrase of p words cycling through a tail of L words leaves about p
    distinct 4-grams out of L − 3, so loops with a period up to ~45 words are caught, while running
    prose keeps nearly all its 4-grams distinct."""
    tokens = words(text)
    if len(tokens) < LOOP_MIN_WORDS:
        return False
    grams = ngrams(tokens[-LOOP_TAIL:], 4)
    return len(set(grams)) < LOOP_DISTINCT * len(grams)


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams over all n-grams in ``texts`` (0 when there are none)."""
    grams = [gram for text in texts for gram in ngrams(words(text), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def degeneration(texts: list[str], finished: list[bool]) -> dict[str, float]:
    """Loop share, cut-off share split into loops and long-but-sound answers, distinct-1 and -2."""
    loops = [is_looping(text) for text in texts]
    count = max(len(texts), 1)
    return {
        "loop_share": sum(loops) / count,
        "cutoff_share": sum(not done for done in finished) / count,
        "cutoff_loop_share": sum(loop and not done for loop, done in zip(loops, finished, strict=True)) / count,
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
    }


def sample_diversity(samples: list[list[str]]) -> dict[str, float]:
    """Diversity of the k answers sampled for each prompt: pooled distinct-2 and the share of distinct
    answers, each averaged over prompts."""
    prompts = [texts for texts in samples if texts]
    if not prompts:
        return {}
    return {
        "sample_distinct_2": sum(distinct_n(texts, 2) for texts in prompts) / len(prompts),
        "sample_unique_share": sum(len(set(texts)) / len(texts) for texts in prompts) / len(prompts),
    }
