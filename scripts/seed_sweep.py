"""Run the README's main job for several seeds: each metric as mean ± std (start → trained), the
mean reward gain with 95% intervals per seed and over all seeds — for all prompts, for those in the
training wording and for those in wording training never saw — and, on the unseen wording, the
checks met per constraint family.

    python scripts/seed_sweep.py --seeds 1 2 3 [--config configs/recipes/smollm2-cpu.yaml]

Each seed trains into runs/seed-N (skipped when the model is there) and is evaluated against the
starting model into runs/seed-N/eval-W-P-S-Q (prompt split W, P held-out prompts drawn with seed S,
Q held-out pairs; skipped when done). The default evaluation, 256 prompts of prompt seed 1 (half
in each wording), was not used to choose the recipe (that was 64 prompts of seed 0). The starting
model's evaluation is cached. The interval over all seeds resamples both the seeds and the
prompts, so it covers both noises.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from simper.evaluate import bootstrap_interval

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
    "loop_share",
    "cutoff_share",
    "distinct_2",
    "sample_distinct_2",
    "sample_unique_share",
    "by_phrasing.seen.mean_reward",
    "by_phrasing.seen.prompt_accuracy",
    "by_phrasing.seen.math_accuracy",
    "by_phrasing.unseen.mean_reward",
    "by_phrasing.unseen.prompt_accuracy",
    "by_phrasing.unseen.instruction_accuracy",
    "by_phrasing.unseen.math_accuracy",
    "by_phrasing.unseen.loop_share",
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
    parser.add_argument("--num-prompts", type=int, default=256, help="held-out prompts per evaluation")
    parser.add_argument("--prompt-seed", type=int, default=1, help="seed that draws the held-out prompts")
    parser.add_argument("--num-pairs", type=int, default=0, help="held-out pairs scored (0: all)")
    parser.add_argument("--prompt-split", default="both", help="simper eval --prompt-split (default both)")
    args = parser.parse_args()
    evaluation = ["--num-prompts", str(args.num_prompts), "--seed", str(args.prompt_seed), "--max-new-tokens", "128"]
    evaluation += ["--prompt-split", args.prompt_split]
    evaluation += ["--num-pairs", str(args.num_pairs)] if args.num_pairs else []
    results, per_prompt, minutes = [], [], []
    for seed in args.seeds:
        out = f"runs/seed-{seed}"
        report = Path(out, f"eval-{args.prompt_split}-{args.num_prompts}-{args.prompt_seed}-{args.num_pairs or 'all'}")
        start = time.time()
        if not Path(out, "model.safetensors").exists():
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
        if not Path(report, "eval.json").exists():
            command = ["simper", "eval", out, "--baseline", "smollm2-135m-instruct", "--output", str(report)]
            subprocess.run([*command, *evaluation], check=True)
            minutes.append((time.time() - start) / 60)
        results.append(json.loads(Path(report, "eval.json").read_text()))
        per_prompt.append([json.loads(line) for line in Path(report, "generations.jsonl").read_text().splitlines()])
    baseline = results[0]["baseline"]
    print(f"| metric | starting model | after SimPER (mean ± std over seeds {args.seeds}) |")
    print("|---|---|---|")
    for key in KEYS:
        values = [lookup(r, key) for r in results]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        before = f"{lookup(baseline, key):.3f}" if lookup(baseline, key) is not None else "—"
        print(f"| {key} | {before} | {statistics.mean(values):.3f} ± {spread:.3f} |")
    print("\nmean reward gain over the starting model, 95% interval by a paired bootstrap over prompts:")
    for seed, r in zip(args.seeds, results, strict=True):
        low, high = r["reward_gain_ci95"]
        print(f"  seed {seed}: {r['reward_gain']:+.3f} [{low:+.3f}, {high:+.3f}]")
    for group in ("all", "seen", "unseen"):
        gains = np.array(
            [
                [row["reward"] - row["baseline_reward"] for row in rows if group in ("all", row.get("phrasing"))]
                for rows in per_prompt
            ]
        )
        if gains.size:
            low, high = bootstrap_interval(gains)
            print(
                f"  all seeds, {group} prompts ({gains.shape[1]}): {gains.mean():+.3f} [{low:+.3f}, {high:+.3f}] "
                "(seeds and prompts both resampled)"
            )
    families = {}  # constraint family -> per seed, (checks met by the model, by the start, total)
    for seed_rows in per_prompt:
        for row in seed_rows:
            if row.get("phrasing") != "unseen" or row.get("kind") != "instructions":
                continue
            base = row["baseline_results"]
            for key, ok in row["results"].items():
                family = key.split(":", 1)[1]
                families.setdefault(family, [0, 0, 0])
                families[family][0] += ok
                families[family][1] += base[key]
                families[family][2] += 1
    if families:
        seeds = len(per_prompt)
        print(f"\nheld-out wording, checks met per constraint family, summed over {seeds} seeds (start → trained):")
        for family, (after, before, total) in sorted(families.items(), key=lambda kv: kv[1][0] - kv[1][1]):
            print(f"  {family:18s} {before:4d} → {after:4d} of {total}")
    if minutes:
        print(f"minutes per seed (train + eval): {', '.join(f'{m:.1f}' for m in minutes)}", file=sys.stderr)


if __name__ == "__main__":
    main()
