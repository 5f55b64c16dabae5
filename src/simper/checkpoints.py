"""Resumable checkpoints of a training run, the signals that ask for one, and the final model folder.

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

import torch

from simper import distributed, models
from simper.console import log
from simper.modelcard import write_model_card

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


def save_final(run: Run) -> None:
    """The final Hugging Face model folder: weights, config, tokenizer, model card (files replaced atomically)."""
    accelerator = run.accelerator
    accelerator.wait_for_everyone()
    model = accelerator.unwrap_model(run.policy).model
    state_dict = accelerator.get_state_dict(run.policy)  # every process takes part; the main one gets it all
    state_dict = {k.removeprefix("model."): v for k, v in state_dict.items()} if state_dict is not None else None
    staging = run.output_dir / ".staging-final"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        if run.config.lora.r > 0:
            _save_lora(run, model, models.adapter_weights(state_dict), staging)
        else:
            model.save_pretrained(
                staging, state_dict=state_dict, safe_serialization=True, save_function=accelerator.save
            )
        run.tokenizer.save_pretrained(staging)
        last = last_record(run.output_dir / "metrics.jsonl")
        write_model_card(staging / "README.md", run.config, run.data_report, {**last, **run.final_metrics})
        for item in staging.iterdir():
            if item.is_dir():
                shutil.rmtree(run.output_dir / item.name, ignore_errors=True)
            os.replace(item, run.output_dir / item.name)
        staging.rmdir()
    accelerator.wait_for_everyone()
    if run.config.logging.report_to:
        accelerator.end_training()
    log(accelerator, f"saved the model to {run.output_dir}")


def _save_lora(run: Run, model: Any, weights: dict[str, torch.Tensor], staging: Path) -> None:
    """The adapter always, from its gathered ``weights`` (under FSDP and ZeRO-3 this process's own
    parameters are a shard); the merged full model unless ``lora.merge`` is off.

    Merging in place is exact only where the base weights are whole and unquantized. A 4-bit base would
    be re-quantized to NF4 with the small LoRA update inside its rounding, and a sharded one is not whole
    here: both merge into the base reloaded whole from ``model.name_or_path`` in ``model.torch_dtype``."""
    lora, m = run.config.lora, run.config.model
    adapter = staging / "adapter"
    models.save_adapter(model, weights, adapter)
    if not lora.merge:
        return
    if lora.load_in_4bit or distributed.sharded(run.accelerator):
        load = dict(torch_dtype=m.torch_dtype, revision=m.revision, trust_remote_code=m.trust_remote_code)
        with distributed.outside_zero3(run.accelerator):
            merged = models.merge_adapter(m.name_or_path, adapter, **load)
    else:
        merged = model.merge_and_unload()
    merged.save_pretrained(staging, safe_serialization=True)


def last_record(path: Path, key: str = "loss") -> dict[str, Any]:
    """The last record of ``metrics.jsonl`` that holds ``key`` (training or evaluation records)."""
    if not path.exists():
        return {}
    records = [record for line in path.read_text().splitlines() if line and key in (record := json.loads(line))]
    return records[-1] if records else {}
