"""Batched generation: the one place that decodes (``simper pairs`` and ``simper eval`` both use it).

What makes it fast on a CPU: prompts sorted by length so a batch holds similar lengths (little
padding), large batches, the KV cache, finished sequences dropped from the batch (and its cache),
nucleus sampling over the top few hundred tokens instead of a sort and a draw over the whole
vocabulary, and a ``max_new_tokens`` sized to the task.
The decoding loop is ours (a model forward and its own cache per step) because ``model.generate``
keeps decoding finished rows until the longest one ends.
"""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from simper.data.tokenize import uses_bos, with_one_bos


@dataclass
class Generations:
    """``texts[i]`` holds the ``num_samples`` responses to prompt ``i``; ``tokens`` their lengths;
    ``finished`` whether each ended on its own (a stop token) rather than at ``max_new_tokens``;
    ``ids`` the generated token ids (the stop token included); ``logps`` Σ log π(token) of each
    under the model's own (untempered) distribution, where the backend gives them."""

    texts: list[list[str]]
    tokens: list[list[int]]
    finished: list[list[bool]]
    seconds: float
    ids: list[list[list[int]]]
    logps: list[list[float]] | None = None

    @classmethod
    def empty(cls, count: int) -> Generations:
        """Room for the samples of ``count`` prompts, filled by :meth:`add`."""
        return cls(
            [[] for _ in range(count)],
            [[] for _ in range(count)],
            [[] for _ in range(count)],
            0.0,
            [[] for _ in range(count)],
            [[] for _ in range(count)],
        )

    def add(self, prompt: int, text: str, ids: list[int], logp: float, stop: set[int]) -> None:
        """One more sample of prompt ``prompt``: its text, token ids (a final stop token marks it ended)
        and summed log-prob."""
        self.texts[prompt].append(text)
        self.tokens[prompt].append(len(ids))
        self.finished[prompt].append(bool(ids) and ids[-1] in stop)
        self.ids[prompt].append(ids)
        self.logps[prompt].append(logp)

    @property
    def samples_per_s(self) -> float:
        return sum(map(len, self.texts)) / max(self.seconds, 1e-9)

    @property
    def tokens_per_s(self) -> float:
        return sum(map(sum, self.tokens)) / max(self.seconds, 1e-9)


def render_prompts(tokenizer: PreTrainedTokenizerBase, prompts: list[str | list[dict[str, str]]]) -> list[str]:
    """Chat-template message lists (with the generation prompt); plain strings are used as they are."""
    from simper.data.tokenize import apply_template

    return [
        apply_template(tokenizer, p, f"prompt {p[-1]['content'][:40]!r}", add_generation_prompt=True)
        if isinstance(p, list)
        else p
        for p in prompts
    ]


def encode_prompts(tokenizer: PreTrainedTokenizerBase, prompts: list[str | list[dict[str, str]]]) -> list[list[int]]:
    """Prompt token ids as training sees them: rendered as above, with exactly one BOS in front when
    the model's sequences start with one (a template that writes it too does not double it)."""
    if not prompts:
        return []
    add_bos, bos = uses_bos(tokenizer), tokenizer.bos_token_id
    rendered = tokenizer(render_prompts(tokenizer, prompts), add_special_tokens=False)["input_ids"]
    return [with_one_bos(ids, bos, add_bos) for ids in rendered]


LOOP_WINDOW = 96  # tokens at the end of a sample that the loop check reads
LOOP_CHECK_EVERY = 16  # decoding steps between loop checks


def repeats(ids: list[int]) -> bool:
    """Whether a sample's last :data:`LOOP_WINDOW` tokens cycle: fewer than half of their 4-grams
    distinct. A phrase of p tokens cycling leaves about p distinct 4-grams, so loops with a period up
    to ~45 tokens are caught, while prose and lists keep nearly all their 4-grams distinct."""
    if len(ids) < LOOP_WINDOW:
        return False
    tail = ids[-LOOP_WINDOW:]
    return len({tuple(tail[i : i + 4]) for i in range(len(tail) - 3)}) < 0.5 * (len(tail) - 3)


NUCLEUS_WIDTHS = (256, 4096)  # top-p looks among this many tokens first; the whole vocabulary last


