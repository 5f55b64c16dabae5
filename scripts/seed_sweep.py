"""Run the README's main job for several seeds and print each metric as mean ± std (baseline → trained).

    python scripts/seed_sweep.py --seeds 1 2 3 [--config configs/recipes/smollm2-cpu.yaml]

Each seed trains into runs/seed-N and is evaluated against the starting model with the same
settings as the README's command; the starting model's evaluation is computed once and cached.
A seed whose runs/seed-N/eval.json exists is only summarized.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

EVAL = ["--num-prompts", "64", "--max-new-tokens", "128"]
KEYS = [
    "mean_reward",
    "prompt_accuracy",
    "instruction_accuracy",
    "math_accuracy",
    "preference_accuracy",
    "margin",
    "logps_chosen",
    "mean_length",
    "win_rate",
    "tie_rate",
    "loss_rate",
    "kl_to_baseline",
    "ppl_density.mean",
    "ppl_density.peak",
]


def lookup(metrics: dict, key: str):
    """``metrics[key]``, where a dotted key reads a nested value; None when absent."""
    for part in key.split("."):
        if not isinstance(metrics, dict) or part not in metrics:
            return None
        metrics = metrics[part]
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--config", default="configs/recipes/smollm2-cpu.yaml")
    args = parser.parse_args()
    results, minutes = [], []
    for seed in args.seeds:
        out = f"runs/seed-{seed}"
        if not Path(out, "eval.json").exists():  # a finished seed is summarized, not rerun
            start = time.time()
            train = [
                "simper",
                "train",
                "--config",
                args.config,
                "--output-dir",
                out,
                "--seed",
                str(seed),
                "--overwrite",
            ]
            subprocess.run(train, check=True)
            subprocess.run(["simper", "eval", out, "--baseline", "smollm2-135m-instruct", *EVAL], check=True)
            minutes.append((time.time() - start) / 60)
        results.append(json.loads(Path(out, "eval.json").read_text()))
    baseline = results[0]["baseline"]
    print(f"| metric | starting model | after SimPER (mean ± std over seeds {args.seeds}) |")
    print("|---|---|---|")
    for key in KEYS:
        values = [lookup(r, key) for r in results]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        before = f"{lookup(baseline, key):.3f}" if lookup(baseline, key) is not None else "—"
        print(f"| {key} | {before} | {statistics.mean(values):.3f} ± {spread:.3f} |")
    if minutes:
        print(f"\nminutes per seed (train + eval): {', '.join(f'{m:.1f}' for m in minutes)}", file=sys.stderr)


if __name__ == "__main__":
    main()
