"""simper iterate on the tiny model: two rounds chained through the trained model, a rerun skips
what is done, and a failed step stops with a one-line error naming its log."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from simper.cli import main
from simper.config import IterateConfig
from simper.iterate import round_training

ROOT = Path(__file__).resolve().parents[1]


def _args(tiny_model_dir, output, *extra):
    return [
        "iterate",
        "--config",
        str(ROOT / "configs" / "recipes" / "quickstart.yaml"),
        "--output",
        str(output),
        "--rounds",
        "2",
        "--prompts-per-round",
        "6",
        "--num-samples",
        "2",
        "--pairs-max-new-tokens",
        "8",
        "--reward",
        "reward_fixtures:length_reward",
        "--num-prompts",
        "4",
        "--max-new-tokens",
        "6",
        "num_pairs=4",  # an undotted key=value: iterate's own setting (dotted ones change the recipe)
        f"model.name_or_path={tiny_model_dir}",
        "training.max_steps=2",
        "training.eval_steps=-1",
        "data.eval_fraction=0",
        *extra,
    ]


def test_two_rounds_chain_through_the_trained_model_and_a_rerun_skips_them(
    tiny_model_dir, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("PYTHONPATH", str(ROOT / "tests"))  # the steps import the test reward
    output = tmp_path / "iter"
    assert main(_args(tiny_model_dir, output)) == 0
    for number in (1, 2):
        folder = output / f"round-{number}"
        assert all((folder / f"{step}.done").exists() for step in ("pairs", "train", "eval"))
        assert (folder / "pairs.jsonl").read_text().strip() and (folder / "model" / "model.safetensors").exists()
        assert json.loads((folder / "model" / "eval.json").read_text())["baseline"]["model"] == str(tiny_model_dir)
    config = (output / "round-2" / "model" / "config.yaml").read_text()
    assert f"name_or_path: {output / 'round-1' / 'model'}" in config  # round 2 starts from round 1's model
    assert f"- {output / 'round-2' / 'pairs.jsonl'}" in config  # and trains on its own pairs only
    assert (output / "round-2" / "train.yaml").exists() and "num_pairs: 4" in (output / "iterate.yaml").read_text()
    table = (output / "rounds.md").read_text().splitlines()
    assert [line.split("|")[1].strip() for line in table[2:]] == ["0 (start)", "1", "2"]
    capsys.readouterr()
    assert main(_args(tiny_model_dir, output)) == 0
    assert "[round 1/2] pairs" not in capsys.readouterr().err  # nothing redone


def test_a_failed_step_names_its_log(tiny_model_dir, tmp_path, capsys):
    output = tmp_path / "iter"
    assert main(_args(tiny_model_dir, output, "--reward", "no_such_module:f")) == 2
    err = capsys.readouterr().err
    assert "[round 1/2] pairs failed" in err and f"{output / 'round-1'}/pairs.log" in err
    assert not (output / "round-1" / "pairs.done").exists()


def test_a_round_trains_for_epochs_over_its_own_pairs_unless_max_steps_is_overridden(tmp_path):
    """The 24-step main job (until 2026-12-03) went over a round's 12 kept pairs four times: a round's
    length comes from its pairs (epochs_per_round), the recipe's max_steps is not carried over."""
    settings = yaml.safe_load((ROOT / "configs" / "recipes" / "smollm2-cpu.yaml").read_text())
    settings["training"]["max_steps"] = 24  # the main job until 2026-12-03
    recipe = str(tmp_path / "recipe.yaml")
    Path(recipe).write_text(yaml.safe_dump(settings))
    pairs, model_dir = tmp_path / "pairs.jsonl", tmp_path / "model"
    training = round_training(IterateConfig(recipe=recipe, epochs_per_round=2), "start", pairs, model_dir)
    assert (training.training.max_steps, training.training.num_train_epochs) == (-1, 2.0)
    assert training.data.train == [str(pairs)] and training.model.name_or_path == "start"
    assert training.training.output_dir == str(model_dir)
    chosen = IterateConfig(recipe=recipe, overrides=["training.max_steps=5"])
    assert round_training(chosen, "start", pairs, model_dir).training.max_steps == 5
