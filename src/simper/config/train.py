"""``simper train``'s config: one dataclass per concern (model, data, objective, training, LoRA,
logging), nested in :class:`TrainConfig`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from simper.config.fields import check_choice, option
from simper.data.collate import LAYOUTS
from simper.objectives import REGISTRY, get_objective

DTYPES = ("auto", "float32", "bfloat16", "float16")
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial")
TRUNCATION_FILTERS = ("none", "chosen", "any")
TRACKERS = ("tensorboard", "wandb", "trackio", "mlflow", "comet_ml", "aim", "clearml", "dvclive")


@dataclass
class ModelConfig:
    name_or_path: str = option(
        "smollm2-135m-instruct",
        "model to train: a local folder, a Hugging Face hub id, or a built-in alias "
        "(smollm2-135m-instruct, tiny-random-llama)",
    )
    torch_dtype: str = option("float32", f"dtype the weights are loaded in: {', '.join(DTYPES)}")
    attn_implementation: str | None = option(
        None,
        "attention kernel: sdpa, eager, flex_attention (GPU training), flash_attention_2 (separate rows) "
        "(default: the model's)",
    )
    trust_remote_code: bool = option(False, "run modelling code shipped with a hub model (off unless you trust it)")
    revision: str | None = option(None, "hub branch, tag or commit of the model")
    chat_template: str | None = option(None, "Jinja chat template to use when the tokenizer has none")
    gradient_checkpointing: bool = option(False, "recompute activations in backward: less memory, about 30% slower")
    dropout: bool = option(
        False,
        "keep the model's dropout while training (off by default, as in TRL: it makes every pass's "
        "log-probs noisy, so the policy differs from its reference at step 0)",
    )

    def __post_init__(self) -> None:
        check_choice("model.torch_dtype", self.torch_dtype, DTYPES)


@dataclass
class DataConfig:
    train: list[str] = option(
        [],
        "training sources: .jsonl/.json/.parquet/.csv files, save_to_disk folders, hub ids (id:split); "
        "empty = the shipped SmolLM2 on-policy pairs (by name: smollm2-pairs; smollm2-pairs-large holds more; "
        "smollm2-pairs-large-arithmetic its word problems told apart), with their held-out set as eval",
    )
    eval: list[str] = option([], "held-out sources (same kinds as train)")
    split: str = option("train", "split taken from hub datasets and save_to_disk folders")
    eval_split: str = option("test", "split taken from held-out hub datasets and folders")
    eval_fraction: float = option(0.0, "share of the training pairs held out, by whole prompts, without an eval source")
    max_length: int = option(512, "max tokens of prompt + response; responses are cut to fit")
    max_prompt_length: int = option(256, "max prompt tokens; longer prompts keep their end")
    drop_truncated: bool | str = option(
        "none",
        "leave out training pairs whose responses were cut off at generation (chosen_truncated, "
        "rejected_truncated, as simper pairs writes): chosen = those whose chosen response was cut off "
        "(a cut-off rejected one, often a loop, stays: pushing it down is the point); any (or true) = "
        "those with either cut off; none (or false) = keep all",
    )
    balance_lengths: bool = option(
        False,
        "train on as many pairs whose chosen response is shorter than the rejected one as pairs where it "
        "is not (a fixed draw drops the excess): SimPER's push on a response scales with 1/length, so a "
        "length skew in the pairs turns into a drift of the model's answer length",
    )

    def __post_init__(self) -> None:
        if isinstance(self.drop_truncated, bool):
            self.drop_truncated = "any" if self.drop_truncated else "none"
        check_choice("data.drop_truncated", self.drop_truncated, TRUNCATION_FILTERS)
        if not 0 <= self.eval_fraction < 1:
            raise ValueError(f"data.eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.max_prompt_length < 1 or self.max_length <= self.max_prompt_length:
            raise ValueError(
                f"data.max_length ({self.max_length}) must exceed data.max_prompt_length ({self.max_prompt_length}) ≥ 1"
            )


@dataclass
class ObjectiveConfig:
    name: str = option("simper", f"preference objective: {', '.join(REGISTRY)}")
    params: dict[str, float] = option(
        {}, "the objective's own hyperparameters, e.g. objective.params.beta=0.1 (SimPER has none)"
    )

    def __post_init__(self) -> None:
        objective = get_objective(self.name)
        for key, value in self.params.items():
            if key not in objective.defaults:
                raise ValueError(
                    f"objective.params.{key}: {self.name} has no such parameter; "
                    f"it takes: {', '.join(objective.defaults) or 'none'}"
                )
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"objective.params.{key}: expected a number, got {value!r}")


@dataclass
class TrainingConfig:
    output_dir: str = option("runs/simper", "run folder: checkpoints, metrics.jsonl and the final model")
    learning_rate: float = option(1e-6, "peak learning rate of AdamW (SimPER's one knob)")
    per_device_train_batch_size: int = option(2, "pairs per device per micro-batch")
    per_device_eval_batch_size: int = option(4, "pairs per device per evaluation batch")
    gradient_accumulation_steps: int = option(1, "micro-batches per optimizer step")
    num_train_epochs: float = option(1.0, "passes over the training pairs (ignored when max_steps > 0)")
    max_steps: int = option(-1, "optimizer steps to run; -1 = from num_train_epochs")
    lr_scheduler_type: str = option("cosine", f"learning-rate schedule: {', '.join(SCHEDULERS)}")
    warmup_ratio: float = option(0.1, "fraction of the steps spent warming the learning rate up")
    weight_decay: float = option(0.0, "AdamW weight decay")
    adam_beta1: float = option(0.9, "AdamW β1")
    adam_beta2: float = option(0.999, "AdamW β2")
    adam_epsilon: float = option(1e-8, "AdamW ε")
    max_grad_norm: float = option(1.0, "gradient clipping norm; 0 = no clipping")
    bf16: bool = option(False, "bf16 autocast (GPU, and CPUs with bf16 support)")
    fp16: bool = option(False, "fp16 autocast with loss scaling (GPU)")
    seed: int = option(42, "seed of weights init, data order and dropout")
    eval_steps: int = option(
        0, "evaluate on the held-out pairs every N steps; 0 = at the start and end only; -1 = never"
    )
    save_steps: int = option(0, "write a resumable checkpoint every N steps; 0 = only at the end")
    save_total_limit: int = option(2, "checkpoints kept (oldest removed first)")
    logits_chunk_size: int = option(
        1024, "response positions whose logits are made at once (at a 32k vocabulary, fewer for larger); 0 = all"
    )
    layout: str = option(
        "shared-prompt",
        "shared-prompt: one [prompt, chosen, rejected] row per pair, the prompt processed once; "
        "separate: [prompt, chosen] and [prompt, rejected] rows (same results)",
    )
    padding_free: bool | None = option(
        None,
        "true: one model call per row, no padding; false: the rows padded into one call; null (default): "
        "padding-free on a CPU, padded on a GPU, where one call per row ran 7-8x slower (docs/performance.md)",
    )
    compile: bool = option(
        False,
        "torch.compile each decoder layer (dynamic shapes, so rows of new lengths do not recompile); the first "
        "steps pay the compile time (docs/usage.md: what it gains on CPU)",
    )
    max_nonfinite_steps: int = option(
        3,
        "stop after this many consecutive steps with a non-finite loss or gradient (an fp16 overflow while "
        "the loss scale is still >= 1 is the scaler calibrating and does not count)",
    )
    resume: bool = option(False, "continue from the last checkpoint in output_dir")
    overwrite: bool = option(False, "replace a non-empty output_dir")

    def __post_init__(self) -> None:
        if self.learning_rate <= 0:
            raise ValueError(f"training.learning_rate must be > 0, got {self.learning_rate}")
        for name in (
            "per_device_train_batch_size",
            "per_device_eval_batch_size",
            "gradient_accumulation_steps",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"training.{name} must be ≥ 1, got {getattr(self, name)}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"training.max_steps must be -1 or ≥ 1, got {self.max_steps}")
        if self.max_steps == -1 and self.num_train_epochs <= 0:
            raise ValueError(f"training.num_train_epochs must be > 0, got {self.num_train_epochs}")
        if self.bf16 and self.fp16:
            raise ValueError("training.bf16 and training.fp16 cannot both be on")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"training.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.resume and self.overwrite:
            raise ValueError("training.resume and training.overwrite cannot both be on")
        if self.max_nonfinite_steps < 1:
            raise ValueError(f"training.max_nonfinite_steps must be ≥ 1, got {self.max_nonfinite_steps}")
        check_choice("training.lr_scheduler_type", self.lr_scheduler_type, SCHEDULERS)
        check_choice("training.layout", self.layout, LAYOUTS)

    @property
    def mixed_precision(self) -> str:
        """accelerate's name for the autocast these flags ask for: "bf16", "fp16" or "no"."""
        return "bf16" if self.bf16 else "fp16" if self.fp16 else "no"


