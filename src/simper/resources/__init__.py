"""Data shipped with the package."""

import difflib
from pathlib import Path

from simper.errors import UserError

HERE = Path(__file__).parent
EXAMPLE_PAIRS = HERE / "example_pairs.jsonl"
TRAIN_PAIRS = HERE / "smollm2_train_pairs.jsonl"
LARGE_TRAIN_PAIRS = HERE / "smollm2_train_pairs_large.jsonl"
"""The shipped training pairs and more of the same kind (other seeds' prompts, some with more samples
for prompts that tied): ``data.train=smollm2-pairs-large``; docs/pairs-and-eval.md says how each was made."""
LARGE_ARITHMETIC_PAIRS = HERE / "smollm2_train_pairs_large_arithmetic.jsonl"
"""The word-problem pairs of the large set whose chosen answer the reward scores above the rejected one
(179 rows, each as it stands there): ``data.train=[smollm2-pairs-large, smollm2-pairs-large-arithmetic]``
trains on them twice, weighting word problems (configs/recipes/smollm2-cpu-long-math.yaml)."""
HELDOUT_PAIRS = HERE / "smollm2_heldout_pairs.jsonl"
HANDWRITTEN_PROMPTS = HERE / "handwritten_prompts.jsonl"
"""96 held-out prompts written by hand (64 instructions, 32 word problems) in wording, framings and
problem templates of their own: no sentence of the built-in generator's, which writes every
training prompt. ``--prompts handwritten`` in ``simper eval`` and ``simper compare``."""
SHIPPED_PROMPTS = {"handwritten": HANDWRITTEN_PROMPTS}
SHIPPED_PAIRS = {
    "smollm2-pairs": TRAIN_PAIRS,
    "smollm2-pairs-large": LARGE_TRAIN_PAIRS,
    "smollm2-pairs-large-arithmetic": LARGE_ARITHMETIC_PAIRS,
}


def prompt_file(name_or_path: str) -> str:
    """A shipped prompt set's file for its name (``handwritten``), unless a file of that name is
    there; else the path as given."""
    return _shipped(name_or_path, SHIPPED_PROMPTS, "prompt set")


def pair_file(name_or_path: str) -> str:
    """A shipped pair set's file for its name (``smollm2-pairs``, ``smollm2-pairs-large``,
    ``smollm2-pairs-large-arithmetic``), unless a file of that name is there; else the source as given."""
    return _shipped(name_or_path, SHIPPED_PAIRS, "pair set")


def _shipped(name_or_path: str, shipped: dict[str, Path], kind: str) -> str:
    """The file a shipped set's name stands for; a path that exists, or any other source, as given.
    A bare name (no folder, split or file type: nothing the reader could take for a file or a hub
    dataset) close to a shipped set's is refused, naming the shipped sets; the reader would say only
    that no such file exists."""
    if Path(name_or_path).exists():  # a name with a split is never bare, so it is never refused below
        return name_or_path
    if name_or_path in shipped:
        return str(shipped[name_or_path])
    bare = not any(mark in name_or_path for mark in "/:\\.")
    near = difflib.get_close_matches(name_or_path, shipped, n=1, cutoff=0.8) if bare else []
    if near:
        names = ", ".join(shipped)
        raise UserError(
            f"{name_or_path}: no such file or folder, nor a shipped {kind} (did you mean {near[0]}? shipped: {names})"
        )
    return name_or_path
