"""The other commands' configs: flat, one field per command-line flag (``--num-prompts`` = ``num_prompts``)."""

from __future__ import annotations

import dataclasses
import shlex
import sys
from dataclasses import dataclass
from typing import Any

from simper.config.fields import check_choices, choice_option, option
from simper.resources import prompt_file

BACKENDS = ("auto", "transformers", "vllm")
PROMPT_SPLITS = ("train", "heldout", "heldout-phrasing")
EVAL_SPLITS = ("both", "heldout", "heldout-phrasing")
EXPORTS = ("alpaca_eval", "arena_hard", "mt_bench")
TIE_BREAKS = ("degeneration", "none")


@dataclass
class PairsConfig:
    """``simper pairs``: sample k answers per prompt, score them, write best vs. worst."""

    output: str = option("", "pairs JSONL to write (appended to on a rerun, which skips prompts already handled)")
    model: str = option("smollm2-135m-instruct", "policy that samples: folder, hub id or alias")
    prompts: str | None = option(None, "prompt file (field 'prompt': string or messages); default: built-in tasks")
    num_prompts: int = option(100, "built-in task prompts to draw")
    split: str = choice_option("train", "built-in task split", PROMPT_SPLITS)
    reward: str = option("builtin", "builtin (task checkers), module:function, or a reward-model folder/hub id")
    num_samples: int = option(4, "responses sampled per prompt (k)")
    max_samples: int = option(
        0,
        "a prompt whose samples the reward scores all alike gets k more, until they differ or it has this many "
        "(0: k, no more)",
    )
    temperature: float = option(0.8, "sampling temperature")
    top_p: float = option(0.95, "nucleus sampling p")
    max_new_tokens: int = option(256, "response length cap")
    batch_size: int = option(64, "sequences decoded together")
    seed: int = option(0, "seed of prompt drawing and sampling")
    tie_break: str = choice_option(
        "degeneration",
        "between responses the reward scores alike, one that ended and does not loop beats one cut off or looping; "
        "none: such prompts are dropped as ties",
        TIE_BREAKS,
    )
    stop_loops: bool = option(
        True, "stop a sample caught in a repetition loop there, marked cut off (the rest would repeat it)"
    )
    backend: str = choice_option("auto", "decoder; auto = vLLM when installed and on a GPU", BACKENDS)
    trust_remote_code: bool = option(False, "allow code shipped with a hub model")

    def __post_init__(self) -> None:
        if not self.output:
            raise ValueError("output: the pairs file to write is required (--output FILE)")
        if self.num_samples < 2:
            raise ValueError(f"num_samples must be ≥ 2 to make a pair, got {self.num_samples}")
        if self.max_samples and self.max_samples < self.num_samples:
            raise ValueError(f"max_samples must be 0 or ≥ num_samples ({self.num_samples}), got {self.max_samples}")
        if self.max_samples > self.num_samples and self.temperature == 0:
            raise ValueError("max_samples: at temperature 0 every sample is the same greedy answer; more cannot differ")
        check_choices(self)


@dataclass
class EvalConfig:
    """``simper eval``: a model on held-out prompts and pairs, against a baseline."""

    model: str = option("", "model to evaluate: folder, hub id or alias")
    baseline: str | None = option(None, "model to compare against (its evaluation is cached)")
    output: str | None = option(None, "folder for the results (default: the model folder, else runs/eval-NAME)")
    prompts: str | None = option(
        None,
        "prompt file (built-in task rows, or any rows with 'prompt' given a reward), or 'handwritten' (96 prompts "
        "written by hand, in wording the built-in generator never uses); default: built-in prompts",
    )
    num_prompts: int = option(100, "built-in held-out prompts")
    pairs: list[str] = option([], "held-out pair files: is the chosen answer likelier? (default: the shipped ones)")
    num_pairs: int = option(0, "use only the first N held-out pairs (0: all)")
    max_new_tokens: int = option(256, "response length cap")
    batch_size: int = option(64, "sequences decoded together")
    seed: int = option(0, "seed of the built-in prompts")
    prompt_split: str = choice_option(
        "both",
        "built-in prompts: held out in training's wording, in wording training never saw, or half each, reported apart",
        EVAL_SPLITS,
    )
    diversity_prompts: int = option(16, "prompts also sampled 4 times to measure the diversity of samples (0: skip)")
    reward: str = option(
        "builtin",
        "what scores the answers: builtin (the task checkers), module:function, or a reward-model folder/hub id; "
        "with the last two, prompts can be any prompt file",
    )
    backend: str = choice_option("auto", "decoder; auto = vLLM when installed and on a GPU", BACKENDS)
    trust_remote_code: bool = option(False, "allow code shipped with a hub model")
    export: str | None = choice_option(
        None,
        "instead of evaluating, answer that benchmark's question file (prompts) and write the answer file its judge "
        "reads into output",
        EXPORTS,
    )
    model_id: str | None = option(None, "the model's name in exported answer files (default: its folder name)")

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model: the model to evaluate is required (simper eval MODEL)")
        check_choices(self)
        if self.prompts:
            self.prompts = prompt_file(self.prompts)

    def settings(self) -> dict[str, Any]:
        """What decides the results (what a cached baseline evaluation is keyed by)."""
        skip = ("model", "baseline", "output", "export", "model_id")
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}


