"""The README model card written next to the final weights."""

from __future__ import annotations

import re
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
    """Objective, data, recipe and final metrics, with Hugging Face front matter.

    ``base_model`` is the Hub id the model came from (a built-in alias is turned into its Hub id; a
    local folder or an in-process model gives none); data files are named by file name, never by a
    path on the machine that trained.
    """
    objective = get_objective(config.objective.name)
    base = hub_id(config.model.name_or_path)
    tags = list(dict.fromkeys(["simper", "preference-alignment", objective.name]))
    params = {**objective.defaults, **config.objective.params}
    lines = [
        "---",
        "library_name: transformers",
        *([f"base_model: {base}"] if base else []),
        "tags: [" + ", ".join(tags) + "]",
        "---",
        "",
        f"# {Path(config.training.output_dir).name}",
        "",
        f"Trained from `{base or Path(config.model.name_or_path).name}` with the **{objective.name}** objective "
        f"({objective.summary}) by simper {__version__}.",
        "",
        "Objective hyperparameters: " + (", ".join(f"{k} = {v}" for k, v in params.items()) or "none") + ".",
        "",
        "## Data",
        "",
        *[f"- {_without_paths(line)}" for line in data_report],
        "",
        "## Recipe",
        "",
        "| setting | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in _recipe(config).items()],
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


def _recipe(config: TrainConfig) -> dict[str, Any]:
    """The settings a reader needs to reproduce the run (the rest is in ``config.yaml``)."""
    t = config.training
    return {
        "learning_rate": t.learning_rate,
        "lr_scheduler_type": t.lr_scheduler_type,
        "warmup_ratio": t.warmup_ratio,
        "per_device_train_batch_size": t.per_device_train_batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "num_train_epochs": t.num_train_epochs,
        "max_steps": t.max_steps,
        "max_length": config.data.max_length,
        "max_prompt_length": config.data.max_prompt_length,
        "precision": config.model.torch_dtype if t.mixed_precision == "no" else t.mixed_precision,
        "seed": t.seed,
    }


def hub_id(name_or_path: str) -> str | None:
    """The Hugging Face Hub id of a model: built-in aliases mapped, hub ids as given, local folders none."""
    from simper.models import HUB_IDS

    if name_or_path in HUB_IDS:
        return HUB_IDS[name_or_path]
    if Path(name_or_path).exists() or name_or_path.count("/") != 1 or name_or_path.startswith((".", "/")):
        return None
    return name_or_path


def _without_paths(line: str) -> str:
    """A data-report line with each local file or folder path cut to its name (hub ids stay whole)."""
    return re.sub(r"[^\s:]*/[^\s:]*", lambda m: Path(m[0]).name if Path(m[0]).exists() else m[0], line)
