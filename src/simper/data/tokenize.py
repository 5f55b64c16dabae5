"""Turn normalized pairs into token ids: prompt, chosen response, rejected response.

Rules (one place, tested):

- Chat pairs go through the tokenizer's chat template; the prompt is rendered with the generation
  prompt, and the response is the rendered full conversation minus the rendered prompt. Text pairs
  are used as they are (prompt + response), as TRL does for its standard format.
- The prompt is always a true token prefix of the sequence, and the response is the tokens that
  follow it: prompt and response are tokenized together and the prompt's own tokens cut off the
  front. A SentencePiece tokenizer (Llama 2, Mistral) would give a response tokenized alone a
  word-start "▁" that the model never generates after a prompt ending in a newline. Where the
  joint tokens do not begin with the prompt's (a token merged across the boundary), the response
  is tokenized alone.
- Exactly one BOS, and only when the model uses one (its tokenizer adds it to plain text); a chat
  template that also writes it does not make two.
- Each response ends in exactly one stop token, unless it is marked truncated (cut off by a
  generation limit: it never ended) or truncation here cut it short. For chat pairs the stop token
  is the one the template ends an assistant turn with (``<|im_end|>``, Gemma's ``<end_of_turn>``,
  Llama 3's ``<|eot_id|>``; whitespace after it dropped), for text pairs EOS.
- ``max_prompt_length`` keeps the end of the prompt (and its BOS); ``max_length`` then cuts the
  responses to fit. A pair left without a response token is dropped and counted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from simper.data.formats import PreferencePair
from simper.errors import UserError, first_line


@dataclass(frozen=True)
class TokenizedPair:
    """Token ids of one pair; ``chosen``/``rejected`` hold the response tokens only."""

    prompt: list[int]
    chosen: list[int]
    rejected: list[int]


def apply_template(tokenizer: PreTrainedTokenizerBase, messages: list, origin: str, **kwargs) -> str:
    """The chat template applied to ``messages`` as text; a template that refuses them (Gemma's and
    Mistral's raise on a system turn or on roles that do not alternate) is an error naming ``origin``."""
    from jinja2 import TemplateError

    if tokenizer.chat_template is None:
        raise UserError(
            f"{origin}: conversational, but the tokenizer has no chat template; "
            "set model.chat_template to a Jinja template or use a chat model's tokenizer"
        )
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)
    except TemplateError as err:
        raise UserError(f"{origin}: the chat template refuses this conversation: {first_line(err)}") from None


def render(pair: PreferencePair, tokenizer: PreTrainedTokenizerBase) -> tuple[str, str, str]:
    """``(prompt, chosen, rejected)`` as text, chat template applied for chat pairs."""
    if not pair.is_chat:
        return pair.prompt, pair.chosen, pair.rejected  # type: ignore[return-value]
    prompt = apply_template(tokenizer, pair.prompt, pair.origin, add_generation_prompt=True)
    responses = []
    for response in (pair.chosen, pair.rejected):
        full = apply_template(tokenizer, pair.prompt + response, pair.origin)
        if not full.startswith(prompt):
            raise UserError(
                f"{pair.origin}: the chat template renders the prompt differently when a response follows it, "
                "so the response cannot be separated from the prompt"
            )
        responses.append(full[len(prompt) :])
    return prompt, responses[0], responses[1]


