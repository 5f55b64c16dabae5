"""Model loading: aliases, bad paths, and the real SmolLM2 (slow: converts the GGUF file once)."""

from __future__ import annotations

import pytest

from simper.errors import UserError
from simper.models import load_model, load_tokenizer


def test_not_a_model(tmp_path):
    (tmp_path / "weights.txt").write_text("x")
    with pytest.raises(UserError, match="not a model folder"):
        load_model(str(tmp_path))
    with pytest.raises(UserError, match="is a file"):
        load_tokenizer(str(tmp_path / "weights.txt"))


def test_offline_hub_id_says_what_to_do():
    with pytest.raises(UserError, match="HF_HUB_OFFLINE=1"):
        load_tokenizer("no-such-org/no-such-model")


@pytest.mark.slow
def test_smollm2_converts_to_a_plain_model_and_answers(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, LlamaForCausalLM

    from simper.generate import generate

    model = load_model("smollm2-135m-instruct")
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    assert type(model) is LlamaForCausalLM and getattr(model.config, "quantization_config", None) is None
    prompt = [[{"role": "user", "content": "What is the capital of France?"}]]
    answer = generate(model, tokenizer, prompt, max_new_tokens=20, progress=False).texts[0][0]
    assert "Paris" in answer
    model.save_pretrained(tmp_path / "copy")
    assert isinstance(AutoModelForCausalLM.from_pretrained(tmp_path / "copy"), LlamaForCausalLM)


def test_model_card_names_the_hub_model_an_alias_stands_for(tmp_path):
    from simper.modelcard import hub_id

    assert hub_id("smollm2-135m-instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert hub_id("meta-llama/Meta-Llama-3-8B-Instruct") == "meta-llama/Meta-Llama-3-8B-Instruct"
    assert hub_id("tiny-random-llama") is None and hub_id(str(tmp_path)) is None and hub_id("./runs/a/b") is None


@pytest.mark.parametrize(("flags", "expected"), [({}, "float32"), ({"bf16": True}, "bf16"), ({"fp16": True}, "fp16")])
def test_model_card_precision_is_the_autocast_or_else_the_weights_dtype(flags, expected):
    from simper.config import TrainConfig
    from simper.modelcard import _recipe

    config = TrainConfig()
    config.model.torch_dtype = "float32"
    for name, value in flags.items():
        setattr(config.training, name, value)
    assert _recipe(config)["precision"] == expected
    assert config.training.mixed_precision == (expected if flags else "no")


def _saved(config, folder):
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return str(folder)


SIZES = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)


def test_a_logit_scale_simper_does_not_know_is_refused_at_load(tmp_path, monkeypatch):
    from transformers import GraniteConfig

    from simper import logprobs

    folder = _saved(GraniteConfig(logits_scaling=8.0, **SIZES), tmp_path / "granite")
    load_model(folder)  # a scale simper knows: its log-probs match the model's own forward
    monkeypatch.setattr(logprobs, "logit_scale", lambda config: 1.0)
    with pytest.raises(UserError, match=r"model type 'granite': its own forward gives log-probs .* nats away"):
        load_model(folder)
    load_model(folder, attn_implementation="flex_attention")  # not checked on CPU: flex is for the GPU


def test_a_bf16_soft_cap_rounded_by_the_model_itself_is_not_refused(tmp_path):
    import torch
    from transformers import Gemma2Config

    sizes = {**SIZES, "head_dim": 8, "num_key_value_heads": 2, "final_logit_softcapping": 30.0}
    torch.manual_seed(0)
    # logits near the cap: the model's own bf16 soft-cap rounds its log-probs 0.11 nats off simper's fp32
    folder = _saved(Gemma2Config(**sizes, initializer_range=2.0), tmp_path / "gemma2")
    load_model(folder, torch_dtype="bfloat16")


def _gpt2():
    from transformers import GPT2Config

    return GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=64, resid_pdrop=0.3)  # nn.Dropout modules


def _starcoder2():
    from transformers import Starcoder2Config

    return Starcoder2Config(residual_dropout=0.3, embedding_dropout=0.3, **SIZES)  # rates read by F.dropout


@pytest.mark.parametrize("config", [_gpt2, _starcoder2])
def test_dropout_is_off_unless_asked_for(tmp_path, config):
    import torch

    folder = _saved(config(), tmp_path / "model")
    ids = torch.arange(1, 17)[None]
    for dropout, same in ((False, True), (True, False)):
        model = load_model(folder, dropout=dropout).train()  # train mode: where dropout would act
        first, second = (model(input_ids=ids).logits for _ in range(2))
        assert torch.equal(first, second) is same


def test_a_multimodal_checkpoint_scales_its_logits_as_its_text_model():
    from transformers import AyaVisionConfig, MptConfig

    from simper.logprobs import logit_scale

    assert logit_scale(AyaVisionConfig()) == AyaVisionConfig().text_config.logit_scale  # Cohere 2 inside
    assert logit_scale(MptConfig(logit_scale=3.0)) == 1.0  # MPT's forward never applies its logit_scale


def test_a_multimodal_checkpoint_caps_and_attends_as_its_text_model():
    """Gemma 4 keeps its final-logit soft-cap in text_config and applies it in the outer forward: simper
    read the outer config and left its logits uncapped (0.29 nats off here). A text body may also run
    another attention kernel than the outer config names, and the mask must be the body's."""
    import torch
    from transformers import AutoModelForCausalLM, Gemma3Config, Gemma4Config

    from simper.attention import implementation
    from simper.logprobs import _decoder_and_head, check_head

    text = dict(SIZES, num_key_value_heads=2, head_dim=8, sliding_window=4, vocab_size_per_layer_input=64)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, head_dim=16)
    config = Gemma4Config(
        text_config=dict(text, global_head_dim=8, final_logit_softcapping=2.0, hidden_size_per_layer_input=8),
        vision_config=vision,
        audio_config=None,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    with torch.no_grad():
        for weight in (p for p in model.parameters() if p.ndim >= 2):
            weight.mul_(3.0)  # logits large enough for the cap to bite
    assert _decoder_and_head(model)[3] == 2.0
    check_head(model)  # simper's log-probs are the model's own

    config = Gemma3Config(text_config=dict(text), vision_config=dict(vision, image_size=32, patch_size=16))
    body_eager = {"": "sdpa", "text_config": "eager", "vision_config": "sdpa"}
    assert implementation(AutoModelForCausalLM.from_config(config, attn_implementation=body_eager)) == "eager"
