"""Config: YAML + dotted overrides, typed coercion, unknown keys with suggestions, shipped recipes valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from simper.config import TrainConfig, load_config, save_config
from simper.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  learning_rate: 1e-6\n  per_device_train_batch_size: 4\ndata:\n  train: [a.jsonl]\n")
    config = load_config(str(path), ["training.learning_rate=5e-7", "objective.name=dpo", "objective.params.beta=0.2"])
    assert config.training.learning_rate == 5e-7 and config.training.per_device_train_batch_size == 4
    assert config.data.train == ["a.jsonl"] and config.objective.params == {"beta": 0.2}
    assert load_config().objective.name == "simper"


def test_saved_config_loads_back(tmp_path):
    config = load_config(None, ["data.train=x.jsonl,y.jsonl", "training.bf16=true"])
    save_config(config, tmp_path / "config.yaml")
    assert load_config(str(tmp_path / "config.yaml")) == config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["training.learnin_rate=1"],
            r"unknown key training.learnin_rate; did you mean training.learning_rate\?",
        ),
        (
            ["model.learning_rate=1"],
            r"unknown key model.learning_rate; did you mean training.learning_rate\?",
        ),
        (
            ["training.per_device_train_batch_size=two"],
            r"per_device_train_batch_size: expected an integer, got 'two'",
        ),
        (["training.bf16=maybe"], r"training.bf16: expected true/false"),
        (["training.padding_free=maybe"], r"training.padding_free: expected true/false \| null, got 'maybe'"),
        (["objective.name=dpoo"], r"unknown objective 'dpoo'"),
        (["objective.params.beta=0.1"], r"simper has no such parameter"),
        (["data.max_prompt_length=600"], r"data.max_length \(512\) must exceed"),
        (["training.bf16=true", "training.fp16=true"], r"cannot both be on"),
        (["learning_rate"], r"expected key=value"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(UserError, match=message):
        load_config(None, overrides)


def test_bad_yaml_files(tmp_path):
    (tmp_path / "type.yaml").write_text("training:\n  max_steps: [1, 2]\n")
    with pytest.raises(UserError, match=r"type.yaml: training.max_steps: expected an integer"):
        load_config(str(tmp_path / "type.yaml"))
    (tmp_path / "broken.yaml").write_text("training:\n  max_steps: 1\n bad indent: [\n")
    with pytest.raises(UserError, match=r"broken.yaml:line \d+: invalid YAML"):
        load_config(str(tmp_path / "broken.yaml"))
    with pytest.raises(UserError, match="cannot read config"):
        load_config(str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_loads(path):
    config = load_config(str(path))
    assert isinstance(config, TrainConfig)
    if path.stem != "quickstart" and not path.stem.startswith("smollm2"):  # the paper's recipes
        t = config.training
        assert t.per_device_train_batch_size * t.gradient_accumulation_steps * 4 == 128 and t.bf16
        assert config.model.gradient_checkpointing and t.lr_scheduler_type == "cosine" and t.warmup_ratio == 0.1


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_every_accelerate_config_loads(path):
    from accelerate.commands.config.config_args import ClusterConfig

    cluster = ClusterConfig.from_yaml_file(str(path))
    assert cluster.distributed_type.value in ("MULTI_GPU", "FSDP", "DEEPSPEED") and cluster.num_processes >= 1


def test_command_flags_come_from_the_config_fields():
    from simper.cli import _config_from, build_parser
    from simper.config import EvalConfig, PairsConfig

    args = build_parser().parse_args(["eval", "m", "num_prompts=7", "--pairs", "a.jsonl", "--pairs", "b.jsonl"])
    config = _config_from(args, EvalConfig, model=args.model)
    assert config.pairs == ["a.jsonl", "b.jsonl"] and config.num_prompts == 7 and config.seed == 0
    args = build_parser().parse_args(["pairs", "--output", "p.jsonl", "--no-stop-loops", "--num-samples", "8"])
    config = _config_from(args, PairsConfig)
    assert (config.stop_loops, config.num_samples, config.tie_break) == (False, 8, "degeneration")
