"""``simper eval``: what a model learned, on held-out prompts and held-out pairs.

- greedy generations on held-out task prompts, scored by the checkers: prompt-level and
  instruction-level accuracy, math accuracy, mean reward, mean response length;
- win rate against a baseline model by reward, ties counted apart;
- on held-out pairs, the share whose chosen response the model finds likelier (higher mean log-prob per
  token) than the rejected one, and the margin;
- the perplexity density of the model's own responses (the paper's figure), as data and a PNG.

Writes ``eval.json``, ``generations.jsonl`` and ``ppl_density.png`` into the output folder. A
baseline's results are cached under the simper cache, keyed by what loading its folder reads, the
settings and the files the evaluation reads (:func:`_cache_key`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simper import models
from simper.attention import layout_for
from simper.config import EvalConfig
from simper.data.collate import PairCollator, padding_free_on
from simper.data.pipeline import read_pairs
from simper.data.tokenize import TokenizedPair, tokenize_pairs
from simper.diversity import degeneration, is_looping, sample_diversity
from simper.generate import TransformersGenerator, encode_prompts, load_generator
from simper.intervals import prompt_interval
from simper.logprobs import sequence_logps
from simper.pairs import as_messages, check_templates, read_prompts
from simper.resources import HELDOUT_PAIRS
from simper.rewards import load_reward
from simper.tasks import make_tasks, score

PPL_BINS = 160
PPL_RANGE = (0.0, 8.0)  # log-perplexity grid shared by every model


def evaluate(config: EvalConfig) -> tuple[dict[str, Any], Path]:
    """``simper eval``: evaluate ``config.model`` and, with a baseline (its evaluation cached), compare
    the two prompt by prompt (reward gain with its interval, per wording too) and measure how far the
    model's greedy answers moved from it (:func:`kl_to_baseline`); write ``eval.json``,
    ``generations.jsonl`` and ``ppl_density.png``. Returns the metrics and the output folder."""
    from simper.report.plots import plot_ppl_density

    name = config.model
    output = Path(config.output or (name if os.path.isdir(name) else f"runs/eval-{Path(name).name}"))
    settings = config.settings()
    baseline = evaluate_cached(config.baseline, settings) if config.baseline else None
    metrics, rows = evaluate_model(name, **settings)
    curves = {Path(name).name: metrics["ppl_density"]}
    if baseline is not None:
        metrics["baseline"] = baseline[0]
        rows, comparison = compare_rewards(rows, baseline[1])
        metrics.update(comparison)
        for group, values in metrics.get("by_phrasing", {}).items():
            values.update(compare_rewards([r for r in rows if r.get("phrasing") == group], baseline[1])[1])
        metrics["kl_to_baseline"] = kl_to_baseline(config.baseline, rows, config.trust_remote_code)
        curves[f"baseline {Path(config.baseline).name}"] = baseline[0]["ppl_density"]
    write_results(output, metrics, rows)
    plot_ppl_density(curves, output / "ppl_density.png")
    return metrics, output


def evaluate_model(
    model_name: str,
    *,
    prompts: str | None = None,
    num_prompts: int = 100,
    pairs: list[str] | None = None,
    num_pairs: int = 0,
    max_new_tokens: int = 256,
    batch_size: int = 64,
    seed: int = 0,
    prompt_split: str = "both",
    diversity_prompts: int = 16,
    reward: str = "builtin",
    backend: str = "auto",
    trust_remote_code: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Evaluate one model; returns ``(metrics, generations)``. The prompt and pair files are read
    first, so a bad row stops the run before any generation.

    ``prompt_split`` picks the built-in prompts: ``heldout`` (training's wording, prompts it never
    saw), ``heldout-phrasing`` (wording it never saw) or ``both`` (half each, reported apart).
    ``diversity_prompts`` of them are also sampled 4 times each (temperature 0.8, top-p 0.95) to
    measure how diverse the model's samples are. ``reward`` scores the answers: ``builtin`` (the
    task checkers, for built-in task rows), ``module:function`` or a reward model, as in
    ``simper pairs``; with another reward than the checkers, any prompt file can be evaluated."""
    tokenizer = models.load_tokenizer(model_name, trust_remote_code=trust_remote_code)
    held_out, _ = read_pairs(pairs or [str(HELDOUT_PAIRS)], "test", [])
    held_out = held_out[:num_pairs] if num_pairs > 0 else held_out
    tasks = (
        read_prompts(prompts, tasks=reward == "builtin")
        if prompts
        else builtin_prompts(num_prompts, seed, prompt_split)
    )
    if prompts:
        check_templates(tokenizer, tasks, prompts)
    reward_name, reward_fn = load_reward(reward, trust_remote_code=trust_remote_code)  # before any generation
    generator = load_generator(model_name, backend, seed=seed, trust_remote_code=trust_remote_code)
    messages = [as_messages(task["prompt"]) for task in tasks]
    result = generator(tokenizer, messages, max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed)
    sampling = dict(num_samples=DIVERSITY_SAMPLES, temperature=0.8, top_p=0.95, batch_size=batch_size, seed=seed)
    diverse = [messages[i] for i in spread(tasks, diversity_prompts)]  # both wordings when both are asked
    samples = generator(tokenizer, diverse, max_new_tokens=max_new_tokens, **sampling).texts if diverse else []
    if isinstance(generator, TransformersGenerator):
        model = generator.model.eval()
    else:  # the vLLM engine leaves the GPU before the transformers model scores the responses
        generator.close()
        model = models.load_model(model_name, trust_remote_code=trust_remote_code).to(models.best_device()).eval()
    generations = [
        answer_row(task, texts[0], ids[0], ended[0], reward_name, reward_fn)
        for task, texts, ids, ended in zip(tasks, result.texts, result.ids, result.finished, strict=True)
    ]

    metrics: dict[str, Any] = {"model": model_name, "prompts": len(tasks), **answer_metrics(generations, samples)}
    metrics["samples_per_s"] = result.samples_per_s
    metrics["ppl_density"] = density(attach_log_ppl(generations, result, model, tokenizer, tasks))
    metrics.update(pair_metrics(model, tokenizer, held_out))
    return metrics, generations


