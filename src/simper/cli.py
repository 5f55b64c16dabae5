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
        "  simper train --config configs/recipes/smollm2-cpu.yaml training.learning_rate=5e-6 --objective dpo",
        "  accelerate launch --config_file configs/accelerate/ddp.yaml -m simper train --config my.yaml",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simper", description="Preference alignment of causal LMs with SimPER (and the baselines)."
    )
    parser.add_argument("--version", action="version", version=f"simper {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_train, _add_pairs, _add_eval, _add_compare, _add_iterate, _add_report):
        add(commands)
    return parser


def _add_train(commands) -> None:
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


def _add_pairs(commands) -> None:
    from simper.config import PairsConfig

    pairs = commands.add_parser(
        "pairs",
        help="generate on-policy preference pairs with a reward",
        description="Sample k responses per prompt from a model, score them with a reward, and write the best "
        "(chosen) and worst (rejected) as a conversational pair. A prompt whose k samples all score alike can get "
        "more (--max-samples); reward ties are then broken by degeneration (--tie-break), and prompts whose samples "
        "still tie are dropped. Rerunning with the same output skips prompts "
        "already handled. Every flag is also a config key (--num-prompts = num_prompts), settable in --config YAML "
        "or as key=value.",
    )
    pairs.add_argument("--config", metavar="YAML", help="settings file (keys as the flags, with underscores)")
    _add_config_flags(pairs, PairsConfig)
    pairs.add_argument("overrides", nargs="*", metavar="key=value", help="settings, e.g. num_samples=8")


def _add_eval(commands) -> None:
    from simper.config import EvalConfig

    evaluate = commands.add_parser(
        "eval",
        help="evaluate a model on held-out prompts and pairs",
        description="Greedy generations on held-out prompts (built-in: in training's wording and in wording "
        "training never saw, reported apart) scored by a reward, the gain over a baseline with a bootstrap "
        "interval, repetition loops and sample diversity, the log-ratio to the baseline on the greedy answers, "
        "how often the model finds the chosen answer likelier on held-out pairs and the perplexity density of "
        "the model's responses. "
        "Writes eval.json, generations.jsonl and ppl_density.png. With --export, writes a benchmark's answer "
        "file instead. Every flag is also a config key (--num-prompts = num_prompts), settable in --config YAML "
        "or as key=value.",
    )
    evaluate.add_argument("model", help="model folder, hub id or alias")
    evaluate.add_argument("--config", metavar="YAML", help="settings file (keys as the flags, with underscores)")
    _add_config_flags(evaluate, EvalConfig, skip=("model",))
    evaluate.add_argument("overrides", nargs="*", metavar="key=value", help="settings, e.g. num_prompts=256")


def _add_compare(commands) -> None:
    from simper.config import CompareConfig

    compare = commands.add_parser(
        "compare",
        help="train and evaluate several objectives with one recipe, then write a report",
        description="Train every (objective, seed) with the identical recipe and data order, evaluate each against "
        "the starting model, and write report.md, report.html and plots into the output folder. Each run is a "
        "sub-folder; a rerun skips finished runs and resumes interrupted ones. Dotted key=value "
        "(training.max_steps=10) change the recipe for every run; undotted ones (num_prompts=256) set compare's own "
        "settings, as the flags do.",
    )
    _add_runs_options(compare, CompareConfig, "the shared recipe (see configs/recipes/)")
    compare.add_argument(
        "--seeds",
        type=parse_seeds,
        default=argparse.SUPPRESS,
        help="a count (3 = seeds 1,2,3) or a comma list of seeds (default 1,2,3)",
    )


def _add_iterate(commands) -> None:
    from simper.config import IterateConfig

    iterate = commands.add_parser(
        "iterate",
        help="iterative on-policy rounds: sample pairs from the current model, train, evaluate, repeat",
        description="Round r samples pairs from the model of round r-1 (the recipe's model first) on fresh built-in "
        "training prompts, trains on them with the recipe, and evaluates against the starting model. Each step is "
        "skipped once done, so a rerun resumes. Dotted key=value change the recipe of every round's training; "
        "undotted ones set iterate's own settings, as the flags do.",
    )
    _add_runs_options(iterate, IterateConfig, "the training recipe of every round (see configs/recipes/)")


def _add_runs_options(parser: argparse.ArgumentParser, cls: type, recipe_help: str) -> None:
    """compare's and iterate's options: the recipe (--config), their own settings file and flags, and
    key=value items (dotted: the recipe; undotted: the command's settings)."""
    parser.add_argument("--config", metavar="YAML", help=recipe_help)
    parser.add_argument(
        "--settings", metavar="YAML", help="settings file (keys as the flags, with underscores; a run writes its own)"
    )
    _add_config_flags(parser, cls, skip=("recipe", "overrides", "seeds"))
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="training.learning_rate=1e-6 (recipe) or num_prompts=256"
    )


