"""LoRA through peft on the tiny model: trains, touches only adapters, merged model = base + adapter."""

from __future__ import annotations

import warnings

import pytest
import torch
from safetensors.torch import load_file
from torch.testing import assert_close

from simper.cli import main
from simper.resources import EXAMPLE_PAIRS


def run_lora(tiny_model_dir, out, *extra):
    args = ["train", "--model", str(tiny_model_dir), "--output-dir", str(out), "--data", str(EXAMPLE_PAIRS)]
    args.append("training.max_steps=3")
    return main([*args, "training.learning_rate=1e-2", "lora.r=4", "lora.dropout=0", *extra])


def test_lora_trains_only_adapters_and_merges(tiny_model_dir, tmp_path):
    out = tmp_path / "lora"
    assert run_lora(tiny_model_dir, out) == 0
    check_adapter_and_merge(tiny_model_dir, out)


def test_sharded_lora_saves_the_gathered_adapter_and_merges_into_a_reloaded_base(tiny_model_dir, tmp_path, monkeypatch):
    """Under FSDP / ZeRO-3 a process's own parameters are a shard, whole only in the gathered state dict:
    the adapter must come from that, and the merge from the base reloaded whole. Played here by emptying
    the local weights once they are gathered (the old code saved zero adapters and the untrained base)."""
    from accelerate import Accelerator

    from simper import distributed

    gather = Accelerator.get_state_dict

    def gather_then_empty_the_local_weights(self, model, unwrap=True):
        state = {k: v.clone() for k, v in gather(self, model, unwrap).items()}
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.zero_()
        return state

    monkeypatch.setattr(Accelerator, "get_state_dict", gather_then_empty_the_local_weights)
    monkeypatch.setattr(distributed, "sharded", lambda accelerator: True)
    out = tmp_path / "sharded"
    assert run_lora(tiny_model_dir, out) == 0
    check_adapter_and_merge(tiny_model_dir, out)


