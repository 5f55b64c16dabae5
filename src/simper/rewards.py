"""Reward sources for ``simper pairs`` and ``simper eval``.

- ``builtin``: the built-in task checkers (the prompt row must carry its task: constraints or answer);
- ``module:function``: any Python callable ``f(prompt, response) -> float``, imported only because
  the user named it;
- anything else: a Hugging Face sequence-classification reward model (local folder or hub id),
  scoring the chat-templated conversation by its first logit.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

import torch

from simper.errors import UserError, first_line
from simper.tasks import score as score_task

RewardFn = Callable[[dict[str, Any], list[str]], list[float]]


def load_reward(spec: str, *, trust_remote_code: bool = False) -> tuple[str, RewardFn]:
    """``(name, fn)`` where ``fn(row, responses)`` scores several responses to one prompt row."""
    if spec == "builtin":
        return "builtin", _builtin
    module_name, sep, attr = spec.partition(":")
    if sep and not os.path.exists(spec):
        try:
            module = importlib.import_module(module_name)
            function = getattr(module, attr)
        except (ImportError, AttributeError) as err:
            raise UserError(f"reward {spec!r}: cannot import it ({err})") from None
        if not callable(function):
            raise UserError(f"reward {spec!r}: {attr} is not callable")
        return spec, lambda row, responses: [float(function(row["prompt"], r)) for r in responses]
    return spec, _reward_model(spec, trust_remote_code)


def _builtin(row: dict[str, Any], responses: list[str]) -> list[float]:
    if "kind" not in row:
        raise UserError(
            f"prompt {row.get('id', '?')}: the builtin reward needs a built-in task row (with 'kind'); "
            "use --reward module:function or a reward model for your own prompts"
        )
    return [score_task(row, response).reward for response in responses]


def _reward_model(spec: str, trust_remote_code: bool) -> RewardFn:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(spec, trust_remote_code=trust_remote_code)
        model = AutoModelForSequenceClassification.from_pretrained(
            spec, trust_remote_code=trust_remote_code, use_safetensors=True
        ).eval()
    except (OSError, ValueError) as err:
        raise UserError(
            f"reward {spec!r}: not 'builtin', not module:function, and not a loadable reward model: {first_line(err)}"
        ) from None

    @torch.no_grad()
    def score(row: dict[str, Any], responses: list[str]) -> list[float]:
        prompt = row["prompt"] if isinstance(row["prompt"], list) else [{"role": "user", "content": row["prompt"]}]
        texts = [
            tokenizer.apply_chat_template([*prompt, {"role": "assistant", "content": r}], tokenize=False)
            if tokenizer.chat_template
            else prompt[-1]["content"] + "\n" + r
            for r in responses
        ]
        batch = tokenizer(texts, return_tensors="pt", padding=True, truncation=True)
        return model(**batch).logits[:, 0].float().tolist()

    return score
