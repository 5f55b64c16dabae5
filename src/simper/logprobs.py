"""Per-sequence response log-probabilities: the one place where logits are made.

The LM head and the log-softmax run only on the positions that predict a response token
(prompt and padding positions never produce logits), in chunks of positions whose logits are
recomputed in backward, so peak memory does not grow with ``positions × vocabulary``. The
log-softmax is always taken in fp32, whatever the model's dtype or autocast.

For a plain linear head (every HF causal LM, tied embeddings included) a custom autograd function
does the chunking: backward recomputes one chunk at a time and adds its weight gradient in place
into a single buffer, so nothing of size ``vocabulary`` is held per chunk beyond that chunk's
logits. Other heads (soft-capped, adapted, quantized, ZeRO-3-partitioned) take a generic path:
the head module per chunk under activation checkpointing, which is equal but keeps one transient
weight gradient per chunk.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import PreTrainedModel

from simper import models
from simper.attention import implementation, kernel_mask
from simper.data.collate import ModelCall, PreferenceBatch
from simper.errors import UserError

CHUNK_VOCAB = 32_768  # chunk sizes are stated at this vocabulary and scaled down for larger ones


def _decoder_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module, float, float | None]:
    """The transformer body, the LM head, the logit scale and the final-logit soft-cap (Gemma 2) of
    an HF causal LM."""
    base = models.peft_base(model)
    head = base.get_output_embeddings()
    decoder = base.get_decoder()
    if decoder is base:  # transformers < 5 gave GPT-NeoX and others no get_decoder of their own
        decoder = base.base_model
    if decoder is base:  # Llama 4's text model keeps its body in `model`, its prefix says `language_model`
        bodies = [m for m in base.children() if m is not head and isinstance(m, PreTrainedModel)]
        if len(bodies) != 1:
            raise UserError(f"model: cannot tell the transformer body of {type(base).__name__} from its head")
        decoder = bodies[0]
    # multimodal checkpoints (Gemma 3n, Gemma 4) keep the cap in their text config and apply it in the outer forward
    softcap = getattr(models.text_config(base.config), "final_logit_softcapping", None)
    return decoder, head, logit_scale(base.config), softcap


LOGIT_SCALES = {
    "granite": ("logits_scaling", False),
    "hyperclovax": ("logits_scaling", True),
    "cohere": ("logit_scale", True),
    "falcon_h1": ("lm_head_multiplier", True),
}
"""Model types (by prefix) whose own forward scales the head's output: the config attribute, and
whether it multiplies (else divides), read from the text model's config (Aya Vision's is Cohere 2's).
The attribute names alone mean other things elsewhere (MPT's ``logit_scale`` is never applied), so
the model type decides."""


def logit_scale(config) -> float:
    """What the model's own forward multiplies the head's output by before the softmax: 1 for most
    families. :func:`check_head` catches any family :data:`LOGIT_SCALES` misses."""
    config = models.text_config(config)
    kind = getattr(config, "model_type", "") or ""
    for prefix, (name, multiplies) in LOGIT_SCALES.items():
        value = getattr(config, name, None)
        if kind.startswith(prefix) and value:
            return float(value) if multiplies else 1.0 / float(value)
    return 1.0


def _target_logps(
    hidden: torch.Tensor, targets: torch.Tensor, head: nn.Module, scale: float, softcap: float | None
) -> torch.Tensor:
    """``(N,)`` log-prob of each target token given the ``(N, H)`` hidden states that predict it."""
    logits = head(hidden).float() * scale
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return logits.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def check_head(model: nn.Module) -> None:
    """Refuse a model whose own forward turns its hidden states into logits in a way this module does
    not (a scale or cap it does not know): on a few tokens, the log-probs of the model's forward and
    those of :func:`_target_logps` on the hidden states its decoder produced in that forward must
    agree to rounding (fp32: 1e-3 nats; lower precision: 2⁻⁶ of the largest logit, the model's own
    rounding of a soft-cap or scale in bf16). Skipped where the forward cannot run here: weights
    partitioned across processes (ZeRO-3) or not yet materialized, and kernels other than eager and
    sdpa (flex and flash are meant for the GPU the model has not reached yet).

    Raises:
        UserError: the two disagree by more than rounding.
    """
    base = models.peft_base(model)
    weights = list(base.parameters())
    if not weights or any(hasattr(w, "ds_id") or w.is_meta for w in weights):
        return
    if implementation(model) not in ("eager", "sdpa"):
        return
    decoder, head, scale, softcap = _decoder_and_head(model)
    ids = (torch.arange(8, device=weights[0].device) * 7919 % head.weight.shape[0])[None]  # spread out
    states = []
    hook = decoder.register_forward_hook(lambda module, args, output: states.append(output[0]))
    try:
        logits = base(input_ids=ids, use_cache=False).logits.float()[0, :-1]
    finally:
        hook.remove()
    own = logits.log_softmax(-1).gather(-1, ids[0, 1:, None]).squeeze(-1)
    gap = float((_target_logps(states[0][0, :-1], ids[0, 1:], head, scale, softcap) - own).abs().max())
    exact = head.weight.dtype == torch.float32
    tolerance = 1e-3 if exact else max(1e-3, 2**-6 * float(logits.abs().max()))
    if not gap <= tolerance:
        raise UserError(
            f"model type {base.config.model_type!r}: its own forward gives log-probs {gap:.3g} nats away from "
            "simper's for the same tokens (a logit scale or cap simper does not know about); please report it"
        )


class ChunkedLinearLogps(torch.autograd.Function):
    """``(N,)`` log-softmax of ``hidden @ weight.T`` at ``targets``, one chunk of positions at a time.

    Forward keeps only the ``(N,)`` result; backward recomputes each chunk's logits, turns them in
    place into ``grad · (onehot − softmax)``, and accumulates ``grad_hidden`` and ``grad_weight``
    (one fp32 buffer of the weight's shape). Under autocast the matmuls run in the autocast dtype
    in both passes; the softmax is fp32.
    """

    @staticmethod
    def forward(
        ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int, scale: float = 1.0
    ) -> torch.Tensor:
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
        ctx.save_for_backward(hidden, weight, targets)
        ctx.chunk, ctx.dtype, ctx.scale = chunk, dtype, scale
        w = weight.to(dtype)
        accumulate = torch.promote_types(dtype, torch.float32)  # fp32, or fp64 when given fp64
        out = torch.empty(hidden.shape[0], dtype=accumulate, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk):
            end = start + chunk
            with torch.autocast(device, enabled=False):
                logits = (hidden[start:end].to(dtype) @ w.T).to(accumulate)
            if scale != 1.0:
                logits.mul_(scale)
            picked = logits.gather(-1, targets[start:end, None]).squeeze(-1)
            out[start:end] = picked - logits.logsumexp(-1)
            del logits  # before the next chunk's logits exist: one chunk alive at a time
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        hidden, weight, targets = ctx.saved_tensors
        dtype, chunk = ctx.dtype, ctx.chunk
        w = weight.to(dtype)
        accumulate = torch.promote_types(dtype, torch.float32)
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = (
            torch.zeros(weight.shape, dtype=accumulate, device=weight.device) if ctx.needs_input_grad[1] else None
        )
        for start in range(0, hidden.shape[0], chunk):
            end = start + chunk
            h = hidden[start:end].to(dtype)
            g = grad_out[start:end].to(accumulate) * ctx.scale  # the chain rule through logits = scale · h Wᵀ
            logits = (h @ w.T).to(accumulate)
            if ctx.scale != 1.0:
                logits.mul_(ctx.scale)
            probs = logits.sub_(logits.logsumexp(-1, keepdim=True)).exp_()  # in place: one (n, V) buffer
            grad_logits = probs.mul_(-g[:, None])
            grad_logits.scatter_add_(-1, targets[start:end, None], g[:, None])  # d log p / d logits = onehot − p
            grad_logits = grad_logits.to(dtype)
            if grad_hidden is not None:
                grad_hidden[start:end] = (grad_logits @ w).to(hidden.dtype)
            if grad_weight is not None and dtype == accumulate:
                grad_weight.addmm_(grad_logits.T, h)
            elif grad_weight is not None:  # a low-precision matmul, accumulated in fp32
                grad_weight.add_(grad_logits.T @ h)
            del logits, probs, grad_logits  # one chunk alive at a time
        return grad_hidden, None if grad_weight is None else grad_weight.to(weight.dtype), None, None, None


def _plain_linear(head: nn.Module, softcap: float | None) -> bool:
    """Whether the fused chunked path applies: an unwrapped, unquantized, unpartitioned nn.Linear."""
    weight = getattr(head, "weight", None)
    return (
        type(head) is nn.Linear
        and head.bias is None
        and not softcap
        and weight is not None
        and weight.dtype in (torch.float32, torch.bfloat16, torch.float16)
        and not hasattr(weight, "ds_id")  # DeepSpeed ZeRO-3 gathers it in the module's own forward only
    )


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
    decoder, head, scale, softcap = _decoder_and_head(model)
    mask = call.attention_mask
    if mask is not None and mask.ndim == 4:  # the shared-prompt mask, in the form this kernel reads
        mask = kernel_mask(mask, model, decoder.get_input_embeddings().weight.dtype)
    positions = {} if call.position_ids is None else {"position_ids": call.position_ids}  # some bodies take none
    hidden = decoder(input_ids=call.input_ids, attention_mask=mask, use_cache=False, **positions).last_hidden_state
    # (S, T, H)
    states = hidden.flatten(0, 1)[call.sources]  # (N, H): only the positions that predict a response token
    vocab = getattr(head, "out_features", None) or head.weight.shape[0]  # ZeRO-3 leaves a partitioned weight empty
    if chunk_size > 0:
        chunk_size = max(1, chunk_size * CHUNK_VOCAB // max(vocab, CHUNK_VOCAB))
    if _plain_linear(head, softcap):
        return ChunkedLinearLogps.apply(states, head.weight, call.targets, chunk_size or states.shape[0] or 1, scale)
    if chunk_size <= 0 or states.shape[0] <= chunk_size:
        return _target_logps(states, call.targets, head, scale, softcap)
    pieces = []
    for start in range(0, states.shape[0], chunk_size):
        piece = slice(start, start + chunk_size)
        if torch.is_grad_enabled():
            pieces.append(
                checkpoint(_target_logps, states[piece], call.targets[piece], head, scale, softcap, use_reentrant=False)
            )
        else:
            pieces.append(_target_logps(states[piece], call.targets[piece], head, scale, softcap))
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

    @property
    def _no_split_modules(self) -> set[str] | list[str] | None:
        """The decoder-layer classes, which FSDP's transformer auto-wrap reads from the module it wraps:
        without them it wraps only this root and every step gathers the whole model at once."""
        return getattr(self.model, "_no_split_modules", None)

    def forward(self, batch: PreferenceBatch) -> tuple[torch.Tensor, torch.Tensor]:
        return sequence_logps(self.model, batch, chunk_size=self.chunk_size)


class FrozenReference:
    """The reference model as a frozen copy of the starting model: its per-sequence log-probs, under
    the run's autocast (it is not one of accelerate's prepared models, whose forward would carry it)."""

    def __init__(self, model: nn.Module, accelerator: Any):
        self.model = model
        self.accelerator = accelerator

    def __call__(self, batch: PreferenceBatch) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad(), self.accelerator.autocast():
            return self.model(batch)


class AdaptersOff:
    """The reference model as the policy with its LoRA adapters disabled: no second copy of the model."""

    def __init__(self, policy: nn.Module):
        self.policy = policy

    def __call__(self, batch: PreferenceBatch) -> tuple[torch.Tensor, torch.Tensor]:
        training = self.policy.training  # in eval mode, as a frozen reference: no dropout noise (LoRA's own)
        self.policy.eval()
        try:
            with torch.no_grad(), models.unwrap(self.policy).model.disable_adapter():
                return self.policy(batch)
        finally:
            self.policy.train(training)


Reference = FrozenReference | AdaptersOff
"""What ``needs_reference`` objectives score the pairs with: ``reference(batch)`` → ``(sums, counts)``."""
