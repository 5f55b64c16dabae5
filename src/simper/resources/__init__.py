"""Data shipped with the package."""

from pathlib import Path

HERE = Path(__file__).parent
EXAMPLE_PAIRS = HERE / "example_pairs.jsonl"
