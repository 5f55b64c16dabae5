"""Reading run folders: what one run (``simper train`` + ``simper eval``, or ``simper compare``) wrote.

``config.yaml`` (objective, seed), ``metrics.jsonl`` (training curves, gradient balance, tokens/s),
``eval.json`` and ``generations.jsonl`` (``simper eval`` against the starting model) and, for runs
made by ``simper compare``, ``run.json`` (wall time, peak memory, failures).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from simper.errors import UserError
from simper.objectives import REGISTRY

# eval.json values a run's record keeps: top-level keys, and dotted keys into ``by_phrasing``
EVAL_KEYS = (
    "mean_reward",
    "prompt_accuracy",
    "instruction_accuracy",
    "math_accuracy",
    "win_rate",
    "loss_rate",
    "chosen_likelier",
    "mean_length",
    "loop_share",
    "sample_distinct_2",
    "kl_to_baseline",
    "by_phrasing.unseen.mean_reward",
    "by_phrasing.unseen.prompt_accuracy",
    "by_phrasing.unseen.math_accuracy",
    "by_phrasing.unseen.loop_share",
)
# metrics.jsonl values kept per step: training batches, and the held-out pairs (eval/) where evaluated
CURVES = (
    "loss",
    "logps/chosen",
    "logps/rejected",
    "grad/chosen",
    "grad/rejected",
    "tokens_per_s",
    "eval/logps/chosen",
    "eval/logps/rejected",
)
# generations.jsonl fields the per-prompt statistics read
ROW_KEYS = ("id", "kind", "phrasing", "reward", "baseline_reward", "results", "baseline_results")


@dataclass
class RunRecord:
    """What one run folder tells the report."""

    folder: Path
    label: str
    objective: str
    seed: int
    status: str
    error: str = ""
    values: dict[str, float] = field(default_factory=dict)
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    density: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)  # per held-out prompt: reward, start's reward


def load_run(folder: Path) -> RunRecord:
    """Read one run folder (made by ``simper train`` or ``simper compare``)."""
    state = _json(folder / "run.json") or {}
    config = _yaml(folder / "config.yaml") or {}
    objective = state.get("objective") or config.get("objective", {}).get("name")
    if objective is None:
        raise UserError(f"{folder}: not a simper run folder (no config.yaml or run.json)")
    seed = int(state.get("seed", config.get("training", {}).get("seed", 0)))
    label = state.get("label") or run_label(objective, config.get("objective", {}).get("params") or {})
    evaluation = _json(folder / "eval.json")
    status = state.get("status") or ("done" if evaluation else "not evaluated")
    record = RunRecord(folder, label, objective, seed, status, state.get("error", ""))

    for line in _lines(folder / "metrics.jsonl"):
        step = line.get("step")
        for key in CURVES:
            if key in line and step is not None:
                record.curves.setdefault(key, []).append((step, line[key]))
    speeds = [v for _, v in record.curves.get("tokens_per_s", [])]
    if speeds:
        record.values["tokens_per_s"] = statistics.fmean(speeds)
    if "train_seconds" in state:
        record.values["train_minutes"] = state["train_seconds"] / 60
    if "train_peak_rss_gb" in state:
        record.values["train_peak_rss_gb"] = state["train_peak_rss_gb"]
    if evaluation:
        for result in (evaluation, evaluation.get("baseline") or {}):  # its name before cache version 6
            if "preference_accuracy" in result:
                result.setdefault("chosen_likelier", result["preference_accuracy"])
        for key in EVAL_KEYS:
            value = lookup(evaluation, key)
            if isinstance(value, int | float):
                record.values[key] = float(value)
        record.density = evaluation.get("ppl_density")
        record.baseline = evaluation.get("baseline")
        if record.baseline and "logps_chosen" in evaluation:
            record.values["delta_chosen_logp"] = evaluation["logps_chosen"] - record.baseline["logps_chosen"]
        record.rows = [{k: row[k] for k in ROW_KEYS if k in row} for row in _lines(folder / "generations.jsonl")]
    return record


def lookup(values: dict[str, Any], key: str) -> Any:
    """``values[key]``, where a dotted key reads a nested value; None when absent."""
    for part in key.split("."):
        if not isinstance(values, dict) or part not in values:
            return None
        values = values[part]
    return values


def group_runs(runs: list[RunRecord]) -> dict[str, list[RunRecord]]:
    """Runs by label, objectives in registry order (SimPER first), seeds ascending."""
    order = {name: i for i, name in enumerate(REGISTRY)}
    groups: dict[str, list[RunRecord]] = {}
    for run in sorted(runs, key=lambda r: (order.get(r.objective, 99), r.label, r.seed)):
        groups.setdefault(run.label, []).append(run)
    return groups


def run_label(objective: str, params: dict[str, Any]) -> str:
    """The objective plus its non-default hyperparameters: ``dpo``, ``dpo-beta0.5``."""
    defaults = REGISTRY[objective].defaults if objective in REGISTRY else {}
    changed = [f"{k}{v:g}" for k, v in sorted(params.items()) if defaults.get(k) != v]
    return "-".join([objective, *changed])


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None


def _lines(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError):
        return []