def parse_seeds(text: str) -> list[int]:
    """``3`` → seeds 1, 2, 3; ``7,11`` → seeds 7 and 11."""
    try:
        if "," in text:
            return [int(s) for s in text.split(",") if s.strip()]
        return list(range(1, int(text) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count (3) or a list (1,2,3), got {text!r}") from None


def _add_report(commands) -> None:
    report = commands.add_parser(
        "report",
        help="rebuild a comparison report from run folders",
        description="Read run folders (from simper compare or simper train + simper eval) and write report.md, "
        "report.html and the plots. Runs are grouped by objective and hyperparameters; mean ± std over seeds.",
    )
    report.add_argument("runs", nargs="+", help="run folders, or a compare output folder")
    report.add_argument("--output", help="folder for the report (default: the compare folder, else runs/report)")


def _add_config_flags(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of a command's config (``--num-prompts`` sets ``num_prompts``), with the
    field's help, choices and default; a flag left out leaves the value to ``--config`` and key=value."""
    import dataclasses
    import types
    import typing

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        hint = hints[f.name]
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        kind = next((a for a in typing.get_args(hint) if a is not type(None)), hint) if union else hint
        flag, text = "--" + f.name.replace("_", "-"), f.metadata.get("help", "")
        common = {"dest": f.name, "default": argparse.SUPPRESS}
        if kind is bool and default:
            parser.add_argument(f"--no-{flag[2:]}", action="store_false", help=f"turn off: {text}", **common)
        elif kind is bool:
            parser.add_argument(flag, action="store_true", help=text, **common)
        elif typing.get_origin(kind) is list:
            shown = f" (default {','.join(map(str, default))})" if default else ""
            text = f"{text}{shown}; repeat or comma-separate for several"
            parser.add_argument(flag, action="append", metavar="VALUE", help=text, **common)
        else:
            shown = "" if default in (None, "") else f" (default {default})"
            choices = f.metadata.get("choices")
            metavar = None if choices else f.name.upper()
            parser.add_argument(flag, type=kind, choices=choices, metavar=metavar, help=text + shown, **common)


def _config_from(args: argparse.Namespace, cls: type, **values):
    """The command's config: --config YAML, then key=value, then the flags given."""
    import dataclasses

    from simper.config import load_config

    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    return load_config(args.config, args.overrides, cls=cls, values={**flags, **values})


def _runs_config(args: argparse.Namespace, cls: type):
    """compare's or iterate's config: --settings YAML, then undotted key=value, then the flags; the recipe
    from --config; dotted key=value added to the recipe changes the settings file may already hold."""
    import dataclasses

    from simper.config import load_config

    own = [item for item in args.overrides if "." not in item.partition("=")[0]]
    changes = [item for item in args.overrides if "." in item.partition("=")[0]]
    names = [f.name for f in dataclasses.fields(cls) if f.name != "overrides"]  # args.overrides: every key=value
    flags = {name: getattr(args, name) for name in names if hasattr(args, name)}
    if args.config:
        flags["recipe"] = args.config
    config = load_config(args.settings, own, cls=cls, values=flags)
    try:
        return dataclasses.replace(config, overrides=[*config.overrides, *changes]) if changes else config
    except ValueError as err:
        raise UserError(str(err)) from None


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
    if int(os.environ.get("RANK", "0")) == 0:
        print(output)
    return 0


def run_pairs(args: argparse.Namespace) -> int:
    from simper.config import PairsConfig
    from simper.pairs import make_pairs

    config = _config_from(args, PairsConfig)
    counts = make_pairs(config)
    print(
        f"simper: {counts['pairs']} pairs written to {config.output} ({counts['tie_broken']} of them tie-broken), "
        f"{counts['ties']} prompts dropped as ties, "
        f"{counts['skipped']} skipped (done before)",
        file=sys.stderr,
    )
    if counts["redrawn"]:
        print(
            f"simper: {counts['tied_at_k']} prompts had all {config.num_samples} samples score alike; "
            f"{counts['redrawn']} got more samples (up to {config.max_samples}) and "
            f"{counts['split_by_redraw']} of them then scored apart",
            file=sys.stderr,
        )
    elif counts["samples"]:
        tied = counts["tied_at_k"]
        print(f"simper: {tied} prompts had all {config.num_samples} samples score alike", file=sys.stderr)
    if counts["samples"]:
        cut, loops = counts["cut_off"], counts["cut_off_looping"]
        print(
            f"simper: of {counts['samples']} samples, {cut / counts['samples']:.1%} cut off: "
            f"{loops / counts['samples']:.1%} in a repetition loop, {(cut - loops) / counts['samples']:.1%} "
            "long but sound (at --max-new-tokens)",
            file=sys.stderr,
        )
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from simper.compare import compare
    from simper.config import CompareConfig

    report = compare(_runs_config(args, CompareConfig))
    print(_first_table((report.parent / "report.md").read_text()))
    print(f"simper: report in {report} and {report.parent / 'report.md'}", file=sys.stderr)
    return 0


def run_iterate(args: argparse.Namespace) -> int:
    from simper.config import IterateConfig
    from simper.iterate import iterate

    path = iterate(_runs_config(args, IterateConfig))
    print(f"simper: rounds in {path}", file=sys.stderr)
    return 0


def run_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from simper.report import build_report

    folders, compare_folders = [], []
    for item in map(Path, args.runs):
        runs = sorted(d for d in item.glob("*/seed-*") if (d / "run.json").exists() or (d / "config.yaml").exists())
        if runs:  # a simper compare output folder
            folders += runs
            compare_folders.append(item)
        elif (item / "config.yaml").exists():
            folders.append(item)
        else:
            raise UserError(f"{item}: not a run folder (no config.yaml) nor a simper compare folder")
    output = Path(args.output or (compare_folders[0] if len(args.runs) == 1 and compare_folders else "runs/report"))
    report = build_report(folders, output)
    print(_first_table((output / "report.md").read_text()))
    print(f"simper: report in {report} and {output / 'report.md'}", file=sys.stderr)
    return 0


def _first_table(markdown: str) -> str:
    lines = markdown.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), len(lines))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "\n".join(lines[start:end])


def run_eval(args: argparse.Namespace) -> int:
    from simper.config import EvalConfig

    config = _config_from(args, EvalConfig, model=args.model)
    if config.export:
        from pathlib import Path

        from simper.export import export

        if not config.prompts:
            raise UserError(f"--export {config.export} needs the benchmark's question file as --prompts")
        path = export(
            config.model,
            config.prompts,
            config.export,
            Path(config.output or f"runs/answers-{config.export}"),
            model_id=config.model_id,
            max_new_tokens=config.max_new_tokens,
            batch_size=config.batch_size,
            backend=config.backend,
            trust_remote_code=config.trust_remote_code,
        )
        print(f"simper: {config.export} answers in {path}", file=sys.stderr)
        return 0
    from simper.evaluate import evaluate

    metrics, output = evaluate(config)
    print(format_eval_table(metrics))
    print(f"simper: results in {output}/eval.json, generations.jsonl, ppl_density.png", file=sys.stderr)
    return 0


EVAL_ROWS = (
    ("mean_reward", "mean reward (checker)"),
    ("prompt_accuracy", "instruction prompts fully followed"),
    ("instruction_accuracy", "instructions followed"),
    ("math_accuracy", "math accuracy"),
    ("chosen_likelier", "held-out pairs with the chosen answer likelier"),
    ("margin", "held-out margin (mean log-prob)"),
    ("logps_chosen", "held-out chosen mean log-prob"),
    ("mean_length", "mean response length (tokens)"),
    ("loop_share", "answers in a repetition loop"),
    ("cutoff_share", "answers cut off at the length cap"),
    ("distinct_2", "distinct-2 over all answers"),
    ("sample_distinct_2", "distinct-2 within 4 samples of a prompt"),
    ("kl_to_baseline", "greedy log-ratio to baseline (nats per response)"),
)
PHRASING_LABELS = {"seen": "training's wording", "unseen": "unseen wording"}


def format_eval_table(metrics: dict) -> str:
    """A short before/after table: metric, baseline (if any), model; then the reward gain overall and
    for each wording of the prompts."""
    baseline = metrics.get("baseline")
    lines = [f"{'metric':<42}{'baseline':>12}{'model':>12}" if baseline else f"{'metric':<42}{'model':>12}"]
    for key, label in EVAL_ROWS:
        if key not in metrics:
            continue
        before = (f"{baseline[key]:>12.3f}" if key in baseline else f"{'–':>12}") if baseline else ""
        lines.append(f"{label:<42}{before}{metrics[key]:>12.3f}")
    if baseline:
        lines.append(
            f"{'win / tie / loss vs baseline':<42}{'':>12}"
            f"{metrics['win_rate']:.2f}/{metrics['tie_rate']:.2f}/{metrics['loss_rate']:.2f}".rjust(12)
        )
    wordings = {PHRASING_LABELS.get(g, g): m for g, m in metrics.get("by_phrasing", {}).items()}
    overall = "all prompts"
    if len(wordings) == 1:  # every prompt in one wording: say which, once
        overall, wordings = f"all prompts ({next(iter(wordings))})", {}
    for label, values in [(overall, metrics), *wordings.items()]:
        if "reward_gain_ci95" in values:
            low, high = values["reward_gain_ci95"]
            gain = f"{values['reward_gain']:+.3f} [{low:+.3f}, {high:+.3f}]"
            compared = values.get("compared_prompts", values["prompts"])  # both models answered
            lines.append(f"{'reward gain, ' + label:<42}{gain:>24}  ({compared} prompts, 95% interval)")
        elif values is not metrics:
            lines.append(f"{'mean reward, ' + label:<42}{values['mean_reward']:>24.3f}  ({values['prompts']} prompts)")
    return "\n".join(lines)


def _quiet_libraries() -> None:
    """Our own progress output replaces the libraries' per-file bars and save-time notices."""
    import logging

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    logging.getLogger("accelerate").setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may stand anywhere among the flags, which argparse's positionals do not allow
    if args.command in ("train", "pairs", "eval", "compare", "iterate") and all(
        "=" in item and not item.startswith("-") for item in extra
    ):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _quiet_libraries()
    try:
        return {
            "train": run_train,
            "pairs": run_pairs,
            "eval": run_eval,
            "iterate": run_iterate,
            "compare": run_compare,
            "report": run_report,
        }[args.command](args)
    except UserError as err:
        print(f"simper: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("simper: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
