"""End to end through the real CLI on a tiny Llama, offline: what a user would check."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file
from torch.testing import assert_close

from simper.cli import main
from simper.resources import EXAMPLE_PAIRS


def train(tiny_model_dir, output, *overrides, data=EXAMPLE_PAIRS):
    args = ["train", "--model", str(tiny_model_dir), "--output-dir", str(output), "--data", str(data)]
    return main([*args, "training.learning_rate=1e-3", "training.warmup_ratio=0", *overrides])


def records(run_dir, key="loss"):
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if key in r]


def weights(folder):
    return load_file(folder / "model.safetensors")


def test_train_end_to_end(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "run"
    code = train(
        tiny_model_dir,
        out,
        "training.max_steps=4",
        "training.save_steps=2",
        "data.eval_fraction=0.1",
        "training.eval_steps=2",
    )
    assert code == 0
    steps = records(out)
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    expected_keys = {
        "step",
        "epoch",
        "loss",
        "lr",
        "grad_norm",
        "logps/chosen",
        "logps/rejected",
        "ppl/chosen",
        "ppl/rejected",
        "rewards/accuracies",
        "rewards/margins",
        "tokens",
        "tokens_per_s",
    }
    assert expected_keys <= set(steps[0])
    assert all(-1 <= r["loss"] <= 1 and torch.isfinite(torch.tensor(r["grad_norm"])) for r in steps)
    assert [r["step"] for r in records(out, "eval/loss")] == [0, 2, 4]  # 0: the starting model
    assert (out / "checkpoints" / "latest").read_text() == "step-00000004"
    assert (out / "checkpoints" / "step-00000002" / "trainer_state.json").exists()
    before = weights(tiny_model_dir)
    after = weights(out)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template and model.config.vocab_size == len(tokenizer)
    card = (out / "README.md").read_text()
    assert "simper" in card and "eval/rewards/accuracies" in card
    assert "tags: [simper, preference-alignment]" in card  # each tag once (the objective is simper)
    assert "base_model" not in card  # a local folder has no Hub id
    assert str(EXAMPLE_PAIRS.parent) not in card and "- example_pairs.jsonl: 400 rows" in card  # no machine paths
    assert "objective:\n  name: simper" in (out / "config.yaml").read_text()


def test_resume_continues_identically(tiny_model_dir, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    assert train(tiny_model_dir, full, "training.max_steps=6") == 0
    assert train(tiny_model_dir, part, "training.max_steps=6", "training.save_steps=3") == 0
    # simulate a run that died after step 3: drop the final model and the later checkpoint
    (part / "checkpoints" / "step-00000006").rename(part / "stale")
    (part / "checkpoints" / "latest").write_text("step-00000003")
    assert train(tiny_model_dir, part, "training.max_steps=6", "training.save_steps=3", "--resume") == 0
    full_records, part_records = records(full), records(part)
    assert [r["step"] for r in part_records] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(full_records[3:], part_records[3:], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-7) and a["lr"] == b["lr"]
    for key, value in weights(full).items():
        assert_close(weights(part)[key], value)


def test_accumulation_matches_a_larger_batch(tiny_model_dir, tmp_path):
    common = ["training.max_steps=2", "training.seed=3"]
    assert train(tiny_model_dir, tmp_path / "a", *common, "training.per_device_train_batch_size=4") == 0
    assert (
        train(
            tiny_model_dir,
            tmp_path / "b",
            *common,
            "training.per_device_train_batch_size=1",
            "training.gradient_accumulation_steps=4",
        )
        == 0
    )
    for x, y in zip(records(tmp_path / "a"), records(tmp_path / "b"), strict=True):
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-6)
        assert x["grad_norm"] == pytest.approx(y["grad_norm"], rel=1e-4)
    for key, value in weights(tmp_path / "a").items():
        assert_close(weights(tmp_path / "b")[key], value, atol=1e-6, rtol=1e-4)


def test_an_epochs_short_last_window_weighs_as_a_whole_step(tiny_model_dir, tmp_path):
    """6 pairs, one per micro-batch, 4 per window: the epoch's second window holds 2. Its update is
    the mean over those 2 pairs, as a batch of 2 gives (accelerate's division by 4 made it half)."""
    six = tmp_path / "six.jsonl"
    six.write_text("".join(EXAMPLE_PAIRS.read_text().splitlines(keepends=True)[:6]))
    still = ["training.learning_rate=1e-12", "training.max_grad_norm=0", "training.lr_scheduler_type=constant"]
    window = ["training.per_device_train_batch_size=1", "training.gradient_accumulation_steps=4"]
    assert train(tiny_model_dir, tmp_path / "a", *still, *window, "training.max_steps=2", data=six) == 0
    pairs = ["training.per_device_train_batch_size=2", "training.max_steps=3"]
    assert train(tiny_model_dir, tmp_path / "b", *still, *pairs, data=six) == 0
    short, batch = records(tmp_path / "a")[1], records(tmp_path / "b")[2]  # the same two pairs
    assert short["loss"] == pytest.approx(batch["loss"], abs=1e-6)
    assert short["grad_norm"] == pytest.approx(batch["grad_norm"], rel=1e-4)


def test_the_logged_learning_rate_is_the_one_the_step_used(tiny_model_dir, tmp_path):
    assert train(tiny_model_dir, tmp_path / "run", "training.max_steps=4", "training.lr_scheduler_type=linear") == 0
    assert [r["lr"] for r in records(tmp_path / "run")] == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4])


