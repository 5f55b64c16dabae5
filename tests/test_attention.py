"""Every attention kernel gives the same log-probs, gradients and greedy text in every batch layout.

The reference is each sequence alone, unpadded, through the model's own forward and full-vocabulary
logits under sdpa: nothing of ours on its path. Architecture families whose attention code or head
differs are built in-process: Llama with a tied head, Qwen2 and GPT-NeoX with untied heads, Mistral
with a sliding window shorter than the sequences, Granite and Cohere, which scale their logits, and
Llama 4 text (experts, chunked attention, a body that ``get_decoder()`` does not return).

``SIMPER_TEST_DEVICE=cuda`` runs the same tests on a GPU (``benchmarks/gpu_check.py`` does), where
flex_attention also runs backward and flash_attention_2 joins when it is installed. On CPU,
flex_attention has no backward in torch, so it is checked on values only.
"""

from __future__ import annotations

import importlib.util
import os
import random

import pytest
import torch
from torch.testing import assert_close
from transformers import (
    AutoModelForCausalLM,
    BartConfig,
    CohereConfig,
    FalconConfig,
    Gemma2Config,
    Gemma3Config,
    GPTNeoConfig,
    GPTNeoXConfig,
    GraniteConfig,
    Llama4TextConfig,
    LlamaConfig,
    MistralConfig,
    MptConfig,
    Qwen2Config,
    RwkvConfig,
)

from simper import attention
from simper.data.collate import LAYOUTS, PairCollator
from simper.data.tokenize import TokenizedPair
from simper.errors import UserError
from simper.generate import encode_prompts, generate
from simper.logprobs import sequence_logps

DEVICE = torch.device(os.environ.get("SIMPER_TEST_DEVICE", "cpu"))
CUDA = DEVICE.type == "cuda"
PAD = 0
VOCAB = 512  # the tiny tokenizer's size, so the generation test can decode text

SIZES = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
ARCHITECTURES = {
    "llama-tied": lambda: LlamaConfig(vocab_size=VOCAB, num_key_value_heads=2, tie_word_embeddings=True, **SIZES),
    "qwen2-untied": lambda: Qwen2Config(vocab_size=VOCAB, num_key_value_heads=2, tie_word_embeddings=False, **SIZES),
    "gpt-neox-untied": lambda: GPTNeoXConfig(vocab_size=VOCAB, tie_word_embeddings=False, rotary_pct=0.5, **SIZES),
    # a window shorter than most sequences: the shared-prompt mask would override it
    "mistral-window-4": lambda: MistralConfig(vocab_size=VOCAB, num_key_value_heads=2, sliding_window=4, **SIZES),
    # heads whose model scales the logits in its own forward
    "granite-logits-scaling-8": lambda: GraniteConfig(vocab_size=VOCAB, logits_scaling=8.0, **SIZES),
    "cohere-logit-scale": lambda: CohereConfig(vocab_size=VOCAB, logit_scale=0.0625, **SIZES),
    # mixture of experts, attention in chunks of 4 tokens, and a body its get_decoder() does not return
    "llama4-text-chunk-4": lambda: Llama4TextConfig(
        vocab_size=VOCAB,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size_mlp=128,
        num_local_experts=2,
        attention_chunk_size=4,
        **SIZES,
    ),
}
IMPLEMENTATIONS = ["eager", "sdpa", "flex_attention"] + (
    ["flash_attention_2"] if CUDA and importlib.util.find_spec("flash_attn") else []
)


@pytest.fixture(autouse=True)
def _exact_matmuls():
    if CUDA:  # TF32 would round every matmul to 10 mantissa bits: compare kernels, not precisions
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False


