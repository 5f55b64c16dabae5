"""The longest sequence whose training step fits a memory cap: simper against TRL CPO-SimPO and TRL DPO.

    pip install -e ".[bench]"
    MALLOC_MMAP_THRESHOLD_=65536 python benchmarks/longest.py --cap-gb 8     # table + benchmarks/results/longest.*

One pair per step, gradient checkpointing on for every contender (what a long-context recipe uses),
fp32 SmolLM2-135M-Instruct by default. A pair at length L is a prompt of L/2 tokens and a chosen and a
rejected response of L/2 tokens each, so "length" is prompt + response, what ``data.max_length``
bounds. Each probe is ``benchmarks/step.py``'s child run (one warm-up step and one more, so the
AdamW moments exist during the second step's backward, as in any real run) in its own process,
ended the moment its resident memory passes the cap — a container's memory limit, in effect.
Lengths grow by doubling from ``--start`` until a probe passes the cap (or ``--max-length`` fits),
then the gap is halved down to ``--step`` tokens, so each contender's longest fitting length is
found to within ``--step`` with a handful of probes. Every probe runs under the caller's allocator
setting (say which: ``MALLOC_MMAP_THRESHOLD_=65536`` returns freed blocks, so peaks compare).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import step  # noqa: E402  (the child runs and the machine record are step.py's)

CONTENDERS = ("simper", "trl-cpo-simpo", "trl-dpo")


def probe(args: argparse.Namespace, contender: str, length: int) -> dict:
    """One step pair at ``length``: its peak (GB) and seconds, or ``fits: False`` when it passed the cap."""
    start = time.perf_counter()
    done, measured = step.run_child(
        args.model,
        contender,
        f"fixed-{length // 2}",
        gc="on",
        steps=1,
        warmup=1,
        pairs_per_step=1,
        memory_cap_gb=args.cap_gb,
    )
    result = {"contender": contender, "length": length, "seconds": round(time.perf_counter() - start, 1)}
    result["cap_gb"] = args.cap_gb
    if done.returncode == step.OVER_CAP:
        return {**result, "fits": False, "peak_gb": None}
    if measured is None:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise SystemExit(f"{contender} at {length} tokens failed (not the cap): {tail}")
    return {**result, "fits": True, "peak_gb": round(measured["peak_gb"], 3)}


def longest(args: argparse.Namespace, contender: str) -> list[dict]:
    """Probes for one contender: doubling to the first that passes the cap, then halving the gap."""
    probes: list[dict] = []

    def run(length: int) -> bool:
        result = probe(args, contender, length)
        probes.append(result)
        shown = f"peak {result['peak_gb']:5.2f} GB" if result["fits"] else f"over the {args.cap_gb:g} GB cap"
        print(f"{contender:14s} {length:6d} tokens: {shown}  ({result['seconds']:.0f} s)", flush=True)
        return result["fits"]

    fits, over = 0, None
    length = args.start
    while length <= args.max_length:
        if not run(length):
            over = length
            break
        fits, length = length, length * 2
    if over is None:
        return probes
    while over - fits > args.step:
        middle = (fits + over) // 2 // args.step * args.step
        if run(middle):
            fits = middle
        else:
            over = middle
    return probes


def summary(probes: list[dict], max_length: int) -> list[dict]:
    """Per contender: the longest length that fit, its peak, and the shortest that did not."""
    rows = []
    for contender in dict.fromkeys(p["contender"] for p in probes):
        mine = [p for p in probes if p["contender"] == contender]
        fitting = [p for p in mine if p["fits"]]
        best = max(fitting, key=lambda p: p["length"]) if fitting else None
        over = min((p["length"] for p in mine if not p["fits"]), default=None)
        rows.append(
            {
                "contender": contender,
                "longest": best["length"] if best else 0,
                "peak_gb": best["peak_gb"] if best else None,
                "first_over": over,
                "reached_max": over is None and best is not None and best["length"] * 2 > max_length,
            }
        )
    return rows


def table(rows: list[dict], cap_gb: float) -> str:
    base = next((r for r in rows if r["contender"] == "trl-cpo-simpo"), None)
    lines = [
        f"| contender | longest prompt + response under {cap_gb:g} GB | its peak GB | first length over "
        "| ÷ TRL CPO-SimPO |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        longest = f"≥ {r['longest']}" if r["reached_max"] else str(r["longest"])
        at_least = "≥ " if r["reached_max"] else ""
        ratio = f"{at_least}{r['longest'] / base['longest']:.2f}×" if base and base["longest"] else "–"
        peak = f"{r['peak_gb']:.2f}" if r["peak_gb"] is not None else "–"
        lines.append(f"| {r['contender']} | {longest} | {peak} | {r['first_over'] or '–'} | {ratio} |")
    return "\n".join(lines)


def plot(probes: list[dict], cap_gb: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for contender in dict.fromkeys(p["contender"] for p in probes):
        mine = sorted((p for p in probes if p["contender"] == contender), key=lambda p: p["length"])
        fitting = [p for p in mine if p["fits"]]
        (line,) = ax.plot([p["length"] for p in fitting], [p["peak_gb"] for p in fitting], marker="o", label=contender)
        over = [p["length"] for p in mine if not p["fits"]]
        if over:
            ax.scatter(over, [cap_gb] * len(over), marker="x", color=line.get_color())
    ax.axhline(cap_gb, color="grey", linestyle="--", linewidth=1)
    ax.text(
        0.99,
        cap_gb,
        f"cap {cap_gb:g} GB (x: passed it) ",
        transform=ax.get_yaxis_transform(),
        ha="right",
        va="top",
        fontsize=8,
        color="grey",
    )
    ax.set_xlabel("prompt + response tokens (one pair per step, gradient checkpointing)")
    ax.set_ylabel("peak resident memory (GB)")
    ax.set_xscale("log", base=2)
    lengths = sorted({p["length"] for p in probes})
    ax.set_xticks(lengths, [str(n) for n in lengths])
    ax.minorticks_off()
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--cap-gb", type=float, default=8.0, help="memory cap a step must stay under")
    parser.add_argument("--start", type=int, default=512, help="first length probed")
    parser.add_argument("--step", type=int, default=512, help="resolution of the answer (tokens)")
    parser.add_argument("--max-length", type=int, default=8192, help="longest length probed")
    parser.add_argument("--output", default=str(HERE / "results" / "longest.json"))
    args = parser.parse_args()
    if args.start % args.step or args.start < 2:
        parser.error("--start must be a multiple of --step")

    probes = [p for contender in args.contenders.split(",") for p in longest(args, contender)]
    rows = summary(probes, args.max_length)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    record = {"cap_gb": args.cap_gb, "max_length": args.max_length, **step.machine(), "summary": rows, "probes": probes}
    output.write_text(json.dumps(record, indent=1) + "\n")
    plot(probes, args.cap_gb, output.with_suffix(".png"))
    print()
    print(table(rows, args.cap_gb))


if __name__ == "__main__":
    main()