@pytest.mark.parametrize("objective", ["dpo", "simpo", "kto"])
def test_baselines_train(tiny_model_dir, tmp_path, objective):
    out = tmp_path / objective
    assert train(tiny_model_dir, out, "training.max_steps=2", "training.save_steps=1", "--objective", objective) == 0
    first = records(out)[0]
    if objective == "dpo":  # policy = reference at step 1: every log-ratio is 0
        assert first["loss"] == pytest.approx(0.6931472, abs=1e-5)
        assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    # the frozen reference is not one of accelerate's models: checkpoints hold the policy alone (a
    # reference there doubled every DPO checkpoint, and DeepSpeed cannot save a module it did not wrap)
    saved = sorted(p.name for p in (out / "checkpoints" / "step-00000001").glob("model*"))
    assert saved == ["model.safetensors"]


def test_the_schedule_is_prepared_with_the_model_and_sized_to_each_processs_batches(tiny_model_dir, tmp_path):
    """Under DeepSpeed a scheduler prepared in a call of its own comes back unwrapped (stepped once per update
    where the schedule counts one per process) and is left out of checkpoints, so setup prepares it with the
    model, sized before accelerate shards the loader."""
    from accelerate import Accelerator

    import simper.train as train_module
    from simper.config import load_config

    calls = []
    real = Accelerator.prepare

    def recording(self, *args, **kwargs):
        calls.append([type(a).__name__ for a in args])
        return real(self, *args, **kwargs)

    config = load_config(
        None,
        [
            f"model.name_or_path={tiny_model_dir}",
            f"data.train=[{EXAMPLE_PAIRS}]",
            f"training.output_dir={tmp_path / 'run'}",
            "training.per_device_train_batch_size=8",
            "training.gradient_accumulation_steps=2",
        ],
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Accelerator, "prepare", recording)
        run = train_module.setup(config)
    assert calls == [["SequenceLogpsModel", "AdamW", "DataLoader", "LambdaLR"]]
    assert run.scheduler in run.accelerator._schedulers  # so checkpoints save and restore it
    assert run.steps_per_epoch == math.ceil(len(run.train_loader) / 2)