def uses_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether this model's sequences start with BOS: its tokenizer adds one to plain text.

    (A template that writes a token which happens to be named BOS, like SmolLM2's ``<|im_start|>``,
    does not count: that token stays where the template puts it.)
    """
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a", add_special_tokens=True)["input_ids"][:1] == [bos]


def with_one_bos(prompt: list[int], bos: int | None, add_bos: bool, max_length: int | None = None) -> list[int]:
    """Prompt ids with exactly one BOS in front when the model uses one (a template that writes BOS
    too does not double it), cut to its last ``max_length`` tokens, BOS included, when given."""
    while add_bos and prompt and prompt[0] == bos:
        prompt = prompt[1:]
    if max_length is not None:
        budget = max_length - int(add_bos)
        prompt = prompt[len(prompt) - budget :] if len(prompt) > budget else prompt
    return [bos, *prompt] if add_bos else prompt


def tokenize_pairs(
    pairs: list[PreferencePair],
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_length: int,
    max_prompt_length: int,
) -> tuple[list[TokenizedPair], Counter]:
    """Tokenize pairs under the rules in the module docstring.

    Returns:
        ``(tokenized, drops)`` where ``drops`` counts pairs left out by reason.
    """
    if tokenizer.eos_token_id is None:
        raise UserError("the tokenizer has no EOS token; set one (tokenizer.eos_token) before training")
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    add_bos = uses_bos(tokenizer)
    suffix, stop = turn_end(tokenizer) if any(pair.is_chat for pair in pairs) else ("", eos)
    rendered = [
        (prompt, _cut(chosen, suffix), _cut(rejected, suffix)) if pair.is_chat else (prompt, chosen, rejected)
        for pair, (prompt, chosen, rejected) in ((pair, render(pair, tokenizer)) for pair in pairs)
    ]
    prompts, chosen_texts, rejected_texts = (list(c) for c in zip(*rendered, strict=True)) if rendered else ([], [], [])
    prompt_ids = _encode(tokenizer, prompts)
    encoded = [prompt_ids, *(_continuations(tokenizer, prompts, prompt_ids, t) for t in (chosen_texts, rejected_texts))]
    whitespace_ids = _whitespace_token_ids(tokenizer)

    tokenized, drops = [], Counter()
    for pair, prompt, chosen, rejected in zip(pairs, *encoded, strict=True):
        prompt = with_one_bos(prompt, bos, add_bos, max_prompt_length)
        if not prompt:
            drops["empty prompt and no BOS to predict the first response token from"] += 1
            continue
        room, end = max_length - len(prompt), (stop if pair.is_chat else eos)
        chosen = _close_response(chosen, end, eos, whitespace_ids, pair.chosen_truncated)[: max(room, 0)]
        rejected = _close_response(rejected, end, eos, whitespace_ids, pair.rejected_truncated)[: max(room, 0)]
        if not chosen or not rejected:
            drops["no response token left after truncation"] += 1
            continue
        if chosen == rejected:
            drops["chosen identical to rejected after tokenization"] += 1
            continue
        tokenized.append(TokenizedPair(prompt, chosen, rejected))
    return tokenized, drops


def _encode(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []


def _continuations(
    tokenizer: PreTrainedTokenizerBase, prompts: list[str], prompt_ids: list[list[int]], responses: list[str]
) -> list[list[int]]:
    """Each response's token ids as they follow its prompt (see the module docstring)."""
    joint = _encode(tokenizer, [p + r for p, r in zip(prompts, responses, strict=True)])
    alone = _encode(tokenizer, responses)
    return [
        both[len(prompt) :] if both[: len(prompt)] == prompt else own
        for prompt, both, own in zip(prompt_ids, joint, alone, strict=True)
    ]


SENTINEL = "SIMPER-RESPONSE-7f3a"


def turn_end(tokenizer: PreTrainedTokenizerBase) -> tuple[str, int]:
    """What the chat template writes after an assistant turn's content (ChatML's ``"<|im_end|>\n"``,
    Gemma's ``"<end_of_turn>\n"``, Llama 3's ``"<|eot_id|>"``) and the token that ends the turn: the
    first token of that text when it is a special token (Llama 3's ``<|eot_id|>`` is one only in
    ``added_tokens_decoder``); otherwise ``("", EOS)``, and the response keeps what the template
    wrote. Gemma's and Llama 3's tokenizers name another token EOS than the one their turns end with
    (and generation stops at)."""
    eos = tokenizer.eos_token_id
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": SENTINEL}]
    from jinja2 import TemplateError

    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
    except (TemplateError, ValueError):  # rendering the pairs themselves reports it, by row
        return "", eos
    if not isinstance(text, str) or text.count(SENTINEL) != 1:
        return "", eos
    suffix = text.split(SENTINEL)[1]
    ids = tokenizer(suffix, add_special_tokens=False)["input_ids"] if suffix else []
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    special = set(tokenizer.all_special_ids) | {i for i, token in added.items() if getattr(token, "special", False)}
    if not ids or ids[0] not in special:  # no token ends the turn (or text before it): EOS, as for text
        return "", eos
    return suffix, ids[0]


def _cut(response: str, suffix: str) -> str:
    """A rendered response without the template's end-of-turn text (the turn's end token is added back
    as a token, and only to a response that ended)."""
    return response[: -len(suffix)] if suffix and response.endswith(suffix) else response


def _close_response(ids: list[int], stop: int, eos: int, whitespace_ids: frozenset[int], truncated: bool) -> list[int]:
    """Drop trailing whitespace, end-of-turn and EOS tokens, then end with exactly one ``stop`` (the
    turn's end) unless ``truncated``."""
    end = len(ids)
    while end and (ids[end - 1] in whitespace_ids or ids[end - 1] in (stop, eos)):
        end -= 1
    return ids[:end] if truncated else [*ids[:end], stop]


def _whitespace_token_ids(tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    """Ids of tokens that decode to whitespace only (what templates write after an end-of-turn token)."""
    candidates = tokenizer(["\n", "\n\n", " ", "  "], add_special_tokens=False)["input_ids"]
    return frozenset(token for ids in candidates for token in ids if not tokenizer.decode([token]).strip())
