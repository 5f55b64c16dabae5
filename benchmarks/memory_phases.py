"""Where the memory of one simper training step goes, phase by phase (CPU, peak RSS).

    python benchmarks/memory_phases.py                               # SmolLM2, fixed-256, 4 pairs, gc on
    python benchmarks/memory_phases.py --gradient-checkpointing off --optimizer foreach

The step is the one `simper train` takes (shared-prompt rows, padding-free, chunked response-only
head, the optimizer of ``simper.optim.build_optimizer`` unless ``--optimizer`` asks for torch's
per-tensor or foreach AdamW). Each phase — load, forward, backward, clip, optimizer step, and a
second whole step — reports the resident memory after it and the peak during it (sampled by a
thread every 5 ms), both above the process's RSS once torch and transformers are imported. Beside
them, what the sizes alone account for: weights, gradients and AdamW's two moments (4 bytes each
per parameter in fp32). Runs under the allocator setting it is started with (and says which);
``MALLOC_MMAP_THRESHOLD_=65536`` makes freed blocks go back to the system, so that "held after"
means what is still in use.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step import PAIRS_PER_STEP, make_pairs  # the step benchmark's data: the same token sequences


def _rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9


class PeakSampler:
    """The largest RSS seen by a thread that reads ``/proc/self/statm`` every few milliseconds (torch
    releases the GIL in its kernels). ``VmHWM`` cannot serve: Linux updates it lazily."""

    def __init__(self, interval: float = 0.005):
        self.interval, self.peak, self._stop = interval, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_gb())
            time.sleep(self.interval)

    def __enter__(self) -> PeakSampler:
        self.peak = _rss_gb()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_gb())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--data", default="fixed-256", choices=("fixed-256", "fixed-512", "mixed"))
    parser.add_argument("--gradient-checkpointing", default="on", choices=("on", "off"))
    parser.add_argument("--optimizer", default="simper", choices=("simper", "single", "foreach"))
    args = parser.parse_args()

    import torch

    from simper.attention import layout_for
    from simper.config import TrainingConfig
    from simper.data.collate import PairCollator
    from simper.logprobs import SequenceLogpsModel
    from simper.models import enable_checkpointing, load_model, load_tokenizer
    from simper.objectives import get_objective
    from simper.optim import build_optimizer
    from simper.train import preference_step

    torch.manual_seed(0)
    tokenizer = load_tokenizer(args.model)
    _, pairs = make_pairs(tokenizer, args.data, 2 * PAIRS_PER_STEP)
    rows: list[tuple[str, float, float]] = []
    base = _rss_gb()

    def phase(name: str, work):
        with PeakSampler() as sampler:
            out = work()
        rows.append((name, _rss_gb() - base, sampler.peak - base))
        return out

    model = phase("load the model", lambda: load_model(args.model, torch_dtype="float32").train())
    if args.gradient_checkpointing == "on":
        enable_checkpointing(model)
    policy = SequenceLogpsModel(model)
    collate = PairCollator(tokenizer.pad_token_id, layout_for(model, "shared-prompt"), padding_free=True)
    objective = get_objective("simper")
    if args.optimizer == "simper":
        hyper = TrainingConfig(learning_rate=1e-6)
        optimizer = build_optimizer(policy, hyper, torch.device("cpu"))
    else:
        optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-6, foreach=args.optimizer == "foreach")
    batches = [collate(pairs[:PAIRS_PER_STEP]), collate(pairs[PAIRS_PER_STEP:])]

    loss = phase("forward", lambda: preference_step(policy, None, objective, {}, batches[0])[0])
    phase("backward", loss.backward)
    del loss
    phase("clip gradients", lambda: torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0))
    phase("optimizer step (first: moments allocated)", optimizer.step)
    phase("zero gradients", lambda: optimizer.zero_grad(set_to_none=True))

    def whole_step():
        step_loss, _ = preference_step(policy, None, objective, {}, batches[1])
        step_loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    started = time.perf_counter()
    phase("a second whole step", whole_step)
    seconds = time.perf_counter() - started

    parameters = sum(p.numel() for p in policy.parameters())
    state = parameters * 4 / 1e9
    tokens = sum(2 * len(p.prompt) + len(p.chosen) + len(p.rejected) for p in pairs[PAIRS_PER_STEP:])
    defaults = optimizer.defaults
    kind = "fused" if defaults.get("fused") else "foreach" if defaults.get("foreach") else "per-tensor"
    print(
        f"{args.model}, {args.data}, {PAIRS_PER_STEP} pairs ({tokens} tokens), gradient checkpointing "
        f"{args.gradient_checkpointing}, optimizer {optimizer.__class__.__name__} "
        f"({kind}), "
        f"MALLOC_MMAP_THRESHOLD_={os.environ.get('MALLOC_MMAP_THRESHOLD_', 'unset')}, torch {torch.__version__}"
    )
    print(f"RSS with torch and transformers imported, before the phases: {base:.2f} GB (not counted below)")
    print(f"weights {state:.2f} GB + gradients {state:.2f} + AdamW moments {2 * state:.2f} = {4 * state:.2f} GB state")
    print()
    print("| phase | held after (GB) | peak during (GB) |")
    print("|---|---|---|")
    for name, held, peak in rows:
        print(f"| {name} | {held:.2f} | {peak:.2f} |")
    print()
    print(f"second step: {seconds:.1f} s; its peak above the state it holds: {rows[-1][2] - 4 * state:+.2f} GB")


if __name__ == "__main__":
    main()