def _model(architecture: str, implementation: str, dtype: torch.dtype = torch.float32):
    """The same weights (seed 0, scaled up so attention is far from uniform) under ``implementation``."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(ARCHITECTURES[architecture](), attn_implementation=implementation)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim >= 2:
                parameter.mul_(3.0)
    return model.to(DEVICE, dtype).eval()


def _pairs() -> list[TokenizedPair]:
    rng = random.Random(0)

    def ids(n: int) -> list[int]:
        return [rng.randrange(5, VOCAB) for _ in range(n)]

    return [TokenizedPair(ids(p), ids(c), ids(r)) for p, c, r in ((4, 8, 3), (1, 5, 9), (7, 2, 2), (3, 1, 6))]


def _reference(model, pairs) -> torch.Tensor:
    """Σ log π over each response, each sequence alone through the model's own full logits."""
    sums = []
    for side in ("chosen", "rejected"):
        for pair in pairs:
            ids = torch.tensor([pair.prompt + getattr(pair, side)], device=DEVICE)
            logps = model(input_ids=ids).logits.float()[0, :-1].log_softmax(-1)
            sums.append(logps.gather(-1, ids[0, 1:, None]).squeeze(-1)[len(pair.prompt) - 1 :].sum())
    return torch.stack(sums)


def _grads(model) -> list[torch.Tensor]:
    return [p.grad.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("padding_free", [True, False], ids=["padding-free", "padded"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_logps_and_gradients_equal_under_every_kernel_and_layout(architecture, implementation, layout, padding_free):
    flash = implementation.startswith("flash")
    dtype = torch.bfloat16 if flash else torch.float32  # flash kernels run in half precision only
    reference_model = _model(architecture, "sdpa", dtype)
    pairs = _pairs()
    weights = torch.arange(1.0, 2 * len(pairs) + 1, device=DEVICE)  # distinct: slots must not mix
    expected = _reference(reference_model, pairs)
    (expected * weights).sum().backward()
    expected_grads = _grads(reference_model)

    model = _model(architecture, implementation, dtype)
    batch = PairCollator(PAD, attention.layout_for(model, layout), padding_free)(_pairs()).to(DEVICE)
    backward = not (implementation == "flex_attention" and not CUDA)  # torch: no flex backward on CPU
    with torch.set_grad_enabled(backward):
        try:
            sums, counts = sequence_logps(model, batch)
        except Exception as err:
            if implementation == "flex_attention" and not CUDA and type(err).__name__ == "InductorError":
                pytest.skip(f"torch {torch.__version__} cannot compile this flex_attention shape for CPU")
            raise
    tolerance = dict(atol=5e-2, rtol=2e-2) if flash else dict(atol=1e-4, rtol=1e-5)
    assert_close(sums, expected.detach(), **tolerance)
    assert counts.tolist() == [float(len(p.chosen)) for p in pairs] + [float(len(p.rejected)) for p in pairs]
    if backward:
        (sums * weights).sum().backward()
        for got, want in zip(_grads(model), expected_grads, strict=True):
            assert_close(got, want, **(dict(atol=5e-2, rtol=5e-2) if flash else dict(atol=1e-4, rtol=1e-4)))


def test_eager_gets_an_additive_mask_sdpa_a_boolean_one_flex_a_block_mask():
    visible = PairCollator(PAD)([TokenizedPair([11, 12], [21, 22, 23], [31, 32])]).calls[0].attention_mask
    additive = attention.kernel_mask(visible, _model("llama-tied", "eager"), torch.bfloat16)
    assert additive.dtype == torch.bfloat16
    assert (additive[visible] == 0).all() and (additive[~visible] == torch.finfo(torch.bfloat16).min).all()
    assert attention.kernel_mask(visible, _model("llama-tied", "sdpa"), torch.float32) is visible
    block = attention.kernel_mask(visible.to(DEVICE), _model("llama-tied", "flex_attention"), torch.float32)
    assert type(block).__name__ == "BlockMask"


def test_a_kernel_without_custom_masks_falls_back_to_separate_rows_and_says_so_once(capsys, monkeypatch):
    monkeypatch.setattr(attention, "_told", set())
    model = _model("llama-tied", "sdpa")
    model.config._attn_implementation = "flash_attention_2"  # what the check reads; no flash kernel runs here
    assert attention.layout_for(model, "shared-prompt") == "separate"
    assert attention.layout_for(model, "shared-prompt") == "separate"
    assert attention.layout_for(model, "separate") == "separate"
    assert capsys.readouterr().err.count("flash_attention_2 takes no custom attention mask") == 1


def test_shared_prompt_only_where_every_layer_sees_its_whole_prefix(capsys, monkeypatch):
    monkeypatch.setattr(attention, "_told", set())
    windowed = _model("mistral-window-4", "sdpa")
    assert attention.layout_for(windowed, "shared-prompt") == "separate"
    assert attention.layout_for(windowed, "shared-prompt", longest=3) == "shared-prompt"  # never cut off
    assert "attend to a window" in capsys.readouterr().err
    # Mistral v0.1's 4096 window never cuts a 1024-token pair; Gemma 2's alternating layers likewise
    assert attention.windowed_layers(MistralConfig(sliding_window=4096), 1024) == ""
    assert attention.windowed_layers(MistralConfig(sliding_window=4096), 4096) != ""
    assert attention.windowed_layers(MistralConfig(sliding_window=None)) == ""
    assert attention.windowed_layers(Gemma2Config(sliding_window=512), 1024) != ""
    assert attention.windowed_layers(Gemma2Config(sliding_window=512), 256) == ""
    assert attention.windowed_layers(Qwen2Config(sliding_window=4, use_sliding_window=False)) == ""
    hybrid = LlamaConfig(layer_types=["full_attention", "linear_attention"], num_hidden_layers=2)
    assert "linear_attention" in attention.windowed_layers(hybrid, 16)  # a recurrent layer would mix branches
    assert "recurrent" in attention.windowed_layers(RwkvConfig(), 16)
    assert "local" in attention.windowed_layers(GPTNeoConfig(window_size=256), 16)  # windowed by row index
    # Mistral windows whatever use_sliding_window says; Gemma 3 checkpoints keep their window in text_config
    assert attention.windowed_layers(MistralConfig(sliding_window=8, use_sliding_window=False), 16) != ""
    assert "sliding_attention" in attention.windowed_layers(Gemma3Config(), 4096)


@pytest.mark.parametrize("config", [
    lambda: MptConfig(vocab_size=VOCAB, d_model=64, n_heads=4, n_layers=2),  # ALiBi by column, no position_ids
    lambda: BartConfig(vocab_size=VOCAB, d_model=64, decoder_layers=2, decoder_attention_heads=4,
                       decoder_ffn_dim=128, is_decoder=True, is_encoder_decoder=False),  # learned positions by index
], ids=["mpt-alibi", "bart-decoder"])  # fmt: skip
def test_a_model_placing_tokens_by_column_gets_separate_rows(config, capsys, monkeypatch):
    """The shared-prompt row puts the rejected response after the chosen one; its positions continue
    from the prompt only for a model that reads ``position_ids``. MPT's ALiBi and BART's learned
    positions read the column instead: the rejected log-probs came out 0.2 and 1.9 nats off."""
    monkeypatch.setattr(attention, "_told", set())
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config(), attn_implementation="eager")
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim >= 2:
                parameter.mul_(3.0)
    model = model.to(DEVICE).eval()
    layout = attention.layout_for(model, "shared-prompt")
    assert layout == "separate" and "reads positions from the column" in capsys.readouterr().err
    with torch.no_grad():
        sums, _ = sequence_logps(model, PairCollator(PAD, layout)(_pairs()).to(DEVICE))
        expected = _reference(model, _pairs())
        assert_close(sums, expected, atol=1e-4, rtol=1e-5)
        try:  # what the rule guards against (transformers < 5's BART decoder refuses position_ids outright)
            shared, _ = sequence_logps(model, PairCollator(PAD, "shared-prompt")(_pairs()).to(DEVICE))
        except TypeError:
            return
    assert (shared - expected).abs().max() > 0.01


def test_falcon_with_alibi_gets_separate_rows_and_with_rope_shared_prompt():
    """Falcon takes position_ids, and ignores them when its config says ``alibi``."""
    rope, alibi = (
        AutoModelForCausalLM.from_config(FalconConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2,
                                                      num_attention_heads=4, alibi=flag))
        for flag in (False, True)
    )  # fmt: skip
    assert attention.layout_for(rope, "shared-prompt") == "shared-prompt"
    assert attention.layout_for(alibi, "shared-prompt") == "separate"


def test_a_remote_code_alibi_config_gets_separate_rows():
    """Jais (remote code) takes position_ids and says ALiBi as ``position_embedding_type``."""
    model = _model("llama-tied", "sdpa")
    assert attention.layout_for(model, "shared-prompt") == "shared-prompt"
    model.config.position_embedding_type = "alibi"
    assert attention.layout_for(model, "shared-prompt") == "separate"


def test_an_unknown_kernel_is_never_handed_a_custom_mask():
    model = _model("llama-tied", "sdpa")
    model.config._attn_implementation = "kernels-community/some-attention"
    with pytest.raises(UserError, match=r"set training.layout=separate"):
        attention.layout_for(model, "shared-prompt")
    assert attention.layout_for(model, "separate") == "separate"
    batch = PairCollator(PAD, "shared-prompt")(_pairs())  # built without asking layout_for
    with pytest.raises(UserError, match=r"not known to honour the custom attention mask"):
        sequence_logps(model, batch.to(DEVICE))


@pytest.mark.skipif(CUDA, reason="checks the CPU refusal")
def test_training_with_flex_attention_on_cpu_is_refused_up_front():
    with pytest.raises(UserError, match="flex_attention has no backward pass on CPU"):
        attention.check_trainable(_model("llama-tied", "flex_attention"), torch.device("cpu"))
    attention.check_trainable(_model("llama-tied", "eager"), torch.device("cpu"))


def _decode_both_ways(model, tokenizer, prompts) -> list[list[int]]:
    """Greedy token ids from our decoding loop (one batch, left-padded), checked against transformers'
    own ``model.generate`` on each prompt alone; and the log-probs our loop summed while decoding (what
    ``simper eval`` reads as the model's own, beside the baseline's from a scoring pass) against the
    model's full forward over the prompt and answer alone."""
    result = generate(model, tokenizer, prompts, max_new_tokens=12, progress=False)
    for prompt, (ids,), (logp,) in zip(prompts, result.ids, result.logps, strict=True):
        prefix = torch.tensor(encode_prompts(tokenizer, [prompt]), device=DEVICE)
        out = model.generate(
            input_ids=prefix, attention_mask=torch.ones_like(prefix), max_new_tokens=12, do_sample=False,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=PAD,
        )  # fmt: skip
        assert out[0, prefix.shape[1] :].tolist()[: len(ids)] == ids
        whole = torch.cat([prefix[0], torch.tensor(ids, device=DEVICE)])[None]
        with torch.no_grad():
            logps = model(input_ids=whole).logits.float()[0, :-1].log_softmax(-1)
        scored = logps.gather(-1, whole[0, 1:, None]).squeeze(-1)[prefix.shape[1] - 1 :].sum()
        assert logp == pytest.approx(float(scored), abs=1e-4)
    return [ids for (ids,) in result.ids]


# On CPU, flex decoding goes through torch's inductor, which takes ~15 s a shape and fails to compile
# some (torch 2.13): those cases run with `pytest -m slow` and skip, saying so, where it fails.
DECODERS = ["eager", pytest.param("flex_attention", marks=[] if CUDA else pytest.mark.slow)]


@pytest.mark.parametrize("implementation", DECODERS)
@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_greedy_text_is_the_same_under_every_kernel_and_both_decoders(architecture, implementation, tokenizer):
    prompts = ["What is 2 + 3?", [{"role": "user", "content": "Write one word in lowercase."}], "Hi"]
    expected = _decode_both_ways(_model(architecture, "sdpa"), tokenizer, prompts)
    model = _model(architecture, implementation)
    try:
        got = _decode_both_ways(model, tokenizer, prompts)
    except Exception as err:
        if implementation == "flex_attention" and not CUDA:  # torch 2.13's inductor cannot build CPU flex decoding
            pytest.skip(f"flex_attention cannot decode with a KV cache on this CPU: {type(err).__name__}")
        raise
    assert got == expected
