"""Batched generation: the one place that decodes (``simper pairs`` and ``simper eval`` both use it).

What makes it fast on a CPU: prompts sorted by length so a batch holds similar lengths (little
padding), large batches, the KV cache, sequences that finished stop counting, bf16 weights where
the CPU supports them, and a ``max_new_tokens`` sized to the task.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class Generations:
    """``texts[i]`` holds the ``num_samples`` responses to prompt ``i``; ``tokens`` their lengths."""

    texts: list[list[str]]
    tokens: list[list[int]]
    seconds: float

    @property
    def samples_per_s(self) -> float:
        return sum(map(len, self.texts)) / max(self.seconds, 1e-9)

    @property
    def tokens_per_s(self) -> float:
        return sum(map(sum, self.tokens)) / max(self.seconds, 1e-9)


def cpu_supports_bf16() -> bool:
    """True where bf16 matmuls are native (avx512_bf16 / amx on x86, or a CUDA device)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def render_prompts(tokenizer: PreTrainedTokenizerBase, prompts: list[str | list[dict[str, str]]]) -> list[str]:
    """Chat-template message lists (with the generation prompt); plain strings are used as they are."""
    return [
        tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) if isinstance(p, list) else p
        for p in prompts
    ]


@torch.no_grad()
def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str | list[dict[str, str]]],
    *,
    num_samples: int = 1,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    batch_size: int = 64,
    seed: int = 0,
    on_batch: Callable[[list[int], list[list[str]], list[list[int]]], None] | None = None,
    progress: bool = True,
) -> Generations:
    """Generate ``num_samples`` responses per prompt (greedy when ``temperature`` is 0).

    Args:
        prompts: message lists (chat template applied) or raw prompt strings.
        batch_size: sequences decoded together (prompts × samples).
        on_batch: called after each batch with the prompt indices and their responses, so callers
            can write results as they come (resumable output).

    Returns:
        The decoded responses (special tokens removed) and their token counts, in prompt order.
    """
    texts = render_prompts(tokenizer, prompts)
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
    per_batch = max(1, batch_size // num_samples)
    results: list[list[str]] = [[] for _ in prompts]
    lengths: list[list[int]] = [[] for _ in prompts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = model.generation_config.eos_token_id or tokenizer.eos_token_id
    stop = {eos} if isinstance(eos, int) else set(eos)
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    start = time.perf_counter()
    done = 0
    was_training = model.training
    model.eval()
    for first in range(0, len(order), per_batch):
        indices = order[first : first + per_batch]
        width = max(len(encoded[i]) for i in indices)
        input_ids = torch.full((len(indices), width), pad, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, i in enumerate(indices):  # left padding: every prompt ends where generation starts
            input_ids[row, width - len(encoded[i]) :] = torch.tensor(encoded[i])
            attention_mask[row, width - len(encoded[i]) :] = 1
        sampling = {"temperature": temperature, "top_p": top_p} if temperature > 0 else {}
        output = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            max_new_tokens=max_new_tokens,
            num_return_sequences=num_samples,
            pad_token_id=pad,
            eos_token_id=eos,
            use_cache=True,
            do_sample=temperature > 0,
            **sampling,
        )[:, width:]
        batch_texts, batch_tokens = [], []
        for row, i in enumerate(indices):
            samples = output[row * num_samples : (row + 1) * num_samples]
            for sample in samples:
                ids = sample.tolist()
                count = len(ids)
                for position, token in enumerate(ids):
                    if token in stop:
                        count = position + 1
                        break
                results[i].append(tokenizer.decode(ids[:count], skip_special_tokens=True).strip())
                lengths[i].append(count)
            batch_texts.append(results[i])
            batch_tokens.append(lengths[i])
        done += len(indices)
        if on_batch is not None:
            on_batch(indices, batch_texts, batch_tokens)
        if progress:
            elapsed = time.perf_counter() - start
            generated = done * num_samples
            print(
                f"\rsimper: generated {done}/{len(order)} prompts × {num_samples} "
                f"({generated / elapsed:.1f} samples/s)",
                end="",
                file=sys.stderr,
                flush=True,
            )
    if progress and order:
        print(file=sys.stderr)
    model.train(was_training)
    return Generations(results, lengths, time.perf_counter() - start)
