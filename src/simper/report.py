"""``simper report``: a comparison report rebuilt from run folders.

Reads what runs wrote — ``config.yaml`` (objective, seed), ``metrics.jsonl`` (training curves,
gradient balance, tokens/s), ``eval.json`` (``simper eval`` against the starting model) and, for
runs made by ``simper compare``, ``run.json`` (wall time, peak memory, failures) — and writes
``report.md``, a self-contained ``report.html`` (plots embedded) and the plots as PNGs. Runs are
grouped by label (objective plus non-default hyperparameters); numbers are mean ± std over seeds.
"""

from __future__ import annotations

import base64
import html
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from simper.errors import UserError
from simper.objectives import REGISTRY

# (key, column title, format, how to read it from a run)
COLUMNS = (
    ("mean_reward", "held-out reward", "{:.3f}"),
    ("instruction_accuracy", "instruction acc.", "{:.3f}"),
    ("math_accuracy", "math acc.", "{:.3f}"),
    ("win_rate", "win rate vs start", "{:.3f}"),
    ("loss_rate", "loss rate vs start", "{:.3f}"),
    ("preference_accuracy", "pref. acc. (held-out)", "{:.3f}"),
    ("delta_chosen_logp", "Δ chosen log-p", "{:+.3f}"),
    ("mean_length", "length (tokens)", "{:.1f}"),
    ("kl_to_baseline", "KL to start (nats)", "{:.2f}"),
    ("train_minutes", "train wall (min)", "{:.1f}"),
    ("train_peak_rss_gb", "peak mem (GB)", "{:.2f}"),
    ("tokens_per_s", "tokens/s", "{:.0f}"),
)


@dataclass
class RunRecord:
    """What one run folder tells the report."""

    folder: Path
    label: str
    objective: str
    seed: int
    status: str
    error: str = ""
    values: dict[str, float] = field(default_factory=dict)
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    density: dict[str, Any] | None = None
    baseline: dict[str, Any] | None = None


def load_run(folder: Path) -> RunRecord:
    """Read one run folder (made by ``simper train`` or ``simper compare``)."""
    state = _json(folder / "run.json") or {}
    config = _yaml(folder / "config.yaml") or {}
    objective = state.get("objective") or config.get("objective", {}).get("name")
    if objective is None:
        raise UserError(f"{folder}: not a simper run folder (no config.yaml or run.json)")
    seed = int(state.get("seed", config.get("training", {}).get("seed", 0)))
    label = state.get("label") or run_label(objective, config.get("objective", {}).get("params") or {})
    evaluation = _json(folder / "eval.json")
    status = state.get("status") or ("done" if evaluation else "not evaluated")
    record = RunRecord(folder, label, objective, seed, status, state.get("error", ""))

    for line in _lines(folder / "metrics.jsonl"):
        step = line.get("step")
        for key in ("loss", "logps/chosen", "logps/rejected", "grad/chosen", "grad/rejected"):
            if key in line and step is not None:
                record.curves.setdefault(key, []).append((step, line[key]))
        if "tokens_per_s" in line:
            record.curves.setdefault("tokens_per_s", []).append((step, line["tokens_per_s"]))
    speeds = [v for _, v in record.curves.get("tokens_per_s", [])]
    if speeds:
        record.values["tokens_per_s"] = statistics.fmean(speeds)
    if "train_seconds" in state:
        record.values["train_minutes"] = state["train_seconds"] / 60
    if "train_peak_rss_gb" in state:
        record.values["train_peak_rss_gb"] = state["train_peak_rss_gb"]
    if evaluation:
        for key, *_ in COLUMNS:
            if isinstance(evaluation.get(key), int | float):
                record.values[key] = float(evaluation[key])
        record.density = evaluation.get("ppl_density")
        record.baseline = evaluation.get("baseline")
        if record.baseline and "logps_chosen" in evaluation:
            record.values["delta_chosen_logp"] = evaluation["logps_chosen"] - record.baseline["logps_chosen"]
    return record


