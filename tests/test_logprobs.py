"""Sequence log-probs: equal to the full-logits computation, chunked or not, values and gradients."""

from __future__ import annotations

import torch
from torch.testing import assert_close

from simper.logprobs import sequence_logps
from simper.models import load_model


def _batch():
    torch.manual_seed(0)
    input_ids = torch.randint(5, 300, (3, 12))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 9:] = 0
    response_mask = torch.zeros_like(input_ids)
    response_mask[0, 4:12] = 1
    response_mask[1, 6:9] = 1
    response_mask[2, 2:7] = 1
    return input_ids, attention_mask, response_mask


def _full_logits_reference(model, input_ids, attention_mask, response_mask):
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
    token_logps = logits[:, :-1].log_softmax(-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    mask = response_mask[:, 1:].float()
    return (token_logps * mask).sum(-1), mask.sum(-1)


def test_matches_full_logits_values_and_gradients(tiny_model_dir):
    model = load_model(str(tiny_model_dir))
    batch = _batch()
    expected_sums, expected_counts = _full_logits_reference(model, *batch)
    expected_sums.sum().backward()
    expected_grads = [p.grad.clone() for p in model.parameters()]
    for chunk_size in (0, 4, 1024):
        model.zero_grad()
        sums, counts = sequence_logps(model, *batch, chunk_size=chunk_size)
        assert_close(sums, expected_sums, atol=1e-5, rtol=1e-5)
        assert_close(counts, expected_counts)
        sums.sum().backward()
        for grad, expected in zip((p.grad for p in model.parameters()), expected_grads, strict=True):
            assert_close(grad, expected, atol=1e-5, rtol=1e-4)


def test_fp32_log_softmax_for_a_bf16_model(tiny_model_dir):
    model = load_model(str(tiny_model_dir), torch_dtype="bfloat16")
    sums, counts = sequence_logps(model, *_batch())
    assert sums.dtype == torch.float32 and torch.isfinite(sums).all()
    assert counts.tolist() == [8.0, 3.0, 5.0]
