"""Resumable checkpoints of a training run, and the signals that ask for one.

A checkpoint is accelerate's saved state (model, optimizer, scheduler, RNG, samplers) plus the
loop's counters, written to a staging folder and renamed into place, with ``latest`` pointing at
it; SIGINT/SIGTERM ask the loop for one at the next step boundary.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simper.console import log

if TYPE_CHECKING:
    from simper.train import Run

CHECKPOINTS = "checkpoints"
LATEST = "latest"


def save_checkpoint(run: Run) -> Path:
    """Write a resumable checkpoint atomically (staging folder, then rename) and point ``latest`` at it."""
    accelerator = run.accelerator
    root = run.output_dir / CHECKPOINTS
    final = root / f"step-{run.step:08d}"
    staging = root / f".staging-step-{run.step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    # every process has written its share (rank r's random_states_r.pkl) before the folder moves: a
    # late rank would otherwise re-create the staging folder and write its state there, not into the
    # checkpoint (seen under load: step-…/random_states_1.pkl missing, the run's exit code still 0)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state = {
            "step": run.step,
            "epoch": run.epoch,
            "batches_done_in_epoch": run.batches_done_in_epoch,
            "nonfinite_total": run.nonfinite_total,
        }
        (staging / "trainer_state.json").write_text(json.dumps(state))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        pointer = root / f".{LATEST}.tmp"
        pointer.write_text(final.name)
        os.replace(pointer, root / LATEST)
        kept = sorted(p for p in root.glob("step-*") if p.is_dir())
        for old in kept[: max(0, len(kept) - run.config.training.save_total_limit)]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def resume(run: Run) -> None:
    root = run.output_dir / CHECKPOINTS
    checkpoint = root / (root / LATEST).read_text().strip()
    run.accelerator.load_state(str(checkpoint))
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    run.step, run.epoch = state["step"], state["epoch"]
    run.batches_done_in_epoch = state["batches_done_in_epoch"]
    run.nonfinite_total = state["nonfinite_total"]
    if run.accelerator.is_main_process:  # drop records written after the checkpoint by the interrupted run
        metrics = run.output_dir / "metrics.jsonl"
        if metrics.exists():
            kept = [line for line in metrics.read_text().splitlines() if line and json.loads(line)["step"] <= run.step]
            metrics.write_text("".join(line + "\n" for line in kept))
    log(run.accelerator, f"resumed from {checkpoint} at step {run.step}")


def install_stop_handlers(run: Run) -> dict[int, Any]:
    """SIGINT/SIGTERM ask for a checkpoint at the next step boundary instead of killing the run."""

    def request_stop(signum: int, _frame: Any) -> None:
        if run.stop_requested:  # a second signal stops at once
            raise KeyboardInterrupt
        run.stop_requested = signal.Signals(signum).name
        log(run.accelerator, f"{run.stop_requested}: finishing this step, then saving a checkpoint")

    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError):  # not the main thread: leave the default handlers
            previous[signum] = signal.signal(signum, request_stop)
    return previous


def restore_stop_handlers(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)
