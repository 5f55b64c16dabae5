"""Data shipped with the package."""

from pathlib import Path

HERE = Path(__file__).parent
EXAMPLE_PAIRS = HERE / "example_pairs.jsonl"
TRAIN_PAIRS = HERE / "smollm2_train_pairs.jsonl"
HELDOUT_PAIRS = HERE / "smollm2_heldout_pairs.jsonl"
HANDWRITTEN_PROMPTS = HERE / "handwritten_prompts.jsonl"
"""96 held-out prompts written by hand (64 instructions, 32 word problems) in wording, framings and
problem templates of their own: no sentence of the built-in generator's, which writes every
training prompt. ``--prompts handwritten`` in ``simper eval`` and ``simper compare``."""
SHIPPED_PROMPTS = {"handwritten": HANDWRITTEN_PROMPTS}


def prompt_file(name_or_path: str) -> str:
    """A shipped prompt set's file for its name (``handwritten``), unless a file of that name is
    there; else the path as given."""
    if name_or_path in SHIPPED_PROMPTS and not Path(name_or_path).exists():
        return str(SHIPPED_PROMPTS[name_or_path])
    return name_or_path
