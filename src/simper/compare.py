"""``simper compare``: one recipe, many objectives and seeds, one report.

Every (objective, seed) trains with the identical recipe and, per seed, the identical data order
(the sampler is seeded by ``training.seed``); each objective with its registry defaults. Objectives
that need a reference get the starting model. Every run is then evaluated against the starting
model with ``simper eval``, and the report is rebuilt from the run folders.

Each run is a subprocess (``python -m simper train`` / ``eval``, or the launcher given), so a
failed run is recorded and the others go on, and its wall time and peak memory are its own. A
rerun skips finished runs and resumes an interrupted one from its last checkpoint.

Layout of the output folder::

    OUTPUT/
      report.md, report.html, *.png
      simper/seed-1/        a normal run folder (model, metrics.jsonl, eval.json, ...) + run.json
      dpo/seed-1/
      dpo-beta0.5/seed-1/   a --tune-baselines grid point
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from simper.config import CompareConfig, TrainConfig, load_config
from simper.errors import UserError
from simper.objectives import get_objective

# --tune-baselines: each baseline's own hyperparameters, a small grid around the papers' choices.
# SimPER has none, so it runs once per seed whatever the flag.
TUNING_GRIDS: dict[str, list[dict[str, float]]] = {
    "dpo": [{"beta": 0.01}, {"beta": 0.05}, {"beta": 0.1}, {"beta": 0.5}],
    "ipo": [{"beta": 0.01}, {"beta": 0.1}, {"beta": 0.5}, {"beta": 1.0}],
    "simpo": [
        {"beta": 2.0, "gamma": 0.5},
        {"beta": 2.0, "gamma": 1.0},
        {"beta": 2.5, "gamma": 1.4},
        {"beta": 10.0, "gamma": 3.0},
    ],
    "slic": [{"beta": 0.1}, {"beta": 0.5}, {"beta": 1.0}],
    "kto": [{"beta": 0.01}, {"beta": 0.1}, {"beta": 0.5}],
    "cpo": [{"beta": 0.01}, {"beta": 0.1}, {"beta": 0.5}],
    "orpo": [{"beta": 0.05}, {"beta": 0.1}, {"beta": 0.5}],
}


@dataclass(frozen=True)
class RunSpec:
    """One training run of a comparison."""

    objective: str
    seed: int
    params: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        from simper.report import run_label

        return run_label(self.objective, self.params)


def plan(objectives: list[str], seeds: list[int], tune_baselines: bool = False) -> list[RunSpec]:
    """Every (objective or grid point, seed), seeds outermost so each seed's runs finish together."""
    specs = []
    for seed in seeds:
        for name in objectives:
            get_objective(name)
            grid = TUNING_GRIDS.get(name, [{}]) if tune_baselines else [{}]
            for params in grid:
                spec = RunSpec(name, seed, dict(params))
                if spec not in specs:
                    specs.append(spec)
    return specs


