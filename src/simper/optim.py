"""The optimizer and its learning-rate schedule as ``simper train`` builds them, and the warning when
an update would round away on low-precision weights."""

from __future__ import annotations

import math
from typing import Any

import torch
from accelerate import Accelerator
from torch import nn
from transformers import get_scheduler

from simper.console import log

FUSED_ADAMW_DEVICES = ("cpu", "cuda")


def build_optimizer(policy: nn.Module, t: Any, device: torch.device) -> torch.optim.Optimizer:
    """AdamW, no weight decay on biases and norms. The fused kernel on CPU and CUDA: one pass over
    each parameter instead of a dozen elementwise ops (on CPU the default is a per-tensor loop,
    several times slower on a 135M model), with the same update."""

    def matrix(p: nn.Parameter) -> bool:  # ZeRO-3 leaves a partitioned parameter empty, its shape in ds_shape
        return len(getattr(p, "ds_shape", p.shape)) >= 2

    decay = [p for p in policy.parameters() if p.requires_grad and matrix(p)]
    no_decay = [p for p in policy.parameters() if p.requires_grad and not matrix(p)]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=t.learning_rate,
        betas=(t.adam_beta1, t.adam_beta2),
        eps=t.adam_epsilon,
        fused=device.type in FUSED_ADAMW_DEVICES or None,
    )


def lr_schedule(optimizer: torch.optim.Optimizer, t: Any, total_steps: int, processes: int) -> Any:
    """The learning-rate schedule; accelerate steps a prepared scheduler once per process per optimizer step."""
    return get_scheduler(
        t.lr_scheduler_type,
        optimizer,
        num_warmup_steps=math.ceil(t.warmup_ratio * total_steps) * processes,
        num_training_steps=total_steps * processes,
    )


def warn_if_updates_round_away(accelerator: Accelerator, model: nn.Module, learning_rate: float) -> None:
    """Warn when trainable weights are bf16/fp16 with no fp32 copy to update (DeepSpeed keeps one, and
    accelerate upcasts for FSDP; plain DDP and one device do neither): an AdamW update is about the
    learning rate, and a weight keeps it only where it exceeds half the weight's rounding step."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        return
    if accelerator.distributed_type == DistributedType.FSDP and accelerator.mixed_precision != "no":
        return  # accelerate upcasts the weights to fp32 for FSDP's mixed precision
    low = {p.dtype for p in model.parameters() if p.requires_grad and p.dtype in (torch.bfloat16, torch.float16)}
    for dtype in low:
        largest = 2 * learning_rate / torch.finfo(dtype).eps
        log(
            accelerator,
            f"warning: trainable weights in {str(dtype).removeprefix('torch.')} and no fp32 copy to update: an "
            f"AdamW step moves a weight by about the learning rate ({learning_rate:g}), which rounds away on every "
            f"weight larger than {largest:.1g} in magnitude, so training barely moves the model. Load it in "
            "float32 (model.torch_dtype=float32) with training.bf16=true, or launch with DeepSpeed "
            "(configs/accelerate/zero3.yaml), which keeps fp32 weights",
        )
