"""Data shipped with the package."""

from pathlib import Path

HERE = Path(__file__).parent
EXAMPLE_PAIRS = HERE / "example_pairs.jsonl"
TRAIN_PAIRS = HERE / "smollm2_train_pairs.jsonl"
HELDOUT_PAIRS = HERE / "smollm2_heldout_pairs.jsonl"
