"""What differs under a multi-process launch (FSDP, DeepSpeed), in one place: whether the weights are
sharded, DeepSpeed's clipping and its ZeRO-3 loading, which loss scaler is in use."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from accelerate import Accelerator


def unscales_fp32_only(scaler: Any) -> bool:
    """Whether fp16 loss scaling is on with torch's GradScaler, which refuses to unscale fp16 gradients
    (FSDP1's ShardedGradScaler unscales them)."""
    if scaler is None:  # no fp16 loss scaling: nothing to import at every start
        return False
    from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

    return not isinstance(scaler, ShardedGradScaler)


def sharded(accelerator: Accelerator) -> bool:
    """Whether each process holds only a shard of the weights (FSDP, DeepSpeed ZeRO-3)."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP or (
        accelerator.distributed_type == DistributedType.DEEPSPEED and accelerator.state.deepspeed_plugin.zero_stage == 3
    )


def deepspeed_clipping(accelerator: Accelerator, max_grad_norm: float) -> None:
    """Under DeepSpeed, clipping happens inside its engine at the value in its config, which accelerate
    fills with 1.0 where the config says ``auto``: make ``auto`` mean ``training.max_grad_norm``
    (≤ 0: none, which DeepSpeed writes as 0)."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type != DistributedType.DEEPSPEED:
        return
    ds_config = accelerator.state.deepspeed_plugin.deepspeed_config
    if ds_config.get("gradient_clipping", "auto") == "auto":
        ds_config["gradient_clipping"] = max(float(max_grad_norm), 0.0)


@contextlib.contextmanager
def outside_zero3(accelerator: Accelerator) -> Iterator[None]:
    """Load a model whole on one process under a ZeRO-3 run: while accelerate's DeepSpeed config is
    registered, ``from_pretrained`` partitions the weights over every process as it loads them, a
    collective the others (waiting at a barrier) never join."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type != DistributedType.DEEPSPEED:
        yield
        return
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    try:
        yield
    finally:
        accelerator.state.deepspeed_plugin.set_deepspeed_weakref()