def build_report(folders: list[Path], output: Path) -> Path:
    """Write ``report.md``, ``report.html`` and the plots into ``output``; returns the HTML path."""
    if not folders:
        raise UserError("no run folders to report on")
    runs = [load_run(Path(f)) for f in folders]
    output.mkdir(parents=True, exist_ok=True)
    groups = _group(runs)
    plots = {
        "curves.png": ("Training curves", plot_curves(groups, output / "curves.png")),
        "gradient_balance.png": ("Gradient balance", plot_gradient_balance(groups, output / "gradient_balance.png")),
        "ppl_density.png": ("Perplexity density", plot_density(groups, runs, output / "ppl_density.png")),
        "reward_kl.png": ("Reward against KL to the start", plot_reward_kl(groups, output / "reward_kl.png")),
    }
    plots = {name: title for name, (title, made) in plots.items() if made}
    table = summary_table(groups)
    tuning = tuning_table(groups)
    failures = [r for r in runs if r.status == "failed"]
    start = next((r.baseline for r in runs if r.baseline), None)

    md = ["# simper comparison", "", _intro(runs, start), "", table, ""]
    if tuning:
        md += ["## Tuning cost", "", tuning, ""]
    if failures:
        md += ["## Failed runs", ""] + [f"- {r.label} seed {r.seed}: {r.error}" for r in failures] + [""]
    for name, title in plots.items():
        md += [f"## {title}", "", f"![{title}]({name})", "", CAPTIONS[name], ""]
    (output / "report.md").write_text("\n".join(md), encoding="utf-8")
    (output / "report.html").write_text(_html(md, output), encoding="utf-8")
    return output / "report.html"


CAPTIONS = {
    "curves.png": "Loss and mean log-probability per response token of the chosen and rejected training "
    "responses over steps (mean over seeds; the shaded band spans the seeds). SimPER should keep the chosen "
    "likelihood from collapsing.",
    "gradient_balance.png": "Per-step mean of |∂loss/∂(mean log-prob)| on the chosen and on the rejected response: "
    "the size of the push each objective gives each side (the paper's gradient analysis).",
    "ppl_density.png": "Density of the log-perplexity of each model's own greedy responses on held-out prompts, "
    "pooled over seeds; dashed lines mark the peaks. A lower, sharper peak is the paper's mode-seeking claim.",
    "reward_kl.png": "Held-out reward against the KL divergence from the starting model (estimated on the model's "
    "own greedy generations, nats per response), one point per run.",
}


def _intro(runs: list[RunRecord], start: dict[str, Any] | None) -> str:
    seeds = sorted({r.seed for r in runs})
    text = f"{len(runs)} runs, seeds {', '.join(map(str, seeds))}; mean ± std over seeds."
    if start:
        text += (
            f" Starting model `{start.get('model')}`: held-out reward {start.get('mean_reward', float('nan')):.3f}, "
            f"instruction accuracy {start.get('instruction_accuracy', float('nan')):.3f}, "
            f"math accuracy {start.get('math_accuracy', float('nan')):.3f}, preference accuracy "
            f"{start.get('preference_accuracy', float('nan')):.3f}."
        )
    return text


def _group(runs: list[RunRecord]) -> dict[str, list[RunRecord]]:
    order = {name: i for i, name in enumerate(REGISTRY)}
    groups: dict[str, list[RunRecord]] = {}
    for run in sorted(runs, key=lambda r: (order.get(r.objective, 99), r.label, r.seed)):
        groups.setdefault(run.label, []).append(run)
    return groups


def mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summary_table(groups: dict[str, list[RunRecord]]) -> str:
    """Markdown table: one row per label, mean ± std over its finished runs."""
    header = ["objective", "runs"] + [title for _, title, _ in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, runs in groups.items():
        done = [r for r in runs if r.status != "failed"]
        failed = len(runs) - len(done)
        cells = [label, f"{len(done)}" + (f" ({failed} failed)" if failed else "")]
        for key, _, fmt in COLUMNS:
            mean, std = mean_std([r.values[key] for r in done if key in r.values])
            cells.append("–" if math.isnan(mean) else f"{fmt.format(mean)} ± {fmt.format(std).lstrip('+')}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tuning_table(groups: dict[str, list[RunRecord]]) -> str:
    """For objectives run at several hyperparameter settings: the best setting and what the grid cost."""
    by_objective: dict[str, list[str]] = {}
    for label, runs in groups.items():
        by_objective.setdefault(runs[0].objective, []).append(label)
    rows = []
    for objective, labels in by_objective.items():
        if len(labels) < 2 and objective != "simper":
            continue
        runs = [r for label in labels for r in groups[label]]
        best = max(labels, key=lambda lb: _finite(mean_std([r.values.get("mean_reward") for r in groups[lb]])[0]))
        reward, std = mean_std([r.values.get("mean_reward") for r in groups[best]])
        minutes = sum(r.values.get("train_minutes", 0.0) for r in runs)
        rows.append(
            f"| {objective} | {len(labels)} | {len(runs)} | {minutes:.1f} | {best} | {reward:.3f} ± {std:.3f} |"
        )
    if len(rows) < 2:
        return ""
    head = "| objective | settings | runs | train wall, all runs (min) | best setting | its held-out reward |"
    return "\n".join([head, "|---|---|---|---|---|---|", *rows])


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


# ------------------------------------------------------------------------------------------------
# plots
# ------------------------------------------------------------------------------------------------


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
    for axis, (key, title) in zip(axes, panels, strict=True):
        for label, runs in groups.items():
            steps, mean, low, high = _mean_curve(runs, key)
            if not steps:
                continue
            (line,) = axis.plot(steps, mean, label=label)
            axis.fill_between(steps, low, high, color=line.get_color(), alpha=0.15)
            drawn = True
        axis.set_title(title, fontsize=10)
        _steps_axis(axis)
    axes[0].set_ylabel("value (training batches)")
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
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    curves = {}
    start = next((r.baseline for r in runs if r.baseline and r.baseline.get("ppl_density", {}).get("bins")), None)
    if start:
        curves["starting model"] = (start["ppl_density"]["bins"], start["ppl_density"]["density"])
    for label, members in groups.items():
        densities = [r.density for r in members if r.density and r.density.get("bins")]
        if densities:  # pooled over seeds: the mean of the per-seed densities on the shared grid
            curves[label] = (
                densities[0]["bins"],
                [statistics.fmean(d) for d in zip(*(x["density"] for x in densities), strict=True)],
            )
    for label, (bins, dens) in curves.items():
        peak = bins[max(range(len(dens)), key=dens.__getitem__)]
        style = {"color": "black", "linestyle": ":"} if label == "starting model" else {}
        (line,) = ax.plot(bins, dens, label=f"{label} (peak {peak:.2f})", **style)
        ax.axvline(peak, color=line.get_color(), linestyle="--", linewidth=0.8)
    visible = [b for bins, dens in curves.values() for b, d in zip(bins, dens, strict=True) if d > 1e-3]
    if visible:
        ax.set_xlim(max(0.0, min(visible) - 0.2), max(visible) + 0.2)
    ax.set_xlabel("log perplexity of the model's own greedy response (nats per token)")
    ax.set_ylabel("density")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    _save(plt, fig, path)
    return bool(curves)


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
    ax.set_xlabel("KL to the starting model (nats per response, on held-out generations)")
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


# ------------------------------------------------------------------------------------------------
# files
# ------------------------------------------------------------------------------------------------


def _html(md_lines: list[str], folder: Path) -> str:
    """The markdown report as one self-contained page: tables as HTML tables, PNGs inlined."""
    body, table = [], []

    def flush_table() -> None:
        if not table:
            return
        rows = [
            [html.escape(c.strip()) for c in line.strip("|").split("|")]
            for line in table
            if not line.startswith("|---")
        ]
        head = "".join(f"<th>{c}</th>" for c in rows[0])
        cells = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows[1:])
        body.append(f"<div class='wide'><table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table></div>")
        table.clear()

    for line in "\n".join(md_lines).splitlines():  # tables come in as one multi-line item
        if line.startswith("|"):
            table.append(line)
            continue
        flush_table()
        if line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("![") and "](" in line:
            name = line[line.index("](") + 2 : -1]
            data = base64.b64encode((folder / name).read_bytes()).decode()
            body.append(f'<img alt="{html.escape(name)}" src="data:image/png;base64,{data}">')
        elif line.startswith("- "):
            body.append(f"<p>• {html.escape(line[2:])}</p>")
        elif line:
            body.append(f"<p>{html.escape(line).replace('`', '')}</p>")
    flush_table()
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}img{max-width:100%;margin:0.5em 0}"
        "td{white-space:nowrap}.wide{overflow-x:auto}"
    )
    head = f"<meta charset='utf-8'><title>simper comparison</title><style>{style}</style>"
    return f"<!doctype html><html><head>{head}</head><body>{''.join(body)}</body></html>"


def run_label(objective: str, params: dict[str, Any]) -> str:
    """The objective plus its non-default hyperparameters: ``dpo``, ``dpo-beta0.5``."""
    defaults = REGISTRY[objective].defaults if objective in REGISTRY else {}
    changed = [f"{k}{v:g}" for k, v in sorted(params.items()) if defaults.get(k) != v]
    return "-".join([objective, *changed])


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None


def _lines(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError):
        return []
