"""The README model card written next to the final weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simper import __version__
from simper.config import TrainConfig
from simper.objectives import get_objective

SHOWN = (
    "loss",
    "logps/chosen",
    "logps/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "eval/loss",
    "eval/logps/chosen",
    "eval/logps/rejected",
    "eval/rewards/accuracies",
    "eval/rewards/margins",
)


def write_model_card(path: Path, config: TrainConfig, data_report: list[str], metrics: dict[str, Any]) -> None:
    """Objective, data, recipe and final metrics, with Hugging Face front matter."""
    objective = get_objective(config.objective.name)
    params = {**objective.defaults, **config.objective.params}
    t = config.training
    recipe = {
        "learning_rate": t.learning_rate,
        "lr_scheduler_type": t.lr_scheduler_type,
        "warmup_ratio": t.warmup_ratio,
        "per_device_train_batch_size": t.per_device_train_batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "num_train_epochs": t.num_train_epochs,
        "max_steps": t.max_steps,
        "max_length": config.data.max_length,
        "max_prompt_length": config.data.max_prompt_length,
        "precision": "bf16" if t.bf16 else "fp16" if t.fp16 else config.model.torch_dtype,
        "seed": t.seed,
    }
    lines = [
        "---",
        "library_name: transformers",
        f"base_model: {config.model.name_or_path}",
        "tags: [simper, preference-alignment, " + objective.name + "]",
        "---",
        "",
        f"# {Path(config.training.output_dir).name}",
        "",
        f"Trained from `{config.model.name_or_path}` with the **{objective.name}** objective "
        f"({objective.summary}) by simper {__version__}.",
        "",
        "Objective hyperparameters: " + (", ".join(f"{k} = {v}" for k, v in params.items()) or "none") + ".",
        "",
        "## Data",
        "",
        *[f"- {line}" for line in data_report],
        "",
        "## Recipe",
        "",
        "| setting | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in recipe.items()],
        "",
        "The full resolved configuration is in `config.yaml`; every step's metrics are in `metrics.jsonl`.",
        "",
        "## Final metrics",
        "",
        f"After step {metrics.get('step', '?')}.",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {metrics[k]:.4f} |" for k in SHOWN if k in metrics],
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