def pick_tokens(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """Next token per row: argmax when ``temperature`` is 0, else a draw from the top-``p`` nucleus.

    The nucleus is the set ``transformers``' ``TopPLogitsWarper`` keeps: tokens by descending
    probability while the mass before them is < ``top_p``.
    """
    if temperature <= 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p >= 1:
        return torch.multinomial(probs, 1).squeeze(-1)
    tokens = torch.empty(probs.shape[0], dtype=torch.long, device=probs.device)
    for rows, weights, index in nucleus(probs, top_p):
        tokens[rows] = index.gather(-1, torch.multinomial(weights, 1)).squeeze(-1)
    return tokens


def nucleus(probs: torch.Tensor, top_p: float) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The top-``p`` nucleus of each row as ``(rows, weights, index)`` groups: candidate token ids
    and their probabilities, zero outside the nucleus (unnormalized; ``torch.multinomial``
    normalizes).

    Rows whose top 256 tokens hold ``top_p`` of the mass (most steps) are done with a ``topk`` of
    256, the rest with 4,096 and only then with a sort of the whole vocabulary, so a step neither
    sorts nor samples over 49k tokens for every row.
    """
    groups = []
    rows = torch.arange(probs.shape[0], device=probs.device)
    for width in (*NUCLEUS_WIDTHS, probs.shape[-1]):
        top, index = probs[rows].topk(min(width, probs.shape[-1]), dim=-1)
        covered = top.sum(-1) >= top_p if width < probs.shape[-1] else torch.ones_like(rows, dtype=torch.bool)
        if bool(covered.any()):
            top, index = top[covered], index[covered]
            before = top.cumsum(-1) - top
            groups.append((rows[covered], top.masked_fill(before >= top_p, 0.0), index))
        rows = rows[~covered]
        if len(rows) == 0:
            break
    return groups


@torch.no_grad()
def decode(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    stop: set[int],
    temperature: float,
    top_p: float,
    num_samples: int = 1,
    stop_loops: bool = False,
) -> tuple[list[list[int]], list[float]]:
    """New tokens for each row of a left-padded batch, ``num_samples`` rows per prompt (prompt ``i``'s
    samples are rows ``i·num_samples …``), each ending at its first stop token (kept), and each
    row's Σ log π(token) under the untempered model (what scoring the tokens afterwards would give).

    With ``stop_loops``, a sample caught in a repetition loop (:func:`repeats`, checked every
    :data:`LOOP_CHECK_EVERY` steps) stops there, without a stop token, like one cut off at the cap:
    the rest of a loop would only repeat it, at the cost of the whole batch's decoding steps.

    Each prompt is read once (the cache is then repeated per sample). Finished rows keep riding
    along until a quarter of the batch has finished; then they are cut from the batch and from the
    KV cache (a cut copies the cache, so not at every step).
    """
    accepts = inspect.signature(model.forward).parameters
    cache_argument = "cache" if "cache" in accepts else "past_key_values"  # renamed in transformers 5
    head = {"logits_to_keep": 1} if "logits_to_keep" in accepts else {}
    out, attention_mask, positions = prefill(model, input_ids, attention_mask, num_samples, cache_argument, head)
    cache = getattr(out, cache_argument)
    rows = torch.arange(attention_mask.shape[0], device=input_ids.device)  # batch row -> output row
    finished = torch.zeros_like(rows, dtype=torch.bool)
    stop_ids = torch.tensor(sorted(stop), device=input_ids.device)
    outputs: list[list[int]] = [[] for _ in range(len(rows))]
    logps = torch.zeros(len(rows), dtype=torch.float64)
    position = positions[:, -1:]
    for step in range(max_new_tokens):
        logits = out.logits[:, -1, :]
        tokens = pick_tokens(logits, temperature, top_p)
        picked = logits.float().log_softmax(-1).gather(-1, tokens[:, None]).squeeze(-1)
        logps.index_add_(0, rows[~finished].cpu(), picked[~finished].double().cpu())
        for row, token, done in zip(rows.tolist(), tokens.tolist(), finished.tolist(), strict=True):
            if not done:
                outputs[row].append(token)
        finished |= torch.isin(tokens, stop_ids)
        if stop_loops and step % LOOP_CHECK_EVERY == LOOP_CHECK_EVERY - 1:
            finished |= torch.tensor([repeats(outputs[row]) for row in rows.tolist()], device=finished.device)
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        if int(finished.sum()) * 4 >= len(rows) and hasattr(cache, "batch_select_indices"):
            keep = (~finished).nonzero().squeeze(-1)
            cache.batch_select_indices(keep)
            rows, tokens, finished = rows[keep], tokens[keep], finished[keep]
            attention_mask, position = attention_mask[keep], position[keep]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(len(rows), 1)], dim=-1)
        position = position + 1
        out = model(
            input_ids=tokens[:, None],
            attention_mask=attention_mask,
            position_ids=position,
            use_cache=True,
            **{cache_argument: cache},
        )
    return outputs, logps.tolist()


def prefill(model: PreTrainedModel, input_ids, attention_mask, num_samples: int, cache_argument: str, head: dict):
    """The prompts' forward pass (``head``: last position's logits only, where the model allows), its
    output with the KV cache in ``cache_argument``, then cache, logits, attention mask and positions
    repeated ``num_samples`` times per prompt."""
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=True, **head)
    if num_samples > 1:
        getattr(out, cache_argument).batch_repeat_interleave(num_samples)
        out.logits = out.logits.repeat_interleave(num_samples, dim=0)
        attention_mask = attention_mask.repeat_interleave(num_samples, dim=0)
        positions = positions.repeat_interleave(num_samples, dim=0)
    return out, attention_mask, positions


def left_padded(prompts: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask, padded on the left: every prompt ends where generation starts."""
    width = max(map(len, prompts))
    input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, ids in enumerate(prompts):
        input_ids[row, width - len(ids) :] = torch.tensor(ids)
        attention_mask[row, width - len(ids) :] = 1
    return input_ids, attention_mask


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
    on_batch: Callable[[list[int], list[list[str]], list[list[bool]]], None] | None = None,
    progress: bool = True,
    stop_loops: bool = False,
) -> Generations:
    """Generate ``num_samples`` responses per prompt (greedy when ``temperature`` is 0).

    Args:
        prompts: message lists (chat template applied) or raw prompt strings.
        batch_size: sequences decoded together (prompts × samples).
        on_batch: called after each batch with the prompt indices, their responses and whether each
            finished, so callers can write results as they come (resumable output).
        stop_loops: stop a sample once it loops (see :func:`decode`); it counts as not finished.

    Returns:
        The decoded responses (special tokens removed), their token counts and whether each ended
        on a stop token, in prompt order.
    """
    encoded = encode_prompts(tokenizer, prompts)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
    per_batch = max(1, batch_size // num_samples)
    out = Generations.empty(len(prompts))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stop = stop_tokens(model, tokenizer, chat=any(isinstance(p, list) for p in prompts))
    settings = dict(num_samples=num_samples, max_new_tokens=max_new_tokens, stop=stop, temperature=temperature)
    settings.update(top_p=top_p, stop_loops=stop_loops)
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    for first in range(0, len(order), per_batch):
        indices = order[first : first + per_batch]
        input_ids, attention_mask = left_padded([encoded[i] for i in indices], pad)
        output, sums = decode(model, input_ids.to(device), attention_mask.to(device), **settings)
        for row, i in enumerate(indices):
            for k in range(row * num_samples, (row + 1) * num_samples):
                out.add(i, tokenizer.decode(output[k], skip_special_tokens=True).strip(), output[k], sums[k], stop)
        if on_batch is not None:
            on_batch(indices, [out.texts[i] for i in indices], [out.finished[i] for i in indices])
        if progress:
            done = first + len(indices)
            rate = done * num_samples / (time.perf_counter() - start)
            line = f"\rsimper: generated {done}/{len(order)} prompts × {num_samples} ({rate:.1f} samples/s)"
            print(line, end="", file=sys.stderr, flush=True)
    if progress and order:
        print(file=sys.stderr)
    model.train(was_training)
    out.seconds = time.perf_counter() - start
    return out


def stop_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, chat: bool = False) -> set[int]:
    """The token ids that end a response: the model's generation config's EOS (one or several), else
    the tokenizer's, and for chat prompts the token the chat template ends a turn with (training ends
    chat responses with it; a generation config may not list it)."""
    from simper.data.tokenize import turn_end

    eos = model.generation_config.eos_token_id or tokenizer.eos_token_id
    stop = {eos} if isinstance(eos, int) else set(eos)
    if chat and tokenizer.chat_template is not None:
        stop.add(turn_end(tokenizer)[1])
    return stop


