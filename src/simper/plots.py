"""PNG plots drawn from what runs and evaluations wrote (never from a live trainer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_ppl_density(curves: dict[str, dict[str, Any]], path: Path) -> None:
    """Perplexity density of each model's own greedy responses, peaks marked (the paper's Figure 5)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for label, curve in curves.items():
        if not curve.get("bins"):
            continue
        (line,) = ax.plot(curve["bins"], curve["density"], label=f"{label} (peak at {curve['peak']:.2f})")
        ax.axvline(curve["peak"], color=line.get_color(), linestyle="--", linewidth=1)
    nonzero = [
        b for c in curves.values() for b, d in zip(c.get("bins", []), c.get("density", []), strict=True) if d > 1e-3
    ]
    if nonzero:
        ax.set_xlim(max(0.0, min(nonzero) - 0.3), max(nonzero) + 0.3)
    ax.set_xlabel("log perplexity of the model's own response (nats per token)")
    ax.set_ylabel("density")
    ax.set_title("Perplexity density of greedy responses on held-out prompts")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
