"""Lay a batch of tokenized pairs out as model calls, and the sampler that orders the pairs.

A batch of B pairs holds 2B sequences, numbered by *slot*: chosen of pair i is slot i, rejected
of pair i is slot B + i. Two layouts:

- ``separate``: ``[prompt, chosen]`` and ``[prompt, rejected]`` as two rows (what TRL does):
  the prompt is processed twice.
- ``shared-prompt``: one row ``[prompt, chosen, rejected]`` per pair. A 4D mask lets the rejected
  response attend to the prompt and to itself but never to the chosen one, and its positions
  continue from the prompt, so each token sees exactly what it sees in the separate layout while
  the prompt is processed once.

and two ways to batch the rows:

- padded: all rows right-padded to the longest, one model call;
- padding-free: each row its own model call, no pad token anywhere. On CPU a row is already long
  enough to keep the matrix multiplies efficient, so the calls cost no speed and the pad tokens
  (a third to a half of all tokens on mixed lengths) are never computed. On a GPU the calls are
  launch-bound, so there the default is padded (:func:`padding_free_on`).

Every layout gives the same per-slot log-probs (tests); only speed and memory differ.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, fields
from hashlib import sha256

import torch
from torch.utils.data import Sampler

from simper.data.tokenize import TokenizedPair

LAYOUTS = ("shared-prompt", "separate")

_SHARED, _CHOSEN, _REJECTED, _PAD = 0, 1, 2, -1  # which branch of a row a token belongs to


@dataclass
class ModelCall:
    """The inputs of one forward pass and where its response tokens go.

    Attributes:
        input_ids: ``(S, T)`` token ids.
        attention_mask: ``(S, T)`` padding mask, ``(S, 1, T, T)`` boolean mask (True = may attend),
            or None for plain causal attention over unpadded rows.
        position_ids: ``(S, T)`` or None for ``0..T-1``.
        sources: ``(N,)`` flat indices (row · T + column) of the hidden states that predict a
            response token.
        targets: ``(N,)`` those response tokens.
        slots: ``(N,)`` the sequence slot each response token belongs to.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    position_ids: torch.Tensor | None
    sources: torch.Tensor
    targets: torch.Tensor
    slots: torch.Tensor

    def to(self, device: torch.device | str) -> ModelCall:
        return ModelCall(*(None if t is None else t.to(device) for t in (getattr(self, f.name) for f in fields(self))))


@dataclass
class PreferenceBatch:
    """B pairs as one or more model calls.

    Attributes:
        calls: the model calls that together cover every response token of the batch.
        num_pairs: B; the log-prob helper returns ``2B`` values, chosen first.
        tokens: tokens in the pairs' two sequences (2·prompt + chosen + rejected, no padding),
            the same number whatever the layout, so tokens/s compares layouts on the same data.
    """

    calls: list[ModelCall]
    num_pairs: int
    tokens: int

    def to(self, device: torch.device | str) -> PreferenceBatch:
        return PreferenceBatch([call.to(device) for call in self.calls], self.num_pairs, self.tokens)


@dataclass
class _Row:
    ids: list[int]
    positions: list[int]
    branch: list[int]  # _SHARED / _CHOSEN / _REJECTED per token
    predicted: list[tuple[int, int, int]]  # (source position, target token, slot)


def _rows(pair: TokenizedPair, index: int, num_pairs: int, layout: str) -> list[_Row]:
    prompt, chosen, rejected = pair.prompt, pair.chosen, pair.rejected
    p = len(prompt)
    if layout == "separate":
        rows = []
        for response, slot in ((chosen, index), (rejected, num_pairs + index)):
            ids = prompt + response
            predicted = [(p - 1 + k, token, slot) for k, token in enumerate(response)]
            rows.append(_Row(ids, list(range(len(ids))), [_SHARED] * len(ids), predicted))
        return rows
    c = len(chosen)
    predicted = [(p - 1 + k, token, index) for k, token in enumerate(chosen)]
    # the first rejected token is predicted by the last prompt token, the others by their neighbour
    predicted += [(p - 1 if k == 0 else p + c + k - 1, token, num_pairs + index) for k, token in enumerate(rejected)]
    return [
        _Row(
            prompt + chosen + rejected,
            list(range(p + c)) + list(range(p, p + len(rejected))),
            [_SHARED] * p + [_CHOSEN] * c + [_REJECTED] * len(rejected),
            predicted,
        )
    ]


