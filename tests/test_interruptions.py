"""Crashes and interruptions: SIGKILL mid-run then --resume equals an uninterrupted run; SIGTERM saves
a checkpoint at the next step boundary and exits cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file
from torch.testing import assert_close

from simper.cli import main
from simper.resources import EXAMPLE_PAIRS

STEPS = ["training.max_steps=200", "training.save_steps=10", "training.learning_rate=1e-3", "training.seed=5"]


def command(model, out, *extra):
    return ["train", "--model", str(model), "--output-dir", str(out), "--data", str(EXAMPLE_PAIRS), *STEPS, *extra]


def start(model, out, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SIMPER_CACHE": str(tmp_path / "cache")}
    return subprocess.Popen(
        [sys.executable, "-m", "simper", *command(model, out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_checkpoint(process, out, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if (out / "checkpoints" / "latest").exists():
            return
        if process.poll() is not None:
            pytest.fail(f"the run ended before its first checkpoint: {process.stderr.read()}")
        time.sleep(0.01)
    pytest.fail("no checkpoint appeared")


def records(out):
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if '"loss"' in line]


def test_sigkill_then_resume_equals_an_uninterrupted_run(tiny_model_dir, tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert main(command(tiny_model_dir, full)) == 0

    process = start(tiny_model_dir, killed, tmp_path)
    wait_for_checkpoint(process, killed)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "model.safetensors").exists(), "the run finished before it could be killed"
    resumed_from = int((killed / "checkpoints" / "latest").read_text().split("-")[1])
    assert 10 <= resumed_from < 200

    assert main([*command(tiny_model_dir, killed), "--resume"]) == 0
    expected, got = records(full), records(killed)
    assert [r["step"] for r in got] == list(range(1, 201))
    for a, b in zip(expected, got, strict=True):
        assert (a["loss"], a["lr"]) == pytest.approx((b["loss"], b["lr"]), abs=1e-6)
    for key, value in load_file(full / "model.safetensors").items():
        assert_close(load_file(killed / "model.safetensors")[key], value)


def test_sigterm_saves_at_the_step_boundary_and_says_how_to_resume(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    process = start(tiny_model_dir, out, tmp_path)
    wait_for_checkpoint(process, out)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    if process.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert process.returncode == 143 and "SIGTERM received: checkpoint saved at step" in err and "--resume" in err
    last_step = records(out)[-1]["step"]
    assert (out / "checkpoints" / "latest").read_text() == f"step-{last_step:08d}"
    assert main([*command(tiny_model_dir, out), "--resume"]) == 0
    assert [r["step"] for r in records(out)] == list(range(1, 201))
