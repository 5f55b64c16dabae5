"""Which masks each attention kernel honours, and the shared-prompt mask in the form it expects.

The shared-prompt layout (``data/collate.py``) needs a mask that is not plain causal: the rejected
response sees the prompt and itself, never the chosen response. transformers hands a 4D mask to the
attention kernel unchanged, and each kernel reads it its own way:

- ``eager`` *adds* the mask to the scores, so it must be additive float: 0 where a key is visible,
  the dtype's minimum elsewhere. A boolean mask adds 0 or 1 and masks nothing (every token would see
  the future, and the rejected response the chosen one).
- ``sdpa`` passes it to ``torch.nn.functional.scaled_dot_product_attention``, whose contract is a
  boolean mask (True = may attend).
- ``flex_attention`` takes a ``BlockMask``; a dense tensor would become an additive score
  modification (a boolean one crashed torch 2.13's CPU kernel).
- ``flash_attention_2/3/4`` take no 4D mask at all, only 2D padding masks: the shared-prompt layout
  falls back to separate rows for them (said once), which is correct and what they are fast at.

Any other implementation is not known to honour a custom mask: asking for the shared-prompt layout
with it is an error that says what to set.

A 4D mask also replaces the model's own per-layer masks: a sliding-window layer (Mistral v0.1, Qwen2
with ``use_sliding_window``, Gemma 2/3, Phi-3) or a chunked one would attend to the whole prefix. So
the shared-prompt layout is used only where every layer attends to its whole prefix up to the longest
sequence; otherwise the pairs go as separate rows, whose padding masks the model windows itself.

The shared-prompt layout also counts on the rejected response's positions continuing from the
prompt's (``position_ids``): a model that places tokens by their column in the row instead (ALiBi
by column, learned positions by index) would see the rejected response as far from the prompt as the
chosen one's end, and gets separate rows too.

A boolean ``(S, 1, T, T)`` mask, as the collator builds it, is the one form the rest of simper
knows; :func:`kernel_mask` is the one place it is turned into what the model's kernel expects, once
per model call.
"""

from __future__ import annotations

import inspect
import sys

import torch
from torch import nn

from simper.errors import UserError
from simper.models import peft_base, text_config

MASK_FORMS = {"eager": "additive", "sdpa": "boolean", "flex_attention": "block"}
"""How each implementation takes a custom 4D mask; the ones not listed are not known to take one."""

NO_CUSTOM_MASK = ("flash_attention_2", "flash_attention_3", "flash_attention_4")
"""Known to take only 2D padding masks: the shared-prompt layout falls back to separate rows."""

_told: set[str] = set()  # implementations whose fall-back has been said (once per process)


def implementation(model: nn.Module) -> str:
    """The attention implementation a Hugging Face model (optionally peft-wrapped) runs its text with: a
    multimodal model's text body reads its own config's, which can differ from the outer one."""
    config = getattr(peft_base(model), "config", None)
    text = text_config(config) if config is not None else None
    return getattr(text, "_attn_implementation", None) or getattr(config, "_attn_implementation", None) or "eager"


def layout_for(model: nn.Module, layout: str, longest: int | None = None) -> str:
    """The batch layout to use with ``model``'s attention kernel when ``layout`` is asked for, on
    sequences (prompt + one response) of at most ``longest`` tokens (``None``: any length).

    Raises:
        UserError: shared-prompt asked for with an implementation not known to honour a custom mask.
    """
    if layout != "shared-prompt":
        return layout
    windowed = windowed_layers(getattr(peft_base(model), "config", None), longest)
    if windowed:
        _say(windowed, f"{windowed} attend to a window, which a shared-prompt mask would override")
        return "separate"
    by_column = column_positions(peft_base(model))
    if by_column:
        _say(by_column, f"{by_column}: a rejected response placed after the chosen one would be read as further away")
        return "separate"
    name = implementation(model)
    if name in MASK_FORMS:
        return layout
    if name in NO_CUSTOM_MASK:
        _say(name, f"{name} takes no custom attention mask")
        return "separate"
    raise _unsupported(name)


RECURRENT = ("rwkv", "mamba", "mamba2", "falcon_mamba", "xlstm", "recurrent_gemma", "jamba", "zamba", "zamba2",
             "bamba", "falcon_h1", "nemotron_h", "lfm2", "granitemoehybrid", "qwen3_next")  # fmt: skip
"""Model types with recurrent layers, which read a row in order whatever the mask (transformers 5 also
lists most of them in ``layer_types``; older releases do not)."""


