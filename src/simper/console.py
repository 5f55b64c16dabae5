"""What a run prints: one-line messages, and a progress bar on a terminal or periodic lines elsewhere."""

from __future__ import annotations

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
