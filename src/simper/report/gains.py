"""Gains over the starting model pooled over seeds, per prompt, with intervals over seeds and prompts.

Every run of a comparison is evaluated on the same held-out prompts against the same starting model,
so each run gives one reward gain per prompt. A label's gain is the mean over its seeds and the
prompts; its interval (:func:`simper.intervals.gain_interval`) covers what another set of prompts
and another set of seeds would move it by. Two labels are compared on
the seeds they share, prompt by prompt (a paired difference).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from simper.intervals import gain_interval
from simper.report.runs import RunRecord

WORDINGS = (("all", "all prompts"), ("unseen", "unseen wording"), ("seen", "training's wording"))


@dataclass
class Gain:
    """A mean over seeds and prompts with its 95% interval."""

    mean: float
    low: float
    high: float
    seeds: int
    prompts: int

    def __str__(self) -> str:
        return f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"

    @property
    def verdict(self) -> str:
        """``above``/``below`` zero where the interval excludes it, else ``within noise``."""
        return "above" if self.low > 0 else "below" if self.high < 0 else "within noise"


def prompt_gains(run: RunRecord, wording: str = "all") -> dict[str, float]:
    """Per prompt id, the run's reward minus the starting model's, on prompts of ``wording``."""
    return {
        row["id"]: row["reward"] - row["baseline_reward"]
        for row in run.rows
        if "reward" in row and "baseline_reward" in row and wording in ("all", row.get("phrasing"))
    }


FAMILY_VERDICT_PROMPTS = 10  # fewer prompts of a family: its change is shown, never judged


def pooled(matrix: np.ndarray, confidence: float = 0.95) -> Gain | None:
    if matrix.size == 0:
        return None
    low, high = gain_interval(matrix, confidence)
    return Gain(float(matrix.mean()), low, high, matrix.shape[0], matrix.shape[1])


def _matrix(per_seed: list[dict[str, float]]) -> np.ndarray:
    """Seeds × prompts on the prompts the seeds share (sorted by id: the same columns for every label).

    Seeds evaluated on other prompts (another evaluation seed or count, e.g. runs added to an older
    comparison) are left out: only the seeds holding the most common prompt set are pooled, and the
    tables give the number of seeds pooled."""
    per_seed = [gains for gains in per_seed if gains]
    if not per_seed:
        return np.empty((0, 0))
    most = _most_common([frozenset(gains) for gains in per_seed])
    return np.array([[gains[p] for p in sorted(most)] for gains in per_seed if gains.keys() == most])


def _most_common(sets: list[frozenset[str]]) -> frozenset[str]:
    """The prompt set most seeds hold (ties: the larger, then the first sorted: the same pick every run)."""
    return max(set(sets), key=lambda ids: (sets.count(ids), len(ids), sorted(ids)))


def finished(runs: list[RunRecord]) -> list[RunRecord]:
    """The evaluated runs, one per seed (the last folder read: a seed found twice is not two seeds)."""
    done = {r.seed: r for r in runs if r.status != "failed" and any("baseline_reward" in row for row in r.rows)}
    return list(done.values())


def label_gain(runs: list[RunRecord], wording: str = "all") -> Gain | None:
    """The label's gain over the start, pooled over its seeds."""
    return pooled(_matrix([prompt_gains(r, wording) for r in finished(runs)]))


def paired_difference(
    runs: list[RunRecord], reference: list[RunRecord], wording: str = "all", confidence: float = 0.95
) -> Gain | None:
    """Gain of ``runs`` minus gain of ``reference``, seed by seed and prompt by prompt, on shared seeds."""
    ours = {r.seed: prompt_gains(r, wording) for r in finished(runs)}
    return _paired(ours, {r.seed: prompt_gains(r, wording) for r in finished(reference)}, confidence)


def _paired(ours: dict[int, dict[str, float]], theirs: dict[int, dict[str, float]], confidence: float) -> Gain | None:
    """Per-seed, per-prompt gains ``ours`` minus ``theirs``, pooled over the seeds and prompts both have."""
    seeds = sorted(ours.keys() & theirs.keys())
    diffs = [{p: ours[s][p] - theirs[s][p] for p in ours[s].keys() & theirs[s].keys()} for s in seeds]
    return pooled(_matrix(diffs), confidence)


def finite_or_worst(value: float) -> float:
    """``value``, or -inf where it is NaN or infinite: what a pick by the largest mean never picks."""
    return value if math.isfinite(value) else -math.inf


def half(prompt_id: str) -> int:
    """Which half of the prompts (0 or 1) a prompt belongs to, fixed by a hash of its id, so every report
    splits a prompt set the same way: a tuned objective's setting is picked on one half, read on the other."""
    return hashlib.sha256(prompt_id.encode("utf-8")).digest()[0] % 2


@dataclass
class Tuned:
    """An objective tuned the fair way: per seed, the setting with the highest mean gain on one half of the
    prompts is read on the other half, and the other way round (two-fold cross-fitting). ``gains`` holds,
    per seed and prompt, the gain of the setting picked without that prompt; ``picks`` the setting picked
    per (seed, half read); ``labels`` the settings it picked from."""

    gains: dict[int, dict[str, float]]
    picks: dict[tuple[int, int], str]
    labels: list[str]

    def gain(self, confidence: float = 0.95) -> Gain | None:
        return pooled(_matrix(list(self.gains.values())), confidence)

    def against(self, reference: list[RunRecord], confidence: float = 0.95) -> Gain | None:
        """This tuned gain minus ``reference``'s gain, on the same seeds and prompts."""
        return _paired(self.gains, {r.seed: prompt_gains(r) for r in finished(reference)}, confidence)


