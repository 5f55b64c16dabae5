"""Per-step metric tallies: sums over a batch, reduced over micro-batches and processes, then divided.

Per-token quantities (log-probs, perplexities) are token-weighted; per-pair ones are pair means.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from accelerate import Accelerator

from simper.data.collate import PreferenceBatch
from simper.objectives import ObjectiveOutput, SequenceLogps


def pair_stats(out: ObjectiveOutput, logps: SequenceLogps, batch: PreferenceBatch) -> dict[str, torch.Tensor]:
    """Sums over the batch (reduced later across micro-batches and processes, then divided)."""
    return {
        "pairs": torch.tensor(float(batch.num_pairs), device=out.losses.device),
        "loss": out.losses.detach().sum(),
        "chosen_logp_sum": logps.chosen_sum.detach().sum(),
        "chosen_tokens": logps.chosen_count.sum(),
        "rejected_logp_sum": logps.rejected_sum.detach().sum(),
        "rejected_tokens": logps.rejected_count.sum(),
        "rewards/chosen": out.chosen_rewards.sum(),
        "rewards/rejected": out.rejected_rewards.sum(),
        "rewards/accuracies": (out.chosen_rewards > out.rejected_rewards).float().sum(),
        "rewards/margins": (out.chosen_rewards - out.rejected_rewards).sum(),
        "tokens": torch.tensor(float(batch.tokens), device=out.losses.device),
    }


def summarize(totals: dict[str, float]) -> dict[str, float]:
    """Turn reduced sums into the logged means (per-token ones token-weighted)."""
    pairs = max(totals["pairs"], 1.0)
    chosen = totals["chosen_logp_sum"] / max(totals["chosen_tokens"], 1.0)
    rejected = totals["rejected_logp_sum"] / max(totals["rejected_tokens"], 1.0)
    record = {"loss": totals["loss"] / pairs, "logps/chosen": chosen, "logps/rejected": rejected}
    record["ppl/chosen"] = math.exp(min(-chosen, 700.0))
    record["ppl/rejected"] = math.exp(min(-rejected, 700.0))
    for key in (
        "rewards/chosen",
        "rewards/rejected",
        "rewards/accuracies",
        "rewards/margins",
        "grad/chosen",
        "grad/rejected",
    ):
        if key in totals:
            record[key] = totals[key] / pairs
    return record


def reduce_totals(accelerator: Accelerator, totals: dict[str, torch.Tensor], grad_norm: Any) -> dict[str, float]:
    """Sum the step's tallies over processes: one host sync per optimizer step."""
    keys = sorted(totals)
    stacked = torch.stack([torch.as_tensor(totals[k], dtype=torch.float32) for k in keys]).to(accelerator.device)
    values = accelerator.reduce(stacked, reduction="sum").tolist()
    reduced = dict(zip(keys, values, strict=True))
    reduced["grad_norm"] = float(grad_norm) if grad_norm is not None else float("nan")
    return reduced