def test_sharded_runs_refuse_a_whole_reference_copy_and_deepspeed_clips_at_max_grad_norm():
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    from simper.distributed import deepspeed_clipping
    from simper.errors import UserError
    from simper.train import _frozen_reference

    config = SimpleNamespace(objective=SimpleNamespace(name="dpo"))
    fsdp = SimpleNamespace(distributed_type=DistributedType.FSDP)
    with pytest.raises(UserError, match="objective dpo needs a reference model, which simper does not shard"):
        _frozen_reference(config, {}, fsdp)
    plugin = SimpleNamespace(zero_stage=3, deepspeed_config={"gradient_clipping": "auto"})
    zero3 = SimpleNamespace(distributed_type=DistributedType.DEEPSPEED, state=SimpleNamespace(deepspeed_plugin=plugin))
    with pytest.raises(UserError, match=r"lora\.r > 0"):
        _frozen_reference(config, {}, zero3)

    deepspeed_clipping(zero3, 0.5)  # accelerate would fill "auto" with 1.0
    assert plugin.deepspeed_config["gradient_clipping"] == 0.5
    deepspeed_clipping(zero3, 2.0)  # a number the user's DeepSpeed config set stays
    assert plugin.deepspeed_config["gradient_clipping"] == 0.5
    plugin.deepspeed_config["gradient_clipping"] = "auto"
    deepspeed_clipping(zero3, 0.0)  # training.max_grad_norm 0 = no clipping, DeepSpeed's 0
    assert plugin.deepspeed_config["gradient_clipping"] == 0.0


def test_weight_decay_reads_a_zero3_partitioned_parameters_shape():
    from types import SimpleNamespace

    from simper.optim import build_optimizer

    model = torch.nn.Linear(4, 3)
    model.weight.data = torch.empty(0)  # as ZeRO-3 leaves a partitioned parameter, its shape in ds_shape
    model.weight.ds_shape = torch.Size([3, 4])
    t = SimpleNamespace(weight_decay=0.1, learning_rate=1e-3, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8)
    decay, no_decay = build_optimizer(model, t, torch.device("cpu")).param_groups
    assert decay["params"] == [model.weight] and no_decay["params"] == [model.bias]


def test_weights_trained_in_bf16_without_an_fp32_copy_are_warned_about(tiny_model_dir, tmp_path, capsys):
    """AdamW's update (about the learning rate) is lost on a bf16 weight above 256 × lr: at the 7B
    recipes' 6e-7, on nearly every weight, unless DeepSpeed or FSDP keep an fp32 copy."""
    step = ["training.max_steps=1", "training.learning_rate=6e-7"]
    assert train(tiny_model_dir, tmp_path / "fp32", *step) == 0
    assert "rounds away" not in capsys.readouterr().err
    assert train(tiny_model_dir, tmp_path / "bf16", *step, "model.torch_dtype=bfloat16") == 0
    assert "rounds away on every weight larger than 0.0002" in capsys.readouterr().err


def test_bf16_autocast_runs(tiny_model_dir, tmp_path):
    assert train(tiny_model_dir, tmp_path / "bf16", "training.max_steps=2", "training.bf16=true") == 0
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records(tmp_path / "bf16"))


def test_user_errors_exit_2_without_traceback(tiny_model_dir, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": "p", "chosen": null, "rejected": "b"}\n'
    )
    assert train(tiny_model_dir, tmp_path / "run", data=bad) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"simper: error: {bad}:line 2: field 'chosen': expected a string, got null"
    assert not (tmp_path / "run" / "model.safetensors").exists()

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert train(tiny_model_dir, tmp_path / "full") == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"

    not_a_model = tmp_path / "empty-model"
    not_a_model.mkdir()
    assert main(["train", "--model", str(not_a_model), "--output-dir", str(tmp_path / "r2")]) == 2
    assert "not a model folder" in capsys.readouterr().err


def test_nonfinite_steps_are_skipped_then_stop(tiny_model_dir, tmp_path, monkeypatch, capsys):
    import simper.train as train_module

    real = train_module.preference_step

    def poisoned(*args, **kwargs):
        loss, stats = real(*args, **kwargs)
        return loss * float("nan"), {**stats, "loss": stats["loss"] * float("nan")}

    monkeypatch.setattr(train_module, "preference_step", poisoned)
    out = tmp_path / "nan"
    code = train(
        tiny_model_dir, out, "training.max_steps=10", "training.max_nonfinite_steps=2", "training.save_steps=1"
    )
    assert code == 2
    assert "2 consecutive steps had a non-finite loss" in capsys.readouterr().err
    assert [r["nonfinite_steps"] for r in records(out)] == [1, 2]
    assert not (out / "model.safetensors").exists()
    saved = load_file(out / "checkpoints" / "step-00000001" / "model.safetensors")
    for key, value in weights(tiny_model_dir).items():  # the skipped update touched no weight
        assert torch.equal(saved[f"model.{key}"], value)


