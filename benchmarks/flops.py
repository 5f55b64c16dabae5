"""The FLOP ceiling on the step benchmark's speed ratios: what each contender's step computes.

    python benchmarks/flops.py                       # SmolLM2, step.py's batches, ratios beside step.jsonl's

For the batches `benchmarks/step.py` times (the same lengths, 4 pairs a step, the steps after the
warm-up), count the floating-point operations of the matrix products each contender's step runs on
a CPU: the decoder layers' linear maps (2 · in · out a token), attention's two products over every
score the kernel computes (4 · scores · heads · head_dim a layer), the LM head (2 · hidden ·
vocabulary a position), backward as twice the forward (attention's 2.5 times: torch's CPU flash
kernel recomputes the scores in backward), and with gradient checkpointing one more forward of the
decoder layers. Norms, activations, the softmax and the optimizer are left out (element-wise).

Which scores a kernel computes: given a mask, all of them. Told only "causal" (no mask), torch's CPU
kernel takes keys in blocks of 512 and skips only the whole blocks past a block of queries: at 512
positions or fewer it computes every score, at 1,024 three quarters.

- ``simper``: one shared-prompt row a pair (prompt, chosen, rejected: P + C + R positions, one call
  per row, as on a CPU) with its mask; the head only at the C + R response positions, and recomputed
  once in backward (the chunked head keeps no logits).
- ``trl-cpo-simpo``: TRL's CPOTrainer puts [BOS, prompt, chosen] and [BOS, prompt, rejected] (BOS if
  the model has one) in 2B rows padded to the longest of them (a mask when any row is padded,
  "causal" when none is) and runs the head at every position of every row.
- ``simper-ideal``: not measured; see :func:`step_flops`.

If two steps ran at the same FLOP rate, their tokens/s would stand in the inverse ratio of their
counts: that ratio is the ceiling this prints, beside the measured ratio from ``--results`` and the
share of the ceiling it reaches. A target above the ceiling asks one step to run faster per FLOP than
the other, not to do less work.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step import PAIRS_PER_STEP, lengths  # the step benchmark's own pair lengths

CONTENDERS = ("simper", "trl-cpo-simpo", "simper-split", "simper-ideal")  # the ceiling: TRL's count over simper's


def shape(model: str) -> dict[str, int]:
    """The sizes the count needs, from the model's config (no weights loaded)."""
    from transformers import AutoConfig

    from simper.models import resolve, text_config

    config = text_config(AutoConfig.from_pretrained(resolve(model)))
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return {
        "hidden": config.hidden_size,
        "layers": config.num_hidden_layers,
        "heads": heads,
        "kv_heads": getattr(config, "num_key_value_heads", None) or heads,
        "head_dim": head_dim,
        "intermediate": config.intermediate_size,
        "vocab": config.vocab_size,
        "bos": int(getattr(config, "bos_token_id", None) is not None),  # TRL puts a BOS before each row
    }


def forward_flops(m: dict[str, int], positions: int, scores: int) -> tuple[float, float]:
    """``(decoder layers, attention)`` forward FLOPs for ``positions`` positions whose attention
    kernels compute ``scores`` (query, key) scores."""
    q_out, kv_out = m["heads"] * m["head_dim"], m["kv_heads"] * m["head_dim"]
    per_token = 2 * (m["hidden"] * (2 * q_out + 2 * kv_out) + 3 * m["hidden"] * m["intermediate"])
    return m["layers"] * per_token * positions, m["layers"] * 4 * scores * q_out


