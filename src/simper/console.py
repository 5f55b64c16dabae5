"""What a run prints: one-line messages, and a progress bar on a terminal or periodic lines elsewhere."""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from accelerate import Accelerator


def log(accelerator: Accelerator, message: str) -> None:
    if accelerator.is_main_process:
        print(f"simper: {message}", file=sys.stderr, flush=True)


class Progress:
    """A tqdm bar on a terminal; plain periodic lines otherwise (logs, CI)."""

    def __init__(self, run: Any) -> None:
        self.run, self.start, self.bar = run, time.perf_counter(), None
        self.every = run.config.logging.logging_steps
        if run.accelerator.is_main_process and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=run.total_steps, initial=run.step, desc="train", dynamic_ncols=True)
        self.first_step = run.step

    def update(self, record: dict[str, Any]) -> None:
        if not self.run.accelerator.is_main_process:
            return
        summary = f"loss {record['loss']:.4f} acc {record['rewards/accuracies']:.2f} {record['tokens_per_s']:.0f} tok/s"
        if self.bar is not None:
            self.bar.set_postfix_str(summary)
            self.bar.update(1)
            return
        step = record["step"]
        if step % self.every == 0 or step == self.run.total_steps:
            per_step = (time.perf_counter() - self.start) / max(step - self.first_step, 1)
            eta = time.strftime("%H:%M:%S", time.gmtime(per_step * (self.run.total_steps - step)))
            print(
                f"simper: step {step}/{self.run.total_steps} | {summary} | eta {eta}",
                file=sys.stderr,
                flush=True,
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value if isinstance(value, int | float | str | bool) else str(value)
    return flat


OFF_POLICY_LOGP = -4.0
"""Mean log-prob per chosen token below which the first step warns: SimPER's push on a response is its
inverse perplexity exp(mean log-prob), 0.018 at −4 against ≈ 0.37 for the model's own samples (about
−1 per token), so at the same learning rate such data moves the model some 20× less."""


def warn_if_off_policy(accelerator: Accelerator, objective: str, chosen_logp: float) -> None:
    if objective.startswith("simper") and chosen_logp < OFF_POLICY_LOGP:
        log(
            accelerator,
            f"warning: the chosen responses have a mean log-prob of {chosen_logp:.2f} per token under the model "
            f"(inverse perplexity {math.exp(chosen_logp):.4f}): SimPER's gradient scales with it, so it will barely "
            f"learn from this data (below {OFF_POLICY_LOGP:g}, some 20x less than from the model's own samples). "
            "Make on-policy pairs with `simper pairs`, or SFT the model on the chosen responses first",
        )
