"""Preference-step speed and memory: simper against TRL and a plain SFT step, same model, data and batch.

    pip install -e ".[bench]"          # TRL, for the benchmark only
    python benchmarks/step.py                              # SmolLM2, 4 pairs/step, all data shapes
    python benchmarks/step.py --data fixed-256 --contenders simper,trl-cpo-simpo --gradient-checkpointing on

Each (contender, data, gradient checkpointing) runs in its own subprocess, so peak memory is that
run's own: peak RSS on CPU, ``torch.cuda.max_memory_allocated`` on GPU. Every contender sees the
same token sequences: the texts are random words that are one token each, so TRL's tokenization and
ours give the same ids (the child checks the token count). The first step of each run is a warm-up
and is not timed; then ``--steps`` (default 3) steps are timed. With ``--rounds R`` (default 2) every
contender runs R times, the contenders taking turns (A B C A B C …), so a slow spell of a shared
machine falls on all of them alike; a contender's s/step is the median over all its timed steps,
its peak memory the largest of its runs. tokens/s counts the tokens of the pairs' two sequences
(2 · prompt + chosen + rejected, no padding) — the same number for every contender — over the median
step. Ratios are printed against TRL's CPOTrainer (SimPO loss, cpo_alpha 0: reference-free) and
against the SFT step, measured in the same run: compare ratios, not absolute numbers, on a shared
machine. The output file is replaced by this run's results (one run, one file), with the machine
and the allocator setting (``MALLOC_MMAP_THRESHOLD_``) it ran under.

Contenders:
  simper         our step as `simper train` runs it: shared-prompt rows, padding-free on CPU (padded on
                 a GPU), response-only chunked logits
  simper-compiled  the same with `training.compile` (torch.compile of each decoder layer; its warm-up step compiles)
  simper-padded  our step with shared-prompt rows padded into one call
  simper-padding-free  our step with one call per shared-prompt row, on any device
  simper-plain   our step with separate [prompt, chosen] / [prompt, rejected] rows padded into one call
  trl-cpo-simpo  TRL CPOTrainer, loss_type=simpo, cpo_alpha=0
  trl-dpo        TRL DPOTrainer, sigmoid loss, with its reference model
  sft            causal-LM forward + backward + AdamW on the same 2B padded sequences, full logits
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONTENDERS = ("simper", "simper-compiled", "simper-padded", "simper-padding-free", "simper-plain",
              "trl-cpo-simpo", "trl-dpo", "sft")  # fmt: skip
DATA = ("fixed-256", "fixed-512", "mixed")  # and any fixed-N: prompt, chosen and rejected N tokens each
PAIRS_PER_STEP = 4
OVER_CAP = 3  # a child's exit status when its memory passed --memory-cap-gb


# ------------------------------------------------------------------------------------------------
# data: the same pairs as text (TRL) and as token ids (ours, SFT)
# ------------------------------------------------------------------------------------------------


def single_token_words(tokenizer) -> list[tuple[str, int]]:
    """Lower-case words that are one token after a space (" word" → [id]), sorted for determinism."""
    candidates = sorted(
        token[1:]
        for token in tokenizer.get_vocab()
        if token.startswith("Ġ") and token[1:].isalpha() and token[1:].islower() and len(token) > 3
    )
    words = []
    for word in candidates[:4000]:
        ids = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            words.append((word, ids[0]))
    return words


def lengths(data: str, count: int, seed: int) -> list[tuple[int, int, int]]:
    """(prompt, chosen, rejected) token lengths; ``mixed`` draws UltraFeedback-like spreads."""
    if data.startswith("fixed-"):
        n = int(data.split("-")[1])
        return [(n, n, n)] * count
    rng = random.Random(seed)

    def draw(median: float, low: int, high: int) -> int:
        return int(min(max(rng.lognormvariate(math.log(median), 0.8), low), high))

    return [(draw(100, 16, 512), draw(200, 8, 512), draw(200, 8, 512)) for _ in range(count)]


def make_pairs(tokenizer, data: str, count: int, seed: int = 0):
    """``(texts, tokenized)``: the same pairs as prompt/chosen/rejected strings and as TokenizedPair."""
    from simper.data.tokenize import TokenizedPair

    words = single_token_words(tokenizer)
    rng = random.Random(seed)
    texts, tokenized = [], []
    for p, c, r in lengths(data, count, seed):
        pieces = [[rng.choice(words) for _ in range(n)] for n in (p, c - 1, r - 1)]  # responses end in EOS
        prompt, chosen, rejected = ("".join(" " + w for w, _ in piece) for piece in pieces)
        texts.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
        ids = [[i for _, i in piece] for piece in pieces]
        eos = tokenizer.eos_token_id
        tokenized.append(TokenizedPair(ids[0], ids[1] + [eos], ids[2] + [eos]))
    return texts, tokenized


# ------------------------------------------------------------------------------------------------
# one contender in this process
# ------------------------------------------------------------------------------------------------


def run_contender(args: argparse.Namespace) -> dict:
    import torch

    from simper.models import enable_checkpointing, load_model, load_tokenizer

    torch.manual_seed(0)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    tokenizer = load_tokenizer(args.model)
    steps = args.warmup + args.steps
    per_step = args.pairs_per_step
    texts, pairs = make_pairs(tokenizer, args.data, steps * per_step)
    batches = [pairs[i * per_step : (i + 1) * per_step] for i in range(steps)]
    tokens = [sum(2 * len(p.prompt) + len(p.chosen) + len(p.rejected) for p in batch) for batch in batches]
    dtype = "bfloat16" if args.bf16 else "float32"
    model = load_model(args.model, torch_dtype="float32").to(device).train()  # checkpointing acts in train mode only
    if args.gradient_checkpointing:
        enable_checkpointing(model)
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    if args.contender.startswith("trl-"):
        seconds = _trl_steps(args, model, tokenizer, texts, steps, tokens[0])
    else:
        seconds = _our_steps(args, model, tokenizer, batches, device, dtype)
    timed = seconds[args.warmup :]
    timed_tokens = sum(tokens[args.warmup :])
    result = {
        "contender": args.contender,
        "data": args.data,
        "gradient_checkpointing": args.gradient_checkpointing,
        "precision": dtype,
        "device": device,
        "step_seconds": timed,
        "warmup_seconds": seconds[: args.warmup],  # with simper-compiled, the compile time is in the first
        "s_per_step": sum(timed) / len(timed),
        "tokens_per_s": timed_tokens / sum(timed),
        "peak_gb": (
            torch.cuda.max_memory_allocated() / 1e9
            if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux
        ),
        "tokens_per_step": timed_tokens / len(timed),
    }
    if cuda:
        result["mfu"] = _mfu(model, timed_tokens / sum(timed))
    return result


def _our_steps(args, model, tokenizer, batches, device, dtype) -> list[float]:
    import torch

    from simper.attention import layout_for
    from simper.config import TrainingConfig
    from simper.data.collate import PairCollator, padding_free_on
    from simper.logprobs import SequenceLogpsModel
    from simper.models import compile_layers
    from simper.objectives import get_objective
    from simper.optim import build_optimizer
    from simper.train import preference_step

    if args.contender == "sft":  # a plain step: torch's default AdamW
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    else:  # as simper train builds it (fused on CPU and CUDA)
        hyper = TrainingConfig(learning_rate=1e-6)
        optimizer = build_optimizer(model, hyper, torch.device(device))
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=args.bf16)
    seconds = []
    if args.contender == "sft":
        collate = PairCollator(tokenizer.pad_token_id, "separate", padding_free=False)
    else:
        layout = layout_for(model, "separate" if args.contender == "simper-plain" else "shared-prompt")
        # `simper` batches as `simper train` does on this device (padding-free on CPU, padded on a GPU)
        padding_free = args.contender == "simper-padding-free" or (
            args.contender in ("simper", "simper-compiled") and padding_free_on(device)
        )
        collate = PairCollator(tokenizer.pad_token_id, layout, padding_free=padding_free)
        if args.contender == "simper-compiled":
            compile_layers(model)
        policy = SequenceLogpsModel(model)
        objective = get_objective("simper")
    for batch_pairs in batches:
        _sync(device)
        start = time.perf_counter()
        batch = collate(batch_pairs).to(device)
        with autocast:
            if args.contender == "sft":
                call = batch.calls[0]
                padding = call.attention_mask == 0 if call.attention_mask is not None else None
                labels = call.input_ids if padding is None else call.input_ids.masked_fill(padding, -100)
                loss = model(input_ids=call.input_ids, attention_mask=call.attention_mask, labels=labels).loss
            else:
                loss, _ = preference_step(policy, None, objective, {}, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def _trl_steps(args, model, tokenizer, texts, steps, first_step_tokens) -> list[float]:
    import torch
    from datasets import Dataset
    from torch.utils.data import SequentialSampler
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []

        def on_step_begin(self, *_, **__):
            _sync("cuda" if torch.cuda.is_available() else "cpu")
            self.start = time.perf_counter()

        def on_step_end(self, *_, **__):
            _sync("cuda" if torch.cuda.is_available() else "cpu")
            self.seconds.append(time.perf_counter() - self.start)

    longest = 16 + max(sum(len(t[key].split()) for key in ("prompt", "chosen", "rejected")) for t in texts)
    common = dict(
        output_dir=tempfile.mkdtemp(prefix="simper-bench-"),
        per_device_train_batch_size=args.pairs_per_step,
        max_steps=steps,
        learning_rate=1e-6,
        max_grad_norm=1.0,
        lr_scheduler_type="constant",
        report_to=[],
        save_strategy="no",
        logging_steps=10_000,
        use_cpu=not torch.cuda.is_available(),
        bf16=args.bf16,
        gradient_checkpointing=args.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        max_length=longest,  # nothing truncated: every contender sees the whole sequences
        dataloader_num_workers=0,
        seed=0,
    )
    dataset = Dataset.from_list(texts)
    if args.contender == "trl-cpo-simpo":
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        config = CPOConfig(loss_type="simpo", cpo_alpha=0.0, max_completion_length=longest, **common)
        trainer_class = CPOTrainer
    else:
        from trl import DPOConfig, DPOTrainer

        config = DPOConfig(loss_type=["sigmoid"], beta=0.1, **common)
        trainer_class = DPOTrainer

    class InOrder(trainer_class):  # the same batches as the other contenders, not a shuffle
        def _get_train_sampler(self, *_, **__):
            return SequentialSampler(self.train_dataset)

    clock = Clock()
    trainer = InOrder(model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=[clock])
    _check_trl_tokens(trainer.train_dataset, first_step_tokens, args.pairs_per_step)
    trainer.train()
    return clock.seconds


def _check_trl_tokens(dataset, expected: int, pairs_per_step: int) -> None:
    """TRL must see the same sequences (± a BOS and the EOS it may add): count its first batch's tokens."""
    rows = dataset.select(range(pairs_per_step))
    if "chosen_input_ids" in rows.column_names:  # CPO: prompt included in the chosen/rejected ids
        count = sum(len(r["chosen_input_ids"]) + len(r["rejected_input_ids"]) for r in rows)
    else:  # DPO: prompt and completions apart
        count = sum(
            2 * len(r["prompt_ids"]) + len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in rows if "prompt_ids" in r
        ) or sum(
            2 * len(r["prompt_input_ids"]) + len(r["chosen_input_ids"]) + len(r["rejected_input_ids"]) for r in rows
        )
    if abs(count - expected) > 4 * pairs_per_step:
        raise SystemExit(f"TRL tokenized the first batch to {count} tokens, ours to {expected}: not the same data")