def answer_metrics(generations: list[dict[str, Any]], samples: list[list[str]]) -> dict[str, Any]:
    """What the answers' texts show (reward, accuracy, loops, length; also per wording of the built-in
    prompts) and how diverse each prompt's samples are."""
    metrics = {**text_metrics(generations), **sample_diversity(samples)}
    groups = {row["phrasing"] for row in generations if "phrasing" in row}
    if groups:  # also when there is one: a report reads unseen wording's numbers under its name
        metrics["by_phrasing"] = {
            group: text_metrics([row for row in generations if row.get("phrasing") == group])
            for group in sorted(groups)
        }
    return metrics


def attach_log_ppl(generations: list[dict[str, Any]], result, model, tokenizer, tasks) -> list[float]:
    """Each answer's Σ log-prob, token count and log-perplexity, set on its row and returned: summed
    while decoding where the decoder gave them (the very tokens, no second pass), else scored once."""
    if result.logps is not None:
        scored = [(logps[0], len(ids[0])) for logps, ids in zip(result.logps, result.ids, strict=True)]
    else:
        scored = score_ids(model, prompt_ids(tokenizer, tasks), [g["token_ids"] for g in generations])
    log_ppl = [-total / count if count else math.nan for total, count in scored]
    for row, value, (total, count) in zip(generations, log_ppl, scored, strict=True):
        row.update(log_ppl=value, logp_sum=total, logp_tokens=count)
    return log_ppl


DIVERSITY_SAMPLES = 4


def spread(tasks: list[dict[str, Any]], count: int) -> list[int]:
    """Indices of ``count`` tasks for the diversity samples, taken in turn from each wording
    (``phrasing``) in list order: with both wordings asked for, half come from each (the first
    ``count`` would all be seen wording); with one, or prompts without a wording, the first ``count``."""
    groups: dict[Any, list[int]] = {}
    for index, task in enumerate(tasks):
        groups.setdefault(task.get("phrasing"), []).append(index)
    order = [index for turn in itertools.zip_longest(*groups.values()) for index in turn if index is not None]
    return sorted(order[:count])


def answer_row(task: dict[str, Any], text: str, ids: list[int], ended: bool, reward_name: str, reward_fn) -> dict:
    """One greedy answer as ``generations.jsonl`` holds it: the answer, its tokens, whether it ended
    and loops, and its reward (with each check's result for the built-in tasks)."""
    row = {"id": task["id"], "prompt": task["prompt"], "response": text, "tokens": len(ids), "finished": ended}
    row["token_ids"] = ids
    if reward_name == "builtin" and "kind" in task:
        checked = score(task, text)
        row.update(kind=task["kind"], reward=checked.reward, results=checked.results)
    elif reward_name != "builtin":
        row["reward"] = reward_fn(task, [text])[0]
    if "phrasing" in task:
        row["phrasing"] = task["phrasing"]
    row["looping"] = is_looping(text)
    return row