@dataclass
class LoraConfig:
    r: int = option(0, "LoRA rank; 0 trains the full model")
    alpha: int = option(16, "LoRA scaling α (the update is scaled by α/r)")
    dropout: float = option(0.05, "dropout on the LoRA path")
    target_modules: list[str] = option(
        ["all-linear"], "modules that get adapters: names like q_proj,v_proj, or all-linear"
    )
    merge: bool = option(
        True,
        "also save the merged full model (the adapter alone is always saved to adapter/); a 4-bit or sharded base "
        "is reloaded whole to merge into",
    )
    load_in_4bit: bool = option(False, "QLoRA: load the base in 4-bit NF4 through bitsandbytes (CUDA GPU only)")

    def __post_init__(self) -> None:
        if self.r < 0:
            raise ValueError(f"lora.r must be ≥ 0, got {self.r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if self.load_in_4bit and self.r == 0:
            raise ValueError("lora.load_in_4bit (QLoRA) needs adapters: set lora.r > 0")


@dataclass
class LoggingConfig:
    logging_steps: int = option(10, "print a progress line every N steps when not on a terminal")
    report_to: list[str] = option([], f"trackers through accelerate: {', '.join(TRACKERS)}")
    run_name: str | None = option(None, "name of the run in the trackers (default: the output folder's name)")

    def __post_init__(self) -> None:
        for tracker in self.report_to:
            check_choice("logging.report_to", tracker, TRACKERS)
        if self.logging_steps < 1:
            raise ValueError(f"logging.logging_steps must be ≥ 1, got {self.logging_steps}")


@dataclass
class TrainConfig:
    """Everything ``simper train`` needs, grouped by concern."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def __post_init__(self) -> None:
        if self.training.compile and self.lora.load_in_4bit:
            raise ValueError("training.compile does not work with lora.load_in_4bit (bitsandbytes' 4-bit layers)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
