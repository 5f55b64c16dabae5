"""``simper iterate``: iterative on-policy rounds — sample pairs from the current model, train on them
with the recipe, evaluate, and start the next round from the trained model.

Round r samples ``prompts_per_round`` fresh training prompts (drawn with seed ``seed + r``) from the
model of round r − 1 (the recipe's model for round 1), keeps the best- and worst-rewarded of k
samples as a pair, trains a copy of that model on those pairs only, and evaluates it against the
starting model. Each step is a subprocess whose output is kept in the round's folder, and each is
skipped once it has succeeded (``STEP.done``), so a rerun resumes where the last one stopped (pairs
from their ``.seen`` file, training from its last checkpoint).

Layout of the output folder::

    OUTPUT/
      rounds.md              one line per finished round
      round-1/pairs.jsonl    the round's on-policy pairs (+ pairs.jsonl.seen)
      round-1/model/         a normal run folder; eval.json and generations.jsonl land in it
      round-1/*.log          each step's output
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from simper.compare import run_logged, train_command
from simper.config import IterateConfig, TrainConfig, load_config
from simper.errors import UserError

ROUND_COLUMNS = (
    ("mean_reward", "reward"),
    ("prompt_accuracy", "prompt acc."),
    ("math_accuracy", "math acc."),
    ("loop_share", "loops"),
    ("sample_distinct_2", "sample distinct-2"),
    ("mean_length", "length"),
    ("kl_to_baseline", "greedy log-ratio to start"),
)


def iterate(config: IterateConfig) -> Path:
    """Run the rounds not finished yet; returns the path of ``rounds.md``. Each step of a round gets
    its own config file in the round's folder (``pairs.yaml``, ``train.yaml``, ``eval.yaml``)."""
    from simper.config import EvalConfig, PairsConfig, save_config

    recipe = load_config(config.recipe, config.overrides)  # a bad recipe fails here, first
    start_model = recipe.model.name_or_path
    try:  # and bad sampling or evaluation settings
        PairsConfig(output="pairs.jsonl", **config.sampling()), EvalConfig(model=start_model, **config.evaluation())
    except (TypeError, ValueError) as err:
        raise UserError(f"round settings: {err}") from None
    launch = config.launch()
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    save_config(config, output / "iterate.yaml")  # what these rounds ran with
    policy = start_model
    for number in range(1, config.rounds + 1):
        folder = output / f"round-{number}"
        model_dir, pairs = folder / "model", folder / "pairs.jsonl"
        prefix = f"[round {number}/{config.rounds}]"
        if not (folder / "eval.done").exists():
            folder.mkdir(parents=True, exist_ok=True)
            draw = {"num_prompts": config.prompts_per_round, "seed": config.seed + number, "split": "train"}
            sampling = PairsConfig(output=str(pairs), model=policy, **draw, **config.sampling())
            save_config(sampling, folder / "pairs.yaml")
            evaluation = EvalConfig(model=str(model_dir), baseline=start_model, **config.evaluation())
            save_config(evaluation, folder / "eval.yaml")
            training = round_training(config, policy, pairs, model_dir)
            steps = [
                ("pairs", [*launch, "pairs", "--config", str(folder / "pairs.yaml")]),
                ("train", train_command(launch, training, folder / "train.yaml")),
                ("eval", [*launch, "eval", str(model_dir), "--config", str(folder / "eval.yaml")]),
            ]
            for name, command in steps:
                done = folder / f"{name}.done"  # written once the step succeeded: a rerun skips it
                if done.exists():
                    continue
                print(f"{prefix} {name}", file=sys.stderr, flush=True)
                ok, seconds, _, error = run_logged(command, folder / f"{name}.log")
                if not ok:
                    raise UserError(f"{prefix} {name} failed after {seconds:.0f} s: {error} (log: {folder}/{name}.log)")
                done.write_text(f"{seconds:.1f} s\n")
        print(f"{prefix} done", file=sys.stderr, flush=True)
        policy = str(model_dir)
    return write_rounds(output)


def round_training(config: IterateConfig, policy: str, pairs: Path, model_dir: Path) -> TrainConfig:
    """The recipe as one round trains it: from ``policy``, on the round's pairs only, for
    ``epochs_per_round`` passes over the pairs the recipe keeps. The recipe's step count was sized to
    its own data (the 24-step main job, until 2026-12-03, went over a round's 12 kept pairs four
    times, 11 nats of KL); a ``training.max_steps`` in the overrides is the user's choice and wins."""
    epochs = [f"training.num_train_epochs={config.epochs_per_round}", "training.max_steps=-1"]
    paths = [f"model.name_or_path={policy}", f"data.train={pairs}", f"training.output_dir={model_dir}"]
    return load_config(config.recipe, [*epochs, *config.overrides, *paths])


def write_rounds(output: Path) -> Path:
    """``rounds.md``: each finished round's metrics against the starting model (round 0)."""
    results = []
    for folder in sorted(output.glob("round-*"), key=lambda p: int(p.name.split("-")[1])):
        path = folder / "model" / "eval.json"
        if path.exists():
            results.append((folder.name.split("-")[1], json.loads(path.read_text()), _count_lines(folder)))
    header = "| round | pairs | " + " | ".join(label for _, label in ROUND_COLUMNS) + " | gain, unseen wording |"
    lines = [header, "|" + "---|" * (len(ROUND_COLUMNS) + 3)]
    if results:
        lines.append(_row("0 (start)", "–", results[0][1].get("baseline", {})))
    for number, metrics, pairs in results:
        lines.append(_row(number, str(pairs), metrics))
    path = output / "rounds.md"
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return path


def _row(label: str, pairs: str, metrics: dict) -> str:
    cells = [f"{metrics[key]:.3f}" if isinstance(metrics.get(key), int | float) else "–" for key, _ in ROUND_COLUMNS]
    unseen = metrics.get("by_phrasing", {}).get("unseen", {})
    gain = "–"
    if "reward_gain_ci95" in unseen:
        low, high = unseen["reward_gain_ci95"]
        gain = f"{unseen['reward_gain']:+.3f} [{low:+.3f}, {high:+.3f}]"
    return f"| {label} | {pairs} | " + " | ".join(cells) + f" | {gain} |"


def _count_lines(folder: Path) -> int:
    pairs = folder / "pairs.jsonl"
    return sum(1 for _ in pairs.open()) if pairs.exists() else 0