def cross_fitted(settings: dict[str, list[RunRecord]]) -> Tuned | None:
    """One objective's settings (label -> runs) tuned on half of the prompts and read on the other half,
    on the seeds every setting finished and the prompts they share. Reading the best setting on the
    prompts it was picked on overstates it by however lucky the pick was; here no prompt a setting is
    read on helped pick it, so the gain is what tuning this grid on a selection set of half the prompts
    would deliver (for this split of the prompts: the interval does not cover how another split would
    move the picks). Settings with no finished run are left out, ties go to the first label, and only
    seeds holding the most common prompt set (as the pooled gains keep) with prompts in both halves
    are read. None when fewer than two settings or no seed are left."""
    per_label = {label: {r.seed: prompt_gains(r) for r in finished(runs)} for label, runs in settings.items()}
    per_label = {label: by_seed for label, by_seed in per_label.items() if by_seed}
    if len(per_label) < 2:
        return None
    seeds = sorted(set.intersection(*(set(by_seed) for by_seed in per_label.values())))
    shared = {
        seed: frozenset.intersection(*(frozenset(by_seed[seed]) for by_seed in per_label.values())) for seed in seeds
    }
    shared = {seed: ids for seed, ids in shared.items() if ids}
    tuned = Tuned({}, {}, list(per_label))
    most = _most_common(list(shared.values())) if shared else frozenset()
    halves = [sorted(p for p in most if half(p) == h) for h in (0, 1)]
    if not all(halves):  # prompts that fill one half only cannot be cross-fitted
        return None
    for seed in (seed for seed, ids in shared.items() if ids == most):
        tuned.gains[seed] = {}
        for read, pick in ((0, 1), (1, 0)):
            means = {label: np.mean([by_seed[seed][p] for p in halves[pick]]) for label, by_seed in per_label.items()}
            best = max(means, key=lambda label: finite_or_worst(means[label]))
            tuned.picks[seed, read] = best
            tuned.gains[seed].update({p: per_label[best][seed][p] for p in halves[read]})
    return tuned


def rank_claims(groups: dict[str, list[RunRecord]], reference: str = "simper") -> dict[str, str]:
    """Per label other than ``reference`` with a paired difference on all prompts: ``"LABEL higher"``,
    ``"REFERENCE higher"`` or ``"no rank"``. With m labels set against the reference, each rank is
    claimed at 1 − 0.05/m (Bonferroni), so that all the claims hold together with probability ≥ 0.95:
    three baselines each read at 95% would show one rank by chance about one time in seven."""
    others = {label: runs for label, runs in groups.items() if label != reference}
    others = {label: runs for label, runs in others.items() if paired_difference(runs, groups[reference])}
    claims = {}
    for label, runs in others.items():
        strict = paired_difference(runs, groups[reference], "all", 1 - 0.05 / len(others))
        claims[label] = {"above": f"{label} higher", "below": f"{reference} higher"}.get(strict.verdict, "no rank")
    return claims


@dataclass
class FamilyChange:
    """One constraint family's share of checks met by the start and after training, the change with its
    95% interval, and the verdict: ``gained``/``lost`` where the change stays beyond noise with every
    judged family read at once, else ``""``."""

    start: float
    after: float
    gain: Gain
    verdict: str = ""


def family_changes(runs: list[RunRecord], wording: str = "unseen") -> dict[str, FamilyChange]:
    """Per constraint family, on instruction prompts of ``wording``: the share of its checks the start
    met, the share the label met, and the change with its interval — per prompt, the family's checks
    met minus the start's, divided by the family's mean checks per prompt, so its mean is exactly
    the change in share — all on the prompts the seeds share.

    A dozen families each read at 95% would show one beyond noise by chance about half the time, so
    the verdict is family-wise for the label: the m families on at least ``FAMILY_VERDICT_PROMPTS``
    prompts whose checks moved at all (one that moved on no prompt can never be judged changed) are
    judged each at 1 − 0.05/m (Bonferroni), and all m verdicts hold together with probability ≥ 0.95."""
    matrices = {family: m for family, m in _family_matrices(finished(runs), wording).items() if m[2].size}
    judged = [
        family
        for family, (met, start, total) in matrices.items()
        if total.shape[1] >= FAMILY_VERDICT_PROMPTS and (met != start).any()
    ]
    changes = {}
    for family, (met, start, total) in matrices.items():
        per_prompt = (met - start) / total.mean()
        change = FamilyChange(start.sum() / total.sum(), met.sum() / total.sum(), pooled(per_prompt))
        if family in judged:
            strict = pooled(per_prompt, 1 - 0.05 / len(judged))
            change.verdict = {"above": "gained", "below": "lost"}.get(strict.verdict, "")
        changes[family] = change
    return changes


def _family_matrices(done: list[RunRecord], wording: str) -> dict[str, tuple[np.ndarray, ...]]:
    """Per family: seeds × prompts matrices of checks met, checks the start met, and checks."""
    per_family: dict[str, list[dict[str, tuple[int, int, int]]]] = {}
    for index, run in enumerate(done):
        for row in run.rows:
            if row.get("kind") != "instructions" or not row.get("baseline_results") or not row.get("results"):
                continue
            if wording not in ("all", row.get("phrasing")):
                continue
            for key, ok in row["results"].items():
                family = key.split(":", 1)[-1]
                seeds = per_family.setdefault(family, [{} for _ in done])
                met, start, total = seeds[index].get(row["id"], (0, 0, 0))
                seeds[index][row["id"]] = (met + ok, start + bool(row["baseline_results"].get(key)), total + 1)
    return {
        family: tuple(_matrix([{p: v[i] for p, v in seed.items()} for seed in seeds]) for i in range(3))
        for family, seeds in sorted(per_family.items())
    }
