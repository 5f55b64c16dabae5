"""simper compare and simper report: a tiny end-to-end comparison, resume, failures, the report builder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
import yaml

from simper.cli import main, parse_seeds
from simper.compare import RunSpec, plan
from simper.config import CompareConfig, TrainConfig, load_config
from simper.report import build_report, load_run, summary_table
from simper.report import gains as gains_module
from simper.report.runs import group_runs
from simper.report.tables import difference_table, family_table, gains_table, selection_table
from simper.resources import EXAMPLE_PAIRS


def _compare_args(tiny_model_dir, output, *extra):
    return [
        "compare",
        "--objectives",
        "simper,dpo",
        "--seeds",
        "2",
        "--output",
        str(output),
        "--num-prompts",
        "4",
        "--max-new-tokens",
        "6",
        f"model.name_or_path={tiny_model_dir}",
        f"data.train={EXAMPLE_PAIRS}",
        "data.eval_fraction=0.05",
        "training.max_steps=2",
        "training.per_device_train_batch_size=2",
        "training.learning_rate=1e-4",
        "logging.logging_steps=1",
        *extra,
    ]


def test_two_objectives_two_seeds_end_to_end_then_resume(tiny_model_dir, tmp_path, capsys):
    output = tmp_path / "cmp"
    assert main(_compare_args(tiny_model_dir, output)) == 0
    for label in ("simper", "dpo"):
        for seed in (1, 2):
            folder = output / label / f"seed-{seed}"
            state = json.loads((folder / "run.json").read_text())
            assert state["status"] == "done" and state["train_peak_rss_gb"] > 0.1 and state["train_seconds"] > 0
            evaluation = json.loads((folder / "eval.json").read_text())
            assert "kl_to_baseline" in evaluation and evaluation["baseline"]["model"] == str(tiny_model_dir)
            assert yaml.safe_load((folder / "config.yaml").read_text())["training"]["seed"] == seed
    # the same seed gives both objectives the same data order: identical first-step chosen log-probs
    first = [
        json.loads((output / o / "seed-1" / "metrics.jsonl").read_text().splitlines()[1]) for o in ("simper", "dpo")
    ]
    assert first[0]["logps/chosen"] == pytest.approx(first[1]["logps/chosen"], abs=1e-6)
    report = (output / "report.md").read_text()
    assert "| simper | 2 |" in report and "| dpo | 2 |" in report
    html = (output / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "<td>start</td>" in html
    assert "## Gain over the starting model" in report and "| dpo | 2 |" in report.split("## Against SimPER")[1]
    for name in ("curves.png", "gradient_balance.png", "ppl_density.png", "reward_kl.png"):
        assert (output / name).stat().st_size > 10_000
    # the plan says its seeds: --seeds 2 is a count (1,2), --seeds 2, the seed 2 alone
    assert "simper compare: 4 runs (simper, dpo; seeds 1,2) into" in capsys.readouterr().err

    # each run trained from its own config file; the comparison's settings are written beside the runs
    run_config = load_config(str(output / "dpo" / "seed-2.train.yaml"), cls=TrainConfig)
    assert run_config.objective.name == "dpo" and run_config.training.seed == 2
    assert run_config.training.output_dir == str(output / "dpo" / "seed-2")
    settings = load_config(str(output / "compare.yaml"), cls=CompareConfig)
    assert settings.seeds == [1, 2] and settings.num_prompts == 4 and "training.max_steps=2" in settings.overrides
    assert main(["compare", "--settings", str(output / "compare.yaml")]) == 0  # a rerun skips finished runs
    assert capsys.readouterr().err.count("done earlier, skipped") == 4


FAILING_LAUNCHER = """
import runpy, sys, yaml
args = sys.argv[3:]  # drop "-m simper": run simper's CLI on the rest
if args[0] == "train" and yaml.safe_load(open(args[args.index("--config") + 1]))["training"]["seed"] == 2:
    sys.exit("error: simulated crash of seed 2")
