"""The training loop, top to bottom: setup → fit (with evaluate and checkpoints) → save.

accelerate owns devices, mixed precision, gradient accumulation, distribution and trackers; this
file owns the order of things. Objectives come from the registry and are never special-cased here
beyond ``needs_reference``.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader

from simper import attention, distributed, models
from simper.checkpoints import (
    CHECKPOINTS,
    LATEST,
    install_stop_handlers,
    last_record,
    restore_stop_handlers,
    resume,
    save_checkpoint,
    save_final,
)
from simper.config import TrainConfig, save_config
from simper.console import Progress, flatten, log, warn_if_off_policy
from simper.data.collate import EpochSampler, HeldOutBatches, PairCollator, PreferenceBatch, padding_free_on
from simper.data.pipeline import prepare_data
from simper.errors import UserError
from simper.logprobs import AdaptersOff, FrozenReference, Reference, SequenceLogpsModel
from simper.metrics import pair_stats, reduce_totals, summarize
from simper.objectives import Objective, SequenceLogps, get_objective, mean_logp_gradients
from simper.optim import build_optimizer, lr_schedule, warn_if_updates_round_away
from simper.resources import HELDOUT_PAIRS, SHIPPED_PAIRS, TRAIN_PAIRS, pair_file


@dataclass
class Run:
    """What setup builds and fit/save use."""

    config: TrainConfig
    accelerator: Accelerator
    output_dir: Path
    tokenizer: Any
    policy: Any  # SequenceLogpsModel, prepared
    reference: Reference | None
    objective: Objective
    optimizer: Any
    scheduler: Any
    sampler: EpochSampler
    train_loader: DataLoader
    eval_batches: HeldOutBatches | None
    total_steps: int
    steps_per_epoch: int
    data_report: list[str]
    step: int = 0
    epoch: int = 0
    batches_done_in_epoch: int = 0
    nonfinite_total: int = 0
    consecutive_nonfinite: int = 0  # not checkpointed: a resumed run starts counting afresh
    stop_requested: str | None = None
    final_metrics: dict[str, float] = field(default_factory=dict)


def train(config: TrainConfig) -> Path:
    """Train under ``config`` and return the folder holding the final model."""
    run = setup(config)
    fit(run)
    save_final(run)
    return run.output_dir


# ------------------------------------------------------------------------------------------------
# setup
# ------------------------------------------------------------------------------------------------


def setup(config: TrainConfig) -> Run:
    """Everything a run needs, in order: accelerator, data, model, reference, loaders, optimizer."""
    t, m = config.training, config.model
    output_dir = Path(t.output_dir)
    accelerator = _accelerator(config, output_dir)
    _check_output_dir(output_dir, t.resume, t.overwrite)
    set_seed(t.seed)

    model_kwargs = {"revision": m.revision, "trust_remote_code": m.trust_remote_code}
    tokenizer = models.load_tokenizer(m.name_or_path, chat_template=m.chat_template, **model_kwargs)
    data = _prepare_data(config, tokenizer)
    for line in data.report:
        log(accelerator, f"data: {line}")

    objective = get_objective(config.objective.name)
    load = dict(torch_dtype=m.torch_dtype, attn_implementation=m.attn_implementation, dropout=m.dropout, **model_kwargs)
    model = _load_policy_model(config, load)
    _make_output_dir(output_dir, t.overwrite and not t.resume, accelerator)  # only once data and model loaded
    attention.check_trainable(model, accelerator.device)
    fp16_trainable = (p.dtype == torch.float16 for p in model.parameters() if p.requires_grad)
    if distributed.unscales_fp32_only(accelerator.scaler) and any(fp16_trainable):
        raise UserError(
            "training.fp16 with model.torch_dtype=float16: fp16 loss scaling cannot unscale fp16 gradients; load the "
            "weights in float32 (model.torch_dtype=float32), autocast still runs the matmuls in fp16"
        )
    reference = None
    if objective.needs_reference and config.lora.r == 0:
        reference = _frozen_reference(config, load, accelerator)

    padding_free = padding_free_on(accelerator.device) if t.padding_free is None else t.padding_free
    layout = attention.layout_for(model, t.layout, config.data.max_length)
    log(accelerator, f"batches: {layout} rows, {'one call per row' if padding_free else 'padded into one call'}")
    collate = PairCollator(tokenizer.pad_token_id, layout, padding_free)
    sampler = EpochSampler(len(data.train), t.seed)
    train_loader = DataLoader(data.train, batch_size=t.per_device_train_batch_size, sampler=sampler, collate_fn=collate)
    policy = SequenceLogpsModel(model, t.logits_chunk_size)
    optimizer = build_optimizer(policy, t, accelerator.device)
    # The schedule is sized from the loader as accelerate shards it (even batches: each process gets the
    # ceiling of its share) and prepared in the same call as the model: under DeepSpeed a scheduler prepared
    # on its own comes back unwrapped, stepped once per update instead of once per process (a schedule
    # stretched by the process count) and missing from checkpoints.
    batches_per_process = math.ceil(len(train_loader) / accelerator.num_processes)
    steps_per_epoch = max(1, math.ceil(batches_per_process / t.gradient_accumulation_steps))
    total_steps = t.max_steps if t.max_steps > 0 else max(1, math.ceil(t.num_train_epochs * steps_per_epoch))
    scheduler = lr_schedule(optimizer, t, total_steps, accelerator.num_processes)
    distributed.deepspeed_clipping(accelerator, t.max_grad_norm)
    policy, optimizer, train_loader, scheduler = accelerator.prepare(policy, optimizer, train_loader, scheduler)
    if len(train_loader) != batches_per_process:
        raise RuntimeError(f"accelerate gave each process {len(train_loader)} batches, not {batches_per_process}")
    warn_if_updates_round_away(accelerator, model, t.learning_rate)
    eval_batches = (
        HeldOutBatches(
            data.eval,
            t.per_device_eval_batch_size,
            collate,
            accelerator.num_processes,
            accelerator.process_index,
            accelerator.device,
        )
        if data.eval and t.eval_steps >= 0
        else None
    )
    if objective.needs_reference and config.lora.r > 0:
        reference = AdaptersOff(policy)  # the base under the adapters: no second copy of the model

    run = Run(
        config=config,
        accelerator=accelerator,
        output_dir=output_dir,
        tokenizer=tokenizer,
        policy=policy,
        reference=reference,
        objective=objective,
        optimizer=optimizer,
        scheduler=scheduler,
        sampler=sampler,
        train_loader=train_loader,
        eval_batches=eval_batches,
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        data_report=data.report,
    )
    _start(run, len(data.train))
    return run


def _frozen_reference(config: TrainConfig, load: dict[str, Any], accelerator: Accelerator) -> FrozenReference:
    """A second copy of the starting model as the reference, on this process's device and outside
    accelerate's models: accelerate would checkpoint it with the policy on every save (and DeepSpeed
    cannot save a module it did not wrap), and FSDP's clipping looks the policy up among them.

    The copy is whole on every process. Under FSDP and ZeRO-3 the policy is sharded and loaded sharded,
    which this copy is not, so there a reference objective needs LoRA, whose reference is the policy
    with its adapters off."""
    if distributed.sharded(accelerator):
        raise UserError(
            f"objective {config.objective.name} needs a reference model, which simper does not shard: under FSDP "
            "or ZeRO-3 use LoRA (lora.r > 0; the reference is then the base under the adapters), a reference-free "
            "objective (simper, simpo, cpo, orpo, ...), or ZeRO-2 / DDP, where the reference is one whole copy per GPU"
        )
    model = models.load_model(config.model.name_or_path, **load).eval().requires_grad_(False)
    return FrozenReference(
        SequenceLogpsModel(model, config.training.logits_chunk_size).to(accelerator.device), accelerator
    )


def _accelerator(config: TrainConfig, output_dir: Path) -> Accelerator:
    t = config.training
    return Accelerator(
        mixed_precision=t.mixed_precision,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        log_with=config.logging.report_to or None,
        project_dir=str(output_dir),
    )


def _prepare_data(config: TrainConfig, tokenizer: Any):
    """The tokenized train and held-out pairs; no data named, or only shipped pair sets by name, means
    the shipped held-out set unless another is given."""
    d = config.data
    train = [pair_file(source) for source in d.train] or [str(TRAIN_PAIRS)]
    shipped = set(train) <= {str(path) for path in SHIPPED_PAIRS.values()}
    return prepare_data(
        train,
        [pair_file(source) for source in d.eval] or ([str(HELDOUT_PAIRS)] if shipped and not d.eval_fraction else []),
        tokenizer=tokenizer,
        split=d.split,
        eval_split=d.eval_split,
        eval_fraction=d.eval_fraction,
        max_length=d.max_length,
        max_prompt_length=d.max_prompt_length,
        drop_truncated=d.drop_truncated,
        balance_lengths=d.balance_lengths,
        seed=config.training.seed,
    )


def _load_policy_model(config: TrainConfig, load: dict[str, Any]) -> Any:
    """The model to train: loaded, with gradient checkpointing and LoRA adapters when asked for."""
    m = config.model
    model = models.load_model(m.name_or_path, load_in_4bit=config.lora.load_in_4bit, **load)
    if m.gradient_checkpointing:
        models.enable_checkpointing(model)
    if config.lora.r > 0:
        model = models.add_lora(model, config.lora, m.gradient_checkpointing)
    if config.training.compile:
        models.compile_layers(model)
    return model


def _start(run: Run, pairs: int) -> None:
    """Resume from the latest checkpoint, or record the config of a new run; start trackers; say what runs."""
    config, accelerator = run.config, run.accelerator
    t = config.training
    if t.resume:
        resume(run)
    elif accelerator.is_main_process:
        save_config(config, run.output_dir / "config.yaml")
    if config.logging.report_to:
        accelerator.init_trackers(
            "simper",
            config=flatten(config.to_dict()),
            init_kwargs={"wandb": {"name": config.logging.run_name or run.output_dir.name}},
        )
    pairs_per_step = t.per_device_train_batch_size * t.gradient_accumulation_steps * accelerator.num_processes
    log(
        accelerator,
        f"training {config.model.name_or_path} with {run.objective.name} on "
        f"{pairs} pairs: {run.total_steps} steps of {pairs_per_step} pairs",
    )


def _check_output_dir(output_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to touch a run folder the user did not hand over (before any slow work)."""
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"training.output_dir {output_dir}: exists and is not a folder")
    if resume and not (output_dir / CHECKPOINTS / LATEST).exists():
        raise UserError(f"{output_dir}: no checkpoint to resume from (training.save_steps writes them)")
    nonempty = output_dir.exists() and any(output_dir.iterdir())
    if nonempty and not resume and not overwrite:
        raise UserError(f"{output_dir}: folder is not empty; pass --overwrite to replace it or --resume to continue")
    run_markers = ("config.yaml", "metrics.jsonl", CHECKPOINTS)
    if nonempty and overwrite and not any((output_dir / marker).exists() for marker in run_markers):
        raise UserError(f"{output_dir}: --overwrite replaces only simper run folders, and this is not one; refusing")


