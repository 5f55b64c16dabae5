"""Per-token mean log-prob under each attention kernel and batch layout in bf16, against fp32 (GPU).

    python benchmarks/kernels_bf16.py [--model smollm2-135m-instruct] [--output kernels-bf16.jsonl]

``tests/test_attention.py`` holds every kernel and layout to the same log-probs in fp32. This check covers
bf16, where exact equality is not expected. A kernel or layout that is *biased*, not merely
rounded, shows up as a gap that differs from the other rows. The model's shape comes from
``--model``, with random weights (seed 0) doubled so that attention is far from uniform. The pairs
are four random ones of 7–120 prompt and 17–128 response tokens. Each row is one kernel × precision
× layout × batching:

- the fp32 reference is each sequence alone through the model's own full logits (sdpa, TF32 off);
- the precisions are fp32 (the kernels should agree to 1e-5), bf16 autocast over fp32 weights (how
  ``training.bf16`` trains), and bf16 weights (``model.torch_dtype=bfloat16``);
- ``max_abs_gap`` and ``mean_signed_gap`` are over the eight sequences, in nats per token.
"""

from __future__ import annotations

import argparse
import json
import random

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from simper.attention import layout_for
from simper.data.collate import LAYOUTS, PairCollator
from simper.data.tokenize import TokenizedPair
from simper.logprobs import sequence_logps
from simper.models import resolve

PRECISIONS = {  # name: (weights dtype, bf16 autocast)
    "fp32": (torch.float32, False),
    "fp32+autocast-bf16": (torch.float32, True),
    "bf16-weights": (torch.bfloat16, False),
}
KERNELS = {"eager": tuple(PRECISIONS), "sdpa": tuple(PRECISIONS), "flex_attention": ("fp32+autocast-bf16",)}
SHAPES = ((90, 128, 60), (40, 17, 128), (120, 64, 64), (7, 100, 30))  # prompt, chosen, rejected tokens


def build(config, implementation: str, dtype: torch.dtype, device: str):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=implementation)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim >= 2:
                parameter.mul_(2.0)
    return model.to(device, dtype).eval()


@torch.no_grad()
def reference(model, pairs: list[TokenizedPair], device: str) -> torch.Tensor:
    """Mean log-prob per response token of each sequence alone, chosen first, from full fp32 logits."""
    means = []
    for side in ("chosen", "rejected"):
        for pair in pairs:
            ids = torch.tensor([pair.prompt + getattr(pair, side)], device=device)
            logps = model(input_ids=ids).logits.float()[0, :-1].log_softmax(-1)
            means.append(logps.gather(-1, ids[0, 1:, None]).squeeze(-1)[len(pair.prompt) - 1 :].mean())
    return torch.stack(means).cpu()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="whose config gives the shape")
    parser.add_argument("--output", default=None, help="a JSONL file for the rows (also printed)")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    config = AutoConfig.from_pretrained(resolve(args.model))
    rng = random.Random(0)
    pairs = [
        TokenizedPair(*([rng.randrange(5, config.vocab_size) for _ in range(n)] for n in shape)) for shape in SHAPES
    ]
    expected = reference(build(config, "sdpa", torch.float32, device), pairs, device)
    sink = open(args.output, "w") if args.output else None  # noqa: SIM115 - a row is written as it is made
    for implementation, precisions in KERNELS.items():
        if implementation == "flex_attention" and device == "cpu":
            continue  # its CPU path compiles every shape: minutes, for a check meant for the GPU
        for precision in precisions:
            dtype, autocast = PRECISIONS[precision]
            model = build(config, implementation, dtype, device)
            for layout in LAYOUTS:
                for padding_free in (True, False):
                    collate = PairCollator(0, layout_for(model, layout), padding_free)
                    with torch.no_grad(), torch.autocast(device, torch.bfloat16, enabled=autocast):
                        sums, counts = sequence_logps(model, collate(pairs).to(device))
                    gap = (sums / counts).cpu() - expected
                    row = dict(kernel=implementation, precision=precision, layout=layout, padding_free=padding_free,
                               max_abs_gap=float(gap.abs().max()), mean_signed_gap=float(gap.mean()))  # fmt: skip
                    print(json.dumps(row), flush=True)
                    if sink:  # each row as it is made: a run stopped at its time limit keeps what it measured
                        sink.write(json.dumps(row) + "\n")
                        sink.flush()
    print(f"reference mean log-prob per token: {[round(v, 3) for v in expected.tolist()]}")
    if sink:
        sink.close()


if __name__ == "__main__":
    main()
