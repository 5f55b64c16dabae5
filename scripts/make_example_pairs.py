"""Write src/simper/resources/example_pairs.jsonl: small synthetic pairs for the tiny default model.

Each prompt asks for a sum or a product; the chosen answer is right, the rejected one is off by a
small amount. Deterministic (seed 0). Run: python scripts/make_example_pairs.py
"""

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src/simper/resources/example_pairs.jsonl"


def main(count: int = 400) -> None:
    rng = random.Random(0)
    lines = []
    for _ in range(count):
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        op, value = rng.choice([("+", a + b), ("*", a * b) if a * b < 1000 else ("+", a + b)])
        wrong = value + rng.choice([-3, -2, -1, 1, 2, 3, 10])
        prompt = [{"role": "user", "content": f"What is {a} {op} {b}? Answer with the number."}]
        lines.append(
            {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": f"{a} {op} {b} = {value}."}],
                "rejected": [{"role": "assistant", "content": f"{a} {op} {b} = {wrong}."}],
            }
        )
    OUT.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")


if __name__ == "__main__":
    main()
