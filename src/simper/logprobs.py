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


def sequence_logps(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    chunk_size: int = 1024,
    position_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of response-token log-probs and response-token count, per sequence.

    Args:
        model: a Hugging Face causal LM (optionally wrapped by peft).
        input_ids: ``(S, T)`` token ids, right-padded.
        attention_mask: ``(S, T)`` 1 for real tokens, 0 for padding.
        response_mask: ``(S, T)`` 1 where the token belongs to the response (EOS included), 0 on
            prompt and padding. Token ``t`` is predicted by the hidden state at ``t − 1``.
        chunk_size: number of positions whose logits are materialized at once; each chunk is
            recomputed in backward. ``0`` computes all response positions in one piece.
        position_ids: ``(S, T)`` optional explicit positions (packed or shared-prompt layouts).

    Returns:
        ``(sums, counts)``, both ``(S,)`` fp32: Σ log π(y_t | x, y_<t) over response tokens, and
        the number of response tokens.
    """
    decoder, head, softcap = _decoder_and_head(model)
    hidden = decoder(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
    ).last_hidden_state  # (S, T, H)

    predicts_response = response_mask[:, 1:].bool()  # (S, T-1): position t-1 predicts token t
    rows, cols = predicts_response.nonzero(as_tuple=True)
    states = hidden[:, :-1][rows, cols]  # (N, H), only the positions that predict a response token
    targets = input_ids[:, 1:][rows, cols]  # (N,)

    if chunk_size <= 0 or states.shape[0] <= chunk_size:
        token_logps = _target_logps(states, targets, head, softcap)
    else:
        pieces = []
        for start in range(0, states.shape[0], chunk_size):
            piece = slice(start, start + chunk_size)
            if torch.is_grad_enabled():
                pieces.append(
                    checkpoint(_target_logps, states[piece], targets[piece], head, softcap, use_reentrant=False)
                )
            else:
                pieces.append(_target_logps(states[piece], targets[piece], head, softcap))
        token_logps = torch.cat(pieces)

    sums = torch.zeros(input_ids.shape[0], dtype=torch.float32, device=input_ids.device)
    sums = sums.index_add(0, rows, token_logps)
    counts = predicts_response.sum(-1).to(torch.float32)
    return sums, counts


class SequenceLogpsModel(nn.Module):
    """A causal LM whose forward returns per-sequence response log-prob sums and counts.

    This is the module handed to ``accelerator.prepare``: wrapping it (rather than calling the
    HF model's submodules from the loop) keeps DDP/FSDP hooks and autocast on the path that makes
    the logits, while the LM head still runs on response positions only.
    """

    def __init__(self, model: nn.Module, chunk_size: int = 1024) -> None:
        super().__init__()
        self.model = model
        self.chunk_size = chunk_size

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        response_mask: torch.Tensor,
        position_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return sequence_logps(
            self.model,
            input_ids,
            attention_mask,
            response_mask,
            chunk_size=self.chunk_size,
            position_ids=position_ids,
        )