def builtin_prompts(count: int, seed: int, split: str) -> list[dict[str, Any]]:
    """``count`` held-out built-in prompts: of ``split``, or half of each held-out split for ``both``."""
    if split == "both":
        return make_tasks(count - count // 2, seed=seed, split="heldout") + make_tasks(
            count // 2, seed=seed, split="heldout-phrasing"
        )
    return make_tasks(count, seed=seed, split=split)


def text_metrics(generations: list[dict[str, Any]]) -> dict[str, float]:
    """Task accuracy, mean length, and the degeneration measures of a set of generations."""
    return {
        "prompts": len(generations),
        **task_metrics(generations),
        "mean_length": sum(g["tokens"] for g in generations) / max(len(generations), 1),
        **degeneration([g["response"] for g in generations], [g["finished"] for g in generations]),
    }


def task_metrics(generations: list[dict[str, Any]]) -> dict[str, float]:
    """IFEval-style prompt- and instruction-level accuracy, math accuracy, mean reward."""
    scored = [g for g in generations if "reward" in g]
    if not scored:
        return {}
    if not any("results" in g for g in scored):  # a reward model or function: its mean only
        return {"mean_reward": sum(g["reward"] for g in scored) / len(scored)}
    instructions = [g for g in scored if g.get("kind") == "instructions"]
    math_rows = [g for g in scored if g.get("kind") == "arithmetic"]
    checks = [ok for g in instructions for ok in g["results"].values()]
    return {
        "mean_reward": sum(g["reward"] for g in scored) / len(scored),
        "prompt_accuracy": sum(all(g["results"].values()) for g in instructions) / max(len(instructions), 1),
        "instruction_accuracy": sum(checks) / max(len(checks), 1),
        "math_accuracy": sum(g["reward"] for g in math_rows) / max(len(math_rows), 1),
    }


def prompt_ids(tokenizer, tasks: list[dict[str, Any]]) -> list[list[int]]:
    """Each task's prompt as the token ids generation starts from (chat template, generation prompt)."""
    return encode_prompts(tokenizer, [as_messages(task["prompt"]) for task in tasks])


def scoring_collator(model, pad_token_id: int, longest: int) -> tuple[PairCollator, torch.device]:
    """The collator of a scoring pass over sequences of at most ``longest`` tokens, batched as training
    batches on the model's device, and that device."""
    device = next(model.parameters()).device
    return PairCollator(pad_token_id, layout_for(model, "shared-prompt", longest), padding_free_on(device)), device


@torch.no_grad()
def score_ids(
    model, prompts: list[list[int]], responses: list[list[int]], batch_size: int = 16
) -> list[tuple[float, int]]:
    """``(Σ log π(response | prompt), tokens)`` of generated token ids, scored exactly as generated:
    a response that finished ends in its stop token, one cut off at ``max_new_tokens`` does not."""
    values = [(0.0, 0)] * len(responses)
    todo = [i for i, response in enumerate(responses) if response]
    longest = max((len(prompts[i]) + len(responses[i]) for i in todo), default=0)
    collate, device = scoring_collator(model, 0, longest)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]  # the rejected slot holds one token, not read
        batch = collate([TokenizedPair(prompts[i], responses[i], responses[i][:1]) for i in chunk]).to(device)
        sums, counts = sequence_logps(model, batch)
        for i, total, count in zip(chunk, sums.tolist(), counts.tolist(), strict=False):
            values[i] = (total, int(count))
    return values


def kl_to_baseline(baseline_name: str, rows: list[dict[str, Any]], trust_remote_code: bool = False) -> float:
    """How far the model's most likely answers moved from the baseline, in nats per response: the mean
    of Σ log π − Σ log π_base over the model's own greedy held-out generations, the same token ids
    scored by both models. Not a KL estimate (that needs answers sampled from π at temperature 1, and
    greedy answers are π's modes): it can be negative, and it grows with a sharper mode as well as
    with drift. The key keeps its first name, ``kl_to_baseline``, so older run folders still read."""
    tokenizer = models.load_tokenizer(baseline_name, trust_remote_code=trust_remote_code)
    baseline = models.load_model(baseline_name, trust_remote_code=trust_remote_code).to(models.best_device()).eval()
    scored = score_ids(baseline, prompt_ids(tokenizer, rows), [r["token_ids"] for r in rows])
    return sum(r["logp_sum"] - base for r, (base, _) in zip(rows, scored, strict=True)) / max(len(rows), 1)


