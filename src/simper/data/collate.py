"""Batch tokenized pairs into one padded tensor batch: chosen rows first, then rejected rows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import Sampler

from simper.data.tokenize import TokenizedPair


@dataclass
class PreferenceBatch:
    """A batch of B pairs laid out as 2B right-padded sequences ``[chosen_1..B, rejected_1..B]``.

    Attributes:
        input_ids: ``(2B, T)`` prompt + response token ids, right-padded with the pad id.
        attention_mask: ``(2B, T)`` 1 on real tokens.
        response_mask: ``(2B, T)`` 1 on response tokens (EOS included), 0 on prompt and padding.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor

    @property
    def num_pairs(self) -> int:
        return self.input_ids.shape[0] // 2

    def to(self, device: torch.device | str) -> PreferenceBatch:
        return PreferenceBatch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.response_mask)))

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "response_mask": self.response_mask,
        }


class PaddedCollator:
    """``collate_fn`` for a DataLoader of :class:`TokenizedPair`."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, pairs: list[TokenizedPair]) -> PreferenceBatch:
        sequences = [(p.prompt, p.chosen) for p in pairs] + [(p.prompt, p.rejected) for p in pairs]
        width = max(len(prompt) + len(response) for prompt, response in sequences)
        input_ids = torch.full((len(sequences), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
        response_mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, (prompt, response) in enumerate(sequences):
            length = len(prompt) + len(response)
            input_ids[row, :length] = torch.tensor(prompt + response, dtype=torch.long)
            attention_mask[row, :length] = 1
            response_mask[row, len(prompt) : length] = 1
        return PreferenceBatch(input_ids, attention_mask, response_mask)


class EpochSampler(Sampler[int]):
    """A fresh permutation each epoch, from ``seed + epoch``: the data order is a function of the seed.

    The epoch is set by the loop only (``start_epoch``, deliberately not ``set_epoch``, which
    accelerate would call with its own counter, wrong after a resume).
    """

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size