def _make_output_dir(output_dir: Path, replace: bool, accelerator: Accelerator) -> None:
    if accelerator.is_main_process:
        if replace and output_dir.exists():
            shutil.rmtree(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()


# ------------------------------------------------------------------------------------------------
# fit
# ------------------------------------------------------------------------------------------------


def preference_step(
    policy: Any, reference: Reference | None, objective: Objective, params: dict[str, float], batch: PreferenceBatch
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One forward over chosen and rejected together; returns the mean loss and per-batch sums to log."""
    pairs = batch.num_pairs
    sums, counts = policy(batch)
    logps = SequenceLogps(sums[:pairs], sums[pairs:], counts[:pairs], counts[pairs:])
    reference_logps = None
    if reference is not None:
        ref_sums, ref_counts = reference(batch)
        reference_logps = SequenceLogps(ref_sums[:pairs], ref_sums[pairs:], ref_counts[:pairs], ref_counts[pairs:])
    out = objective(logps, reference_logps, **params)
    stats = pair_stats(out, logps, batch)
    if torch.is_grad_enabled():
        grad_chosen, grad_rejected = mean_logp_gradients(out.losses, logps)
        stats["grad/chosen"], stats["grad/rejected"] = grad_chosen.sum(), grad_rejected.sum()
    return out.losses.mean(), stats


def fit(run: Run) -> None:
    """Optimizer steps until ``total_steps``; evaluates and checkpoints on schedule."""
    metrics_path = run.output_dir / "metrics.jsonl"
    progress = Progress(run)
    previous_handlers = install_stop_handlers(run)
    if run.eval_batches is not None and run.step == 0:
        start = evaluate(run)
        _write_metrics(run, metrics_path, {"step": 0, **start})
        run.final_metrics.update({f"start/{k}": v for k, v in start.items()})
    run.policy.train()
    totals: dict[str, torch.Tensor] = {}
    step_start = time.perf_counter()
    try:
        while run.step < run.total_steps:
            for batch in _epoch_batches(run):
                with run.accelerator.accumulate(run.policy):
                    reduced = _forward_backward_update(run, batch, totals)
                if reduced is None:  # gradients still accumulating
                    continue
                totals = {}
                record = _step_record(run, reduced, time.perf_counter() - step_start)
                _write_metrics(run, metrics_path, record)
                progress.update(record)
                _after_step(run, record, metrics_path)
                step_start = time.perf_counter()
                if run.step >= run.total_steps:
                    break
            else:
                run.epoch, run.batches_done_in_epoch = run.epoch + 1, 0
    finally:
        progress.close()
        restore_stop_handlers(previous_handlers)
    _final_evaluation(run, metrics_path)
    t = run.config.training
    if t.save_steps and run.step % t.save_steps:
        save_checkpoint(run)


def _epoch_batches(run: Run) -> Iterator[PreferenceBatch]:
    """This epoch's batches, after those a resumed run already trained on."""
    if run.batches_done_in_epoch >= len(run.train_loader):
        run.epoch, run.batches_done_in_epoch = run.epoch + 1, 0
    run.sampler.start_epoch(run.epoch)
    loader = run.train_loader
    if run.batches_done_in_epoch:
        loader = run.accelerator.skip_first_batches(loader, run.batches_done_in_epoch)
    for batch in loader:
        run.batches_done_in_epoch += 1
        yield batch


def _forward_backward_update(run: Run, batch: PreferenceBatch, totals: dict[str, torch.Tensor]) -> dict | None:
    """Loss and gradients of one micro-batch, added into ``totals``; at the end of an accumulation
    window, the clipped optimizer update (skipped when the loss or gradient is not finite) and the
    window's totals reduced over processes. ``None`` while gradients accumulate."""
    accelerator, t = run.accelerator, run.config.training
    params = dict(run.config.objective.params)
    loss, stats = preference_step(run.policy, run.reference, run.objective, params, batch)
    accelerator.backward(loss * accelerator.gradient_accumulation_steps / _window_length(run))
    for key, value in stats.items():
        totals[key] = totals.get(key, 0.0) + value.detach()
    if not accelerator.sync_gradients:
        return None
    max_norm = t.max_grad_norm if t.max_grad_norm > 0 else float("inf")
    grad_norm = accelerator.clip_grad_norm_(run.policy.parameters(), max_norm)
    reduced = reduce_totals(accelerator, totals, grad_norm)
    finite = math.isfinite(reduced["loss"]) and math.isfinite(reduced["grad_norm"])
    reduced["lr"] = run.optimizer.param_groups[0]["lr"]  # what this update uses; the scheduler then moves on
    scaler = accelerator.scaler  # fp16 loss scaling on a GPU; None otherwise
    scale = scaler.get_scale() if scaler is not None else None
    if finite:
        run.optimizer.step()
        run.scheduler.step()
    elif scaler is not None:
        # Clipping unscaled the gradients; the scaler must close the step, or the next clip raises. It
        # halves the scale after an overflow, as the skipped optimizer.step() would have.
        scaler.update()
    run.optimizer.zero_grad()
    run.step += 1
    # an fp16 overflow at a loss scale ≥ 1 is the scaler finding its scale (it starts at 65,536), not a
    # diverging run: it skips the update but does not count towards training.max_nonfinite_steps
    calibrating = scale is not None and scale >= 1 and math.isfinite(reduced["loss"])
    if finite:
        run.consecutive_nonfinite = 0
    elif calibrating:
        run.nonfinite_total += 1
        log(
            accelerator,
            f"step {run.step}: fp16 gradient overflow at loss scale {scale:g}; update skipped, scale "
            f"lowered to {scaler.get_scale():g}",
        )
    else:
        run.consecutive_nonfinite += 1
        run.nonfinite_total += 1
        log(accelerator, f"warning: step {run.step}: non-finite loss or gradient; update skipped")
    if scaler is not None:
        reduced["loss_scale"] = scaler.get_scale()
    return reduced


def _window_length(run: Run) -> int:
    """Micro-batches in the accumulation window of the batch just drawn: ``gradient_accumulation_steps``,
    or fewer in an epoch's last window (accelerate closes a window at the end of the data). accelerate
    divides every micro-batch's loss by ``gradient_accumulation_steps``; a short window's must be
    divided by its own length, or its update is that fraction of the others'."""
    steps = run.accelerator.gradient_accumulation_steps
    start = (run.batches_done_in_epoch - 1) // steps * steps
    return min(steps, len(run.train_loader) - start)


def _step_record(run: Run, reduced: dict[str, float], elapsed: float) -> dict[str, Any]:
    """The ``metrics.jsonl`` line of the step just taken."""
    return {
        "step": run.step,
        "epoch": round(run.epoch + run.batches_done_in_epoch / max(len(run.train_loader), 1), 4),
        **summarize(reduced),
        "lr": reduced["lr"],
        "grad_norm": reduced["grad_norm"],
        "tokens": reduced["tokens"],
        "tokens_per_s": reduced["tokens"] / max(elapsed, 1e-9),
        "nonfinite_steps": run.nonfinite_total,
        **({"loss_scale": reduced["loss_scale"]} if "loss_scale" in reduced else {}),
    }


def _after_step(run: Run, record: dict[str, Any], metrics_path: Path) -> None:
    """What follows a step: the off-policy warning (first step), the stop on repeated non-finite
    steps, the held-out evaluation and checkpoint when due, a clean exit when a signal asked for one."""
    accelerator, t = run.accelerator, run.config.training
    if run.step == 1:
        warn_if_off_policy(accelerator, run.objective.name, record["logps/chosen"])
    if run.consecutive_nonfinite >= t.max_nonfinite_steps:
        raise UserError(
            f"{run.consecutive_nonfinite} consecutive steps had a non-finite loss or gradient (last: step "
            f"{run.step}); stopped. Lower training.learning_rate or check the data; the last checkpoint "
            f"in {run.output_dir / CHECKPOINTS} is intact"
        )
    if run.eval_batches is not None and t.eval_steps and run.step % t.eval_steps == 0:
        _write_metrics(run, metrics_path, {"step": run.step, **evaluate(run)})
    if (t.save_steps and run.step % t.save_steps == 0) or run.stop_requested:
        save_checkpoint(run)
    if run.stop_requested:
        log(
            accelerator,
            f"{run.stop_requested} received: checkpoint saved at step {run.step}. Resume with: "
            f"simper train --config {run.output_dir / 'config.yaml'} --resume",
        )
        raise SystemExit(130 if run.stop_requested == "SIGINT" else 143)


def _final_evaluation(run: Run, metrics_path: Path) -> None:
    """The held-out metrics at the last step (evaluated now unless the schedule just did), logged
    beside the start's."""
    if run.eval_batches is None:
        return
    t = run.config.training
    evaluated_now = t.eval_steps and run.step % t.eval_steps == 0
    final = last_record(metrics_path, "eval/loss") if evaluated_now else evaluate(run)
    if not evaluated_now:
        _write_metrics(run, metrics_path, {"step": run.step, **final})
    run.final_metrics.update(final)
    start = run.final_metrics
    if "start/eval/loss" in start:
        for key in ("loss", "rewards/accuracies", "logps/chosen", "logps/rejected"):
            log(run.accelerator, f"held-out {key}: {start[f'start/eval/{key}']:.4f} -> {final[f'eval/{key}']:.4f}")


@torch.no_grad()
def evaluate(run: Run) -> dict[str, float]:
    """The training metrics on the held-out pairs, prefixed ``eval/``."""
    run.policy.eval()
    params = dict(run.config.objective.params)
    totals: dict[str, torch.Tensor] = {}
    for batch, counted in run.eval_batches:
        _, stats = preference_step(run.policy, run.reference, run.objective, params, batch)
        for key, value in stats.items():  # a filler batch adds zeros: every process reduces the same keys
            totals[key] = totals.get(key, 0.0) + (value if counted else torch.zeros_like(value))
    run.policy.train()
    reduced = reduce_totals(run.accelerator, totals, None)
    return {f"eval/{k}": v for k, v in summarize(reduced).items()}


def _write_metrics(run: Run, path: Path, record: dict[str, Any]) -> None:
    if run.accelerator.is_main_process:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
    if run.config.logging.report_to:
        run.accelerator.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])
