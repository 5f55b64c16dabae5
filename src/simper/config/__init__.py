"""Typed configuration: dataclasses per concern, loaded from YAML and overridden by dotted keys.

A config file mirrors the dataclasses::

    model: {name_or_path: ./my-sft-model, torch_dtype: bfloat16}
    data: {train: [pairs.jsonl], max_length: 1024}
    training: {learning_rate: 1.0e-6, per_device_train_batch_size: 2}

and any field can be overridden on the command line as ``training.learning_rate=5e-7``. Unknown keys
are errors that name the key and suggest the closest valid one.
"""

from simper.config.commands import (
    BACKENDS,
    EVAL_SPLITS,
    EXPORTS,
    PROMPT_SPLITS,
    TIE_BREAKS,
    CompareConfig,
    EvalConfig,
    IterateConfig,
    PairsConfig,
    RunsConfig,
)
from simper.config.loading import field_docs, load_config, save_config
from simper.config.train import (
    DTYPES,
    SCHEDULERS,
    TRACKERS,
    TRUNCATION_FILTERS,
    DataConfig,
    LoggingConfig,
    LoraConfig,
    ModelConfig,
    ObjectiveConfig,
    TrainConfig,
    TrainingConfig,
)

__all__ = [
    "BACKENDS",
    "DTYPES",
    "EVAL_SPLITS",
    "EXPORTS",
    "PROMPT_SPLITS",
    "SCHEDULERS",
    "TIE_BREAKS",
    "TRACKERS",
    "TRUNCATION_FILTERS",
    "CompareConfig",
    "DataConfig",
    "EvalConfig",
    "IterateConfig",
    "LoggingConfig",
    "LoraConfig",
    "ModelConfig",
    "ObjectiveConfig",
    "PairsConfig",
    "RunsConfig",
    "TrainConfig",
    "TrainingConfig",
    "field_docs",
    "load_config",
    "save_config",
]
