"""Concatenate pair files from several `simper pairs` runs, keeping the first pair of each prompt.

    python scripts/merge_pairs.py OUTPUT INPUT [INPUT ...]

Runs with different ``--seed`` draw different prompts but may draw the same one now and then;
this keeps one pair per prompt text. Used to make the shipped SmolLM2 train pairs (README).
"""

import json
import sys
from pathlib import Path


def main(output: str, *inputs: str) -> None:
    prompts, lines, repeated = set(), [], 0
    for name in inputs:
        for number, line in enumerate(Path(name).read_text(encoding="utf-8").splitlines(), start=1):
            try:
                key = json.dumps(json.loads(line)["prompt"], sort_keys=True)
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                print(f"{name}:{number}: field 'prompt': not a pair row ({error})", file=sys.stderr)
                sys.exit(2)
            if key in prompts:
                repeated += 1
                continue
            prompts.add(key)
            lines.append(line + "\n")
    tmp = Path(output).with_name(Path(output).name + ".tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    tmp.replace(output)
    print(f"{len(lines)} pairs written to {output}; {repeated} repeated prompts dropped")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