def _mfu(model, tokens_per_s: float) -> float:
    """Model FLOPs utilisation on an H100/H200 (989 TFLOP/s dense bf16): 6 · parameters · tokens/s."""
    parameters = sum(p.numel() for p in model.parameters())
    return 6 * parameters * tokens_per_s / 989e12


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------------------
# the driver: one subprocess per run, then the tables
# ------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument(
        "--contenders",
        default=",".join(c for c in CONTENDERS if c != "simper-padding-free"),  # on a CPU, that is `simper`
        help=f"comma list of {', '.join(CONTENDERS)}",
    )
    parser.add_argument("--data", default=",".join(DATA), help=f"comma list of {', '.join(DATA)}")
    parser.add_argument("--gradient-checkpointing", choices=("off", "on", "both"), default="both")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per run (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2, help="runs per contender, contenders taking turns")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for every contender")
    parser.add_argument("--pairs-per-step", type=int, default=PAIRS_PER_STEP)
    parser.add_argument(
        "--memory-cap-gb", type=float, default=0.0, help="stop a run whose resident memory passes this (0: no cap)"
    )
    parser.add_argument(
        "--output", default="benchmarks/results/step.jsonl", help="one JSON line per contender, replaced by this run"
    )
    parser.add_argument("--run", dest="contender", help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.contender:
        args.gradient_checkpointing = args.gradient_checkpointing == "on"
        if args.memory_cap_gb:
            watch_memory(args.memory_cap_gb)
        print("RESULT " + json.dumps(run_contender(args)), flush=True)
        return

    checkpointing = {"off": ["off"], "on": ["on"], "both": ["off", "on"]}[args.gradient_checkpointing]
    runs: dict[tuple[str, str, str], list[dict]] = {}
    for gc in checkpointing:
        for data in args.data.split(","):
            for round_number in range(1, args.rounds + 1):
                for contender in args.contenders.split(","):
                    result = _child(args, contender, data, gc)
                    if result is None:
                        continue
                    runs.setdefault((gc, data, contender), []).append(result)
                    print(
                        f"{contender:15s} {data:9s} gc={gc:3s} round {round_number}: "
                        f"{statistics.median(result['step_seconds']):7.2f} s/step (median)  "
                        f"warm-up {sum(result['warmup_seconds']):6.1f} s  peak {result['peak_gb']:6.2f} GB",
                        flush=True,
                    )
    results = [pool(group) for group in runs.values()]
    if not results:
        sys.exit("every contender failed; the results file is left as it was")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_text("".join(json.dumps({**r, **machine()}) + "\n" for r in results))
    tmp.replace(output)
    print()
    print(table(results))


def _child(args: argparse.Namespace, contender: str, data: str, gc: str) -> dict | None:
    """One contender run in its own process; its result, or None (said) when it failed."""
    done, result = run_child(
        args.model,
        contender,
        data,
        gc=gc,
        steps=args.steps,
        warmup=args.warmup,
        pairs_per_step=args.pairs_per_step,
        bf16=args.bf16,
    )
    if result is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        print(f"{contender} {data} gc={gc}: failed: {' | '.join(tail)}", flush=True)
    return result


def run_child(
    model: str,
    contender: str,
    data: str,
    *,
    gc: str,
    steps: int,
    warmup: int,
    pairs_per_step: int,
    bf16: bool = False,
    memory_cap_gb: float = 0.0,
) -> tuple[subprocess.CompletedProcess, dict | None]:
    """Run one contender in a child process of this script: the finished process and its result
    (None when it failed or passed ``memory_cap_gb``: exit status :data:`OVER_CAP`)."""
    command = [sys.executable, __file__, "--run", contender, "--data", data, "--model", model]
    command += ["--gradient-checkpointing", gc, "--steps", str(steps), "--warmup", str(warmup)]
    command += ["--pairs-per-step", str(pairs_per_step), "--memory-cap-gb", str(memory_cap_gb)]
    command += ["--bf16"] if bf16 else []
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        return done, None
    return done, json.loads(lines[-1][len("RESULT ") :])


def watch_memory(cap_gb: float, every_s: float = 0.005) -> None:
    """End this process with status :data:`OVER_CAP` as soon as its resident memory passes ``cap_gb``:
    a cap like a container's memory limit, read from ``/proc/self/statm`` every ``every_s`` seconds
    by a daemon thread (the step's kernels release the GIL, so it keeps reading during them)."""
    import threading

    page = os.sysconf("SC_PAGE_SIZE")

    def watch() -> None:
        with open("/proc/self/statm") as statm:
            while True:
                statm.seek(0)
                if int(statm.read().split()[1]) * page > cap_gb * 1e9:
                    print(f"OVER_CAP {cap_gb}", flush=True)
                    os._exit(OVER_CAP)
                time.sleep(every_s)

    threading.Thread(target=watch, daemon=True).start()


def pool(runs: list[dict]) -> dict:
    """One contender's runs as one result: the median step over all timed steps (time, and tokens/s
    at the mean tokens per step — every run sees the same batches), the largest peak."""
    steps = [s for run in runs for s in run["step_seconds"]]
    median = statistics.median(steps)
    result = {k: v for k, v in runs[0].items() if k != "mfu"}
    return {
        **result,
        "runs": len(runs),
        "step_seconds": steps,
        "warmup_seconds": [s for run in runs for s in run.get("warmup_seconds", [])],
        "s_per_step": median,
        "tokens_per_s": runs[0]["tokens_per_step"] / median,
        "peak_gb": max(run["peak_gb"] for run in runs),
    }


def machine() -> dict:
    """What the numbers were measured on."""
    import platform

    import torch

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in _read("/proc/cpuinfo").splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def table(results: list[dict]) -> str:
    """Markdown table with ratios to TRL CPO-SimPO and to the SFT step of the same data and setting."""
    lines = [
        "| data | grad ckpt | run | s/step (median) | tokens/s | peak GB "
        "| tokens/s ÷ TRL CPO-SimPO | peak ÷ TRL CPO-SimPO | tokens/s ÷ SFT |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        same = {
            r["contender"]: r
            for r in results
            if r["data"] == result["data"] and r["gradient_checkpointing"] == result["gradient_checkpointing"]
        }
        cpo, sft = same.get("trl-cpo-simpo"), same.get("sft")

        def ratio(key: str, other: dict | None, result=result) -> str:
            return f"{result[key] / other[key]:.2f}×" if other else "–"

        lines.append(
            f"| {result['data']} | {'on' if result['gradient_checkpointing'] else 'off'} | {result['contender']} "
            f"| {result['s_per_step']:.2f} | {result['tokens_per_s']:.0f} | {result['peak_gb']:.2f} "
            f"| {ratio('tokens_per_s', cpo)} | {ratio('peak_gb', cpo)} | {ratio('tokens_per_s', sft)} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