def causal(length: int, kv_block: int = 512) -> int:
    """Scores torch's CPU flash kernel computes for a row told only "causal": keys go in blocks of
    ``kv_block``, and a block of queries skips only the whole key blocks that start after its last
    query (query blocks of 256 from 768 positions on, 64 from 192, else 32)."""
    q_block = min(256 if length >= 768 else 64 if length >= 192 else 32, length)
    kv_block = min(kv_block, length)
    scores = 0
    for start in range(0, length, q_block):
        queries = min(q_block, length - start)
        last_key = start + queries  # the keys this block may see end here
        scores += queries * min(length, -(-last_key // kv_block) * kv_block)
    return scores


def visible(length: int) -> int:
    """Scores a kernel that skips every masked one computes on a causal row of ``length``."""
    return length * (length + 1) // 2


def step_flops(
    m: dict[str, int], contender: str, batch: list[tuple[int, int, int]], checkpointing: bool
) -> dict[str, float]:
    """FLOPs of one training step on ``batch`` ((prompt, chosen, rejected) lengths), forward and
    backward, by part: ``layers`` (the decoder's linear maps), ``attention``, ``head``.

    Two steps that do not exist, counted to show what is left to win (not measured):
    ``simper-split`` is simper's step with the shared-prompt row's attention in two calls to the same
    CPU kernel: [prompt, chosen] told "causal", and the rejected response's queries against
    [prompt, rejected] keys with a mask. ``simper-ideal`` has an attention kernel that skips every
    masked score and a head that keeps its logits for backward: no less work than the pair needs."""
    head_per_position = 2 * m["hidden"] * m["vocab"]
    body = attention = head = 0.0
    if contender.startswith("simper"):  # one row a pair, no padding; head at response positions
        for p, c, r in batch:
            if contender == "simper":  # the shared-prompt mask goes to the kernel: every score computed
                scores, head_passes = (p + c + r) ** 2, 4  # the chunked head recomputes its logits in backward
            elif contender == "simper-split":
                scores, head_passes = causal(p + c) + r * (p + r), 4
            elif contender == "simper-ideal":  # each response sees the prompt and itself
                scores, head_passes = visible(p) + c * p + visible(c) + r * p + visible(r), 3
            else:
                raise ValueError(f"no count for {contender}")
            layers, attn = forward_flops(m, p + c + r, scores)
            body, attention = body + layers, attention + attn
            head += head_passes * head_per_position * (c + r)
    elif contender == "trl-cpo-simpo":  # 2B rows padded to the longest; head everywhere
        bos = m.get("bos", 0)
        longest = bos + max(p + max(c, r) for p, c, r in batch)
        rows = 2 * len(batch)
        unpadded = len({p + n for p, c, r in batch for n in (c, r)}) == 1  # every row as long: no mask passed
        layers, attn = forward_flops(m, longest, causal(longest) if unpadded else longest**2)
        body, attention = rows * layers, rows * attn
        head = 3 * head_per_position * rows * longest
    else:
        raise ValueError(f"no count for {contender}")
    recompute = 1 if checkpointing else 0  # the layers' forward, once more
    return {"layers": (3 + recompute) * body, "attention": (3.5 + recompute) * attention, "head": head}


def measured(path: Path) -> dict[tuple[str, bool, str], float]:
    """tokens/s by (data, checkpointing, contender) from a step.py results file, if there is one."""
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {(r["data"], r["gradient_checkpointing"], r["contender"]): r["tokens_per_s"] for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--data", default="fixed-256,mixed")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (as step.py ran them)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--pairs-per-step", type=int, default=PAIRS_PER_STEP)
    parser.add_argument("--results", default="benchmarks/results/step.jsonl", help="step.py's measured ratios")
    args = parser.parse_args()

    m = shape(args.model)
    speeds = measured(Path(args.results))
    per_step = args.pairs_per_step
    ceilings, splits = [], []
    for data in args.data.split(","):
        drawn = lengths(data, (args.warmup + args.steps) * per_step, 0)
        batches = [drawn[i * per_step : (i + 1) * per_step] for i in range(args.warmup, args.warmup + args.steps)]
        for checkpointing in (False, True):
            gc = "on" if checkpointing else "off"
            parts = {}
            for contender in CONTENDERS:
                counts = [step_flops(m, contender, batch, checkpointing) for batch in batches]
                parts[contender] = {part: sum(c[part] for c in counts) / len(counts) for part in counts[0]}
                total = sum(parts[contender].values())
                shares = " | ".join(f"{value / total:.0%}" for value in parts[contender].values())
                splits.append(f"| {data} | {gc} | {contender} | {total / 1e9:,.0f} | {shares} |")
            ours, theirs, split, ideal = (sum(parts[c].values()) for c in CONTENDERS)
            ceiling = theirs / ours
            key = (data, checkpointing)
            if (*key, "simper") in speeds and (*key, "trl-cpo-simpo") in speeds:
                ratio = speeds[(*key, "simper")] / speeds[(*key, "trl-cpo-simpo")]
                shown = f"{ratio:.2f}× | {ratio / ceiling:.0%}"
            else:
                shown = "– | –"
            hypothetical = f"{theirs / split:.2f}× | {theirs / ideal:.2f}×"
            ceilings.append(f"| {data} | {gc} | {ceiling:.2f}× | {shown} | {hypothetical} |")
    print(
        "| data | grad ckpt | ceiling (TRL CPO-SimPO's FLOPs ÷ simper's) | measured tokens/s ÷ TRL's | share "
        "| ceiling for simper-split | for simper-ideal |"
    )
    print("|---|---|---|---|---|---|---|")
    print("\n".join(ceilings))
    print()
    print("| data | grad ckpt | step | GFLOP a step | decoder layers | attention | LM head |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(splits))


if __name__ == "__main__":
    main()
