"""The report's plots, and ``simper eval``'s density plot, drawn from what runs wrote (never from a
live trainer)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from simper.report.runs import RunRecord


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _mean_curve(runs: list[RunRecord], key: str) -> tuple[list[int], list[float], list[float], list[float]]:
    by_step: dict[int, list[float]] = {}
    for run in runs:
        for step, value in run.curves.get(key, []):
            if value is not None and math.isfinite(value):
                by_step.setdefault(step, []).append(value)
    steps = sorted(by_step)
    return (
        steps,
        [statistics.fmean(by_step[s]) for s in steps],
        [min(by_step[s]) for s in steps],
        [max(by_step[s]) for s in steps],
    )


def plot_curves(groups: dict[str, list[RunRecord]], path: Path) -> bool:
    plt = _pyplot()
    panels = (
        ("loss", "loss"),
        ("logps/chosen", "chosen: mean log-prob per token"),
        ("logps/rejected", "rejected: mean log-prob per token"),
    )
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), dpi=110)
    drawn = False
    held_out = False
    for axis, (key, title) in zip(axes, panels, strict=True):
        for label, runs in groups.items():
            steps, mean, low, high = _mean_curve(runs, key)
            if not steps:
                continue
            (line,) = axis.plot(steps, mean, label=label)
            axis.fill_between(steps, low, high, color=line.get_color(), alpha=0.15)
            drawn = True
            steps, mean, _, _ = _mean_curve(runs, f"eval/{key}")  # the held-out pairs, where evaluated
            if key != "loss" and steps:
                axis.plot(steps, mean, color=line.get_color(), linestyle="--", marker=".")
                held_out = True
        axis.set_title(title, fontsize=10)
        _steps_axis(axis)
    axes[0].set_ylabel("value (training batches)")
    if held_out:
        axes[1].set_ylabel("solid: training batches; dashed: held-out pairs")
    _legend_below(fig, axes[0])
    _save(plt, fig, path, rect=(0, 0.1, 1, 1))
    return drawn


def plot_gradient_balance(groups: dict[str, list[RunRecord]], path: Path) -> bool:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110, sharey=True)
    drawn = False
    for axis, key, title in ((axes[0], "grad/chosen", "chosen"), (axes[1], "grad/rejected", "rejected")):
        for label, runs in groups.items():
            steps, mean, _, _ = _mean_curve(runs, key)
            if steps:
                axis.plot(steps, mean, label=label)
                drawn = True
        axis.set_title(f"|∂loss/∂ mean log-prob| on the {title} response", fontsize=10)
        _steps_axis(axis)
        axis.set_yscale("log")
    axes[0].set_ylabel("gradient size (mean over pairs)")
    _legend_below(fig, axes[0])
    _save(plt, fig, path, rect=(0, 0.1, 1, 1))
    return drawn


def plot_density(groups: dict[str, list[RunRecord]], runs: list[RunRecord], path: Path) -> bool:
    """The report's density plot: the start, then each label's density pooled over its seeds."""
    curves = {}
    start = next((r.baseline for r in runs if r.baseline and r.baseline.get("ppl_density", {}).get("bins")), None)
    if start:
        curves["starting model"] = start["ppl_density"]
    for label, members in groups.items():
        densities = [r.density for r in members if r.density and r.density.get("bins")]
        if densities:  # pooled over seeds: the mean of the per-seed densities on the shared grid
            mean = [statistics.fmean(d) for d in zip(*(x["density"] for x in densities), strict=True)]
            curves[label] = {"bins": densities[0]["bins"], "density": mean}
    return plot_ppl_density(curves, path, title=None, dotted="starting model")


def plot_ppl_density(
    curves: dict[str, dict[str, Any]],
    path: Path,
    *,
    title: str | None = "Perplexity density of greedy responses on held-out prompts",
    dotted: str | None = None,
) -> bool:
    """Density of the log-perplexity of each model's own greedy responses (``simper eval``'s
    ``ppl_density``: ``bins`` and ``density``), peaks marked by dashed lines (the paper's Figure 5);
    the curve named ``dotted`` drawn black and dotted. Returns whether any curve was drawn."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    drawn = {label: curve for label, curve in curves.items() if curve.get("bins")}
    for label, curve in drawn.items():
        bins, dens = curve["bins"], curve["density"]
        peak = bins[max(range(len(dens)), key=dens.__getitem__)]
        style = {"color": "black", "linestyle": ":"} if label == dotted else {}
        (line,) = ax.plot(bins, dens, label=f"{label} (peak {peak:.2f})", **style)
        ax.axvline(peak, color=line.get_color(), linestyle="--", linewidth=0.8)
    visible = [b for c in drawn.values() for b, d in zip(c["bins"], c["density"], strict=True) if d > 1e-3]
    if visible:
        ax.set_xlim(max(0.0, min(visible) - 0.2), max(visible) + 0.2)
    ax.set_xlabel("log perplexity of the model's own greedy response (nats per token)")
    ax.set_ylabel("density")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8)
    _save(plt, fig, path)
    return bool(drawn)


def plot_reward_kl(groups: dict[str, list[RunRecord]], path: Path) -> bool:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    drawn = False
    for label, runs in groups.items():
        points = [
            (r.values["kl_to_baseline"], r.values["mean_reward"])
            for r in runs
            if {"kl_to_baseline", "mean_reward"} <= r.values.keys()
        ]
        if points:
            ax.scatter(*zip(*points, strict=True), label=label, s=36)
            drawn = True
    start = next((r.baseline for r in (r for rs in groups.values() for r in rs) if r.baseline), None)
    if start and "mean_reward" in start:
        ax.scatter([0.0], [start["mean_reward"]], marker="*", s=160, color="black", label="starting model")
    ax.set_xlabel("log π − log π_start on its own greedy answers (nats per response; not a KL)")
    ax.set_ylabel("held-out reward (checker)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    _save(plt, fig, path)
    return drawn


def _save(plt, fig, path: Path, rect: tuple[float, float, float, float] = (0, 0, 1, 1)) -> None:
    fig.tight_layout(rect=rect)
    fig.savefig(path)
    plt.close(fig)


def _steps_axis(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_xlabel("optimizer step")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.grid(alpha=0.3)


def _legend_below(fig, axis) -> None:
    handles, labels = axis.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=9, frameon=False)