def test_fp16_overflow_while_the_loss_scale_calibrates_skips_the_update_and_goes_on(
    tiny_model_dir, tmp_path, monkeypatch, capsys
):
    # On a GPU, fp16 trains under accelerate's GradScaler, whose first steps overflow while it finds its
    # scale. A CPU accelerator has none, so this one is given a CPU GradScaler; the first three steps'
    # scaled gradients overflow fp32 (loss × 1e36 × 65,536), their losses stay finite.
    import simper.train as train_module

    real_accelerator, real_step = train_module._accelerator, train_module.preference_step
    steps = []

    def with_scaler(*args, **kwargs):
        accelerator = real_accelerator(*args, **kwargs)
        accelerator.scaler, accelerator.native_amp = torch.amp.GradScaler("cpu", init_scale=2.0**16), True
        return accelerator

    def overflowing(*args, **kwargs):
        loss, stats = real_step(*args, **kwargs)
        steps.append(1)
        return (loss * 1e36 if len(steps) <= 3 else loss), stats

    monkeypatch.setattr(train_module, "_accelerator", with_scaler)
    monkeypatch.setattr(train_module, "preference_step", overflowing)
    out = tmp_path / "fp16"
    code = train(tiny_model_dir, out, "training.fp16=true", "training.max_steps=5", "training.max_nonfinite_steps=2")
    assert code == 0  # three overflows in a row, yet not stopped: the scale was still calibrating
    err = capsys.readouterr().err
    assert "step 1: fp16 gradient overflow at loss scale 65536; update skipped, scale lowered to 32768" in err
    rows = records(out)
    assert [r["loss_scale"] for r in rows] == [32768.0, 16384.0, 8192.0, 8192.0, 8192.0]
    assert [r["nonfinite_steps"] for r in rows] == [1, 2, 3, 3, 3]
    assert all(math.isfinite(r["grad_norm"]) for r in rows[3:])
    trained = load_file(out / "model.safetensors")
    assert any(not torch.equal(trained[k], v) for k, v in weights(tiny_model_dir).items())

    # fp16 trainable weights: the scaler would raise "Attempting to unscale FP16 gradients" at the first clip
    half = ["training.fp16=true", "model.torch_dtype=float16", "training.max_steps=1"]
    assert train(tiny_model_dir, tmp_path / "half", *half) == 2
    assert "fp16 loss scaling cannot unscale fp16 gradients" in capsys.readouterr().err


