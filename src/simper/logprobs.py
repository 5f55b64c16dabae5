"""Per-sequence response log-probabilities: the one place where logits are made.

The LM head and the log-softmax run only on the positions that predict a response token
(prompt and padding positions never produce logits), in chunks of positions whose logits are
recomputed in backward, so peak memory does not grow with ``positions × vocabulary``. The
log-softmax is always taken in fp32, whatever the model's dtype or autocast.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from simper.data.collate import ModelCall, PreferenceBatch

CHUNK_VOCAB = 32_768  # chunk sizes are stated at this vocabulary and scaled down for larger ones


def _decoder_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module, float | None]:
    """The transformer body, the LM head and the final-logit soft-cap (Gemma 2) of an HF causal LM."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wrapper
    decoder = base.get_decoder()
    head = base.get_output_embeddings()
    softcap = getattr(base.config, "final_logit_softcapping", None)
    return decoder, head, softcap


def _target_logps(hidden: torch.Tensor, targets: torch.Tensor, head: nn.Module, softcap: float | None) -> torch.Tensor:
    """``(N,)`` log-prob of each target token given the ``(N, H)`` hidden states that predict it."""
    logits = head(hidden).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def token_logps(model: nn.Module, call: ModelCall, *, chunk_size: int = 1024) -> torch.Tensor:
    """``(N,)`` log π of each response token of one model call (``call.targets``), fp32.

    Args:
        model: a Hugging Face causal LM (optionally wrapped by peft).
        call: token ids, mask, positions and the response tokens with the positions predicting them.
        chunk_size: response positions whose logits are materialized at once at a 32k
            vocabulary; with a larger vocabulary the chunk holds proportionally fewer positions,
            so a chunk's logits take the same memory whatever the vocabulary. Each chunk is
            recomputed in backward. ``0`` computes all response positions in one piece.
    """
    decoder, head, softcap = _decoder_and_head(model)
    hidden = decoder(
        input_ids=call.input_ids,
        attention_mask=call.attention_mask,
        position_ids=call.position_ids,
        use_cache=False,
    ).last_hidden_state  # (S, T, H)
    states = hidden.flatten(0, 1)[call.sources]  # (N, H): only the positions that predict a response token
    if chunk_size > 0:
        chunk_size = max(1, chunk_size * CHUNK_VOCAB // max(head.weight.shape[0], CHUNK_VOCAB))
    if chunk_size <= 0 or states.shape[0] <= chunk_size:
        return _target_logps(states, call.targets, head, softcap)
    pieces = []
    for start in range(0, states.shape[0], chunk_size):
        piece = slice(start, start + chunk_size)
        if torch.is_grad_enabled():
            pieces.append(
                checkpoint(_target_logps, states[piece], call.targets[piece], head, softcap, use_reentrant=False)
            )
        else:
            pieces.append(_target_logps(states[piece], call.targets[piece], head, softcap))
    return torch.cat(pieces)


def sequence_logps(
    model: nn.Module, batch: PreferenceBatch, *, chunk_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of response-token log-probs and response-token count per sequence, for every layout.

    Returns:
        ``(sums, counts)``, both ``(2B,)`` fp32, chosen sequences first: Σ log π(y_t | x, y_<t)
        over response tokens (EOS included), and the number of response tokens.
    """
    slots = 2 * batch.num_pairs
    device = batch.calls[0].input_ids.device
    sums = torch.zeros(slots, dtype=torch.float32, device=device)
    counts = torch.zeros(slots, dtype=torch.float32, device=device)
    for call in batch.calls:
        sums = sums.index_add(0, call.slots, token_logps(model, call, chunk_size=chunk_size))
        counts = counts + torch.bincount(call.slots, minlength=slots).float()
    return sums, counts


class SequenceLogpsModel(nn.Module):
    """A causal LM whose forward takes a :class:`PreferenceBatch` and returns per-sequence sums and counts.

    This is the module handed to ``accelerator.prepare``: wrapping it (rather than calling the
    HF model's submodules from the loop) keeps DDP/FSDP hooks and autocast on the path that makes
    the logits, while the LM head still runs on response positions only.
    """

    def __init__(self, model: nn.Module, chunk_size: int = 1024) -> None:
        super().__init__()
        self.model = model
        self.chunk_size = chunk_size

    def forward(self, batch: PreferenceBatch) -> tuple[torch.Tensor, torch.Tensor]:
        return sequence_logps(self.model, batch, chunk_size=self.chunk_size)