def check_adapter_and_merge(tiny_model_dir, out):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = load_file(out / "adapter" / "adapter_model.safetensors")
    assert adapter and all("lora_" in key for key in adapter)
    assert any(v.abs().sum() > 0 for k, v in adapter.items() if "lora_B" in k)  # B starts at 0: it moved

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    with warnings.catch_warnings():  # peft's own read of a deprecated transformers property (models.add_lora)
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing`", category=FutureWarning)
        with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), out / "adapter")
    merged = AutoModelForCausalLM.from_pretrained(out)
    ids = torch.randint(5, 300, (2, 10))
    with torch.no_grad():
        assert_close(merged(ids).logits, with_adapter(ids).logits, atol=1e-5, rtol=1e-4)
        assert not torch.allclose(merged(ids).logits, base(ids).logits)
    # parameters outside the adapted linear layers (embeddings, norms) are exactly the base ones
    merged_state, base_state = merged.state_dict(), base.state_dict()
    untouched = [k for k in base_state if "norm" in k or "embed" in k]
    assert untouched and all(torch.equal(merged_state[k], base_state[k]) for k in untouched)
    adapted = [k for k in base_state if k.endswith("proj.weight")]
    assert adapted and all(not torch.equal(merged_state[k], base_state[k]) for k in adapted)


@pytest.mark.parametrize("objective", ["dpo"])
def test_lora_reference_is_the_base_with_adapters_off(tiny_model_dir, tmp_path, objective):
    import json

    out = tmp_path / objective
    assert run_lora(tiny_model_dir, out, "--objective", objective, "lora.merge=false") == 0
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert first["loss"] == pytest.approx(0.6931472, abs=1e-5)  # step 1: policy = reference
    assert not (out / "model.safetensors").exists() and (out / "adapter" / "adapter_config.json").exists()


def test_qlora_on_cpu_says_what_it_needs(tiny_model_dir, tmp_path, capsys):
    assert run_lora(tiny_model_dir, tmp_path / "q", "lora.load_in_4bit=true") == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_lora_reference_runs_without_dropout_and_leaves_the_policy_training(tiny_model_dir):
    """With ``model.dropout=true`` the adapters-off reference must still be a fixed function (the frozen
    reference of a full fine-tune runs in eval mode); the policy goes back to train mode after it."""
    from simper import models
    from simper.config.train import LoraConfig
    from simper.data.collate import PairCollator
    from simper.data.tokenize import TokenizedPair
    from simper.logprobs import AdaptersOff, SequenceLogpsModel

    model = models.load_model(str(tiny_model_dir), dropout=True)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout) or hasattr(module, "attention_dropout"):
            module.p = module.attention_dropout = 0.5
    policy = SequenceLogpsModel(models.add_lora(model, LoraConfig(r=4, dropout=0.5))).train()
    batch = PairCollator(0, "shared-prompt", True)([TokenizedPair([5, 6, 7, 8], list(range(20, 30)), [40, 41])])
    reference = AdaptersOff(policy)
    first, second = reference(batch)[0], reference(batch)[0]
    assert torch.equal(first, second) and policy.training


def test_qlora_preparation_keeps_checkpointing_non_reentrant(tiny_model_dir):
    """peft's 4-bit preparation re-enables checkpointing; left to its defaults torch falls back to
    reentrant checkpointing, which DDP refuses when a step calls the model more than once (one call per
    row). Run here on an unquantized model that says it is 4-bit, which is what peft reads."""
    from types import SimpleNamespace

    from simper import models

    model = models.load_model(str(tiny_model_dir))
    models.enable_checkpointing(model)
    model.is_loaded_in_4bit = True
    lora = SimpleNamespace(r=4, alpha=8, dropout=0.0, target_modules=["all-linear"], load_in_4bit=True)
    peft_model = models.add_lora(model, lora, gradient_checkpointing=True)
    funcs = [m._gradient_checkpointing_func for m in peft_model.modules() if hasattr(m, "_gradient_checkpointing_func")]
    assert funcs and all(f.keywords.get("use_reentrant") is False for f in funcs)


def test_adapter_weights_are_picked_by_name_and_an_empty_adapter_is_refused():
    """peft names an adapter's tensors without the adapter name; a state dict with none is an error
    rather than an empty adapter file (what peft wrote under FSDP1's layer wrapping)."""
    from simper.models import adapter_weights

    layer = "base_model.model.model.layers.0.self_attn.q_proj"
    state = {
        f"{layer}.base_layer.weight": torch.ones(2, 2),
        f"{layer}.lora_A.default.weight": torch.ones(1, 2),
        f"{layer}.lora_B.default.weight": torch.zeros(2, 1),
        "base_model.model.model.embed_tokens.lora_embedding_B.default": torch.ones(3),
    }
    assert sorted(adapter_weights(state)) == [
        "base_model.model.model.embed_tokens.lora_embedding_B",
        f"{layer}.lora_A.weight",
        f"{layer}.lora_B.weight",
    ]
    with pytest.raises(RuntimeError, match="no LoRA weights of adapter 'default' among the model's 1 tensors"):
        adapter_weights({f"{layer}.base_layer.weight": torch.ones(2, 2)})


def test_fsdp_wraps_decoder_layers_and_a_zero3_run_reloads_its_base_unpartitioned(tiny_model_dir, monkeypatch):
    """FSDP's transformer auto-wrap reads ``_no_split_modules`` from the module handed to prepare (our
    wrapper, which had none: the whole model was one FSDP unit). Under ZeRO-3 accelerate keeps its
    DeepSpeed config registered, so the main process's reload of the base for merging would partition it
    over processes that wait at a barrier: the reload runs with it unregistered, then puts it back."""
    from types import SimpleNamespace

    from accelerate.utils import DistributedType
    from transformers.integrations import deepspeed as hf_deepspeed

    from simper import distributed, models
    from simper.logprobs import SequenceLogpsModel

    model = models.load_model(str(tiny_model_dir))
    assert SequenceLogpsModel(model)._no_split_modules == {"LlamaDecoderLayer"}
    lora = SimpleNamespace(r=4, alpha=8, dropout=0.0, target_modules=["all-linear"], load_in_4bit=False)
    assert SequenceLogpsModel(models.add_lora(model, lora))._no_split_modules == {"LlamaDecoderLayer"}

    registered = object()
    monkeypatch.setattr(hf_deepspeed, "_hf_deepspeed_config_weak_ref", lambda: registered)
    restored = []
    plugin = SimpleNamespace(set_deepspeed_weakref=lambda: restored.append(True))
    state = SimpleNamespace(deepspeed_plugin=plugin)
    accelerator = SimpleNamespace(distributed_type=DistributedType.DEEPSPEED, state=state)
    with distributed.outside_zero3(accelerator):
        assert hf_deepspeed._hf_deepspeed_config_weak_ref is None and not hf_deepspeed.is_deepspeed_zero3_enabled()
    assert restored == [True]
