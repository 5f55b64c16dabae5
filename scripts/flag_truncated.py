"""Add ``chosen_truncated`` / ``rejected_truncated`` to pair files made before `simper pairs` wrote them.

    python scripts/flag_truncated.py --max-new-tokens 128 FILE [FILE ...]

A response counts as cut off when its text, tokenized again, is at least ``max_new_tokens - 1``
tokens long (decoded text does not always tokenize back to exactly the sampled tokens: of the
shipped SmolLM2 responses 809 re-tokenize to 128 tokens and 71 to 127, against about 8 per length
below). Rows that already carry both flags are left as they are. Files are rewritten atomically.
"""

import argparse
import json
from pathlib import Path

from simper.models import load_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+")
    parser.add_argument("--max-new-tokens", type=int, required=True, help="the limit the pairs were sampled with")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="the model whose tokenizer sampled them")
    args = parser.parse_args()
    tokenizer = load_tokenizer(args.model)
    for name in args.files:
        rows = [json.loads(line) for line in Path(name).read_text(encoding="utf-8").splitlines()]
        flagged = 0
        for row in rows:
            for key in ("chosen", "rejected"):
                if f"{key}_truncated" in row:
                    continue
                text = row[key][-1]["content"] if isinstance(row[key], list) else row[key]
                length = len(tokenizer(text, add_special_tokens=False)["input_ids"])
                row[f"{key}_truncated"] = length >= args.max_new_tokens - 1
                flagged += row[f"{key}_truncated"]
        tmp = Path(name).with_name(Path(name).name + ".tmp")
        tmp.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        tmp.replace(name)
        print(f"{name}: {len(rows)} pairs, {flagged} responses newly marked truncated")


if __name__ == "__main__":
    main()