def test_eval_steps_minus_one_never_evaluates(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    assert train(tiny_model_dir, out, "training.max_steps=2", "data.eval_fraction=0.1", "training.eval_steps=-1") == 0
    assert records(out, "eval/loss") == [] and len(records(out)) == 2


def test_simper_warns_at_the_first_step_when_the_data_is_far_off_policy(tiny_model_dir, tmp_path, capsys):
    # a random model gives every response about -6.2 nats per token: SimPER's gradient all but vanishes there
    assert train(tiny_model_dir, tmp_path / "simper", "training.max_steps=1", "training.eval_steps=-1") == 0
    err = capsys.readouterr().err
    assert "warning: the chosen responses have a mean log-prob of -6." in err and "simper pairs" in err
    dpo = train(
        tiny_model_dir, tmp_path / "dpo", "training.max_steps=1", "training.eval_steps=-1", "--objective", "dpo"
    )
    assert dpo == 0 and "mean log-prob" not in capsys.readouterr().err  # DPO's gradient does not scale so


def test_adamw_is_fused_on_cpu_and_matches_the_per_tensor_update():
    """The fused AdamW simper trains with on CPU takes the same steps as torch's per-tensor loop."""
    import copy
    from types import SimpleNamespace

    from simper.optim import build_optimizer

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 4))
    twin = copy.deepcopy(model)
    start = copy.deepcopy(model.state_dict())
    t = SimpleNamespace(learning_rate=1e-2, weight_decay=0.1, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8)
    fused = build_optimizer(model, t, torch.device("cpu"))
    assert fused.defaults["fused"] is True
    assert [g["weight_decay"] for g in fused.param_groups] == [0.1, 0.0]  # none on biases and norms
    loop = torch.optim.AdamW(
        [
            {"params": [p for p in twin.parameters() if p.ndim >= 2], "weight_decay": 0.1},
            {"params": [p for p in twin.parameters() if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=1e-2,
        foreach=False,
    )
    inputs = torch.randn(5, 8)
    for _ in range(3):
        for net, optimizer in ((model, fused), (twin, loop)):
            optimizer.zero_grad()
            net(inputs).square().mean().backward()
            optimizer.step()
    for name, value in model.state_dict().items():
        assert_close(value, twin.state_dict()[name], rtol=1e-6, atol=1e-7)
        assert not torch.equal(value, start[name])  # every tensor moved


def test_compiled_layers_train_as_the_eager_ones(tiny_model_dir, tmp_path):
    """training.compile: the same losses, gradient norms and weights as eager, over steps whose rows
    have different lengths (dynamic shapes), with gradient checkpointing on (what GPU recipes use)."""
    common = ["training.max_steps=2", "training.seed=5", "model.gradient_checkpointing=true"]
    assert train(tiny_model_dir, tmp_path / "eager", *common) == 0
    assert train(tiny_model_dir, tmp_path / "compiled", *common, "training.compile=true") == 0
    for x, y in zip(records(tmp_path / "eager"), records(tmp_path / "compiled"), strict=True):
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-5)
        assert x["grad_norm"] == pytest.approx(y["grad_norm"], rel=1e-3)
    for key, value in weights(tmp_path / "eager").items():
        assert_close(weights(tmp_path / "compiled")[key], value, atol=1e-5, rtol=1e-3)


def test_the_shipped_arithmetic_set_is_the_large_sets_word_problems_told_apart():
    from simper.resources import LARGE_ARITHMETIC_PAIRS, LARGE_TRAIN_PAIRS

    large = LARGE_TRAIN_PAIRS.read_text().splitlines()
    told_apart = [
        line
        for line in large
        if (row := json.loads(line))["kind"] == "arithmetic" and row["score_chosen"] > row["score_rejected"]
    ]
    assert LARGE_ARITHMETIC_PAIRS.read_text().splitlines() == told_apart  # word for word, in the large set's order
    assert len(told_apart) == 179


def test_shipped_pair_sets_go_by_name_and_bring_their_held_out_set(tmp_path, monkeypatch):
    import simper.train
    from simper.config import TrainConfig
    from simper.resources import HELDOUT_PAIRS, LARGE_ARITHMETIC_PAIRS, LARGE_TRAIN_PAIRS, TRAIN_PAIRS

    read = []
    monkeypatch.setattr(
        simper.train, "prepare_data", lambda train, held_out, **settings: read.append((train, held_out))
    )
    mine = tmp_path / "mine.jsonl"
    weighted = ["smollm2-pairs-large", "smollm2-pairs-large-arithmetic"]
    for sources in ([], ["smollm2-pairs-large"], ["smollm2-pairs", "smollm2-pairs-large"], weighted, [str(mine)]):
        config = TrainConfig()
        config.data.train = sources
        simper.train._prepare_data(config, tokenizer=None)
    shipped, large, both = [str(TRAIN_PAIRS)], [str(LARGE_TRAIN_PAIRS)], [str(TRAIN_PAIRS), str(LARGE_TRAIN_PAIRS)]
    held_out = [str(HELDOUT_PAIRS)]
    with_arithmetic = [str(LARGE_TRAIN_PAIRS), str(LARGE_ARITHMETIC_PAIRS)]
    assert read == [
        (shipped, held_out),
        (large, held_out),
        (both, held_out),
        (with_arithmetic, held_out),
        ([str(mine)], []),
    ]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "smollm2-pairs").write_text("")  # a file of that name is read as the file
    config = TrainConfig()
    config.data.train = ["smollm2-pairs"]
    simper.train._prepare_data(config, tokenizer=None)
    assert read[-1] == (["smollm2-pairs"], [])