def density(log_ppl: list[float]) -> dict[str, Any]:
    """Gaussian kernel density of log-perplexity on a fixed grid, and its peak (the paper's Figure 5).

    Bandwidth by Scott's rule (1.06 σ n^(-1/5)); the grid is shared by every model so curves compare.
    """
    finite = torch.tensor([v for v in log_ppl if math.isfinite(v)], dtype=torch.float64)
    if finite.numel() == 0:
        return {"bins": [], "density": [], "peak": None, "mean": None}
    width = (PPL_RANGE[1] - PPL_RANGE[0]) / PPL_BINS
    grid = torch.tensor([PPL_RANGE[0] + width * (i + 0.5) for i in range(PPL_BINS)], dtype=torch.float64)
    spread = float(finite.std()) if finite.numel() > 1 else 0.0
    bandwidth = max(1.06 * spread * finite.numel() ** -0.2, width)
    z = (grid[:, None] - finite[None, :]) / bandwidth
    dens = torch.exp(-0.5 * z**2).sum(1) / (finite.numel() * bandwidth * math.sqrt(2 * math.pi))
    return {
        "bins": grid.tolist(),
        "density": dens.tolist(),
        "peak": float(grid[int(dens.argmax())]),
        "peak_density": float(dens.max()),
        "mean": float(finite.mean()),
        "bandwidth": bandwidth,
    }


