"""simper eval --export: each benchmark's answer file from a small fixture of its question file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from simper.cli import main

BENCH = Path(__file__).parent / "data" / "benchmarks"


def export(tiny_model_dir, fmt, questions, output):
    args = ["eval", str(tiny_model_dir), "--export", fmt, "--prompts", str(questions), "--output", str(output)]
    return main([*args, "--max-new-tokens", "6", "--model-id", "tiny"])


def test_alpaca_eval_model_outputs(tiny_model_dir, tmp_path):
    assert export(tiny_model_dir, "alpaca_eval", BENCH / "alpaca_eval.json", tmp_path) == 0
    outputs = json.loads((tmp_path / "model_outputs.json").read_text())
    questions = json.loads((BENCH / "alpaca_eval.json").read_text())
    assert [o["instruction"] for o in outputs] == [q["instruction"] for q in questions]
    assert all(o["generator"] == "tiny" and isinstance(o["output"], str) for o in outputs)
    assert [o["dataset"] for o in outputs] == ["helpful_base"] * 2


@pytest.mark.parametrize("fmt", ["arena_hard", "mt_bench"])
def test_arena_hard_and_mt_bench_answer_files_answer_every_turn(tiny_model_dir, tmp_path, fmt):
    assert export(tiny_model_dir, fmt, BENCH / f"{fmt}.jsonl", tmp_path) == 0
    answers = [json.loads(line) for line in (tmp_path / "tiny.jsonl").read_text().splitlines()]
    questions = [json.loads(line) for line in (BENCH / f"{fmt}.jsonl").read_text().splitlines()]
    assert [a["question_id"] for a in answers] == [q["question_id"] for q in questions]
    for a, q in zip(answers, questions, strict=True):
        assert a["model_id"] == "tiny" and len(a["answer_id"]) == 32 and a["tstamp"] > 0
        (choice,) = a["choices"]
        assert choice["index"] == 0 and len(choice["turns"]) == len(q["turns"])
        kind = dict if fmt == "arena_hard" else str  # Arena-Hard: {"content": ...}; MT-Bench: plain strings
        assert all(isinstance(turn, kind) for turn in choice["turns"])


def test_second_turns_see_the_first_answer(tiny_model_dir, monkeypatch):
    from simper.export import answer

    seen = []

    def generator(tokenizer, conversations, **_):
        seen.append([list(c) for c in conversations])  # as they were at the call
        return type("G", (), {"texts": [[f"answer {len(c)}"] for c in conversations]})()

    questions = [{"row": {}, "turns": ["one", "two"]}, {"row": {}, "turns": ["solo"]}]
    assert answer(generator, None, questions) == [["answer 1", "answer 3"], ["answer 1"]]
    assert seen[1] == [[{"role": "user", "content": "one"}, {"role": "assistant", "content": "answer 1"},
                        {"role": "user", "content": "two"}]]  # fmt: skip


@pytest.mark.parametrize(
    ("fmt", "row", "message"),
    [
        ("alpaca_eval", '{"prompt": "x"}', "field 'instruction': expected a non-empty string"),
        ("mt_bench", '{"turns": ["x"]}', "field 'question_id': missing"),
        ("arena_hard", '{"question_id": 1, "turns": ["x"]}', "field 'turns': expected a non-empty list"),
    ],
)
def test_a_bad_question_names_file_line_and_field(tiny_model_dir, tmp_path, capsys, fmt, row, message):
    questions = tmp_path / "q.jsonl"
    questions.write_text(row + "\n")
    assert export(tiny_model_dir, fmt, questions, tmp_path / "out") == 2
    assert f"q.jsonl:line 1: {message}" in capsys.readouterr().err and not (tmp_path / "out").exists()


HARNESS_TASK = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
doc_to_text: "{{{{question}}}}"
"""
GENERATED = """output_type: generate_until
doc_to_target: "{{answer}}"
generation_kwargs: {until: ["\\n"], max_gen_toks: 8, do_sample: false}
metric_list: [{metric: exact_match, aggregation: mean, higher_is_better: true}]
"""
CHOICE = """output_type: multiple_choice
doc_to_choice: "{{choices}}"
doc_to_target: label
metric_list: [{metric: acc, aggregation: mean, higher_is_better: true}]
"""


def test_lm_evaluation_harness_reads_a_trained_run_folder(tiny_model_dir, tmp_path):
    """The harness command docs/pairs-and-eval.md gives, offline, on simper train's output folder with
    two local tasks: answers generated as GSM8K's and IFEval's are, and a multiple choice by
    log-likelihood, whose every score equals simper's own scoring of the folder it trained."""
    import subprocess
    import sys

    from transformers import AutoModelForCausalLM

    from simper.evaluate import score_ids
    from simper.models import load_tokenizer
    from simper.resources import EXAMPLE_PAIRS

    run = tmp_path / "run"
    train = ["train", "--model", str(tiny_model_dir), "--output-dir", str(run), "--data", str(EXAMPLE_PAIRS)]
    assert main([*train, "training.max_steps=2", "training.learning_rate=1e-3"]) == 0
    questions = [("What is 2 + 3?", "5", ["5", "6", "7"], 0), ("What is 4 + 4?", "8", ["9", "8", "7"], 1)]
    data = tmp_path / "tasks" / "questions.jsonl"
    data.parent.mkdir()
    keys = ("question", "answer", "choices", "label")
    data.write_text("".join(json.dumps(dict(zip(keys, q, strict=True))) + "\n" for q in questions))
    for name, body in (("simper_generated", GENERATED), ("simper_choice", CHOICE)):
        (data.parent / f"{name}.yaml").write_text(HARNESS_TASK.format(name=name, data=data) + body)
    command = [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={run},dtype=float32"]
    command += ["--tasks", "simper_generated,simper_choice", "--include_path", str(data.parent)]
    command += ["--apply_chat_template", "--batch_size", "2", "--device", "cpu", "--log_samples"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run([*command, "--output_path", str(tmp_path / "out")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]

    (results,) = (tmp_path / "out").rglob("results_*.json")
    scores = json.loads(results.read_text())["results"]
    assert set(scores) == {"simper_generated", "simper_choice"}
    assert 0 <= scores["simper_generated"]["exact_match,none"] <= 1 and 0 <= scores["simper_choice"]["acc,none"] <= 1
    (samples,) = (tmp_path / "out").rglob("samples_simper_choice_*.jsonl")
    tokenizer, model = load_tokenizer(str(run)), AutoModelForCausalLM.from_pretrained(run).eval()
    prefix = tokenizer.decode(tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id)
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(rows) == len(questions)
    for row in rows:
        for (harness_logp, _), request in zip(row["filtered_resps"], row["arguments"].values(), strict=True):
            # the harness's convention: the context's trailing whitespace moves to the continuation, the
            # continuation's ids are the whole text's beyond the context's, and the tokenizer's special
            # tokens (here BOS) are added unless the templated text already starts with BOS
            context, continuation = request["arg_0"].rstrip(), request["arg_0"][len(request["arg_0"].rstrip()) :]
            special = not context.startswith(prefix)
            whole = tokenizer(context + continuation + request["arg_1"], add_special_tokens=special).input_ids
            prompt = tokenizer(context, add_special_tokens=special).input_ids
            ((ours, _),) = score_ids(model, [prompt], [whole[len(prompt) :]])
            assert float(harness_logp) == pytest.approx(ours, abs=1e-4)
