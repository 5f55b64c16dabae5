"""Typed configuration: dataclasses per concern, loaded from YAML and overridden by dotted keys.

A config file mirrors the dataclasses::

    model: {name_or_path: ./my-sft-model, torch_dtype: bfloat16}
    data: {train: [pairs.jsonl], max_length: 1024}
    training: {learning_rate: 1.0e-6, per_device_train_batch_size: 2}

and any field can be overridden on the command line as ``training.learning_rate=5e-7``. Unknown keys
are errors that name the key and suggest the closest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from simper.data.collate import LAYOUTS
from simper.errors import UserError
from simper.objectives import REGISTRY, get_objective

DTYPES = ("auto", "float32", "bfloat16", "float16")
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial")
TRUNCATION_FILTERS = ("none", "chosen", "any")
TRACKERS = ("tensorboard", "wandb", "trackio", "mlflow", "comet_ml", "aim", "clearml", "dvclive")


def _field(default: Any, help: str) -> Any:
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class ModelConfig:
    name_or_path: str = _field(
        "smollm2-135m-instruct",
        "model to train: a local folder, a Hugging Face hub id, or a built-in alias "
        "(smollm2-135m-instruct, tiny-random-llama)",
    )
    torch_dtype: str = _field("float32", f"dtype the weights are loaded in: {', '.join(DTYPES)}")
    attn_implementation: str | None = _field(
        None,
        "attention kernel: sdpa, eager, flex_attention (GPU training), flash_attention_2 (separate rows) "
        "(default: the model's)",
    )
    trust_remote_code: bool = _field(False, "run modelling code shipped with a hub model (off unless you trust it)")
    revision: str | None = _field(None, "hub branch, tag or commit of the model")
    chat_template: str | None = _field(None, "Jinja chat template to use when the tokenizer has none")
    gradient_checkpointing: bool = _field(False, "recompute activations in backward: less memory, about 30% slower")

    def __post_init__(self) -> None:
        _choice("model.torch_dtype", self.torch_dtype, DTYPES)


@dataclass
class DataConfig:
    train: list[str] = _field(
        [],
        "training sources: .jsonl/.json/.parquet/.csv files, save_to_disk folders, hub ids (id:split); "
        "empty = the shipped SmolLM2 on-policy pairs, with their held-out set as eval",
    )
    eval: list[str] = _field([], "held-out sources (same kinds as train)")
    split: str = _field("train", "split taken from hub datasets and save_to_disk folders")
    eval_split: str = _field("test", "split taken from held-out hub datasets and folders")
    eval_fraction: float = _field(0.0, "fraction of the training pairs held out when no eval source is given")
    max_length: int = _field(512, "max tokens of prompt + response; responses are cut to fit")
    max_prompt_length: int = _field(256, "max prompt tokens; longer prompts keep their end")
    drop_truncated: bool | str = _field(
        "none",
        "leave out training pairs whose responses were cut off at generation (chosen_truncated, "
        "rejected_truncated, as simper pairs writes): chosen = those whose chosen response was cut off "
        "(a cut-off rejected one, often a loop, stays: pushing it down is the point); any (or true) = "
        "those with either cut off; none (or false) = keep all",
    )
    balance_lengths: bool = _field(
        False,
        "train on as many pairs whose chosen response is shorter than the rejected one as pairs where it "
        "is not (a fixed draw drops the excess): SimPER's push on a response scales with 1/length, so a "
        "length skew in the pairs turns into a drift of the model's answer length",
    )

    def __post_init__(self) -> None:
        if isinstance(self.drop_truncated, bool):
            self.drop_truncated = "any" if self.drop_truncated else "none"
        _choice("data.drop_truncated", self.drop_truncated, TRUNCATION_FILTERS)
        if not 0 <= self.eval_fraction < 1:
            raise ValueError(f"data.eval_fraction must be in [0, 1), got {self.eval_fraction}")
        if self.max_prompt_length < 1 or self.max_length <= self.max_prompt_length:
            raise ValueError(
                f"data.max_length ({self.max_length}) must exceed data.max_prompt_length ({self.max_prompt_length}) ≥ 1"
            )


@dataclass
class ObjectiveConfig:
    name: str = _field("simper", f"preference objective: {', '.join(REGISTRY)}")
    params: dict[str, float] = _field(
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
    output_dir: str = _field("runs/simper", "run folder: checkpoints, metrics.jsonl and the final model")
    learning_rate: float = _field(1e-6, "peak learning rate of AdamW (SimPER's one knob)")
    per_device_train_batch_size: int = _field(2, "pairs per device per micro-batch")
    per_device_eval_batch_size: int = _field(4, "pairs per device per evaluation batch")
    gradient_accumulation_steps: int = _field(1, "micro-batches per optimizer step")
    num_train_epochs: float = _field(1.0, "passes over the training pairs (ignored when max_steps > 0)")
    max_steps: int = _field(-1, "optimizer steps to run; -1 = from num_train_epochs")
    lr_scheduler_type: str = _field("cosine", f"learning-rate schedule: {', '.join(SCHEDULERS)}")
    warmup_ratio: float = _field(0.1, "fraction of the steps spent warming the learning rate up")
    weight_decay: float = _field(0.0, "AdamW weight decay")
    adam_beta1: float = _field(0.9, "AdamW β1")
    adam_beta2: float = _field(0.999, "AdamW β2")
    adam_epsilon: float = _field(1e-8, "AdamW ε")
    max_grad_norm: float = _field(1.0, "gradient clipping norm; 0 = no clipping")
    bf16: bool = _field(False, "bf16 autocast (GPU, and CPUs with bf16 support)")
    fp16: bool = _field(False, "fp16 autocast with loss scaling (GPU)")
    seed: int = _field(42, "seed of weights init, data order and dropout")
    eval_steps: int = _field(
        0, "evaluate on the held-out pairs every N steps; 0 = at the start and end only; -1 = never"
    )
    save_steps: int = _field(0, "write a resumable checkpoint every N steps; 0 = only at the end")
    save_total_limit: int = _field(2, "checkpoints kept (oldest removed first)")
    logits_chunk_size: int = _field(
        1024, "response positions whose logits are made at once (at a 32k vocabulary, fewer for larger); 0 = all"
    )
    layout: str = _field(
        "shared-prompt",
        "shared-prompt: one [prompt, chosen, rejected] row per pair, the prompt processed once; "
        "separate: [prompt, chosen] and [prompt, rejected] rows (same results)",
    )
    padding_free: bool = _field(True, "one model call per row, no padding (false: pad the rows into one call)")
    max_nonfinite_steps: int = _field(3, "stop after this many consecutive steps with a non-finite loss or gradient")
    resume: bool = _field(False, "continue from the last checkpoint in output_dir")
    overwrite: bool = _field(False, "replace a non-empty output_dir")

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
        _choice("training.lr_scheduler_type", self.lr_scheduler_type, SCHEDULERS)
        _choice("training.layout", self.layout, LAYOUTS)


@dataclass
class LoraConfig:
    r: int = _field(0, "LoRA rank; 0 trains the full model")
    alpha: int = _field(16, "LoRA scaling α (the update is scaled by α/r)")
    dropout: float = _field(0.05, "dropout on the LoRA path")
    target_modules: list[str] = _field(
        ["all-linear"], "modules that get adapters: names like q_proj,v_proj, or all-linear"
    )
    merge: bool = _field(True, "also save the merged full model (the adapter alone is always saved to adapter/)")
    load_in_4bit: bool = _field(False, "QLoRA: load the base in 4-bit NF4 through bitsandbytes (CUDA GPU only)")

    def __post_init__(self) -> None:
        if self.r < 0:
            raise ValueError(f"lora.r must be ≥ 0, got {self.r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if self.load_in_4bit and self.r == 0:
            raise ValueError("lora.load_in_4bit (QLoRA) needs adapters: set lora.r > 0")


@dataclass
class LoggingConfig:
    logging_steps: int = _field(10, "print a progress line every N steps when not on a terminal")
    report_to: list[str] = _field([], f"trackers through accelerate: {', '.join(TRACKERS)}")
    run_name: str | None = _field(None, "name of the run in the trackers (default: the output folder's name)")

    def __post_init__(self) -> None:
        for tracker in self.report_to:
            _choice("logging.report_to", tracker, TRACKERS)
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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------------
# The other commands' configs: flat, one field per command-line flag (--num-prompts = num_prompts)
# ------------------------------------------------------------------------------------------------

BACKENDS = ("auto", "transformers", "vllm")
PROMPT_SPLITS = ("train", "heldout", "heldout-phrasing")
EVAL_SPLITS = ("both", "heldout", "heldout-phrasing")
EXPORTS = ("alpaca_eval", "arena_hard", "mt_bench")
TIE_BREAKS = ("degeneration", "none")


def _choices(default: Any, help: str, choices: tuple[str, ...]) -> Any:
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class PairsConfig:
    """``simper pairs``: sample k answers per prompt, score them, write best vs. worst."""

    output: str = _field("", "pairs JSONL to write (appended to on a rerun, which skips prompts already handled)")
    model: str = _field("smollm2-135m-instruct", "policy that samples: folder, hub id or alias")
    prompts: str | None = _field(None, "prompt file (field 'prompt': string or messages); default: built-in tasks")
    num_prompts: int = _field(100, "built-in task prompts to draw")
    split: str = _choices("train", "built-in task split", PROMPT_SPLITS)
    reward: str = _field("builtin", "builtin (task checkers), module:function, or a reward-model folder/hub id")
    num_samples: int = _field(4, "responses sampled per prompt (k)")
    temperature: float = _field(0.8, "sampling temperature")
    top_p: float = _field(0.95, "nucleus sampling p")
    max_new_tokens: int = _field(256, "response length cap")
    batch_size: int = _field(64, "sequences decoded together")
    seed: int = _field(0, "seed of prompt drawing and sampling")
    tie_break: str = _choices(
        "degeneration",
        "between responses the reward scores alike, one that ended and does not loop beats one cut off or looping; "
        "none: such prompts are dropped as ties",
        TIE_BREAKS,
    )
    stop_loops: bool = _field(
        True, "stop a sample caught in a repetition loop there, marked cut off (the rest would repeat it)"
    )
    backend: str = _choices("auto", "decoder; auto = vLLM when installed and on a GPU", BACKENDS)
    trust_remote_code: bool = _field(False, "allow code shipped with a hub model")

    def __post_init__(self) -> None:
        if not self.output:
            raise ValueError("output: the pairs file to write is required (--output FILE)")
        if self.num_samples < 2:
            raise ValueError(f"num_samples must be ≥ 2 to make a pair, got {self.num_samples}")
        _check_choices(self)


@dataclass
class EvalConfig:
    """``simper eval``: a model on held-out prompts and pairs, against a baseline."""

    model: str = _field("", "model to evaluate: folder, hub id or alias")
    baseline: str | None = _field(None, "model to compare against (its evaluation is cached)")
    output: str | None = _field(None, "folder for the results (default: the model folder, else runs/eval-NAME)")
    prompts: str | None = _field(
        None, "prompt file (built-in task rows, or any rows with 'prompt' given a reward); default: built-in prompts"
    )
    num_prompts: int = _field(100, "built-in held-out prompts")
    pairs: list[str] = _field([], "held-out pair files: is the chosen answer likelier? (default: the shipped ones)")
    num_pairs: int = _field(0, "use only the first N held-out pairs (0: all)")
    max_new_tokens: int = _field(256, "response length cap")
    batch_size: int = _field(64, "sequences decoded together")
    seed: int = _field(0, "seed of the built-in prompts")
    prompt_split: str = _choices(
        "both",
        "built-in prompts: held out in training's wording, in wording training never saw, or half each, reported apart",
        EVAL_SPLITS,
    )
    diversity_prompts: int = _field(16, "prompts also sampled 4 times to measure the diversity of samples (0: skip)")
    reward: str = _field(
        "builtin",
        "what scores the answers: builtin (the task checkers), module:function, or a reward-model folder/hub id; "
        "with the last two, prompts can be any prompt file",
    )
    backend: str = _choices("auto", "decoder; auto = vLLM when installed and on a GPU", BACKENDS)
    trust_remote_code: bool = _field(False, "allow code shipped with a hub model")
    export: str | None = _choices(
        None,
        "instead of evaluating, answer that benchmark's question file (prompts) and write the answer file its judge "
        "reads into output",
        EXPORTS,
    )
    model_id: str | None = _field(None, "the model's name in exported answer files (default: its folder name)")

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model: the model to evaluate is required (simper eval MODEL)")
        _check_choices(self)

    def settings(self) -> dict[str, Any]:
        """What decides the results (what a cached baseline evaluation is keyed by)."""
        skip = ("model", "baseline", "output", "export", "model_id")
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}


def _check_choices(config: Any) -> None:
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if "choices" in f.metadata and value is not None:
            _choice(f.name, value, f.metadata["choices"])


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}: {value!r} is not one of {', '.join(choices)}")


# ------------------------------------------------------------------------------------------------
# Loading: YAML file, then dotted overrides, then typed construction
# ------------------------------------------------------------------------------------------------


def field_docs(cls: type = TrainConfig, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """``(dotted key, type, default, help)`` for every leaf field, for ``--help``."""
    rows = []
    for f in dataclasses.fields(cls):
        hints = typing.get_type_hints(cls)
        if dataclasses.is_dataclass(hints[f.name]):
            rows += field_docs(hints[f.name], f"{prefix}{f.name}.")
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((prefix + f.name, _type_label(hints[f.name]), default, f.metadata.get("help", "")))
    return rows


def load_config(
    path: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    cls: type = TrainConfig,
    values: dict[str, Any] | None = None,
) -> Any:
    """Build a ``cls`` (:class:`TrainConfig` by default) from an optional YAML file, ``key=value``
    overrides, then ``values`` (dotted keys set as they are: command-line flags, already typed).

    Raises:
        UserError: unreadable file, unknown key (with the closest valid one), a value of the wrong
            type, or a broken cross-field rule; the message names the file or override and the key.
    """
    tree: dict[str, Any] = {}
    where = "command line"
    if path is not None:
        where = path
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise UserError(f"{path}: cannot read config ({getattr(err, 'strerror', None) or err})") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            line = f":line {mark.line + 1}" if mark else ""
            raise UserError(f"{path}{line}: invalid YAML ({getattr(err, 'problem', None) or err})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise UserError(f"{path}: a config must be a mapping of sections (model, data, training, ...)")
        tree = loaded or {}
    for override in overrides:
        key, sep, value = override.partition("=")
        if not sep or not key:
            raise UserError(f"override {override!r}: expected key=value, e.g. training.learning_rate=1e-6")
        _set_dotted(tree, key.strip(), yaml.safe_load(value) if value.strip() else "", override)
    for key, value in (values or {}).items():
        _set_dotted(tree, key, value, f"--{key.replace('_', '-')}")
    try:
        return _build(cls, tree, "", where)
    except ValueError as err:
        raise UserError(f"{where}: {err}") from None


def _set_dotted(tree: dict[str, Any], key: str, value: Any, override: str) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UserError(f"override {override!r}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def _build(cls: type, values: Any, prefix: str, where: str, root: type | None = None) -> Any:
    if not isinstance(values, dict):
        raise UserError(f"{where}: {prefix.rstrip('.') or 'config'}: expected a section (mapping), got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            if not close:  # a leaf key put in the wrong section, e.g. model.learning_rate
                every = [name for name, *_ in field_docs(root or cls)]
                close = (
                    difflib.get_close_matches(f"{prefix}{key}", every, n=1)
                    or [name for name in every if name.endswith(f".{key}")][:1]
                )
                suggestion = f"; did you mean {close[0]}?" if close else ""
            else:
                suggestion = f"; did you mean {prefix}{close[0]}?"
            raise UserError(f"{where}: unknown key {prefix}{key}{suggestion}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value if value is not None else {}, f"{prefix}{key}.", where, root or cls)
        else:
            kwargs[key] = _coerce(value, hint, f"{prefix}{key}", where)
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, key: str, where: str) -> Any:
    """Check ``value`` against the annotation, converting what YAML leaves as strings (``1e-6``)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for option in options[:-1]:  # the first type the value fits, e.g. bool | str: true, then "chosen"
            try:
                return _coerce(value, option, key, where)
            except UserError:
                pass
        hint = options[-1]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
                return value.lower() in ("true", "yes", "1")
            raise TypeError
        if hint is int:
            if isinstance(value, bool):
                raise TypeError
            if isinstance(value, float) and value.is_integer():
                return int(value)
            return int(value) if isinstance(value, int | str) else _raise()
        if hint is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value) if isinstance(value, int | float | str) else _raise()
        if hint is str:
            if isinstance(value, str):
                return value
            if isinstance(value, int | float) and not isinstance(value, bool):
                return str(value)
            raise TypeError
        if origin is list:
            items = value if isinstance(value, list) else [value] if isinstance(value, str) else _raise()
            items = [item for part in items for item in (part.split(",") if isinstance(part, str) else [part])]
            return [_coerce(item, args[0], key, where) for item in items if item != ""]
        if origin is dict:
            if not isinstance(value, dict):
                raise TypeError
            return {str(k): _coerce(v, args[1], f"{key}.{k}", where) for k, v in value.items()}
    except (TypeError, ValueError):
        raise UserError(f"{where}: {key}: expected {_type_label(hint)}, got {value!r}") from None
    raise UserError(f"{where}: {key}: unsupported type {hint}")  # pragma: no cover - a programming error


def _raise() -> Any:
    raise TypeError


def _type_label(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return " | ".join(_type_label(a) for a in args)
    if origin is list:
        return f"list of {_type_label(args[0])}"
    if origin is dict:
        return f"mapping of {_type_label(args[1])}"
    return {
        bool: "true/false",
        int: "an integer",
        float: "a number",
        str: "a string",
        type(None): "null",
    }.get(hint, str(hint))


def save_config(config: Any, path: Path) -> None:
    """Write the resolved config as YAML (loadable again with :func:`load_config` and its class)."""
    path.write_text(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False), encoding="utf-8")
