"""Memory of the log-prob step against sequence length and vocabulary: chunked response-only vs plain.

    python benchmarks/memory.py            # table + benchmarks/results/memory.png

One pair (chosen and rejected, each ``length`` tokens: half prompt, half response) through the LM
head and log-softmax, forward and backward, the way a preference step ends:

  plain    full-vocabulary logits at every position (what ``model(...).logits`` gives), fp32
           log-softmax, gather, backward — what TRL and a plain SFT step do;
  chunked  simper's path: logits only at response positions, in chunks of 1,024 positions at a
           32k vocabulary (proportionally fewer at larger ones), recomputed in backward
           (``simper.logprobs``).

Each point runs in its own subprocess and reports its peak RSS above the RSS measured just before
the step, minus the head's weight gradient (vocabulary × hidden × 4 bytes, the same for both and
not activation memory). Hidden size 576 (SmolLM2-135M). Every point runs under
``MALLOC_MMAP_THRESHOLD_=65536`` so freed blocks go back to the system and peaks are comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

HIDDEN = 576
LENGTHS = (256, 512, 1024, 2048, 4096)
VOCABS = (32_000, 49_152, 128_256, 256_000)
FIXED_LENGTH, FIXED_VOCAB = 1024, 49_152


def _rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9


def measure(path: str, length: int, vocab: int) -> float:
    """Peak activation memory (GB) of one pair's head step."""
    import torch

    from simper.data.collate import ModelCall
    from simper.logprobs import _target_logps, token_logps  # noqa: F401  (the path under test)

    torch.manual_seed(0)
    head = torch.nn.Linear(HIDDEN, vocab, bias=False)
    hidden = torch.randn(2, length, HIDDEN, requires_grad=True)
    ids = torch.randint(vocab, (2, length))
    half = length // 2
    baseline = _rss_gb()
    if path == "plain":
        logits = head(hidden).float()  # (2, L, V)
        logps = logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        loss = logps[:, half - 1 :].sum()
    else:
        sources = torch.cat([torch.arange(half - 1, length - 1) + row * length for row in range(2)])

        class Decoder(torch.nn.Module):  # the body is not under test: it returns the given hidden states
            def forward(self, **_):
                return type("Out", (), {"last_hidden_state": hidden})

        class Model(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.head, self.config = head, type("Config", (), {})()

            def get_decoder(self):
                return Decoder()

            def get_output_embeddings(self):
                return self.head

        call = ModelCall(ids, None, None, sources, ids.flatten()[sources + 1], torch.zeros_like(sources))
        loss = token_logps(Model(), call, chunk_size=1024).sum()
    loss.backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    return peak - baseline - vocab * HIDDEN * 4 / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="benchmarks/results")
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)), help="tokens per sequence")
    parser.add_argument("--vocabs", default=",".join(map(str, VOCABS)), help="vocabulary sizes, at the fixed length")
    parser.add_argument("--fixed-length", type=int, default=FIXED_LENGTH)
    parser.add_argument("--fixed-vocab", type=int, default=FIXED_VOCAB)
    parser.add_argument("--point", nargs=3, help=argparse.SUPPRESS)  # child: path length vocab
    args = parser.parse_args()
    if args.point:
        path, length, vocab = args.point
        print("RESULT " + json.dumps(measure(path, int(length), int(vocab))), flush=True)
        return

    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    lengths, vocabs = (list(map(int, text.split(","))) for text in (args.lengths, args.vocabs))
    points = [(n, args.fixed_vocab) for n in lengths]
    points += [(args.fixed_length, v) for v in vocabs if (args.fixed_length, v) not in points]
    rows = []
    for length, vocab in points:
        row = {"length": length, "vocab": vocab}
        for path in ("plain", "chunked"):
            command = [sys.executable, __file__, "--point", path, str(length), str(vocab)]
            done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
            row[path] = json.loads(done.stdout.split("RESULT ")[-1])
        rows.append(row)
        print(
            f"length {length:5d} vocab {vocab:7d}: plain {row['plain']:6.2f} GB  chunked {row['chunked']:6.2f} GB",
            flush=True,
        )
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory.json").write_text(json.dumps(rows, indent=1))
    print()
    print("| length | vocabulary | plain GB | chunked GB | chunked ÷ plain |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['length']} | {row['vocab']:,} | {row['plain']:.2f} | {row['chunked']:.2f} "
            f"| {row['chunked'] / row['plain']:.2f} |"
        )
    _plot(rows, out / "memory.png", args.fixed_length, args.fixed_vocab)
    print(f"\nplot: {out / 'memory.png'}")


def _plot(rows: list[dict], path: Path, fixed_length: int, fixed_vocab: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_length, by_vocab) = plt.subplots(1, 2, figsize=(10, 4))
    for axis, key, fixed_key, fixed in (
        (by_length, "length", "vocab", fixed_vocab),
        (by_vocab, "vocab", "length", fixed_length),
    ):
        series = sorted((r for r in rows if r[fixed_key] == fixed), key=lambda r: r[key])
        xs = [r[key] for r in series]
        for path_name, style in (("plain", "o-"), ("chunked", "s-")):
            axis.plot(xs, [r[path_name] for r in series], style, label=path_name)
        axis.set_xscale("log", base=2)
        axis.set_xticks(xs, [f"{x:,}" for x in xs], rotation=30)
        axis.set_ylabel("peak activation memory (GB)")
        axis.grid(alpha=0.3)
        axis.legend()
    by_length.set_xlabel(f"tokens per sequence (vocabulary {fixed_vocab:,})")
    by_vocab.set_xlabel(f"vocabulary (sequences of {fixed_length:,} tokens)")
    fig.suptitle("LM head + log-softmax, one pair, forward + backward")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
