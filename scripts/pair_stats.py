"""What a pair file holds: pairs per task kind, ties dropped, tie-broken pairs, pairs the reward tells
apart per kind with how many samples each prompt took (``--max-samples``), and the chosen and
rejected responses cut off (at the cap, or stopped in a repetition loop) split into loops and
long-but-sound answers, with their lengths. Used for the shipped SmolLM2 pairs (docs/results.md).

    python scripts/pair_stats.py PAIRS.jsonl [MORE.jsonl ...] [--model smollm2-135m-instruct]

Prompts handled are read from each file's ``.seen`` companion (what ``simper pairs`` writes), so
ties = prompts handled − pairs written.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from pathlib import Path

from simper import models
from simper.diversity import is_looping
from simper.generate import repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="whose tokenizer counts the tokens")
    args = parser.parse_args()
    tokenizer = models.load_tokenizer(args.model)
    rows, handled, unknown = [], 0, []
    for name in args.files:
        rows += [json.loads(line) for line in Path(name).read_text().splitlines() if line.strip()]
        seen = Path(name + ".seen")
        if seen.exists():
            handled += len(seen.read_text().split())
        else:
            unknown.append(name)
    if not rows:
        raise SystemExit(f"{', '.join(args.files)}: no pairs")
    kinds = Counter(row.get("kind", "?") for row in rows)
    tie_broken = sum(bool(r.get("tie_broken")) for r in rows)
    counts = ", ".join(f"{n} {k}" for k, n in kinds.most_common())
    if unknown:  # a merged or shipped file: how many prompts tied is not known
        print(f"{len(rows)} pairs ({counts}):")
        print(f"  ties dropped: unknown (no .seen file beside {', '.join(unknown)}); tie-broken pairs: {tie_broken}")
    else:
        print(f"{len(rows)} pairs ({counts}) from {handled} prompts:")
        print(f"  ties dropped: {handled - len(rows)}; tie-broken pairs: {tie_broken}")
    for kind in kinds:
        apart = [r for r in rows if r.get("kind", "?") == kind and not r.get("tie_broken")]
        drawn = Counter(r["num_samples"] for r in apart if "num_samples" in r)  # written since --max-samples
        spread = f"; samples drawn {', '.join(f'{k} for {n}' for k, n in sorted(drawn.items()))}" if drawn else ""
        print(f"  {kind}: {len(apart)} pairs the reward tells apart{spread}")
    for side in ("chosen", "rejected"):
        texts = [row[side][-1]["content"] for row in rows]
        ids = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
        cut = [bool(row.get(f"{side}_truncated")) for row in rows]
        loops = [c and (is_looping(t) or repeats(i)) for c, t, i in zip(cut, texts, ids, strict=True)]
        n = max(len(rows), 1)
        print(
            f"  {side}: {sum(cut) / n:.1%} cut off — {sum(loops) / n:.1%} in a repetition loop, "
            f"{(sum(cut) - sum(loops)) / n:.1%} long but sound; median length {statistics.median(map(len, ids)):.0f} "
            f"tokens; mean checker score {statistics.fmean(r[f'score_{side}'] for r in rows):.2f}"
        )
    both = sum(bool(r.get("chosen_truncated")) or bool(r.get("rejected_truncated")) for r in rows)
    chosen_ended = sum(not r.get("chosen_truncated") for r in rows)
    print(f"  pairs with a response cut off: {both}; pairs whose chosen response ended: {chosen_ended}")


if __name__ == "__main__":
    main()