def compare(config: CompareConfig) -> Path:
    """Train and evaluate every run that is not finished yet, then write the report; returns its path.

    Each run gets config files, not argv: its training config (the recipe with the run's objective,
    seed and folder) in ``LABEL/seed-S.train.yaml`` and its evaluation config in the run folder."""
    from simper.config import EvalConfig, save_config
    from simper.report import build_report

    for name in config.objectives:
        try:
            get_objective(name)
        except ValueError as err:
            raise UserError(f"objectives: {err}") from None
    base = load_config(config.recipe, config.overrides)  # fails here, before any run, on a bad recipe
    start_model = base.model.name_or_path
    # the recipe's held-out pairs (default: the shipped held-out set); a bad setting fails here too
    shared = {**config.evaluation(), "baseline": start_model, "pairs": list(base.data.eval)}
    try:
        evaluation = EvalConfig(model=start_model, **shared)
    except (TypeError, ValueError) as err:
        raise UserError(f"evaluation settings: {err}") from None
    if evaluation.prompts:  # a bad row stops the comparison here, not in every run's evaluation
        from simper.pairs import read_prompts

        read_prompts(evaluation.prompts, tasks=evaluation.reward == "builtin")
    launch = config.launch()
    specs = plan(config.objectives, config.seeds, config.tune_baselines)
    output = Path(config.output)
    # every run's training config, built before any run starts: one that cannot be built (a recipe
    # parameter this objective lacks, say) stops the comparison here rather than halfway
    trainings = [_run_config(config, spec, output / spec.label / f"seed-{spec.seed}") for spec in specs]
    output.mkdir(parents=True, exist_ok=True)
    save_config(config, output / "compare.yaml")  # what this comparison ran with: --settings it to rerun
    labels = ", ".join(dict.fromkeys(spec.label for spec in specs))
    seeds = ",".join(map(str, config.seeds))
    print(f"simper compare: {len(specs)} runs ({labels}; seeds {seeds}) into {output}", file=sys.stderr)
    for number, (spec, training) in enumerate(zip(specs, trainings, strict=True), 1):
        folder = Path(training.training.output_dir)
        state = _read_state(folder)
        prefix = f"[{number}/{len(specs)}] {spec.label} seed {spec.seed}"
        if state.get("status") == "done":
            print(f"{prefix}: done earlier, skipped", file=sys.stderr)
            continue
        if state.get("status") != "trained":
            print(f"{prefix}: training", file=sys.stderr)
            state = _train(spec, folder, launch, training)
            if state["status"] == "failed":
                print(f"{prefix}: training failed: {state['error']}", file=sys.stderr)
                continue
        print(f"{prefix}: evaluating", file=sys.stderr)
        settings = folder / "eval-config.yaml"
        save_config(EvalConfig(model=str(folder), output=str(folder), **shared), settings)
        command = [*launch, "eval", str(folder), "--config", str(settings)]
        ok, seconds, _, error = run_logged(command, folder.parent / f"{folder.name}.eval.log")
        if not ok:
            _write_state(folder, {**state, "status": "failed", "stage": "eval", "error": error})
            print(f"{prefix}: evaluation failed: {error}", file=sys.stderr)
            continue
        _write_state(folder, {**state, "status": "done", "eval_seconds": seconds})
    folders = sorted(p.parent for p in output.glob("*/seed-*/run.json"))  # also runs from earlier calls
    return build_report(folders, output)


def train_command(launch: list[str], config: TrainConfig, path: Path) -> list[str]:
    """``simper train`` on ``config``, written to ``path``: resumed from the run's last checkpoint when
    it has one, else started over in its folder."""
    from simper.config import save_config

    path.parent.mkdir(parents=True, exist_ok=True)
    save_config(config, path)
    resume = (Path(config.training.output_dir) / "checkpoints" / "latest").exists()
    return [*launch, "train", "--config", str(path), "training.resume=true" if resume else "training.overwrite=true"]


def _run_config(config: CompareConfig, spec: RunSpec, folder: Path) -> TrainConfig:
    """The recipe with the run's objective, its parameters, seed and folder."""
    changes = [f"objective.name={spec.objective}", f"training.seed={spec.seed}", f"training.output_dir={folder}"]
    changes += [f"objective.params.{k}={v}" for k, v in spec.params.items()]
    try:
        return load_config(config.recipe, [*config.overrides, *changes])
    except UserError as err:
        raise UserError(f"run {spec.label} seed {spec.seed}: {err}") from None


def _train(spec: RunSpec, folder: Path, launch: list[str], training: TrainConfig) -> dict:
    """Train one run (resuming from its last checkpoint if there is one); its new state, recorded."""
    command = train_command(launch, training, folder.parent / f"{folder.name}.train.yaml")
    ok, seconds, peak, error = run_logged(command, folder.parent / f"{folder.name}.train.log")
    if ok:
        state = {**spec_dict(spec), "status": "trained", "train_seconds": seconds, "train_peak_rss_gb": peak}
    else:
        state = {**spec_dict(spec), "status": "failed", "stage": "train", "error": error}
    _write_state(folder, state)
    return state


def spec_dict(spec: RunSpec) -> dict:
    return {"label": spec.label, "objective": spec.objective, "seed": spec.seed, "params": spec.params}


def run_logged(command: list[str], log: Path) -> tuple[bool, float, float, str]:
    """Run a child with its output in ``log``; ``(ok, seconds, its own peak RSS in GB, last error line)``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)  # wait4, not wait: the child's own resource usage
        process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    error = next((line for line in reversed(lines) if "error" in line.lower()), lines[-1] if lines else "")
    return process.returncode == 0, seconds, usage.ru_maxrss / 1e6, error or f"exit code {process.returncode}"


def _read_state(folder: Path) -> dict:
    try:
        return json.loads((folder / "run.json").read_text())
    except (OSError, ValueError):
        return {}


def _write_state(folder: Path, state: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".run.json.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, folder / "run.json")
