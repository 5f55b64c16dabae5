"""Sequence log-probs: every layout equals the plain full-logits computation, values and gradients."""

from __future__ import annotations

import random

import pytest
import torch
from torch.testing import assert_close

from simper.data.collate import LAYOUTS, PairCollator
from simper.data.tokenize import TokenizedPair
from simper.logprobs import sequence_logps
from simper.models import load_model

PAD = 0


def _pairs(seed: int = 0) -> list[TokenizedPair]:
    rng = random.Random(seed)

    def ids(n: int) -> list[int]:
        return [rng.randrange(5, 300) for _ in range(n)]

    return [TokenizedPair(ids(p), ids(c), ids(r)) for p, c, r in ((4, 8, 3), (1, 5, 9), (7, 2, 2))]


def _full_logits_reference(model, pairs):
    """Each sequence alone, unpadded, through the model's own forward and full-vocabulary logits."""
    sums, counts = [], []
    for side in ("chosen", "rejected"):
        for pair in pairs:
            response = getattr(pair, side)
            ids = torch.tensor([pair.prompt + response])
            logits = model(input_ids=ids).logits.float()[0, :-1]
            token_logps = logits.log_softmax(-1).gather(-1, ids[0, 1:, None]).squeeze(-1)
            sums.append(token_logps[len(pair.prompt) - 1 :].sum())
            counts.append(float(len(response)))
    return torch.stack(sums), torch.tensor(counts)


@pytest.mark.parametrize("padding_free", [True, False])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_matches_full_logits_values_and_gradients(tiny_model_dir, layout, padding_free):
    model = load_model(str(tiny_model_dir))
    pairs = _pairs()
    expected_sums, expected_counts = _full_logits_reference(model, pairs)
    (expected_sums * torch.arange(1.0, 7.0)).sum().backward()  # distinct weights: slots must not mix
    expected_grads = [p.grad.clone() for p in model.parameters()]
    batch = PairCollator(PAD, layout, padding_free)(pairs)
    for chunk_size in (0, 4, 1024):
        model.zero_grad()
        sums, counts = sequence_logps(model, batch, chunk_size=chunk_size)
        assert_close(sums, expected_sums, atol=1e-5, rtol=1e-5)
        assert_close(counts, expected_counts)
        (sums * torch.arange(1.0, 7.0)).sum().backward()
        for grad, expected in zip((p.grad for p in model.parameters()), expected_grads, strict=True):
            assert_close(grad, expected, atol=1e-5, rtol=1e-4)


def test_layouts_differ_in_work_not_in_data():
    pairs = _pairs()
    separate = PairCollator(PAD, "separate", padding_free=False)(pairs)
    shared = PairCollator(PAD, "shared-prompt", padding_free=True)(pairs)
    assert separate.tokens == shared.tokens == sum(2 * len(p.prompt) + len(p.chosen) + len(p.rejected) for p in pairs)
    assert len(separate.calls) == 1 and separate.calls[0].input_ids.shape == (6, 12)  # 2B rows, padded
    assert [call.input_ids.shape[1] for call in shared.calls] == [15, 15, 11]  # prompt once, no padding
    assert all(call.attention_mask.dtype == torch.bool for call in shared.calls)
    unpadded_separate = PairCollator(PAD, "separate", padding_free=True)(pairs)
    assert all(call.attention_mask is None for call in unpadded_separate.calls)  # plain causal path


def test_shared_prompt_mask_hides_the_chosen_response_from_the_rejected_one():
    pair = TokenizedPair([11, 12], [21, 22, 23], [31, 32])
    call = PairCollator(PAD, "shared-prompt")([pair]).calls[0]
    mask = call.attention_mask[0, 0]
    assert call.position_ids[0].tolist() == [0, 1, 2, 3, 4, 2, 3]
    assert mask[5].tolist() == [True, True, False, False, False, True, False]  # first rejected token
    assert mask[6].tolist() == [True, True, False, False, False, True, True]
    assert mask[4].tolist() == [True, True, True, True, True, False, False]  # last chosen token
    # the first rejected token (31) is predicted from the last prompt position (1), not from 23's
    assert list(zip(call.sources.tolist(), call.targets.tolist(), call.slots.tolist(), strict=True))[3] == (1, 31, 1)


def test_fp32_log_softmax_for_a_bf16_model(tiny_model_dir):
    model = load_model(str(tiny_model_dir), torch_dtype="bfloat16")
    sums, counts = sequence_logps(model, PairCollator(PAD)(_pairs()))
    assert sums.dtype == torch.float32 and torch.isfinite(sums).all()
    assert counts.tolist() == [8.0, 5.0, 2.0, 3.0, 9.0, 2.0]


def test_fused_chunked_head_gradcheck_and_equals_the_generic_path():
    from simper.logprobs import ChunkedLinearLogps, _target_logps

    torch.manual_seed(0)
    hidden = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(11, 5, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(11, (7,))
    assert torch.autograd.gradcheck(lambda h, w: ChunkedLinearLogps.apply(h, w, targets, 3), (hidden, weight))
    # a model that scales its logits (Granite, Cohere): the scale goes through backward too
    assert torch.autograd.gradcheck(lambda h, w: ChunkedLinearLogps.apply(h, w, targets, 3, 0.25), (hidden, weight))

    head = torch.nn.Linear(5, 11, bias=False)
    states = torch.randn(7, 5, requires_grad=True)
    fused = ChunkedLinearLogps.apply(states, head.weight, targets, 2)
    generic = _target_logps(states, targets, head, 1.0, None)
    assert_close(fused, generic)
    upstream = torch.randn(7)
    fused_grads = torch.autograd.grad((fused * upstream).sum(), [states, head.weight])
    generic_grads = torch.autograd.grad((generic * upstream).sum(), [states, head.weight])
    for got, expected in zip(fused_grads, generic_grads, strict=True):
        assert_close(got, expected)


def test_fused_chunked_head_under_bf16_autocast_matches_the_generic_path():
    from simper.logprobs import ChunkedLinearLogps, _target_logps

    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False)
    states = torch.randn(9, 16, requires_grad=True)
    targets = torch.randint(50, (9,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = ChunkedLinearLogps.apply(states, head.weight, targets, 4)
        generic = _target_logps(states, targets, head, 1.0, None)
    assert fused.dtype == torch.float32
    assert_close(fused, generic, atol=2e-2, rtol=2e-2)
    fused_grads = torch.autograd.grad(fused.sum(), [states, head.weight])
    generic_grads = torch.autograd.grad(generic.sum(), [states, head.weight])
    for got, expected in zip(fused_grads, generic_grads, strict=True):
        assert got.dtype == expected.dtype
        assert_close(got, expected, atol=5e-2, rtol=5e-2)


def test_padding_free_by_default_on_a_cpu_and_padded_on_a_gpu():
    """On an H200 one call per row took 7-8x as long a step as the padded call (docs/performance.md)."""
    from simper.config import TrainingConfig, load_config
    from simper.data.collate import padding_free_on

    assert padding_free_on("cpu") and padding_free_on(torch.device("cpu"))
    assert not any(padding_free_on(device) for device in ("cuda", torch.device("cuda", 1), "mps", "xpu"))
    assert TrainingConfig().padding_free is None  # unset: the device decides
    assert load_config(None, ["training.padding_free=false"]).training.padding_free is False
    assert load_config(None, ["training.padding_free=true"]).training.padding_free is True
    with pytest.raises(TypeError, match="padding_free must be True or False"):
        PairCollator(PAD, padding_free=None)  # an unset value never reaches the collator (it would mean padded)
