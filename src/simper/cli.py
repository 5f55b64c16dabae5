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

    pairs = commands.add_parser(
        "pairs",
        help="generate on-policy preference pairs with a reward",
        description="Sample k responses per prompt from a model, score them with a reward, and write the best "
        "(chosen) and worst (rejected) as a conversational pair; prompts whose samples tie are dropped. Rerunning "
        "with the same output skips prompts already handled.",
    )
    pairs.add_argument("--model", default="smollm2-135m-instruct", help="policy: folder, hub id or alias")
    pairs.add_argument("--output", required=True, help="pairs JSONL to write (appended to on a rerun)")
    pairs.add_argument("--prompts", help="prompt JSONL (field 'prompt': string or messages); default: built-in tasks")
    pairs.add_argument("--num-prompts", type=int, default=100, help="built-in task prompts to draw (default 100)")
    pairs.add_argument("--split", default="train", choices=["train", "heldout"], help="built-in task split")
    pairs.add_argument(
        "--reward", default="builtin", help="builtin (task checkers), module:function, or a reward-model folder/hub id"
    )
    pairs.add_argument("--num-samples", type=int, default=4, help="responses sampled per prompt (k, default 4)")
    pairs.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default 0.8)")
    pairs.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling p (default 0.95)")
    pairs.add_argument("--max-new-tokens", type=int, default=256, help="response length cap (default 256)")
    pairs.add_argument("--batch-size", type=int, default=64, help="sequences decoded together (default 64)")
    pairs.add_argument("--seed", type=int, default=0, help="seed of prompt drawing and sampling")
    pairs.add_argument("--trust-remote-code", action="store_true", help="allow code shipped with a hub model")
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


def run_pairs(args: argparse.Namespace) -> int:
    from simper.pairs import make_pairs

    options = {k: v for k, v in vars(args).items() if k != "command"}
    counts = make_pairs(**options)
    print(
        f"simper: {counts['pairs']} pairs written to {args.output}, {counts['ties']} prompts dropped as ties, "
        f"{counts['skipped']} skipped (done before)",
        file=sys.stderr,
    )
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
        return {"train": run_train, "pairs": run_pairs}[args.command](args)
    except UserError as err:
        print(f"simper: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("simper: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
