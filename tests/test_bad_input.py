"""The bad-input corpus (tests/data/bad/), each file through the real CLI with the behaviour it must get:
a one-line error naming the file, line or row and field with exit code 2, or a documented drop and a
normal run. Never a traceback, never a half-written model folder."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from simper.cli import main
from simper.resources import EXAMPLE_PAIRS

BAD = Path(__file__).parent / "data" / "bad"

DATA_CASES = {
    "invalid_json_line.jsonl": r"invalid_json_line.jsonl:line 2: invalid JSON",
    "missing_column.jsonl": r"missing_column.jsonl:line 2: missing field 'rejected'",
    "null_field.jsonl": r"null_field.jsonl:line 2: field 'chosen': expected a string, got null",
    "numeric_field.jsonl": r"numeric_field.jsonl:line 2: field 'rejected': expected a string, got a number",
    "empty_field.jsonl": r"empty_field.jsonl:line 2: field 'chosen' is empty",
    "invalid_utf8.jsonl": r"invalid_utf8.jsonl:line 2: invalid UTF-8",
    "empty.jsonl": r"empty.jsonl: no rows",
    "blank_lines.jsonl": r"blank_lines.jsonl: no rows",
    "json_array.jsonl": r"json_array.jsonl:line 1: expected a JSON object with the pair's fields, got an array",
    "last_not_assistant.jsonl": r"last_not_assistant.jsonl:line 1: field 'chosen': the last message must be "
    r"the assistant's",
    "message_without_content.jsonl": r"message_without_content.jsonl:line 1: field 'chosen'\[0\]: "
    r"message has no 'content'",
    "ragged.csv": r"ragged.csv:row 3: 2 fields where the header has 3",
    "wrong_type.parquet": r"wrong_type.parquet:row 1: field 'chosen': expected a string, got a number",
    "undetectable.jsonl": r"undetectable.jsonl: cannot detect the preference format: columns found: question, answer",
    "unknown_type.txt": r"unknown_type.txt: unknown file type '.txt'",
    "a_folder": r"a_folder: is a folder, not a data file",
    "missing.jsonl": r"missing.jsonl: no such file or folder",
}
ACCEPTED = {
    "bom.jsonl": r"pairs read: 1; kept for training: 1",
    "identical_pair.jsonl": r"pairs read: 2; kept for training: 1; held out: 0; "
    r"dropped: 1 chosen identical to rejected",
    "long_prompt.jsonl": r"pairs read: 2; kept for training: 2",  # the prompt keeps its last max_prompt_length tokens
    # kept as the user gave it (both copies train), but said: two sources that overlap do this unseen
    "repeated_pair.jsonl": r"warning: training pairs read that repeat an earlier one word for word \(prompt, chosen "
    r"and rejected\): 1 \(the first: \S*repeated_pair.jsonl:line 3, as \S*repeated_pair.jsonl:line 1\); repeats "
    r"are kept, not merged\n(.*\n)*.*pairs read: 3; kept for training: 3",
}
CONFIG_CASES = {
    "wrong_type.yaml": r"wrong_type.yaml: training.learning_rate: expected a number, got 'fast'",
    "unknown_key.yaml": r"unknown_key.yaml: unknown key training.learnin_rate; did you mean training.learning_rate\?",
    "invalid.yaml": r"invalid.yaml:line \d+: invalid YAML",
}


def run(tiny_model_dir, out, *args):
    data = [] if "--data" in args else ["--data", str(EXAMPLE_PAIRS)]
    return main(
        ["train", "--model", str(tiny_model_dir), "--output-dir", str(out), *data, "training.max_steps=1", *args]
    )


def assert_one_line_error(capsys, pattern):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("simper: error: ") and re.search(pattern, last), last


def test_corpus_is_complete():
    on_disk = {p.name for p in BAD.iterdir()}
    named = set(DATA_CASES) | set(ACCEPTED) | set(CONFIG_CASES) | {"not_a_model"}
    assert on_disk == named - {"missing.jsonl"} and len(named) >= 20


@pytest.mark.parametrize("name", sorted(DATA_CASES))
def test_bad_data_file(tiny_model_dir, tmp_path, capsys, name):
    assert run(tiny_model_dir, tmp_path / "run", "--data", str(BAD / name)) == 2
    assert_one_line_error(capsys, DATA_CASES[name])
    assert not (tmp_path / "run").exists()  # nothing written before the data is known good


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_accepted_with_documented_drops(tiny_model_dir, tmp_path, capsys, name):
    assert run(tiny_model_dir, tmp_path / "run", "--data", str(BAD / name), "data.max_prompt_length=64") == 0
    assert re.search(ACCEPTED[name], capsys.readouterr().err)
    assert (tmp_path / "run" / "model.safetensors").exists()


@pytest.mark.parametrize("name", sorted(CONFIG_CASES))
def test_bad_config(tiny_model_dir, tmp_path, capsys, name):
    assert run(tiny_model_dir, tmp_path / "run", "--config", str(BAD / name)) == 2
    assert_one_line_error(capsys, CONFIG_CASES[name])


def test_a_misspelt_shipped_set_names_the_shipped_ones(tiny_model_dir, tmp_path, capsys):
    assert run(tiny_model_dir, tmp_path / "run", "--data", "smollm2-pairs-larg") == 2
    assert_one_line_error(
        capsys,
        r"smollm2-pairs-larg: no such file or folder, nor a shipped pair set \(did you mean smollm2-pairs-large\? "
        r"shipped: smollm2-pairs, smollm2-pairs-large, smollm2-pairs-large-arithmetic\)",
    )
    assert not (tmp_path / "run").exists()
    assert main(["eval", str(tiny_model_dir), "--prompts", "handwriten"]) == 2
    assert_one_line_error(capsys, r"handwriten: .*\(did you mean handwritten\? shipped: handwritten\)")


def test_sources_named_like_a_shipped_set_are_read_as_given(tmp_path, monkeypatch):
    """Only a bare name is taken for a misspelt shipped set: a hub id, a split, a file or a folder that
    is there go to the reader as they are."""
    from simper.resources import pair_file

    monkeypatch.chdir(tmp_path)
    (tmp_path / "smollm2-pairs-larger").mkdir()  # a save_to_disk folder, read with its split
    for source in (
        "me/smollm2-pairs",
        "bob/smollm2-pairs-large:train",
        "smollm2-pairs-larger:train",
        "smollm2-pairs-larger",
        "smollm2-pairs.jsonl",
        "./smollm2-pairs",
    ):
        assert pair_file(source) == source


def test_not_a_model(tmp_path, capsys):
    assert main(["train", "--model", str(BAD / "not_a_model"), "--output-dir", str(tmp_path / "run")]) == 2
    assert_one_line_error(capsys, r"not_a_model': the folder holds no config.json, so it is not a model folder")


def test_a_separate_process_prints_one_line_and_exits_2(tiny_model_dir, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "simper",
            "train",
            "--model",
            str(tiny_model_dir),
            "--data",
            str(BAD / "null_field.jsonl"),
            "--output-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env={"HF_HUB_OFFLINE": "1", "SIMPER_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith("field 'chosen': expected a string, got null")
    assert "Traceback" not in result.stderr
