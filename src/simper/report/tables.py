"""The report's tables (markdown) and the page that holds them (self-contained HTML)."""

from __future__ import annotations

import base64
import html
import math
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from simper.report.gains import (
    WORDINGS,
    cross_fitted,
    family_changes,
    finite_or_worst,
    label_gain,
    paired_difference,
    rank_claims,
)
from simper.report.runs import RunRecord, lookup

# (key in a run's values, column title, format): mean ± std over seeds
COLUMNS = (
    ("mean_reward", "held-out reward", "{:.3f}"),
    ("prompt_accuracy", "prompts fully followed", "{:.3f}"),
    ("instruction_accuracy", "instruction acc.", "{:.3f}"),
    ("math_accuracy", "math acc.", "{:.3f}"),
    ("by_phrasing.unseen.mean_reward", "reward, unseen wording", "{:.3f}"),
    ("by_phrasing.unseen.prompt_accuracy", "prompts followed, unseen wording", "{:.3f}"),
    ("by_phrasing.unseen.math_accuracy", "math acc., unseen wording", "{:.3f}"),
    ("win_rate", "win rate vs start", "{:.3f}"),
    ("loss_rate", "loss rate vs start", "{:.3f}"),
    ("loop_share", "answers looping", "{:.3f}"),
    ("sample_distinct_2", "sample distinct-2", "{:.3f}"),
    ("chosen_likelier", "chosen likelier (held-out pairs)", "{:.3f}"),
    ("delta_chosen_logp", "Δ chosen log-p", "{:+.3f}"),
    ("mean_length", "length (tokens)", "{:.1f}"),
    ("kl_to_baseline", "greedy log-ratio to start (nats)", "{:.2f}"),
    ("train_minutes", "train wall (min)", "{:.1f}"),
    ("train_peak_rss_gb", "peak mem (GB)", "{:.2f}"),
    ("tokens_per_s", "tokens/s", "{:.0f}"),
)


def mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summary_table(groups: dict[str, list[RunRecord]]) -> str:
    """Markdown table: the starting model, then one row per label, mean ± std over its finished runs."""
    header = ["objective", "runs"] + [title for _, title, _ in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    start = next((r.baseline for runs in groups.values() for r in runs if r.baseline), None)
    if start:
        cells = ["start", "–"]
        for key, _, fmt in COLUMNS:
            value = lookup(start, key)
            cells.append(fmt.format(value) if isinstance(value, int | float) else "–")
        lines.append("| " + " | ".join(cells) + " |")
    for label, runs in groups.items():
        done = [r for r in runs if r.status == "done"]  # trained and evaluated
        others = Counter(r.status for r in runs if r.status != "done")  # failed, or not evaluated yet
        cells = [label, f"{len(done)}" + (f" ({', '.join(f'{n} {s}' for s, n in others.items())})" if others else "")]
        for key, _, fmt in COLUMNS:
            mean, std = mean_std([r.values[key] for r in done if key in r.values])
            cells.append("–" if math.isnan(mean) else f"{fmt.format(mean)} ± {fmt.format(std).lstrip('+')}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gains_table(groups: dict[str, list[RunRecord]]) -> str:
    """Per label: the reward gain over the start pooled over seeds, per wording, with its interval."""
    rows = []
    for label, runs in groups.items():
        gains = {key: label_gain(runs, key) for key, _ in WORDINGS}
        if gains["all"] is None:
            continue
        verdict = gains["unseen"].verdict if gains["unseen"] else "–"
        rows.append(_wording_row(label, gains, verdict))
    return _wording_table("seeds", "unseen wording vs zero", rows)


def difference_table(groups: dict[str, list[RunRecord]], reference: str = "simper") -> str:
    """Per label other than ``reference``: its gain minus the reference's, on the seeds both ran, with
    the rank claimed family-wise over the labels (:func:`simper.report.gains.rank_claims`)."""
    if reference not in groups:
        return ""
    rows = []
    for label, claim in rank_claims(groups, reference).items():
        diffs = {key: paired_difference(groups[label], groups[reference], key) for key, _ in WORDINGS}
        rows.append(_wording_row(label, diffs, claim))
    return _wording_table("shared seeds", "claim (all prompts)", rows)


def _wording_row(label: str, gains: dict, verdict: str) -> str:
    cells = [str(gains[key]) if gains[key] else "–" for key, _ in WORDINGS]
    return f"| {label} | {gains['all'].seeds} | " + " | ".join(cells) + f" | {verdict} |"


def _wording_table(seeds_title: str, verdict_title: str, rows: list[str]) -> str:
    """A table with one column per wording (all, unseen, training's) and a verdict column."""
    if not rows:
        return ""
    head = f"| objective | {seeds_title} | " + " | ".join(title for _, title in WORDINGS) + f" | {verdict_title} |"
    return "\n".join([head, "|---|---|" + "---|" * len(WORDINGS) + "---|", *rows])


def family_table(groups: dict[str, list[RunRecord]], wording: str = "unseen") -> str:
    """Per constraint family on ``wording``: its prompts, checks met by the start and by each label, with
    the change and its 95% interval; **gained**/**lost** where the change is beyond noise family-wise
    (:func:`simper.report.gains.family_changes`)."""
    changes = {label: family_changes(runs, wording) for label, runs in groups.items()}
    changes = {label: c for label, c in changes.items() if c}
    if not changes:
        return ""
    families = sorted({family for c in changes.values() for family in c})
    head = "| constraint family | prompts | start | " + " | ".join(changes) + " |"
    rows = []
    for family in families:
        first = next(c[family] for c in changes.values() if family in c)
        cells = []
        for c in changes.values():
            change = c.get(family)
            mark = f" **{change.verdict}**" if change and change.verdict else ""
            cells.append(f"{change.after:.2f} ({change.gain}){mark}" if change else "–")
        rows.append(f"| {family} | {first.gain.prompts} | {first.start:.2f} | " + " | ".join(cells) + " |")
    return "\n".join([head, "|---|---|---|" + "---|" * len(changes), *rows])


def likelihood_table(groups: dict[str, list[RunRecord]]) -> str:
    """Per label: the mean log-prob per token of the chosen and of the rejected responses over the first
    and the last quarter of the logged steps (mean over seeds) — training batches, and the held-out pairs where the
    runs evaluated them while training — and whether the chosen one fell (the paper's claim: under
    DPO it does, under SimPER it holds)."""
    rows = []
    for label, runs in groups.items():
        cells, verdict = [], None
        for prefix in ("", "eval/"):
            for side in ("chosen", "rejected"):
                ends = _first_last([r for r in runs if r.status != "failed"], f"{prefix}logps/{side}")
                cells.append(f"{ends[0]:.3f} → {ends[1]:.3f} ({ends[1] - ends[0]:+.3f})" if ends else "–")
                if ends and side == "chosen" and verdict is None:
                    verdict = "falls" if ends[1] < ends[0] else "holds or rises"
        if verdict is not None:
            rows.append(f"| {label} | " + " | ".join(cells) + f" | {verdict} |")
    if not rows:
        return ""
    columns = ("objective", "chosen (train)", "rejected (train)", "chosen (held-out)", "rejected (held-out)", "verdict")
    head = "| " + " | ".join(columns) + " |"
    return "\n".join([head, "|---" * len(columns) + "|", *rows])


def _first_last(runs: list[RunRecord], key: str) -> tuple[float, float] | None:
    """Mean over runs of ``key`` over the first and over the last quarter of the logged steps (at least
    one step each): each training step logs a different small batch, so one step alone is mostly noise."""
    curves = [sorted(r.curves[key]) for r in runs if len(r.curves.get(key, [])) > 1]
    if not curves:
        return None
    first = [statistics.fmean(v for _, v in c[: max(1, len(c) // 4)]) for c in curves]
    last = [statistics.fmean(v for _, v in c[-max(1, len(c) // 4) :]) for c in curves]
    return statistics.fmean(first), statistics.fmean(last)


def tuning_table(groups: dict[str, list[RunRecord]]) -> str:
    """For objectives run at several hyperparameter settings: the best setting and what the grid cost."""
    rows = []
    for objective, labels in _by_objective(groups).items():
        if len(labels) < 2 and objective != "simper":
            continue
        runs = [r for label in labels for r in groups[label]]
        means = {lb: finite_or_worst(mean_std([r.values.get("mean_reward") for r in groups[lb]])[0]) for lb in labels}
        best = max(labels, key=means.get)
        reward, std = mean_std([r.values.get("mean_reward") for r in groups[best]])
        minutes = sum(r.values.get("train_minutes", 0.0) for r in runs)
        spread = f"{min(means.values()):.3f} – {max(means.values()):.3f}" if len(labels) > 1 else "–"
        rows.append(
            f"| {objective} | {len(labels)} | {len(runs)} | {minutes:.1f} | {best} | {reward:.3f} ± {std:.3f} "
            f"| {spread} |"
        )
    if len(rows) < 2:
        return ""
    head = (
        "| objective | settings | runs | train wall, all runs (min) | best setting | its held-out reward "
        "| grid's range |"
    )
    return "\n".join([head, "|---|---|---|---|---|---|---|", *rows])


def selection_table(groups: dict[str, list[RunRecord]], reference: str = "simper") -> str:
    """For objectives run at several settings: the grid tuned on one half of the prompts and read on the
    other (:func:`simper.report.gains.cross_fitted`), its gain and its paired difference to ``reference``,
    a rank claimed only beyond noise with every tuned objective read at once (Bonferroni)."""
    tuned = {
        objective: cross_fitted(settings)
        for objective, settings in _by_objective(groups).items()
        if objective != reference and len(settings) > 1
    }
    gains = {objective: t.gain() for objective, t in tuned.items() if t}
    tuned = {objective: tuned[objective] for objective, gain in gains.items() if gain}
    if not tuned:
        return ""
    differences = {o: t.against(groups[reference]) for o, t in tuned.items()} if reference in groups else {}
    m = sum(1 for difference in differences.values() if difference)  # as rank_claims: those read against it
    rows = []
    for objective, t in tuned.items():
        picks = ", ".join(f"{label} ×{n}" for label, n in Counter(t.picks.values()).most_common())
        difference, claim = differences.get(objective), "–"
        if difference:
            strict = t.against(groups[reference], 1 - 0.05 / m)
            claim = {"above": f"{objective} higher", "below": f"{reference} higher"}.get(strict.verdict, "no rank")
        rows.append(
            f"| {objective} | {len(t.labels)} | {gains[objective].seeds} | {picks} | {gains[objective]} "
            f"| {difference or '–'} "
            f"| {claim} |"
        )
    head = (
        f"| objective | settings | seeds | settings picked (seed × half) | gain, tuned on the other half | minus "
        f"{reference} | claim |"
    )
    return "\n".join([head, "|---|---|---|---|---|---|---|", *rows])


def _by_objective(groups: dict[str, list[RunRecord]]) -> dict[str, dict[str, list[RunRecord]]]:
    """The labels (settings) of each objective, with their runs."""
    by_objective: dict[str, dict[str, list[RunRecord]]] = {}
    for label, runs in groups.items():
        by_objective.setdefault(runs[0].objective, {})[label] = runs
    return by_objective


def intro(runs: list[RunRecord], start: dict[str, Any] | None) -> str:
    seeds = sorted({r.seed for r in runs})
    text = f"{len(runs)} runs, seeds {', '.join(map(str, seeds))}; mean ± std over seeds."
    if start:
        text += (
            f" Starting model `{start.get('model')}`: held-out reward {start.get('mean_reward', float('nan')):.3f}, "
            f"instruction accuracy {start.get('instruction_accuracy', float('nan')):.3f}, "
            f"math accuracy {start.get('math_accuracy', float('nan')):.3f}, chosen likelier on held-out "
            f"pairs {start.get('chosen_likelier', float('nan')):.3f}."
        )
    return text


def to_html(md_lines: list[str], folder: Path) -> str:
    """The markdown report as one self-contained page: tables as HTML tables, PNGs inlined."""
    body, table = [], []

    def flush_table() -> None:
        if not table:
            return
        rows = [
            [html.escape(c.strip()).replace("**", "") for c in line.strip("|").split("|")]
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