def windowed_layers(config, longest: int | None = None) -> str:
    """Which of the model's layers see less than their whole prefix within ``longest`` tokens, in
    words (``""`` when none do): sliding-window, local or chunked layers, recurrent layers, and any
    layer type other than full attention. Read from the text model's config (Gemma 3 and other
    multimodal checkpoints keep theirs in ``text_config``). A sliding window longer than ``longest``
    never cuts anything off and is not counted; a local window applied by row index (GPT-Neo) is."""
    if config is None:
        return ""
    config = text_config(config)
    kind = getattr(config, "model_type", "") or ""
    if kind in RECURRENT:
        return f"its recurrent layers ({kind})"
    if "local" in (getattr(config, "attention_layers", None) or ()):  # GPT-Neo: windowed by row index
        return f"its local layers (window {getattr(config, 'window_size', None)})"
    window = getattr(config, "sliding_window", None) or getattr(config, "attention_chunk_size", None)
    covered = bool(window) and longest is not None and longest < window
    types = getattr(config, "layer_types", None)
    if types:
        other = sorted({layer for layer in types if layer != "full_attention"})
        if other == ["sliding_attention"] and covered:
            return ""
        return f"its {'/'.join(other)} layers (window {window})" if other else ""
    if window and not covered:  # families without layer_types window whatever use_sliding_window says
        return f"its layers (window {window})"
    return ""


def column_positions(model: nn.Module) -> str:
    """Why ``model`` places tokens by their column in the row rather than by the ``position_ids`` it is
    given, in words (``""`` when it reads them): an ALiBi bias (MPT, BLOOM, Falcon with ``alibi``, remote-code
    models whose config says ``position_embedding_type: alibi``, as Jais)
    or learned positions looked up by index (the decoders of BART, Marian, Pegasus, TrOCR, …). The
    shared-prompt layout puts the rejected response after the chosen one in the row and counts on
    its positions continuing from the prompt."""
    config = text_config(getattr(model, "config", None))
    if getattr(config, "alibi", False) or getattr(config, "position_embedding_type", None) == "alibi":
        return f"{type(model).__name__} biases attention by column (ALiBi)"  # the second: remote code (Jais)
    forward = getattr(model, "forward", None)
    if forward is not None and "position_ids" not in inspect.signature(forward).parameters:
        return f"{type(model).__name__} takes no position_ids (it reads positions from the column)"
    return ""


def _say(key: str, why: str) -> None:
    """Say once per process why the pairs go as separate rows."""
    if key not in _told:
        _told.add(key)
        print(
            f"simper: {why}, so the pairs go as separate [prompt, chosen] and [prompt, rejected] rows "
            "(training.layout=separate) instead of shared-prompt",
            file=sys.stderr,
            flush=True,
        )


def kernel_mask(visible: torch.Tensor, model: nn.Module, dtype: torch.dtype) -> torch.Tensor:
    """The ``(S, 1, T, T)`` boolean mask ``visible`` (True = query may attend to key) in the form
    ``model``'s attention kernel expects; ``dtype`` is the dtype of its attention scores.

    Raises:
        UserError: the kernel is not known to honour a custom mask (never passed silently).
    """
    form = MASK_FORMS.get(implementation(model))
    if form == "boolean":
        return visible
    if form == "additive":
        return torch.zeros(visible.shape, dtype=dtype, device=visible.device).masked_fill_(
            ~visible, torch.finfo(dtype).min
        )
    if form == "block":
        return _block_mask(visible)
    raise _unsupported(implementation(model))


def check_trainable(model: nn.Module, device: torch.device) -> None:
    """Refuse, before the first step, a kernel that cannot run a backward pass on ``device``.

    Raises:
        UserError: flex_attention on CPU (torch implements its backward for GPUs only).
    """
    if implementation(model) == "flex_attention" and device.type == "cpu":
        raise UserError(
            "model.attn_implementation=flex_attention has no backward pass on CPU in torch "
            f"{torch.__version__}; train on CPU with sdpa (the default) or eager"
        )


def _unsupported(name: str) -> UserError:
    return UserError(
        f"model.attn_implementation={name!r} is not known to honour the custom attention mask that "
        f"training.layout=shared-prompt needs; set training.layout=separate, or model.attn_implementation to one "
        f"of {', '.join(MASK_FORMS)}"
    )


def _block_mask(visible: torch.Tensor):
    from torch.nn.attention.flex_attention import create_block_mask

    rows, _, length, _ = visible.shape

    def mask_mod(batch, head, query, key):
        return visible[batch, 0, query, key]

    return create_block_mask(mask_mod, rows, None, length, length, device=visible.device)
