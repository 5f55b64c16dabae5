"""simper eval on the tiny model: metrics written, baseline cached, the density plot drawn."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from simper.cli import main
from simper.evaluate import _cache_key, answer_metrics, compare_rewards, density, spread, task_metrics
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
    assert result["pairs"] == 400 and 0 <= result["chosen_likelier"] <= 1
    assert result["ppl_density"]["peak"] is not None and result["baseline"]["mean_reward"] == result["mean_reward"]
    rows = [json.loads(line) for line in (tmp_path / "out" / "generations.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all("reward" in r and "log_ppl" in r for r in rows)
    assert all(r["baseline_reward"] == r["reward"] for r in rows)
    assert result["reward_gain"] == 0.0 and result["reward_gain_ci95"] == [0.0, 0.0]
    assert abs(result["kl_to_baseline"]) < 1e-4  # its own answers, scored by itself
    assert sorted(result["by_phrasing"]) == ["seen", "unseen"]  # half each, reported apart
    assert [result["by_phrasing"][g]["prompts"] for g in ("seen", "unseen")] == [3, 3]
    assert all(result["by_phrasing"][g]["reward_gain"] == 0.0 for g in ("seen", "unseen"))
    assert 0 <= result["loop_share"] <= 1 and 0 < result["sample_distinct_2"] <= 1
    assert (tmp_path / "out" / "ppl_density.png").stat().st_size > 10_000
    out = capsys.readouterr()
    assert "held-out pairs with the chosen answer likelier" in out.out and "reward gain, all prompts" in out.out
    assert main(args) == 0
    assert "cached evaluation" in capsys.readouterr().err
    pairs.write_text(EXAMPLE_PAIRS.read_text().splitlines()[0] + "\n")  # edited held-out pairs: not stale
    assert main(args) == 0
    assert "cached evaluation" not in capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "eval.json").read_text())["baseline"]["pairs"] == 1


def test_the_baseline_cache_key_follows_what_loading_reads_and_nothing_else(tiny_model_dir, tmp_path):
    """The stop tokens, the chat template and a reward model's files change what a baseline answers
    and scores: an edit to any of them must miss the cache; a run's own outputs beside them must not."""
    model, reward = tmp_path / "model", tmp_path / "reward"
    shutil.copytree(tiny_model_dir, model)
    shutil.copytree(tiny_model_dir, reward)
    settings = {"num_prompts": 6, "reward": str(reward)}
    key = _cache_key(str(model), settings)
    (model / "eval.json").write_text("{}")
    (model / "metrics.jsonl").write_text("{}\n")
    assert _cache_key(str(model), settings) == key
    keys = {key}
    generation = json.loads((model / "generation_config.json").read_text())
    (model / "generation_config.json").write_text(json.dumps({**generation, "eos_token_id": [2, 202]}))
    keys.add(_cache_key(str(model), settings))
    (model / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    keys.add(_cache_key(str(model), settings))
    config = json.loads((reward / "config.json").read_text())
    (reward / "config.json").write_text(json.dumps({**config, "num_labels": 1}))
    keys.add(_cache_key(str(model), settings))
    assert len(keys) == 4
    assert _cache_key(str(model), {**settings, "reward": "builtin"}) not in keys


def test_a_hub_baseline_is_keyed_by_the_revision_it_loads(tiny_model_dir, tmp_path, monkeypatch):
    """A hub id's evaluation belongs to one commit: when the hub (here a local hub cache, offline)
    points ``main`` at a new commit, the cached evaluation of the old one must not come back."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--someone--tiny"
    for commit in ("a" * 40, "b" * 40):
        shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    keys = []
    for commit in ("a" * 40, "b" * 40, "a" * 40):
        (repo / "refs" / "main").write_text(commit)
        keys.append(_cache_key("someone/tiny", {"num_prompts": 6}))
    assert keys[0] != keys[1] and keys[0] == keys[2]
    (repo / "snapshots" / ("a" * 40) / "model.safetensors").touch()  # loading fetches the weights after
    assert _cache_key("someone/tiny", {"num_prompts": 6}) == keys[0]
    rewards = []
    for commit in ("a" * 40, "b" * 40):  # a reward model on the hub, the same way
        (repo / "refs" / "main").write_text(commit)
        rewards.append(_cache_key(str(tiny_model_dir), {"reward": "someone/tiny"}))
    assert rewards[0] != rewards[1]
    assert _cache_key("someone/not-cached", {}) and _cache_key("not a repo id", {})


def test_the_baseline_cache_key_follows_the_reward_code(tiny_model_dir, tmp_path, monkeypatch):
    """Editing one's own ``module:function`` reward must re-score the baseline, not return its old
    rewards beside the model's new ones; a reward that cannot be imported still gets a key (loading
    it then gives the error)."""
    (tmp_path / "my_reward.py").write_text("def score(prompt, response):\n    return 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    settings = {"num_prompts": 6, "reward": "my_reward:score"}
    key = _cache_key(str(tiny_model_dir), settings)
    assert _cache_key(str(tiny_model_dir), settings) == key
    (tmp_path / "my_reward.py").write_text("def score(prompt, response):\n    return len(response)\n")
    assert _cache_key(str(tiny_model_dir), settings) != key
    assert _cache_key(str(tiny_model_dir), {**settings, "reward": "no_such_module:score"})


def test_diversity_prompts_come_from_both_wordings_when_both_are_asked():
    both = [{"phrasing": "seen"}] * 6 + [{"phrasing": "unseen"}] * 6  # builtin_prompts: seen half first
    assert spread(both, 4) == [0, 1, 6, 7]
    assert spread([{"phrasing": "unseen"}] * 6, 4) == [0, 1, 2, 3] == spread([{}] * 6, 4)
    assert spread(both, 0) == [] and spread(both[:2], 16) == [0, 1]


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


def test_one_wording_is_still_reported_under_its_name():
    """--prompt-split heldout-phrasing: every prompt in unseen wording, read by reports as such."""
    rows = [
        {"kind": "arithmetic", "reward": r, "results": {"answer": bool(r)}, "phrasing": "unseen", "tokens": 5}
        for r in (0.0, 1.0)
    ]
    for row in rows:
        row.update(response="an answer", finished=True)
    metrics = answer_metrics(rows, [])
    assert list(metrics["by_phrasing"]) == ["unseen"] and metrics["by_phrasing"]["unseen"]["math_accuracy"] == 0.5
    assert "by_phrasing" not in answer_metrics([{k: v for k, v in r.items() if k != "phrasing"} for r in rows], [])


def test_compare_rewards_and_density():
    model = [{"id": 1, "reward": 1.0}, {"id": 2, "reward": 0.5}, {"id": 3, "reward": 0.0}]
    base = [{"id": 1, "reward": 0.5}, {"id": 2, "reward": 0.5}, {"id": 3, "reward": 1.0}]
    rows, result = compare_rewards(model, base)
    assert [r["baseline_reward"] for r in rows] == [0.5, 0.5, 1.0] and "baseline_reward" not in model[0]
    assert [result[k] for k in ("win_rate", "tie_rate", "loss_rate")] == pytest.approx([1 / 3, 1 / 3, 1 / 3])
    assert result["reward_gain"] == pytest.approx(-1 / 6)
    low, high = result["reward_gain_ci95"]
    assert -1.0 <= low < -1 / 6 < high <= 0.5  # means of draws from (0.5, 0, -1)
    # a small gain on many prompts is resolved; the same gain on a handful of prompts is not
    _, many = compare_rewards(
        [{"id": i, "reward": float(i % 10 == 0)} for i in range(2000)], [{"id": i, "reward": 0.0} for i in range(2000)]
    )
    assert many["reward_gain"] == pytest.approx(0.1) and many["reward_gain_ci95"][0] > 0.08
    _, few = compare_rewards(
        [{"id": i, "reward": float(i == 0)} for i in range(10)], [{"id": i, "reward": 0.0} for i in range(10)]
    )
    assert few["reward_gain"] == pytest.approx(0.1) and few["reward_gain_ci95"][0] == 0.0
    ten, four = [{"id": i, "reward": 1.0} for i in range(10)], [{"id": i, "reward": 0.0} for i in range(4)]
    _, part = compare_rewards(ten, four)
    assert part["compared_prompts"] == 4 and part["reward_gain"] == 1.0
    assert compare_rewards(model, []) == (model, {"win_rate": 0.0, "tie_rate": 0.0, "loss_rate": 0.0})
    curve = density([2.0, 2.05, 2.1, 4.0])
    assert 2.0 <= curve["peak"] <= 2.3 and sum(d * 0.05 for d in curve["density"]) == pytest.approx(1.0, abs=1e-2)


def test_bad_pair_file_stops_eval_before_any_generation(tiny_model_dir, tmp_path, monkeypatch, capsys):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"prompt": "a", "chosen": "b"}\n')

    def no_generation(*args, **kwargs):
        raise AssertionError("generation started before the pair file was read")

    monkeypatch.setattr("simper.evaluate.load_generator", no_generation)
    out = tmp_path / "out"
    assert main(["eval", str(tiny_model_dir), "--pairs", str(bad), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"simper: error: {bad}: cannot detect the preference format")
    assert not out.exists()


def test_eval_on_your_own_prompts_with_your_own_reward(tiny_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # reward_fixtures
    prompts = tmp_path / "prompts.jsonl"
    rows = [{"prompt": "Tell me about tea."}, {"prompt": [{"role": "user", "content": "Name a river."}]}]
    prompts.write_text("".join(json.dumps(row) + "\n" for row in rows))
    args = ["eval", str(tiny_model_dir), "--baseline", str(tiny_model_dir), "--prompts", str(prompts)]
    args += ["--reward", "reward_fixtures:length_reward", "--max-new-tokens", "8", "--num-pairs", "2"]
    assert main([*args, "--output", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "eval.json").read_text())
    answers = [json.loads(line) for line in (tmp_path / "out" / "generations.jsonl").read_text().splitlines()]
    assert [a["reward"] for a in answers] == [float(len(a["response"])) for a in answers]  # the user's reward
    assert result["mean_reward"] == sum(a["reward"] for a in answers) / 2 and "prompt_accuracy" not in result
    assert result["tie_rate"] == 1.0 and result["reward_gain_ci95"] == [0.0, 0.0]  # against itself
    assert main([*args[:-6], "--reward", "no_such_module:f", "--output", str(tmp_path / "bad")]) == 2
    assert "cannot import it" in capsys.readouterr().err and not (tmp_path / "bad" / "eval.json").exists()


@pytest.mark.parametrize(
    "row, message",
    [
        ({"prompt": "Tell me about tea."}, "field 'kind': expected 'instructions' or 'arithmetic', got None"),
        ({"prompt": "2 + 2?", "kind": "arithmetic", "answer": "4"}, "field 'answer': expected an integer, got '4'"),
        ({"prompt": "Hi.", "kind": "instructions", "constraints": []}, "field 'constraints': expected a non-empty"),
        (
            {"prompt": "Hi.", "kind": "instructions", "constraints": [{"type": "shouting"}]},
            "field 'constraints' item 0: unknown type 'shouting'",
        ),
        (
            {"prompt": "Hi.", "kind": "instructions", "constraints": [{"type": "max_words", "words": 20}]},
            "item 0 (max_words): expected parameters ['n'], got ['words']",
        ),
        (
            {"prompt": "Hi.", "kind": "instructions", "constraints": [{"type": "max_words", "n": "30"}]},
            "item 0 (max_words): parameter 'n': expected a whole number ≥ 0, got '30'",
        ),
        (
            {"prompt": "Hi.", "kind": "instructions", "constraints": [{"type": "include_keywords", "words": "light"}]},
            "parameter 'words': expected a non-empty list of words, got 'light'",
        ),
    ],
)
def test_builtin_reward_refuses_prompt_rows_it_cannot_score_before_generating(
    tiny_model_dir, tmp_path, monkeypatch, capsys, row, message
):
    def no_generation(*args, **kwargs):
        raise AssertionError("generation started on a prompt file the checkers cannot score")

    monkeypatch.setattr("simper.evaluate.load_generator", no_generation)
    good = {"prompt": "Say hi. Answer in fewer than 5 words.", "kind": "instructions"}
    good["constraints"] = [{"type": "max_words", "n": 5}]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    out = tmp_path / "out"
    assert main(["eval", str(tiny_model_dir), "--prompts", str(prompts), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"simper: error: {prompts}:line 2: ") and message in err and not out.exists()
    assert ("give --reward module:function" in err) == ("kind" not in row)  # the hint only where it helps


def test_eval_table_names_a_single_wording_once():
    from simper.cli import format_eval_table

    gain = {"reward_gain": 0.05, "reward_gain_ci95": [0.01, 0.09], "prompts": 8}
    both = format_eval_table({"mean_reward": 0.5, **gain, "by_phrasing": {"seen": gain, "unseen": gain}})
    assert "reward gain, all prompts" in both and "reward gain, unseen wording" in both
    one = format_eval_table({"mean_reward": 0.5, **gain, "by_phrasing": {"unseen": gain}})
    assert one.count("reward gain") == 1 and "reward gain, all prompts (unseen wording)" in one
