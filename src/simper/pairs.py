"""On-policy preference pairs: sample k responses per prompt, score them, keep best vs. worst.

The SimPO/SimPER on-policy recipe: the policy's own samples (chat template, generation prompt),
a reward on each, the highest-scoring one as chosen and the lowest as rejected; prompts whose
samples all tie are dropped. Output rows are conversational pairs that ``simper train`` reads as
they are, with both scores, the reward's name, the prompt's task fields and whether each response
was cut off at ``max_new_tokens`` (``chosen_truncated``/``rejected_truncated``; training then leaves
out the end-of-turn token such a response never produced).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from simper import models
from simper.config import PairsConfig
from simper.data.formats import message_list
from simper.data.sources import read_rows
from simper.diversity import is_looping
from simper.errors import UserError
from simper.generate import load_generator, repeats
from simper.rewards import load_reward
from simper.tasks import make_tasks, task_problem

CHUNK = 256  # prompts generated per round
REDRAW_SEED = 7919  # a further draw for tied prompts samples with seed + this × draw


def read_prompts(path: str, *, tasks: bool = False) -> list[dict[str, Any]]:
    """Prompt rows from any source ``read_rows`` reads: ``prompt`` a string or a message list; other
    fields (a built-in task's ``kind``, ``constraints``, ``answer``) are kept. With ``tasks`` (the
    ``builtin`` reward scores them) every row must be a built-in task the checkers can score."""
    prompts = []
    for row in read_rows(path):
        prompt = row.values.get("prompt")
        if not isinstance(prompt, str | list) or not prompt:
            raise UserError(f"{row.origin}: field 'prompt': expected a string or a list of messages")
        if tasks and (problem := task_problem(row.values)):
            hint = (
                " (the builtin reward scores built-in task rows only; give --reward module:function or a reward "
                "model for other prompts)"
                if "kind" not in row.values
                else ""
            )
            raise UserError(f"{row.origin}: {problem}{hint}")
        if isinstance(prompt, list):
            prompt = message_list(row, "prompt")
            if prompt[-1]["role"] == "assistant":
                raise UserError(f"{row.origin}: field 'prompt': ends with the assistant's turn (nothing to answer)")
        prompts.append({"id": row.values.get("id", row.origin.rsplit(":", 1)[-1]), **row.values, "prompt": prompt})
    return prompts


def check_templates(tokenizer: Any, rows: list[dict[str, Any]], source: str) -> None:
    """Every prompt row through the chat template before a model loads: a template that refuses one
    (Gemma's and Mistral's raise on a system turn) is named by its file and line (or its ``id``)."""
    from simper.data.tokenize import apply_template

    for row in rows:
        where = row["id"] if str(row["id"]).startswith("line ") else f"id {row['id']!r}"
        apply_template(tokenizer, as_messages(row["prompt"]), f"{source}:{where}", add_generation_prompt=True)


def as_messages(prompt: str | list[dict[str, str]]) -> list[dict[str, str]]:
    return prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]


def pick_pair(
    scores: list[float], responses: list[str], ended: list[bool], tie_break: str = "degeneration"
) -> tuple[int, int] | None:
    """``(chosen, rejected)`` indices among one prompt's samples, or None when they tie.

    Ranked by score; with ``tie_break="degeneration"``, at equal score a response that ended on its
    own and does not loop ranks above one that was cut off or loops.
    """
    ranks = [
        (score, done and not is_looping(text)) if tie_break == "degeneration" else (score,)
        for score, text, done in zip(scores, responses, ended, strict=True)
    ]
    best = max(range(len(ranks)), key=ranks.__getitem__)
    worst = min(range(len(ranks)), key=ranks.__getitem__)
    if ranks[best] == ranks[worst] or responses[best] == responses[worst]:
        return None
    return best, worst


def pair_row(
    row: dict[str, Any],
    responses: list[str],
    ended: list[bool],
    scores: list[float],
    picked: tuple[int, int],
    reward_name: str,
) -> dict[str, Any]:
    """The conversational pair written for one prompt, with both scores and the prompt's own fields."""
    best, worst = picked
    extra = {k: v for k, v in row.items() if k not in ("prompt", "chosen", "rejected")}
    return {
        **extra,  # first: a prompt file that is an earlier pairs file must not overwrite what is computed here
        "prompt": as_messages(row["prompt"]),
        "chosen": [{"role": "assistant", "content": responses[best]}],
        "rejected": [{"role": "assistant", "content": responses[worst]}],
        "score_chosen": scores[best],
        "score_rejected": scores[worst],
        "chosen_truncated": not ended[best],  # cut off (cap or loop): trained without an EOS
        "rejected_truncated": not ended[worst],
        "tie_broken": scores[best] == scores[worst],
        "num_samples": len(responses),
        "reward": reward_name,
    }