@torch.no_grad()
def pair_metrics(model, tokenizer, pairs: list, batch_size: int = 8) -> dict[str, float]:
    """On held-out pairs: the share whose chosen response has the higher mean log-prob per token
    (``chosen_likelier``: what the model itself prefers, whatever the objective's implicit reward —
    training's ``rewards/accuracies`` ranks by that reward instead), the mean margin and mean log-probs."""
    if not pairs:
        return {}
    longest = 1024  # prompt + response tokens of a held-out pair, the prompt at most half of them
    tokenized, _ = tokenize_pairs(pairs, tokenizer, max_length=longest, max_prompt_length=longest // 2)
    collate, device = scoring_collator(model, tokenizer.pad_token_id, longest)
    chosen, rejected = [], []
    for start in range(0, len(tokenized), batch_size):
        batch = collate(tokenized[start : start + batch_size]).to(device)
        half = batch.num_pairs
        sums, counts = sequence_logps(model, batch)
        chosen += (sums[:half] / counts[:half]).tolist()
        rejected += (sums[half:] / counts[half:]).tolist()
    n = max(len(chosen), 1)
    return {
        "pairs": len(chosen),
        "chosen_likelier": sum(c > r for c, r in zip(chosen, rejected, strict=True)) / n,
        "margin": sum(c - r for c, r in zip(chosen, rejected, strict=True)) / n,
        "logps_chosen": sum(chosen) / n,
        "logps_rejected": sum(rejected) / n,
    }


def compare_rewards(
    model_rows: list[dict[str, Any]], baseline_rows: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The model's rows, each with the baseline's reward and checks for its prompt (``baseline_reward``,
    ``baseline_results``), and per prompt the model's reward above, equal to, or below it; with the
    mean reward gain and its 95% interval over re-drawn prompts (:func:`simper.intervals.prompt_interval`)."""
    baseline = {row["id"]: row for row in baseline_rows if "reward" in row}
    rows = [
        {
            **row,
            "baseline_reward": baseline[row["id"]]["reward"],
            "baseline_results": baseline[row["id"]].get("results"),
        }
        if row["id"] in baseline
        else row
        for row in model_rows
    ]
    gains = np.array(
        [row["reward"] - row["baseline_reward"] for row in rows if "baseline_reward" in row and "reward" in row]
    )
    if gains.size == 0:
        return rows, {"win_rate": 0.0, "tie_rate": 0.0, "loss_rate": 0.0}
    return rows, {
        "compared_prompts": int(gains.size),  # prompts both answered: a gain on fewer than asked for shows here
        "win_rate": float((gains > 0).mean()),
        "tie_rate": float((gains == 0).mean()),
        "loss_rate": float((gains < 0).mean()),
        "reward_gain": float(gains.mean()),
        "reward_gain_ci95": prompt_interval(gains),
    }


CACHE_VERSION = 8  # bump when evaluation changes its results (2: decoding loop; 3: ids scored; 4: BOS;
# 5: phrasings; 6: preference_accuracy renamed chosen_likelier; 7: by_phrasing also for one wording;
# 8: diversity prompts from both wordings)


MODEL_FILES = (
    "config.json", "generation_config.json", "adapter_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "added_tokens.json", "chat_template.jinja", "chat_template.json", "vocab.json",
    "merges.txt", "tokenizer.model", "*.index.json", "*.tiktoken",
)  # fmt: skip
"""What loading a model folder reads besides its weights: the config, the generation config (its stop
tokens), the tokenizer and the chat template. A run's own outputs beside them (``eval.json``,
``metrics.jsonl``) are not read and do not count."""


def _fingerprint(path: Path, weights: bool = True) -> list:
    """A model folder as loading it sees it: its path, each weight file's name, size and modification
    time (ns) unless ``weights`` is off (a hub snapshot: its path names the commit, and loading adds
    the weights to it after the key is taken), and the contents of the other files it reads
    (:data:`MODEL_FILES`); nothing for a name that is not a folder."""
    if not path.is_dir():
        return []
    files = (sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin"))) if weights else []
    stamp = [(w.name, w.stat().st_size, w.stat().st_mtime_ns) for w in files]
    read = sorted({f for pattern in MODEL_FILES for f in path.glob(pattern)})
    return [str(path.resolve()), stamp, [(f.name, hashlib.sha256(f.read_bytes()).hexdigest()) for f in read]]


def _model_folder(name_or_path: str) -> tuple[Path, bool]:
    """Where loading reads the model from, and whether its weights are stamped in the key: its folder
    (stamped), or for a hub id the local snapshot of the revision loading would use now (its config
    and tokenizer files fetched, as loading does; the snapshot's folder is named by its commit, so an
    update upstream misses the cache). A hub id that can be neither reached nor found in the local
    hub cache keys by its name alone."""
    path = Path(name_or_path)
    if path.exists():
        return path, True
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name_or_path, allow_patterns=list(MODEL_FILES))), False
    except (OSError, ValueError):  # offline and not cached, no such repo, not a repo id
        return path, False


def _cache_key(model_name: str, settings: dict[str, Any]) -> str:
    """The model folder as loading reads it (weights stamped, the config, generation config, tokenizer
    and chat template by content), a reward-model folder the same way, the settings, and the contents
    of the prompt and pair files the evaluation reads: editing the held-out pairs, the stop tokens or
    the chat template must not return stale results; the reward by its code or its files
    (:func:`_reward_key`)."""
    inputs = [settings.get("prompts"), *(settings.get("pairs") or [str(HELDOUT_PAIRS)])]
    contents = [hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in inputs if f and Path(f).is_file()]
    reward = settings.get("reward")  # a reward-model folder, or builtin / module:function: a name
    raw = json.dumps(
        [
            CACHE_VERSION,
            model_name,
            _fingerprint(*_model_folder(models.resolve(model_name))),
            settings,
            contents,
            _reward_key(reward),
        ],
        sort_keys=True,
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def _reward_key(reward: str | None) -> list:
    """What the scores depend on besides the answers: the source of simper's task modules (they write
    the built-in prompts and check answers), and the reward itself: a ``module:function``'s module
    file (not what that module imports), or a reward model's folder or hub snapshot as
    :func:`_fingerprint` sees it. Editing a checker or one's own reward misses the cache instead of
    setting the baseline's old rewards beside the model's new ones."""
    files = sorted((Path(__file__).parent / "tasks").glob("*.py"))
    code = [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
    if not reward or reward == "builtin":
        return code
    module, sep, _ = reward.partition(":")
    if sep and not os.path.exists(reward):  # module:function, as load_reward tells them apart
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):  # not importable: loading the reward says so, clearly
            spec = None
        if spec is not None and spec.origin and os.path.isfile(spec.origin):
            code.append(hashlib.sha256(Path(spec.origin).read_bytes()).hexdigest())
        return code
    return [*code, _fingerprint(*_model_folder(reward))]


def evaluate_cached(model_name: str, settings: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """:func:`evaluate_model` for a baseline, reusing an earlier identical evaluation."""
    folder = models.cache_dir() / "eval" / _cache_key(model_name, settings)
    if (folder / "eval.json").exists():
        print(f"simper: baseline {model_name}: cached evaluation from {folder}", file=sys.stderr)
        rows = [json.loads(line) for line in (folder / "generations.jsonl").read_text().splitlines()]
        return json.loads((folder / "eval.json").read_text()), rows
    metrics, rows = evaluate_model(model_name, **settings)
    write_results(folder, metrics, rows)
    return metrics, rows


def write_results(folder: Path, metrics: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """``eval.json`` and ``generations.jsonl``, each written to a temporary name then renamed."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("generations.jsonl", "".join(json.dumps(r) + "\n" for r in rows)),
        ("eval.json", json.dumps(metrics, indent=2)),
    ):
        tmp = folder / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, folder / name)