def _call(rows: list[_Row], pad_token_id: int, custom_mask: bool) -> ModelCall:
    width = max(len(row.ids) for row in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    branch = torch.full((len(rows), width), _PAD, dtype=torch.long)
    for r, row in enumerate(rows):
        input_ids[r, : len(row.ids)] = torch.tensor(row.ids)
        positions[r, : len(row.ids)] = torch.tensor(row.positions)
        branch[r, : len(row.ids)] = torch.tensor(row.branch)
    predicted = [
        (r * width + source, target, slot) for r, row in enumerate(rows) for source, target, slot in row.predicted
    ]
    sources, targets, slots = (torch.tensor(column, dtype=torch.long) for column in zip(*predicted, strict=True))
    padded = bool((branch == _PAD).any())
    if custom_mask:
        attention_mask = _branch_mask(branch)
        position_ids = positions
    else:
        attention_mask = (branch != _PAD).long() if padded else None
        position_ids = None
    return ModelCall(input_ids, attention_mask, position_ids, sources, targets, slots)


def _branch_mask(branch: torch.Tensor) -> torch.Tensor:
    """``(S, 1, T, T)`` True where query q may attend to key k.

    Causal, and a key is visible when it is shared (prompt) or on the query's own branch. A pad
    query attends to itself only (a row of all False would give NaN in the softmax).
    """
    width = branch.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    query, key = branch[:, :, None], branch[:, None, :]
    visible = causal & (key != _PAD) & ((key == _SHARED) | (key == query))
    visible |= torch.eye(width, dtype=torch.bool) & (query == _PAD)
    return visible[:, None]


def padding_free_on(device: torch.device | str) -> bool:
    """The batching simper picks on ``device`` when not told: padding-free on a CPU, where a row is
    already long enough to keep the matrix multiplies busy and no pad token is computed; one padded
    call on a GPU (or any accelerator), where a call per row leaves the device waiting on kernel
    launches: 7-8x slower a step on an H200 (SmolLM2's shape, bf16, docs/performance.md)."""
    return torch.device(device).type == "cpu"


class PairCollator:
    """``collate_fn`` for a DataLoader of :class:`TokenizedPair`.

    Args:
        pad_token_id: id written in padded positions (never attended to, never predicted).
        layout: ``shared-prompt`` or ``separate`` (see the module docstring).
        padding_free: one model call per row and no padding, instead of one padded call. ``True`` here
            (what a CPU wants); ``simper train`` decides by device (:func:`padding_free_on`) unless told.
    """

    def __init__(self, pad_token_id: int, layout: str = "shared-prompt", padding_free: bool = True) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        if not isinstance(padding_free, bool):  # an unset config value is resolved first (padding_free_on)
            raise TypeError(f"padding_free must be True or False, got {padding_free!r}")
        self.pad_token_id, self.layout, self.padding_free = pad_token_id, layout, padding_free

    def __call__(self, pairs: list[TokenizedPair]) -> PreferenceBatch:
        rows = [row for i, pair in enumerate(pairs) for row in _rows(pair, i, len(pairs), self.layout)]
        custom_mask = self.layout == "shared-prompt"
        groups = [[row] for row in rows] if self.padding_free else [rows]
        tokens = sum(2 * len(p.prompt) + len(p.chosen) + len(p.rejected) for p in pairs)
        return PreferenceBatch([_call(group, self.pad_token_id, custom_mask) for group in groups], len(pairs), tokens)


class EpochSampler(Sampler[int]):
    """A fresh permutation each epoch, a function of the seed: epoch 0 draws from ``seed``, a later
    epoch from a hash of ``(seed, epoch)``. (Until 2026-12-04 it was ``seed + epoch``, so seed 1's
    second epoch repeated seed 2's first, and "independent" seeds of a multi-epoch run shared orders.)

    The epoch is set by the loop only (``start_epoch``, deliberately not ``set_epoch``, which
    accelerate would call with its own counter, wrong after a resume).
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        seed = self.seed
        if self.epoch:
            seed = int.from_bytes(sha256(f"{self.seed}:{self.epoch}".encode()).digest()[:7], "big")
        generator = torch.Generator().manual_seed(seed)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


class HeldOutBatches:
    """This process's share of the held-out pairs, each pair on exactly one process, in batches of
    ``size``; ``(batch, counted)`` per batch. A process with fewer batches than the most gets filler
    batches (``counted`` False) so that every process runs as many forwards, which ZeRO-3 and DDP need.
    (accelerate's prepared loader instead repeats pairs to even the last batch out, and those repeats
    were counted: 5 of 75 held-out pairs twice on 2 processes.)"""

    def __init__(
        self, pairs: list, size: int, collate: PairCollator, world: int, rank: int, device: torch.device | str
    ) -> None:
        share = pairs[rank::world]
        most = math.ceil(math.ceil(len(pairs) / world) / size)  # batches of the process with the most pairs
        self.chunks = [(share[i : i + size], True) for i in range(0, len(share), size)]
        self.chunks += [(pairs[:1], False)] * (most - len(self.chunks))
        self.collate, self.device = collate, device

    def __iter__(self):
        for chunk, counted in self.chunks:
            yield self.collate(chunk).to(self.device), counted

    def __len__(self) -> int:
        return len(self.chunks)
