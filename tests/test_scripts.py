"""The data scripts that made published numbers: what they write holds what their docstrings say."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from simper.resources import HELDOUT_PAIRS, TRAIN_PAIRS
from simper.tasks import score

ROOT = Path(__file__).resolve().parents[1]


def test_template_pairs_meet_every_constraint_when_chosen_and_fewer_when_rejected(tmp_path):
    for source in (TRAIN_PAIRS, HELDOUT_PAIRS):
        out = tmp_path / f"{source.stem}.jsonl"
        script = [sys.executable, str(ROOT / "scripts" / "template_pairs.py"), str(source), str(out), "--seed", "3"]
        assert "rows written" in subprocess.run(script, check=True, capture_output=True, text=True).stderr
        rows = {r["id"]: r for r in map(json.loads, source.read_text().splitlines())}
        written = [json.loads(line) for line in out.read_text().splitlines()]
        # left out: the impossible ('is' banned beside a required 'That is all.') and what the writer cannot shape
        assert len(written) >= 0.97 * len(rows)
        for pair in written:
            source_row = rows[pair["id"]]
            assert pair["prompt"] == source_row["prompt"] and pair["writer"] == "template"
            chosen, rejected = pair["chosen"][-1]["content"], pair["rejected"][-1]["content"]
            assert chosen != source_row["chosen"][-1]["content"]  # written by the template, not the model
            assert score(pair, chosen).reward == pair["score_chosen"] == 1.0
            assert score(pair, rejected).reward == pair["score_rejected"] < 1.0
        kinds = {pair["kind"] for pair in written}
        assert kinds == {"instructions", "arithmetic"}


def test_pair_stats_counts_ties_cut_offs_and_the_samples_each_pair_took(tmp_path, tiny_model_dir):
    def pair(kind, chosen, rejected, **fields):
        return {"kind": kind, "chosen": [{"content": chosen}], "rejected": [{"content": rejected}], **fields}

    rows = [
        pair("arithmetic", "12", "13", score_chosen=1.0, score_rejected=0.0, num_samples=8),
        pair("arithmetic", "5", "6", score_chosen=0.0, score_rejected=0.0, tie_broken=True, rejected_truncated=True),
        pair("instructions", "ok", "no", score_chosen=1.0, score_rejected=0.5, num_samples=4),
    ]
    pairs = tmp_path / "p.jsonl"
    pairs.write_text("".join(json.dumps(row) + "\n" for row in rows))
    (tmp_path / "p.jsonl.seen").write_text("a\nb\nc\nd\ne\n")  # 5 prompts handled, 3 pairs: 2 ties dropped
    script = [sys.executable, str(ROOT / "scripts" / "pair_stats.py"), str(pairs), "--model", str(tiny_model_dir)]
    lines = subprocess.run(script, check=True, capture_output=True, text=True).stdout.splitlines()
    assert lines[:4] == [
        "3 pairs (2 arithmetic, 1 instructions) from 5 prompts:",
        "  ties dropped: 2; tie-broken pairs: 1",
        "  arithmetic: 1 pairs the reward tells apart; samples drawn 8 for 1",
        "  instructions: 1 pairs the reward tells apart; samples drawn 4 for 1",
    ]
    assert lines[5].startswith("  rejected: 33.3% cut off")
    assert lines[-1].endswith("pairs whose chosen response ended: 3")
    (tmp_path / "p.jsonl.seen").unlink()  # a merged file: the prompts that tied are not known
    lines = subprocess.run(script, check=True, capture_output=True, text=True).stdout.splitlines()
    assert lines[:2] == [
        "3 pairs (2 arithmetic, 1 instructions):",
        f"  ties dropped: unknown (no .seen file beside {pairs}); tie-broken pairs: 1",
    ]


def test_shipped_training_pairs_are_training_prompts_scored_as_written():
    """Both shipped training sets: training-split prompts in training wording only, none of them among
    the held-out pairs or the hand-written prompts, one pair per prompt, and every score what the
    checkers give today. The large set holds the default one."""
    from simper.resources import HANDWRITTEN_PROMPTS, SHIPPED_PAIRS
    from simper.tasks import split_of

    def text(row):
        return row["prompt"][-1]["content"] if isinstance(row["prompt"], list) else row["prompt"]

    def rows_of(path):
        return [json.loads(line) for line in path.read_text().splitlines()]

    held_out = {text(row) for path in (HELDOUT_PAIRS, HANDWRITTEN_PROMPTS) for row in rows_of(path)}
    prompts = {}
    for name, path in SHIPPED_PAIRS.items():
        rows = rows_of(path)
        prompts[name] = [text(row) for row in rows]
        assert len(set(prompts[name])) == len(rows), name
        assert not set(prompts[name]) & held_out, name
        for row in rows:
            assert row["phrasing"] == "seen" and split_of(text(row)) == "train", (name, row["id"])
            assert score(row, row["chosen"][-1]["content"]).reward == row["score_chosen"], (name, row["id"])
            assert score(row, row["rejected"][-1]["content"]).reward == row["score_rejected"], (name, row["id"])
    assert len(prompts["smollm2-pairs-large"]) >= 1500
    assert set(prompts["smollm2-pairs"]) <= set(prompts["smollm2-pairs-large"])