@dataclass
class RunsConfig:
    """What ``simper compare`` and ``simper iterate`` share: the recipe every training run uses, and
    the evaluation each trained model gets against the starting model."""

    recipe: str | None = option(None, "training recipe (YAML) every run uses; default: simper train's defaults")
    overrides: list[str] = option(
        [], "dotted key=value changes to the recipe for every run, e.g. training.max_steps=10", whole_items=True
    )
    output: str = option("", "folder for the runs")
    num_prompts: int = option(100, "held-out prompts per evaluation")
    max_new_tokens: int = option(256, "evaluation response cap")
    num_pairs: int = option(0, "held-out pairs per evaluation (0: all)")
    eval_seed: int = option(
        1, "seed that draws the held-out prompts (simper eval's default 0 is kept for choosing recipes)"
    )
    prompt_split: str = choice_option(
        "both", "held-out prompts: in training's wording, in wording training never saw, or half each", EVAL_SPLITS
    )
    launcher: str | None = option(
        None, "command that runs Python for each run, e.g. 'accelerate launch --config_file ddp.yaml'"
    )

    def __post_init__(self) -> None:
        if not self.output:
            raise ValueError("output: the folder for the runs is required")
        bad = [item for item in self.overrides if "=" not in item or "." not in item.partition("=")[0]]
        if bad:
            raise ValueError(f"overrides: expected dotted key=value recipe changes, got {bad[0]!r}")
        if self.num_prompts < 1 or self.max_new_tokens < 1 or self.num_pairs < 0:
            raise ValueError("num_prompts and max_new_tokens must be ≥ 1 and num_pairs ≥ 0")
        check_choices(self)

    def launch(self) -> list[str]:
        """The command that runs ``simper`` for each step: the launcher, else this Python."""
        return [*(shlex.split(self.launcher) if self.launcher else [sys.executable]), "-m", "simper"]

    def evaluation(self) -> dict[str, Any]:
        """The :class:`EvalConfig` settings every evaluation gets."""
        return {
            "num_prompts": self.num_prompts,
            "max_new_tokens": self.max_new_tokens,
            "num_pairs": self.num_pairs,
            "seed": self.eval_seed,
            "prompt_split": self.prompt_split,
        }


@dataclass
class CompareConfig(RunsConfig):
    """``simper compare``: every (objective, seed) trained with the recipe and evaluated, then one report."""

    output: str = option("runs/compare", "folder for the runs and the report")
    objectives: list[str] = option(["simper", "dpo", "simpo", "ipo"], "objectives to train")
    seeds: list[int] = option([1, 2, 3], "training seeds; on the command line also a count: --seeds 3 = 1,2,3")
    tune_baselines: bool = option(False, "also run a small grid of each baseline's own hyperparameters")
    prompts: str | None = option(
        None,
        "prompt file every evaluation answers instead of the built-in held-out prompts (built-in task rows, or any "
        "rows with 'prompt' given a reward), or 'handwritten' (96 prompts written by hand)",
    )
    reward: str = option(
        "builtin", "what scores the answers: builtin (the task checkers), module:function, or a reward-model folder"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.objectives or not self.seeds:
            raise ValueError("objectives and seeds: at least one of each")

    def evaluation(self) -> dict[str, Any]:
        return {**super().evaluation(), "prompts": self.prompts, "reward": self.reward}


@dataclass
class IterateConfig(RunsConfig):
    """``simper iterate``: rounds of sampling pairs from the current model, training on them, evaluating."""

    output: str = option("runs/iterate", "folder for the rounds")
    num_prompts: int = option(128, "held-out prompts per evaluation")
    rounds: int = option(3, "rounds to run")
    prompts_per_round: int = option(400, "fresh built-in training prompts sampled per round")
    seed: int = option(0, "round r draws its prompts with seed + r")
    num_samples: int = option(4, "responses sampled per prompt (k)")
    max_samples: int = option(0, "more samples for a prompt whose k tie on the reward, up to this many (0: k)")
    pairs_max_new_tokens: int = option(256, "sampling length cap")
    epochs_per_round: float = option(
        1.0,
        "passes over the pairs each round keeps: the recipe's step count is sized to its own data, not to a "
        "round's (a dotted training.max_steps override still wins)",
    )
    reward: str = option("builtin", "reward of the pairs: builtin (task checkers), module:function, or a reward model")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rounds < 1 or self.prompts_per_round < 1:
            raise ValueError(
                f"rounds and prompts_per_round must be ≥ 1, got {self.rounds} and {self.prompts_per_round}"
            )
        if self.epochs_per_round <= 0:
            raise ValueError(f"epochs_per_round must be > 0, got {self.epochs_per_round}")

    def sampling(self) -> dict[str, Any]:
        """The :class:`PairsConfig` settings of every round's pairs."""
        return {
            "num_samples": self.num_samples,
            "max_samples": self.max_samples,
            "max_new_tokens": self.pairs_max_new_tokens,
            "reward": self.reward,
        }
