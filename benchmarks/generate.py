"""Greedy generation speed of SmolLM2 on held-out task prompts, fp32 against bf16 weights.

    python scripts/bench_generate.py [--prompts 64] [--batch-size 64] [--max-new-tokens 160]

Both runs happen in this process on the same prompts; compare the printed ratio, not the absolute
numbers (this machine is shared and noisy).
"""

import argparse

from simper.generate import generate
from simper.models import load_model, load_tokenizer
from simper.tasks import make_tasks


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=160)
    args = parser.parse_args()
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    prompts = [[{"role": "user", "content": t["prompt"]}] for t in make_tasks(args.prompts, seed=1, split="heldout")]
    rates = {}
    for dtype in ("float32", "bfloat16"):
        model = load_model("smollm2-135m-instruct", torch_dtype=dtype)
        result = generate(
            model, tokenizer, prompts, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, progress=False
        )
        rates[dtype] = result.samples_per_s
        print(
            f"{dtype}: {result.seconds:.0f} s, {result.samples_per_s:.2f} samples/s, {result.tokens_per_s:.0f} tokens/s"
        )
    print(f"fp32 / bf16 samples/s: {rates['float32'] / rates['bfloat16']:.2f}")


if __name__ == "__main__":
    main()
