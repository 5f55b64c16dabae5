"""``simper report``: a comparison report rebuilt from run folders.

``runs`` reads what each run wrote, ``gains`` pools per-prompt gains over seeds with intervals,
``tables`` writes the markdown tables and the self-contained HTML page, ``plots`` the PNGs. Runs are
grouped by label (objective plus non-default hyperparameters).
"""

from __future__ import annotations

from pathlib import Path

from simper.errors import UserError
from simper.report.gains import FAMILY_VERDICT_PROMPTS
from simper.report.plots import plot_curves, plot_density, plot_gradient_balance, plot_reward_kl
from simper.report.runs import RunRecord, group_runs, load_run, run_label
from simper.report.tables import (
    difference_table,
    family_table,
    gains_table,
    intro,
    likelihood_table,
    selection_table,
    summary_table,
    to_html,
    tuning_table,
)

__all__ = ["RunRecord", "build_report", "load_run", "run_label", "summary_table"]

CAPTIONS = {
    "curves.png": "Loss and mean log-probability per response token of the chosen and rejected training "
    "responses over steps (mean over seeds; the shaded band spans the seeds). SimPER should keep the chosen "
    "likelihood from collapsing.",
    "gradient_balance.png": "Per-step mean of |∂loss/∂(mean log-prob)| on the chosen and on the rejected response: "
    "the size of the push each objective gives each side (the paper's gradient analysis).",
    "ppl_density.png": "Density of the log-perplexity of each model's own greedy responses on held-out prompts, "
    "pooled over seeds; dashed lines mark the peaks. A lower, sharper peak is the paper's mode-seeking claim.",
    "reward_kl.png": "Held-out reward against how far each model's greedy answers moved from the starting model "
    "(Σ log π − Σ log π_start on those answers, nats per response), one point per run. Not a KL estimate, which "
    "needs sampled answers: it can be negative and also grows as the mode sharpens.",
}
GAINS_TEXT = (
    "Mean reward gain over the starting model, per prompt, pooled over seeds; 95% interval over both the seeds "
    "and the prompts (a t interval; one seed: a bootstrap over the prompts). *Unseen wording*: prompts whose "
    "constraint sentences, task templates and arithmetic problem templates training never saw."
)
DIFFERENCE_TEXT = (
    "Each objective's gain minus SimPER's on the same seeds and prompts (paired), with its 95% interval. A rank "
    "is claimed only where the difference stays beyond noise with every objective here read against SimPER at "
    "once: each at 1 − 0.05/m for m of them (Bonferroni), so a claim can be missing where a 95% interval "
    "excludes zero."
)
LIKELIHOOD_TEXT = (
    "Mean log-probability per token of the chosen and the rejected responses, averaged over the first and over "
    "the last quarter of the logged steps and over seeds: on training batches (each step a different batch, so "
    "read the direction, not the decimals) and on the held-out pairs when the recipe evaluates them while "
    "training (the curves below show every step; the summary's Δ chosen log-p is the final model against the "
    "start on the held-out pairs). Under DPO the chosen likelihood is known to fall with the rejected one; "
    "SimPER's claim is that it holds."
)
TUNING_TEXT = (
    "Objectives run at several settings (`--tune-baselines`): what the grid cost in runs and training time beside "
    "SimPER's one run per seed, its best setting, and the range of mean held-out reward over its settings. The "
    "best is picked on the very prompts it is read on, so its reward is that objective's best case, not a "
    "forecast of a setting chosen beforehand: a rank against SimPER that holds against it holds against any."
)
SELECTION_TEXT = (
    "The grid tuned the fair way: the prompts split in two halves by a hash of their id; per seed, the setting "
    "with the highest mean gain on one half is read on the other, and the other way round, so no prompt a "
    "setting is read on helped pick it. The gain is what tuning this grid on a selection set of that size "
    "delivers, pooled over seeds and prompts with its 95% interval (for this split: the interval does not cover "
    "how another split would move the picks); the difference to SimPER is paired (same seeds and prompts) and "
    "claims a rank only beyond noise with every tuned objective in this table read at once (Bonferroni)."
)
FAMILY_TEXT = (
    "Share of each constraint family's checks met on unseen-wording instruction prompts (all seeds), and in "
    "brackets the change from the start with its 95% interval. **gained** / **lost** mark a change beyond "
    f"noise with all of that objective's families on at least {FAMILY_VERDICT_PROMPTS} prompts that moved read "
    "together (each at 1 − 0.05/m for m such families, Bonferroni): at 95% apiece, one family in twenty "
    "would look changed by chance."
)


def build_report(folders: list[Path], output: Path) -> Path:
    """Write ``report.md``, ``report.html`` and the plots into ``output``; returns the HTML path."""
    if not folders:
        raise UserError("no run folders to report on")
    runs = [load_run(Path(f)) for f in folders]
    output.mkdir(parents=True, exist_ok=True)
    groups = group_runs(runs)
    plots = {
        "curves.png": ("Training curves", plot_curves(groups, output / "curves.png")),
        "gradient_balance.png": ("Gradient balance", plot_gradient_balance(groups, output / "gradient_balance.png")),
        "ppl_density.png": ("Perplexity density", plot_density(groups, runs, output / "ppl_density.png")),
        "reward_kl.png": ("Reward against the greedy log-ratio", plot_reward_kl(groups, output / "reward_kl.png")),
    }
    plots = {name: title for name, (title, made) in plots.items() if made}
    failures = [r for r in runs if r.status == "failed"]
    start = next((r.baseline for r in runs if r.baseline), None)

    md = ["# simper comparison", "", intro(runs, start), "", summary_table(groups), ""]
    sections = (
        ("Gain over the starting model", GAINS_TEXT, gains_table(groups)),
        ("Against SimPER", DIFFERENCE_TEXT, difference_table(groups)),
        ("Constraint families, unseen wording", FAMILY_TEXT, family_table(groups)),
        ("Likelihood of the training responses", LIKELIHOOD_TEXT, likelihood_table(groups)),
        ("Tuning cost", TUNING_TEXT, tuning_table(groups)),
        ("Tuned on half the prompts, read on the other half", SELECTION_TEXT, selection_table(groups)),
    )
    for title, text, table in sections:
        if table:
            md += [f"## {title}", "", *([text, ""] if text else []), table, ""]
    if failures:
        md += ["## Failed runs", ""] + [f"- {r.label} seed {r.seed}: {r.error}" for r in failures] + [""]
    for name, title in plots.items():
        md += [f"## {title}", "", f"![{title}]({name})", "", CAPTIONS[name], ""]
    (output / "report.md").write_text("\n".join(md), encoding="utf-8")
    (output / "report.html").write_text(to_html(md, output), encoding="utf-8")
    return output / "report.html"
