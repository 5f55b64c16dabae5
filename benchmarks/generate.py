"""Generation speed of SmolLM2 on built-in task prompts: our decoding loop against ``model.generate``.

    python benchmarks/generate.py [--model smollm2-135m-instruct] [--prompts 32] [--samples 4]
                                  [--batch-size 64] [--max-new-tokens 128] [--dtype float32] [--greedy]

Both contenders decode the same prompts in the same batches, in this process, one after the
other, under the same seed. ``transformers`` is ``model.generate``: each prompt read once per
sample, finished rows decoded until the batch's longest ends, top-p sorting and sampling over the
whole vocabulary. ``simper`` is ``simper.generate.decode``: each prompt read once, finished rows
cut from the batch and KV cache, top-p among the top 256 tokens first. Defaults are ``simper
pairs``' sampling (k=4, temperature 0.8, top_p 0.95). Compare the printed ratio, not the absolute
numbers (this machine is shared and noisy).
"""

import argparse

import torch

import simper.generate
from simper.generate import generate
from simper.models import best_device, load_model, load_tokenizer
from simper.tasks import make_tasks


def transformers_decode(model, input_ids, attention_mask, *, max_new_tokens, stop, temperature, top_p, num_samples):
    """``model.generate`` with the same inputs, cut at each row's first stop token."""
    sampling = {"temperature": temperature, "top_p": top_p} if temperature > 0 else {}
    output = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        max_new_tokens=max_new_tokens,
        num_return_sequences=num_samples,
        eos_token_id=sorted(stop),
        pad_token_id=sorted(stop)[0],
        do_sample=temperature > 0,
        **sampling,
    )[:, input_ids.shape[1] :]
    rows = []
    for ids in output.tolist():
        ends = [i for i, token in enumerate(ids) if token in stop]
        rows.append(ids[: ends[0] + 1] if ends else ids)
    return rows, [0.0] * len(rows)  # no log-probs: ours sums them while decoding, at its own cost


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--greedy", action="store_true", help="one greedy answer per prompt (simper eval)")
    args = parser.parse_args()
    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model, torch_dtype=args.dtype).to(best_device())
    tasks = make_tasks(args.prompts, seed=7, split="train")
    prompts = [[{"role": "user", "content": t["prompt"]}] for t in tasks]
    sampling = (
        {"num_samples": 1, "temperature": 0.0}
        if args.greedy
        else {"num_samples": args.samples, "temperature": 0.8, "top_p": 0.95}
    )
    ours = simper.generate.decode
    rates = {}
    for name, decode in (("transformers", transformers_decode), ("simper", ours)):
        simper.generate.decode = decode
        torch.manual_seed(0)
        result = generate(
            model,
            tokenizer,
            prompts,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            progress=False,
            **sampling,
        )
        rates[name] = result.tokens_per_s
        mean = sum(map(sum, result.tokens)) / sum(map(len, result.tokens))
        print(
            f"{name}: {result.seconds:.0f} s, {result.samples_per_s:.2f} samples/s, "
            f"{result.tokens_per_s:.0f} tokens/s, mean response {mean:.0f} tokens"
        )
    simper.generate.decode = ours
    print(f"simper / transformers tokens/s: {rates['simper'] / rates['transformers']:.2f}")


if __name__ == "__main__":
    main()