def resolve_backend(backend: str) -> str:
    """``auto`` is vLLM when it is installed and a CUDA GPU is there, else transformers."""
    import importlib.util

    from simper.config import BACKENDS
    from simper.errors import UserError

    if backend not in BACKENDS:
        raise UserError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    has_vllm = importlib.util.find_spec("vllm") is not None
    if backend == "vllm" and not has_vllm:
        raise UserError("--backend vllm: vLLM is not installed (pip install vllm; it needs a CUDA GPU)")
    if backend == "auto":
        return "vllm" if has_vllm and torch.cuda.is_available() else "transformers"
    return backend


class VllmGenerator:
    """The same contract as :func:`generate`, decoded by a vLLM engine (continuous batching, paged KV).

    Prompts are given to vLLM as token ids rendered and tokenized exactly as :func:`generate` does
    (chat template, no extra special tokens), so both backends see the same inputs.
    """

    def __init__(self, model_name: str, *, seed: int = 0, trust_remote_code: bool = False, memory: float = 0.6):
        from vllm import LLM

        from simper.models import resolve

        path = resolve(model_name)
        self.llm = LLM(
            model=path, tokenizer=path, seed=seed, trust_remote_code=trust_remote_code, gpu_memory_utilization=memory
        )

    def __call__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        prompts: list[str | list[dict[str, str]]],
        *,
        num_samples: int = 1,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
        on_batch: Callable[[list[int], list[list[str]], list[list[bool]]], None] | None = None,
        **_: object,
    ) -> Generations:
        from vllm import SamplingParams

        encoded = encode_prompts(tokenizer, prompts)
        from simper.data.tokenize import turn_end

        chat = tokenizer.chat_template is not None and any(isinstance(p, list) for p in prompts)
        params = SamplingParams(
            n=num_samples,
            temperature=temperature,
            top_p=top_p if temperature > 0 else 1.0,
            max_tokens=max_new_tokens,
            seed=seed,
            stop_token_ids=[turn_end(tokenizer)[1]] if chat else None,  # as generate() stops, beside the EOS
        )
        start = time.perf_counter()
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in encoded], params, use_tqdm=False)
        texts = [[o.text.strip() for o in request.outputs] for request in outputs]
        ids = [[list(o.token_ids) for o in request.outputs] for request in outputs]
        finished = [[o.finish_reason == "stop" for o in request.outputs] for request in outputs]
        if on_batch is not None:
            on_batch(list(range(len(prompts))), texts, finished)
        lengths = [[len(i) for i in row] for row in ids]
        return Generations(texts, lengths, finished, time.perf_counter() - start, ids)  # no logps: rescored

    def close(self) -> None:
        """Give the GPU memory back (before a transformers model is loaded beside it)."""
        import gc

        del self.llm
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class TransformersGenerator:
    """:func:`generate` on a transformers model loaded once; ``model`` stays usable afterwards."""

    def __init__(self, model_name: str, *, trust_remote_code: bool = False):
        from simper.models import best_device, load_model

        self.model = load_model(model_name, trust_remote_code=trust_remote_code).to(best_device())

    def __call__(self, tokenizer: PreTrainedTokenizerBase, prompts, **kwargs) -> Generations:
        return generate(self.model, tokenizer, prompts, **kwargs)

    def close(self) -> None:
        pass


def load_generator(
    model_name: str, backend: str = "auto", *, seed: int = 0, trust_remote_code: bool = False
) -> TransformersGenerator | VllmGenerator:
    """The generator for ``backend`` (see :func:`resolve_backend`)."""
    if resolve_backend(backend) == "vllm":
        return VllmGenerator(model_name, seed=seed, trust_remote_code=trust_remote_code)
    return TransformersGenerator(model_name, trust_remote_code=trust_remote_code)
