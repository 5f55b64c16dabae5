"""Two processes (gloo, CPU) with the same global batch train exactly like one process, and measure the
same held-out pairs, each once."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from safetensors.torch import load_file
from torch.testing import assert_close

from simper.cli import main
from simper.resources import EXAMPLE_PAIRS

RECIPE = ["training.max_steps=4", "training.learning_rate=1e-3", "training.warmup_ratio=0", "training.save_steps=2"]
# 40 held-out pairs in batches of 3 per process: 2 processes do not divide them evenly
RECIPE += ["data.eval_fraction=0.1", "training.eval_steps=2", "training.per_device_eval_batch_size=3"]


def free_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def losses(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_two_processes_match_one(tiny_model_dir, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    args = ["train", "--model", str(tiny_model_dir), "--data", str(EXAMPLE_PAIRS), *RECIPE]
    assert main([*args, "--output-dir", str(one), "training.per_device_train_batch_size=4"]) == 0
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ACCELERATE_USE_CPU": "true", "SIMPER_CACHE": str(tmp_path / "c")}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", free_port()]
    result = subprocess.run(
        [*launch, "-m", "simper", *args, "--output-dir", str(two), "training.per_device_train_batch_size=2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 steps of 4 pairs" in result.stderr and result.stdout.count(str(two)) == 1  # rank 0 alone prints
    for a, b in zip(losses(one), losses(two), strict=True):
        assert a.keys() == b.keys()
        if "loss" in a:
            assert abs(a["loss"] - b["loss"]) < 1e-6
            assert abs(a["grad_norm"] - b["grad_norm"]) < 1e-6 and a["tokens"] == b["tokens"]
        else:  # held-out: every pair counted once (accelerate's even batches counted 2 pairs twice here)
            assert a["step"] in (0, 2, 4) and "eval/loss" in a
            for key in ("eval/loss", "eval/logps/chosen", "eval/logps/rejected", "eval/rewards/accuracies"):
                assert abs(a[key] - b[key]) < 1e-5, (key, a[key], b[key])
    for key, value in load_file(one / "model.safetensors").items():
        assert_close(load_file(two / "model.safetensors")[key], value, atol=1e-6, rtol=1e-5)
    assert (two / "checkpoints" / "step-00000004" / "random_states_1.pkl").exists()