def count_cut_offs(counts: dict[str, int], responses: list[str], ended: list[bool], tokenizer) -> None:
    """Add one prompt's samples to ``counts``: drawn, cut off (at the cap or stopped in a loop), and
    of those caught in a loop (by its words, or by its tokens as the decoder judged it)."""
    counts["samples"] += len(responses)
    for text, done in zip(responses, ended, strict=True):
        if not done:
            counts["cut_off"] += 1
            counts["cut_off_looping"] += is_looping(text) or repeats(
                tokenizer(text, add_special_tokens=False)["input_ids"]
            )


def sample_in_chunks(policy, tokenizer, todo: list[dict[str, Any]], c: PairsConfig, settle) -> tuple[float, int, int]:
    """Sample the prompts in chunks of :data:`CHUNK` in their drawn order (each chunk sorted by length
    inside the generator), so a run stopped early holds pairs from a representative sample of prompts,
    not only the longest. ``settle(index, new, responses, ended, last)`` gets each prompt's samples as
    its batch is done (``new`` of them just drawn; ``last`` when no more may be) and returns False when
    it wants more: those prompts get ``num_samples`` more (the last draw only what is left to
    ``max_samples``), one pass per draw over the chunk's prompts still unsettled, each pass with a seed
    of its own. Returns seconds, samples, tokens."""
    seconds, samples, tokens = 0.0, 0, 0
    most = max(c.max_samples, c.num_samples)
    for first in range(0, len(todo), CHUNK):
        pending = list(range(first, min(first + CHUNK, len(todo))))
        drawn: dict[int, tuple[list[str], list[bool]]] = {i: ([], []) for i in pending}
        for draw in range(-(-most // c.num_samples)):
            if not pending:
                break
            wanting: list[int] = []

            def on_batch(indices, texts, finished, pending=pending, wanting=wanting, drawn=drawn):
                for i, responses, ended in zip(indices, texts, finished, strict=True):
                    index = pending[i]
                    drawn[index][0].extend(responses)
                    drawn[index][1].extend(ended)
                    if not settle(index, len(responses), *drawn[index], last=len(drawn[index][0]) >= most):
                        wanting.append(index)

            if draw:
                print(f"simper: {len(pending)} prompts whose samples tied get more (draw {draw + 1})", file=sys.stderr)

            result = policy(
                tokenizer,
                [as_messages(todo[i]["prompt"]) for i in pending],
                num_samples=min(c.num_samples, most - c.num_samples * draw),
                max_new_tokens=c.max_new_tokens,
                temperature=c.temperature,
                top_p=c.top_p,
                batch_size=c.batch_size,
                seed=c.seed + first + REDRAW_SEED * draw,
                on_batch=on_batch,
                stop_loops=c.stop_loops,
            )
            seconds += result.seconds
            samples += sum(map(len, result.texts))
            tokens += sum(map(sum, result.tokens))
            pending = sorted(wanting)
    return seconds, samples, tokens


def make_pairs(config: PairsConfig) -> dict[str, int]:
    """Write pairs to ``config.output`` (JSONL), skipping prompts a previous run already handled.

    The chosen response is the one the reward scores highest, the rejected one the lowest. With
    ``tie_break="degeneration"``, between responses the reward scores alike one that ended on its
    own and does not loop ranks above one cut off at the cap or caught in a repetition loop: such a
    pair is written (marked ``tie_broken``) instead of dropped, and among the best-scored responses
    a sound one is chosen, among the worst a degenerate one rejected. With ``stop_loops`` a sample
    stops once it is caught in a repetition loop (``generate.repeats``), marked cut off like one that
    reached ``max_new_tokens``: a loop's rest would only repeat it, and on a CPU loops running to the
    cap took most of the decoding time. (vLLM decodes every sample to its end or the cap.)

    With ``max_samples`` above ``num_samples`` (k), a prompt whose k samples the reward scores all
    alike (an arithmetic problem all k got wrong) is sampled k more at a time until the scores differ
    or it has ``max_samples``; only then does the tie-break decide. More samples cost decoding only
    on the prompts that tie.

    Returns:
        Counts: prompts, pairs written, of which tie-broken, ties dropped, skipped (already done);
        prompts whose first k samples all scored alike, of which redrawn, of which split by the redraw;
        samples drawn, of which cut off (at the cap or in a loop), of which caught in a loop.
    """
    c = config
    rows = (
        read_prompts(c.prompts, tasks=c.reward == "builtin")
        if c.prompts
        else make_tasks(c.num_prompts, seed=c.seed, split=c.split)
    )
    reward_name, reward_fn = load_reward(c.reward, trust_remote_code=c.trust_remote_code)
    out = Path(c.output)
    seen_path = out.with_name(out.name + ".seen")  # every prompt handled, ties included: what resume skips
    seen = set(seen_path.read_text().split("\n")) if seen_path.exists() else set()
    todo = [row for row in rows if str(row["id"]) not in seen]
    counts = {"prompts": len(rows), "skipped": len(rows) - len(todo), "pairs": 0, "tie_broken": 0, "ties": 0}
    counts.update(samples=0, cut_off=0, cut_off_looping=0, tied_at_k=0, redrawn=0, split_by_redraw=0)
    if not todo:
        return counts
    tokenizer = models.load_tokenizer(c.model, trust_remote_code=c.trust_remote_code)
    if c.prompts:
        check_templates(tokenizer, todo, c.prompts)
    policy = load_generator(c.model, c.backend, seed=c.seed, trust_remote_code=c.trust_remote_code)
    out.parent.mkdir(parents=True, exist_ok=True)

    with out.open("a", encoding="utf-8") as pairs_file, seen_path.open("a", encoding="utf-8") as seen_file:
        scored: dict[int, list[float]] = {}

        def settle(index: int, new: int, responses: list[str], ended: list[bool], last: bool) -> bool:
            row = todo[index]
            scores = scored.setdefault(index, [])
            scores += reward_fn(row, responses[-new:])  # each sample scored once, as it is drawn
            if not last and len(set(scores)) == 1:
                return False  # every sample scored alike: draw more before the tie-break decides
            count_cut_offs(counts, responses, ended, tokenizer)
            counts["tied_at_k"] += len(set(scores[: c.num_samples])) == 1
            counts["redrawn"] += len(responses) > c.num_samples
            picked = pick_pair(scores, responses, ended, c.tie_break)
            if picked is None:
                counts["ties"] += 1
            else:
                counts["pairs"] += 1
                counts["tie_broken"] += scores[picked[0]] == scores[picked[1]]
                counts["split_by_redraw"] += len(set(scores[: c.num_samples])) == 1 and len(set(scores)) > 1
                pairs_file.write(json.dumps(pair_row(row, responses, ended, scores, picked, reward_name)) + "\n")
            seen_file.write(f"{row['id']}\n")
            pairs_file.flush()
            seen_file.flush()
            del scored[index]
            return True

        seconds, samples, tokens = sample_in_chunks(policy, tokenizer, todo, c, settle)
    print(
        f"simper: {samples / max(seconds, 1e-9):.2f} samples/s, {tokens / max(seconds, 1e-9):.0f} tokens/s "
        f"over {seconds:.0f} s",
        file=sys.stderr,
    )
    return counts
