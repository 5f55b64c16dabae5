"""The command line: a thin map from subcommand to library function."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap

from simper import __version__
from simper.errors import UserError
from simper.objectives import REGISTRY

# Plain flags and the dotted config key each one sets.
TRAIN_FLAGS = {
    "--model": ("model.name_or_path", "model folder, hub id or alias"),
    "--data": ("data.train", "training source; repeat or comma-separate to mix several"),
    "--eval-data": ("data.eval", "held-out source; repeat or comma-separate for several"),
    "--objective": ("objective.name", f"one of: {', '.join(REGISTRY)}"),
    "--output-dir": ("training.output_dir", "run folder"),
    "--learning-rate": ("training.learning_rate", "peak learning rate"),
    "--max-steps": ("training.max_steps", "optimizer steps to run"),
    "--seed": ("training.seed", "random seed"),
}


def _train_help() -> str:
    from simper.config import field_docs

    lines = ["config keys (set in --config YAML or as key=value):"]
    for key, type_label, default, help_text in field_docs():
        lines.append(f"  {key} ({type_label}, default {default!r})")
        lines += textwrap.wrap(help_text, width=88, initial_indent="      ", subsequent_indent="      ")
    lines += [
        "",
        "examples:",
        "  simper train --model ./my-sft-model --data pairs.jsonl --output-dir runs/first",
        "  simper train --config configs/recipes/tiny.yaml training.learning_rate=5e-6 --objective dpo",
        "  accelerate launch --num_processes 2 -m simper train --config my.yaml",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simper", description="Preference alignment of causal LMs with SimPER (and the baselines)."
    )
    parser.add_argument("--version", action="version", version=f"simper {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser(
        "train",
        help="train a model on preference pairs",
        description="Train a causal LM on pairwise preference data. Flags set the config keys named "
        "beside them; any config key can also be given as key=value.",
        epilog=_train_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("--config", metavar="YAML", help="config file (see configs/recipes/)")
    for flag, (key, help_text) in TRAIN_FLAGS.items():
        repeat = key in ("data.train", "data.eval")
        train.add_argument(flag, action="append" if repeat else "store", metavar="VALUE", help=f"{help_text} [{key}]")
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint [training.resume]")
    train.add_argument("--overwrite", action="store_true", help="replace a non-empty run folder [training.overwrite]")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. training.bf16=true")
    return parser


def run_train(args: argparse.Namespace) -> int:
    from simper.config import load_config

    overrides = []
    for flag, (key, _) in TRAIN_FLAGS.items():
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            overrides.append(f"{key}={','.join(value) if isinstance(value, list) else value}")
    overrides += [f"training.{name}=true" for name in ("resume", "overwrite") if getattr(args, name)]
    config = load_config(args.config, [*args.overrides, *overrides])

    from simper.train import train

    output = train(config)
    print(output)
    return 0


def _quiet_libraries() -> None:
    """Our own progress output replaces the libraries' per-file bars and save-time notices."""
    import logging

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    logging.getLogger("accelerate").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    try:
        return {"train": run_train}[args.command](args)
    except UserError as err:
        print(f"simper: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("simper: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
