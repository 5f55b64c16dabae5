"""simper eval on the tiny model: metrics written, baseline cached, the density plot drawn."""

from __future__ import annotations

import json

import pytest

from simper.cli import main
from simper.evaluate import density, task_metrics, win_rate
from simper.resources import EXAMPLE_PAIRS


def test_eval_against_itself_ties_everywhere_and_caches_the_baseline(tiny_model_dir, tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(EXAMPLE_PAIRS.read_text())
    args = [
        "eval",
        str(tiny_model_dir),
        "--baseline",
        str(tiny_model_dir),
        "--num-prompts",
        "6",
        "--max-new-tokens",
        "8",
        "--pairs",
        str(pairs),
        "--output",
        str(tmp_path / "out"),
    ]
    assert main(args) == 0
    result = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert result["tie_rate"] == 1.0 and result["win_rate"] == 0.0  # greedy: same model, same answers
    assert result["pairs"] == 400 and 0 <= result["preference_accuracy"] <= 1
    assert result["ppl_density"]["peak"] is not None and result["baseline"]["mean_reward"] == result["mean_reward"]
    rows = [json.loads(line) for line in (tmp_path / "out" / "generations.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all("reward" in r and "log_ppl" in r for r in rows)
    assert (tmp_path / "out" / "ppl_density.png").stat().st_size > 10_000
    out = capsys.readouterr()
    assert "held-out preference accuracy" in out.out
    assert main(args) == 0
    assert "cached evaluation" in capsys.readouterr().err
    pairs.write_text(EXAMPLE_PAIRS.read_text().splitlines()[0] + "\n")  # edited held-out pairs: not stale
    assert main(args) == 0
    assert "cached evaluation" not in capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "eval.json").read_text())["baseline"]["pairs"] == 1


def test_task_metrics_by_hand():
    rows = [
        {"kind": "instructions", "reward": 0.5, "results": {"a": True, "b": False}},
        {"kind": "instructions", "reward": 1.0, "results": {"a": True}},
        {"kind": "arithmetic", "reward": 0.0, "results": {"answer": False}},
        {"kind": "arithmetic", "reward": 1.0, "results": {"answer": True}},
    ]
    metrics = task_metrics(rows)
    assert metrics["prompt_accuracy"] == 0.5 and metrics["instruction_accuracy"] == pytest.approx(2 / 3)
    assert metrics["math_accuracy"] == 0.5 and metrics["mean_reward"] == 0.625


def test_win_rate_and_density():
    model = [{"id": 1, "reward": 1.0}, {"id": 2, "reward": 0.5}, {"id": 3, "reward": 0.0}]
    base = [{"id": 1, "reward": 0.5}, {"id": 2, "reward": 0.5}, {"id": 3, "reward": 1.0}]
    assert win_rate(model, base) == pytest.approx({"win_rate": 1 / 3, "tie_rate": 1 / 3, "loss_rate": 1 / 3})
    curve = density([2.0, 2.05, 2.1, 4.0])
    assert 2.0 <= curve["peak"] <= 2.3 and sum(d * 0.05 for d in curve["density"]) == pytest.approx(1.0, abs=1e-2)
