"""The benchmark scripts run end to end on the tiny model and compute their ratios right."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_step_table_ratios_and_mixed_lengths():
    step = _module("step")
    results = [
        {
            "contender": c,
            "data": "mixed",
            "gradient_checkpointing": False,
            "s_per_step": s,
            "tokens_per_s": t,
            "peak_gb": m,
        }
        for c, s, t, m in (("simper", 1.0, 300.0, 4.0), ("trl-cpo-simpo", 2.0, 100.0, 8.0), ("sft", 1.5, 150.0, 6.0))
    ]
    rows = step.table(results).splitlines()
    assert rows[2].endswith("| 3.00× | 0.50× | 2.00× |")  # simper against TRL CPO and SFT
    spreads = step.lengths("mixed", 200, seed=0)
    assert all(16 <= p <= 512 and 8 <= c <= 512 and 8 <= r <= 512 for p, c, r in spreads)
    assert len({p for p, _, _ in spreads}) > 50  # widely varying, not one shape
    assert step.lengths("fixed-256", 3, seed=0) == [(256, 256, 256)] * 3


def test_flop_counts_worked_by_hand():
    flops = _module("flops")
    # hidden 4, q 2×2 = 4 wide, k/v 1×2 = 2 wide, MLP 8: 2·(4·(4+2+2+4) + 3·4·8) = 288 FLOPs a token a layer
    m = {"hidden": 4, "layers": 1, "heads": 2, "kv_heads": 1, "head_dim": 2, "intermediate": 8, "vocab": 10}
    # simper: one row of 2 + 1 + 1 = 4 positions with a mask (all 4·4 scores); layers ×3 (forward, backward),
    # attention ×3.5 (its backward recomputes the scores), head (2·4·10 = 80) at the 2 response positions ×4
    assert flops.step_flops(m, "simper", [(2, 1, 1)], checkpointing=False) == {
        "layers": 3 * 288 * 4,
        "attention": 3.5 * 4 * 16 * 4,
        "head": 4 * 80 * 2,
    }
    # TRL: 2 rows of 3, no padding, "causal": one block of keys, all 3·3 scores; checkpointing adds a forward
    assert flops.step_flops(m, "trl-cpo-simpo", [(2, 1, 1)], checkpointing=True) == {
        "layers": 4 * 2 * 288 * 3,
        "attention": 4.5 * 2 * 4 * 9 * 4,
        "head": 3 * 80 * 2 * 3,
    }
    # with a BOS in front the rows are 4 long
    assert (
        flops.step_flops({**m, "bos": 1}, "trl-cpo-simpo", [(2, 1, 1)], checkpointing=False)["head"] == 3 * 80 * 2 * 4
    )
    # a kernel that skips every masked score (3 + 2·1 + 1 + 2·1 + 1 = 9 of 16), logits kept (×3)
    assert flops.step_flops(m, "simper-ideal", [(2, 1, 1)], checkpointing=False) == {
        "layers": 3 * 288 * 4,
        "attention": 3.5 * 4 * 9 * 4,
        "head": 3 * 80 * 2,
    }
    # the row split in two calls: [prompt, chosen] "causal" (3·3 scores), rejected → [prompt, rejected] (1·3)
    assert flops.step_flops(m, "simper-split", [(2, 1, 1)], checkpointing=False)["attention"] == 3.5 * 4 * 12 * 4
    # padded to the longest row (2 + 2): a mask goes to the kernel, every score of the 4 rows
    padded = flops.step_flops(m, "trl-cpo-simpo", [(2, 1, 1), (2, 2, 1)], checkpointing=False)
    assert padded["attention"] == 3.5 * 4 * 4 * 16 * 4 and padded["head"] == 3 * 80 * 4 * 4
    # torch's CPU kernel told "causal": keys in blocks of 512, whole blocks skipped
    assert flops.causal(512) == 512 * 512  # one key block: every score
    assert flops.causal(513) == 8 * 64 * 512 + 1 * 513  # 8 query blocks of 64 see block one; the last query both
    assert flops.causal(1024) == 256 * (512 + 512 + 1024 + 1024)  # query blocks of 256: three quarters


def test_flops_prints_the_ceiling_beside_the_measured_ratio(tiny_model_dir, tmp_path):
    results = tmp_path / "step.jsonl"
    rows = [("simper", 30.0), ("trl-cpo-simpo", 20.0)]
    results.write_text(
        "".join(
            json.dumps({"contender": c, "data": "fixed-256", "gradient_checkpointing": False, "tokens_per_s": t}) + "\n"
            for c, t in rows
        )
    )
    command = [sys.executable, str(ROOT / "benchmarks" / "flops.py"), "--model", str(tiny_model_dir)]
    done = subprocess.run([*command, "--results", str(results)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ceiling = next(line for line in done.stdout.splitlines() if line.startswith("| fixed-256 | off |"))
    _, _, _, value, ratio, share, split, ideal, _ = (cell.strip().rstrip("×%") for cell in ceiling.split("|"))
    assert float(ideal) > float(value) and float(ideal) >= float(split)  # less work, a higher ceiling
    assert ratio == "1.50" and abs(float(share) - 150 / float(value)) < 3  # 30 ÷ 20; its share of a rounded ceiling
    unmeasured = next(line for line in done.stdout.splitlines() if line.startswith("| mixed | on |"))
    assert "× | – | – | " in unmeasured  # a ceiling, nothing measured beside it


def test_step_contenders_run_on_the_tiny_model(tiny_model_dir, tmp_path):
    output = tmp_path / "step.jsonl"
    command = [sys.executable, str(ROOT / "benchmarks" / "step.py"), "--model", str(tiny_model_dir), "--data", "mixed"]
    command += ["--contenders", "simper,simper-plain,sft", "--gradient-checkpointing", "off", "--steps", "1"]
    output.write_text("a stale line from an earlier run\n")
    done = subprocess.run([*command, "--output", str(output)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    results = [json.loads(line) for line in output.read_text().splitlines()]  # replaced, not appended to
    assert [r["contender"] for r in results] == ["simper", "simper-plain", "sft"]
    assert len({r["tokens_per_step"] for r in results}) == 1  # the same data for every contender
    assert all(r["runs"] == 2 and len(r["step_seconds"]) == 2 and r["cores"] for r in results)  # 2 rounds × 1 step
    turns = [line.split()[0] for line in done.stdout.splitlines() if " round " in line]
    assert turns == ["simper", "simper-plain", "sft"] * 2  # contenders take turns
    assert "tokens/s ÷ TRL CPO-SimPO" in done.stdout


def test_pooled_runs_take_the_median_step_and_the_largest_peak():
    step = _module("step")
    runs = [
        {"step_seconds": [1.0, 9.0], "tokens_per_step": 100.0, "peak_gb": 2.0},
        {"step_seconds": [2.0, 3.0], "tokens_per_step": 100.0, "peak_gb": 3.0},
    ]
    pooled = step.pool(runs)
    assert pooled["s_per_step"] == 2.5 and pooled["tokens_per_s"] == 40.0 and pooled["peak_gb"] == 3.0


@pytest.mark.slow
def test_step_trl_contenders_see_the_same_tokens(tiny_model_dir, tmp_path):
    command = [sys.executable, str(ROOT / "benchmarks" / "step.py"), "--model", str(tiny_model_dir), "--data", "mixed"]
    command += ["--contenders", "trl-cpo-simpo,trl-dpo", "--gradient-checkpointing", "off", "--steps", "1"]
    done = subprocess.run([*command, "--output", str(tmp_path / "s.jsonl")], capture_output=True, text=True)
    assert done.returncode == 0 and "failed" not in done.stdout, done.stdout + done.stderr[-2000:]


def test_memory_points_and_plot(tmp_path):
    command = [sys.executable, str(ROOT / "benchmarks" / "memory.py"), "--output", str(tmp_path)]
    command += ["--lengths", "64,128", "--vocabs", "1000,4000", "--fixed-length", "128", "--fixed-vocab", "2000"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads((tmp_path / "memory.json").read_text())
    assert [(r["length"], r["vocab"]) for r in rows] == [(64, 2000), (128, 2000), (128, 1000), (128, 4000)]
    assert (tmp_path / "memory.png").stat().st_size > 10_000


def test_gpu_check_says_it_needs_a_gpu_on_a_machine_without_one():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: run benchmarks/gpu_check.py itself")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")], capture_output=True, text=True)
    assert done.returncode == 2 and "no CUDA device here" in done.stderr
    parts = _module("gpu_check").parts("tiny-random-llama", Path("out"))
    for _, command, _, _ in parts:  # every script and test file it runs exists; the limits fit 9 minutes
        assert Path(command[1] if command[1] != "-m" else command[-1]).exists(), command
    assert sum(limit for *_, limit in parts) <= 9 * 60
    step = next(command for _, command, _, _ in parts if command[1].endswith("step.py"))
    assert set(step[step.index("--contenders") + 1].split(",")) <= set(_module("step").CONTENDERS)


def test_gpu_check_measures_a_shape_with_random_weights(tiny_model_dir, tmp_path):
    """For a GPU machine the weights cannot reach: the config and tokenizer alone make the model."""
    from simper.models import load_model, load_tokenizer

    shape = tmp_path / "shape"
    shape.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (shape / name).write_bytes((tiny_model_dir / name).read_bytes())
    folder = _module("gpu_check").random_weights(str(shape), tmp_path / "random")
    model = load_model(folder)
    assert model.config.hidden_size == load_model(str(tiny_model_dir)).config.hidden_size
    assert load_tokenizer(folder).get_vocab() == load_tokenizer(str(tiny_model_dir)).get_vocab()


def test_kernels_bf16_rows_on_the_tiny_model(tiny_model_dir, tmp_path):
    """On CPU (eager and sdpa; flex is for the GPU): fp32 agrees to rounding, bf16 within its own."""
    output = tmp_path / "kernels.jsonl"
    command = [sys.executable, str(ROOT / "benchmarks" / "kernels_bf16.py"), "--model", str(tiny_model_dir)]
    done = subprocess.run([*command, "--output", str(output)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(rows) == 2 * 3 * 2 * 2  # kernels × precisions × layouts × batchings
    assert all(r["max_abs_gap"] < 1e-4 for r in rows if r["precision"] == "fp32")
    assert all(0 < r["max_abs_gap"] < 0.1 for r in rows if r["precision"] != "fp32")  # bf16 rounds, a little


def test_longest_search_doubles_then_halves_to_the_step(tmp_path, monkeypatch):
    longest = _module("longest")
    asked = []

    def fake_probe(args, contender, length):  # a step fits up to 2,800 tokens, its peak growing with length
        asked.append(length)
        fits = length <= 2800
        return {"contender": contender, "length": length, "seconds": 0.0, "fits": fits, "peak_gb": length / 1000}

    monkeypatch.setattr(longest, "probe", fake_probe)
    args = SimpleNamespace(start=512, step=512, max_length=8192, cap_gb=3.0)
    probes = longest.longest(args, "simper")
    assert asked == [512, 1024, 2048, 4096, 3072, 2560]
    (row,) = longest.summary(probes, args.max_length)
    assert (row["longest"], row["first_over"], row["reached_max"]) == (2560, 3072, False)
    asked.clear()
    roomy = longest.longest(SimpleNamespace(start=512, step=512, max_length=2048, cap_gb=9.0), "trl-dpo")
    assert asked == [512, 1024, 2048] and longest.summary(roomy, 2048)[0]["reached_max"]
    table = longest.table(longest.summary(probes + roomy, 8192), 3.0)
    assert "| simper | 2560 | 2.56 | 3072 |" in table
    longest.plot(probes + roomy, 3.0, tmp_path / "longest.png")
    assert (tmp_path / "longest.png").stat().st_size > 10_000


def test_a_step_past_the_memory_cap_is_ended_and_said(tiny_model_dir):
    longest = _module("longest")
    args = SimpleNamespace(model=str(tiny_model_dir), cap_gb=0.2)  # torch's import alone passes 0.2 GB
    result = longest.probe(args, "simper", 256)
    assert result["fits"] is False and result["peak_gb"] is None