sys.argv = ["simper", *args]
runpy.run_module("simper", run_name="__main__")
"""


def test_a_failed_run_is_reported_and_the_others_go_on(tiny_model_dir, tmp_path, capsys):
    launcher = tmp_path / "launcher.py"
    launcher.write_text(FAILING_LAUNCHER)
    output = tmp_path / "cmp"
    args = _compare_args(tiny_model_dir, output, "--launcher", f"{sys.executable} {launcher}")
    args[args.index("--objectives") + 1] = "simper"
    assert main(args) == 0
    assert json.loads((output / "simper" / "seed-2" / "run.json").read_text())["status"] == "failed"
    assert json.loads((output / "simper" / "seed-1" / "run.json").read_text())["status"] == "done"
    report = (output / "report.md").read_text()
    assert "| simper | 1 (1 failed) |" in report and "simulated crash of seed 2" in report


def test_plan_and_seeds():
    assert parse_seeds("3") == [1, 2, 3] and parse_seeds("7,11") == [7, 11]
    with pytest.raises(argparse.ArgumentTypeError):
        parse_seeds("three")
    assert [s.label for s in plan(["simper", "dpo"], [1])] == ["simper", "dpo"]
    tuned = plan(["simper", "dpo"], [1], tune_baselines=True)
    assert [s.label for s in tuned] == ["simper", "dpo-beta0.01", "dpo-beta0.05", "dpo", "dpo-beta0.5"]
    assert RunSpec("simpo", 1, {"beta": 2.0, "gamma": 0.5}).label == "simpo-gamma0.5"
    with pytest.raises(ValueError, match="unknown objective"):
        plan(["simpr"], [1])


def _fixture_run(folder, objective, seed, reward, params=None, status="done", kl=0.5):
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(
        yaml.safe_dump({"objective": {"name": objective, "params": params or {}}, "training": {"seed": seed}})
    )
    metrics = [{"step": 0, "eval/loss": 0.0}]
    metrics += [
        {
            "step": s,
            "loss": -0.1 * s,
            "logps/chosen": -1.0 + 0.1 * s,
            "logps/rejected": -1.2 - 0.1 * s,
            "grad/chosen": 0.3,
            "grad/rejected": 0.2,
            "tokens_per_s": 100.0 + seed,
        }
        for s in (1, 2, 3)
    ]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    density = {"bins": [0.1 * i for i in range(40)], "density": [float(i == 10 + seed) for i in range(40)]}
    baseline = {
        "model": "start",
        "mean_reward": 0.3,
        "logps_chosen": -1.5,
        "instruction_accuracy": 0.4,
        "math_accuracy": 0.1,
        "chosen_likelier": 0.55,
        "ppl_density": density,
    }
    evaluation = {
        "mean_reward": reward,
        "logps_chosen": -1.25,
        "win_rate": 0.2,
        "kl_to_baseline": kl,
        "ppl_density": density,
        "baseline": baseline,
    }
    if status == "done":
        (folder / "eval.json").write_text(json.dumps(evaluation))
    state = {"objective": objective, "seed": seed, "status": status, "train_seconds": 120.0, "train_peak_rss_gb": 2.0}
    if status == "failed":
        state["error"] = "out of memory"
    (folder / "run.json").write_text(json.dumps(state))
    return folder


def test_report_builder_on_fixture_runs(tmp_path):
    folders = [
        _fixture_run(tmp_path / "simper" / "seed-1", "simper", 1, 0.3),
        _fixture_run(tmp_path / "simper" / "seed-2", "simper", 2, 0.5),
        _fixture_run(tmp_path / "dpo" / "seed-1", "dpo", 1, 0.4),
        _fixture_run(tmp_path / "dpo-beta0.5" / "seed-1", "dpo", 1, 0.45, {"beta": 0.5, "label_smoothing": 0.0}),
        _fixture_run(tmp_path / "dpo" / "seed-2", "dpo", 2, 0.0, status="failed"),
    ]
    run = load_run(folders[3])
    assert run.label == "dpo-beta0.5" and run.values["delta_chosen_logp"] == pytest.approx(0.25)
    report_html = build_report(folders, tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| simper | 2 | 0.400 ± 0.141 |" in md  # mean ± sample std of 0.3 and 0.5
    assert "| dpo | 1 (1 failed) | 0.400 ± 0.000 |" in md
    assert "dpo seed 2: out of memory" in md
    assert "| dpo | 2 | 3 | 6.0 | dpo-beta0.5 | 0.450 ± 0.000 | 0.400 – 0.450 |" in md  # best of the grid, its cost
    assert (
        'src="data:image/png;base64,' in report_html.read_text() and 'src="curves.png"' not in report_html.read_text()
    )
    assert "+0.250 ± 0.000" in summary_table({"simper": [load_run(folders[0])]})


def test_report_cli_rebuilds_from_a_compare_folder_and_rejects_other_folders(tmp_path, capsys):
    _fixture_run(tmp_path / "cmp" / "simper" / "seed-1", "simper", 1, 0.3)
    assert main(["report", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "report.html").exists() and "| simper | 1 |" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "not a run folder" in capsys.readouterr().err


def _generations(folder, rewards, lost_family=False):
    """Per prompt: instruction prompts 0-9 in training's wording, 10-19 unseen; the start scored 0.5."""
    rows = []
    for i, reward in enumerate(rewards):
        met = not (lost_family and i >= 10)
        rows.append(
            {
                "id": f"p{i:02d}",
                "kind": "instructions",
                "phrasing": "seen" if i < 10 else "unseen",
                "reward": reward,
                "baseline_reward": 0.5,
                "results": {"0:lowercase": met, "1:title": True},
                "baseline_results": {"0:lowercase": True, "1:title": False},
            }
        )
    (folder / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_report_pools_gains_over_seeds_and_ranks_only_beyond_noise(tmp_path, monkeypatch):
    folders = []
    for seed in (1, 2, 3):
        simper = _fixture_run(tmp_path / "simper" / f"seed-{seed}", "simper", seed, 0.6)
        _generations(simper, [0.6 + 0.01 * ((i + seed) % 3) for i in range(20)])  # +0.11 on average
        dpo = _fixture_run(tmp_path / "dpo" / f"seed-{seed}", "dpo", seed, 0.5)
        _generations(dpo, [0.5 + 0.02 * ((i * seed) % 2) for i in range(20)], lost_family=True)
        ipo = _fixture_run(tmp_path / "ipo" / f"seed-{seed}", "ipo", seed, 0.6)
        _generations(ipo, [0.6 + 0.01 * ((i + seed + 1) % 3) for i in range(20)])  # SimPER's gains, shuffled
        folders += [simper, dpo, ipo]
    build_report(folders, tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    gains = md.split("## Gain over the starting model")[1].split("##")[0]
    assert "| simper | 3 | +0.110 [+0.107, +0.113] |" in gains and "| above |" in gains
    against = md.split("## Against SimPER")[1].split("##")[0]
    assert "| dpo | 3 |" in against and "simper higher" in against  # every prompt, every seed below SimPER's
    assert "| ipo | 3 |" in against and "no rank" in against  # the same gains in another order: no claim
    families = md.split("## Constraint families, unseen wording")[1].split("##")[0]
    lowercase = "| lowercase | 10 | 1.00 | 1.00 (+0.000 [+0.000, +0.000]) | 0.00 (-1.000 [-1.000, -1.000])"
    assert lowercase + " **lost** |" in families
    assert "| title | 10 | 0.00 | 1.00 (+1.000 [+1.000, +1.000])" in families
    assert "<td>start</td>" in (tmp_path / "report" / "report.html").read_text()
    likelihood = md.split("## Likelihood of the training responses")[1].split("##")[0]
    assert "| simper | -0.900 → -0.700 (+0.200) | -1.300 → -1.500 (-0.200) | – | – | holds or rises |" in likelihood
    # a seed read twice is one seed; a family on fewer prompts than the verdict needs is never called lost
    groups = group_runs([load_run(f) for f in [*folders, folders[0]]])
    assert "| simper | 3 | +0.110 [+0.107, +0.113] |" in gains_table(groups)
    monkeypatch.setattr(gains_module, "FAMILY_VERDICT_PROMPTS", 11)
    assert lowercase + " |" in family_table(groups) and "**lost**" not in family_table(groups)


# seeds × prompts, in hundredths: dpo's reward minus SimPER's. Its 95% interval excludes zero
# (+0.0004 .. +0.0074); at 1 − 0.05/2 it does not (−0.0003 .. +0.0081).
CLOSE = [
    [0, 1, 0, 1, 0, 1, 0, 1, 1, 0, -1, 0],
    [1, 0, 0, 0, 0, 1, -1, 1, 1, 1, -1, 1],
    [1, 0, 1, 1, 1, 1, 0, 0, 0, 1, -1, 1],
]


def test_rank_claims_hold_for_all_objectives_set_against_simper_at_once(tmp_path):
    runs = {"simper": [], "dpo": [], "ipo": []}
    for seed in (1, 2, 3):
        simper = [0.6 + 0.01 * ((i + seed) % 3) for i in range(12)]
        dpo = [r + 0.01 * d for r, d in zip(simper, CLOSE[seed - 1], strict=True)]
        rewards = {"simper": simper, "dpo": dpo, "ipo": simper}
        for label, values in rewards.items():
            folder = _fixture_run(tmp_path / label / f"seed-{seed}", label, seed, 0.6)
            _generations(folder, values)
            runs[label].append(load_run(folder))
    alone = {"simper": runs["simper"], "dpo": runs["dpo"]}
    assert gains_module.paired_difference(runs["dpo"], runs["simper"]).low > 0
    assert gains_module.rank_claims(alone) == {"dpo": "dpo higher"}
    # a second objective read against SimPER: the same difference no longer carries a rank
    assert gains_module.rank_claims(runs) == {"dpo": "no rank", "ipo": "no rank"}
    assert "| dpo | 3 | +0.004 [+0.000, +0.007] |" in difference_table(runs)


def test_a_tuned_grid_is_read_on_prompts_that_did_not_pick_its_setting(tmp_path):
    """Each of two settings is best on one half of the prompts (which one, per seed): the in-sample best
    overstates the grid; the cross-fitted gain reads each half with the setting the other half picked."""
    halves = [gains_module.half(f"p{i:02d}") for i in range(20)]
    assert 0 < sum(halves) < 20  # both halves hold prompts
    folders = []
    for seed in (1, 2, 3, 4):
        simper = _fixture_run(tmp_path / "simper" / f"seed-{seed}", "simper", seed, 0.6)
        _generations(simper, [0.8 + 0.01 * ((i + seed) % 3) for i in range(20)])  # +0.31 on every prompt
        folders.append(simper)
        for label, params in (("dpo", {}), ("dpo-beta0.5", {"beta": 0.5})):
            run = _fixture_run(tmp_path / label / f"seed-{seed}", "dpo", seed, 0.6, params)
            best_on = (label == "dpo") == (seed != 3)  # dpo's better half is 0, on seed 3 half 1
            gains = [(0.2 if (h == 0) == best_on else -0.1) + 0.001 * seed for h in halves]
            _generations(run, [0.5 + g for g in gains][: 15 if seed == 4 else 20])  # seed 4: other prompts
            folders.append(run)
        failed = _fixture_run(tmp_path / "dpo-beta0.01" / f"seed-{seed}", "dpo", seed, 0.6, {"beta": 0.01}, "failed")
        folders.append(failed)
    groups = group_runs([load_run(f) for f in folders])
    tuned = gains_module.cross_fitted({label: groups[label] for label in ("dpo", "dpo-beta0.01", "dpo-beta0.5")})
    # half 1 picks for half 0 the setting best on half 1, which gains -0.1 on half 0; and the other way round
    assert tuned.labels == ["dpo", "dpo-beta0.5"]  # the failed setting is left out, not the objective
    picks = {(s, h): "dpo-beta0.5" if (h == 0) == (s != 3) else "dpo" for s in (1, 2, 3) for h in (0, 1)}
    assert tuned.picks == picks  # seed 4 holds other prompts than the three pooled
    assert tuned.gains[2] == {f"p{i:02d}": pytest.approx(-0.1 + 0.002) for i in range(20)}
    assert tuned.gain().mean == pytest.approx(-0.098)
    table = selection_table(groups)
    assert "| dpo | 2 | 3 | dpo-beta0.5 ×3, dpo ×3 | -0.098 [-0.100, -0.096] | -0.408 [" in table
    assert table.endswith("| simper higher |")
    # a setting that did not run on a seed, or prompts that fill one half only: nothing to cross-fit
    assert gains_module.cross_fitted({"dpo": groups["dpo"][:1], "dpo-beta0.5": groups["dpo-beta0.5"][1:]}) is None
    one_half = [f for f in folders if "seed-1" in str(f)]
    for folder in one_half:
        if (folder / "generations.jsonl").exists():
            rows = [json.loads(line) for line in (folder / "generations.jsonl").read_text().splitlines()]
            kept = [r for r, h in zip(rows, halves, strict=True) if h == 0]
            (folder / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    assert selection_table(group_runs([load_run(f) for f in one_half])) == ""
    md = build_report(folders, tmp_path / "report").with_suffix(".md").read_text()
    assert "| dpo | 2 | 2 | dpo-beta0.5 ×2, dpo ×2 |" in md.split("## Tuned on half the prompts")[1]


# seeds × prompts: met by the trained model on 7 of 36 — beyond noise with 4 families judged, not with 5
MARGINAL = [
    [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0],
    [0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0],
    [0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 1, 0],
]


def _family_runs(folder, extra_moving_family=False):
    """Three seeds on 12 unseen prompts. Judged: f00 gains everywhere, f01 is ``MARGINAL``, f02 is lost
    everywhere, f03 gains once. Not judged: f04 never moves, f05 moves but has 8 prompts."""
    runs = []
    for seed in (1, 2, 3):
        run = _fixture_run(folder / f"seed-{seed}", "simper", seed, 0.6)
        rows = []
        for i in range(12):
            start = {"0:f00": False, "1:f01": False, "2:f02": True, "3:f03": False, "4:f04": True}
            met = {"0:f00": True, "1:f01": bool(MARGINAL[seed - 1][i]), "2:f02": False, "3:f03": i == seed == 1}
            met["4:f04"] = True
            if i < 8:
                start["5:f05"], met["5:f05"] = False, True
            if extra_moving_family:
                start["6:f06"], met["6:f06"] = False, i == 0 and seed == 1
            row = {"id": f"p{i:02d}", "kind": "instructions", "phrasing": "unseen", "reward": 0.6}
            rows.append({**row, "baseline_reward": 0.5, "results": met, "baseline_results": start})
        (run / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        runs.append(load_run(run))
    return runs


def test_family_verdicts_hold_for_all_judged_families_at_once(tmp_path):
    changes = gains_module.family_changes(_family_runs(tmp_path / "a"))
    verdicts = {family: change.verdict for family, change in changes.items()}
    assert verdicts == {"f00": "gained", "f01": "gained", "f02": "lost", "f03": "", "f04": "", "f05": ""}
    assert changes["f05"].gain.low > 0  # beyond noise alone, but on too few prompts to be judged
    # one more family that moved on 10+ prompts makes five judged: the marginal gain no longer holds
    changes = gains_module.family_changes(_family_runs(tmp_path / "b", extra_moving_family=True))
    assert changes["f01"].gain.low > 0 and changes["f01"].verdict == "" and changes["f00"].verdict == "gained"


def test_prompt_split_reaches_every_evaluation(tmp_path):
    from simper.config import EvalConfig

    config = CompareConfig(output=str(tmp_path / "c"), prompt_split="heldout-phrasing")
    assert EvalConfig(model="m", **config.evaluation()).prompt_split == "heldout-phrasing"
    with pytest.raises(ValueError, match="prompt_split: 'unseen' is not one of"):
        CompareConfig(output=str(tmp_path / "c"), prompt_split="unseen")


def test_saved_settings_load_back_with_commas_in_recipe_changes(tmp_path):
    from simper.config import save_config

    config = CompareConfig(overrides=["data.train=a.jsonl,b.jsonl", "training.seed=3"], output=str(tmp_path / "c"))
    save_config(config, tmp_path / "compare.yaml")
    assert load_config(str(tmp_path / "compare.yaml"), cls=CompareConfig) == config


def test_a_run_whose_config_cannot_be_built_stops_compare_before_any_run(tiny_model_dir, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"model": {"name_or_path": str(tiny_model_dir)}, "objective": {"name": "dpo"}}))
    output = tmp_path / "cmp"
    args = ["compare", "--config", str(recipe), "--objectives", "dpo,simper", "--seeds", "1", "--output", str(output)]
    assert main([*args, "objective.params.beta=0.2"]) == 2  # a DPO parameter: SimPER has none
    assert "run simper seed 1" in capsys.readouterr().err and not output.exists()


def test_compare_on_your_own_prompts_and_reward(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))  # each run's evaluation imports the test reward
    prompts = tmp_path / "prompts.jsonl"
    rows = [{"prompt": "Tell me about tea."}, {"prompt": [{"role": "user", "content": "Name a river."}]}]
    prompts.write_text("".join(json.dumps(row) + "\n" for row in rows))
    output = tmp_path / "cmp"
    args = _compare_args(tiny_model_dir, output, "--prompts", str(prompts), "--reward", "reward_fixtures:length_reward")
    args[args.index("--objectives") + 1], args[args.index("--seeds") + 1] = "simper", "1"
    assert main(args) == 0
    answers = [
        json.loads(line) for line in (output / "simper" / "seed-1" / "generations.jsonl").read_text().splitlines()
    ]
    assert [a["prompt"] for a in answers] == [rows[0]["prompt"], rows[1]["prompt"]]
    assert [a["reward"] for a in answers] == [float(len(a["response"])) for a in answers]  # the user's reward
    assert "| simper | 1 |" in (output / "report.md").read_text()
    assert load_config(str(output / "compare.yaml"), cls=CompareConfig).prompts == str(prompts)


def test_a_prompt_row_the_reward_cannot_score_stops_compare_before_any_run(tiny_model_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "Tell me about tea."}) + "\n")  # no task: the checkers cannot score it
    output = tmp_path / "cmp"
    assert main(_compare_args(tiny_model_dir, output, "--prompts", str(prompts))) == 2
    assert f"{prompts}:line 1: field 'kind'" in capsys.readouterr().err and not output.exists()
